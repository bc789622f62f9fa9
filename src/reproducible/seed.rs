//! The build seed: 32 bytes every identifier in the image is derived from, so two builds of
//! the same inputs get the same filesystem UUID, hash seed, partition GUIDs and disk signature,
//! and two builds of different inputs do not collide.

use std::fmt;

use sha2::{Digest, Sha256};

use uuid::Uuid;

/// Domain separation: a seed derived here can never equal a digest made elsewhere.
const DOMAIN: &[u8] = b"mesos-image seed v1\0";

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl Seed {
    /// The seed of a build whose inputs hash to `input_key` (the disk's stage key) and
    /// whose clock is pinned at `epoch`.
    pub fn from_inputs(input_key: &str, epoch: i64) -> Seed {
        Seed::digest(&[b"inputs\0", input_key.as_bytes(), b"\0", epoch.to_string().as_bytes()])
    }

    /// A seed the user chose with `--seed`.
    pub fn from_text(text: &str) -> Seed {
        Seed::digest(&[b"given\0", text.as_bytes()])
    }

    fn digest(parts: &[&[u8]]) -> Seed {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        for part in parts {
            hasher.update(part);
        }
        Seed(hasher.finalize().into())
    }

    /// 32 bytes for one named use; distinct `purpose`s give unrelated values.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        hasher.update(purpose.as_bytes());
        hasher.finalize().into()
    }

    /// A version-4-shaped UUID for `purpose` (filesystem UUID, partition GUID, ...).
    pub fn guid(&self, purpose: &str) -> Uuid {
        let bytes = self.derive(purpose);
        let mut first = [0u8; 16];
        first.copy_from_slice(&bytes[..16]);
        // Version 4 and the RFC 4122 variant set: what a random UUID looks like.
        uuid::Builder::from_random_bytes(first).into_uuid()
    }

    /// A non-zero 32-bit value for `purpose` (MBR disk signature, VMDK CID).
    pub fn u32(&self, purpose: &str) -> u32 {
        let bytes = self.derive(purpose);
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).max(1)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seed({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_identifiers_different_inputs_different() {
        let a = Seed::from_inputs("key-1", 1_700_000_000);
        assert_eq!(a.guid("root-fs"), Seed::from_inputs("key-1", 1_700_000_000).guid("root-fs"));
        assert_ne!(a.guid("root-fs"), Seed::from_inputs("key-2", 1_700_000_000).guid("root-fs"));
        assert_ne!(a.guid("root-fs"), Seed::from_inputs("key-1", 1_700_000_001).guid("root-fs"));
        assert_ne!(a.guid("root-fs"), a.guid("gpt-disk"));
        assert_ne!(Seed::from_text("key-1"), Seed::from_inputs("key-1", 0));
    }

    #[test]
    fn derived_guid_is_shaped_as_version_4() {
        let text = Seed::from_text("x").guid("root-fs").to_string();
        assert_eq!(&text[14..15], "4", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
    }

    /// The `uuid` crate sets the bits and orders the bytes exactly as the hand-written type it
    /// replaced did: the same seed gives the same identifiers, in text and on disk.
    #[test]
    fn uuids_keep_the_bits_and_byte_order_they_had() {
        let counting: [u8; 16] = std::array::from_fn(|i| i as u8);
        let uuid = uuid::Builder::from_random_bytes(counting).into_uuid();
        assert_eq!(uuid.to_string(), "00010203-0405-4607-8809-0a0b0c0d0e0f");
        assert_eq!(uuid.to_bytes_le(), [3, 2, 1, 0, 5, 4, 0x07, 0x46, 0x88, 9, 10, 11, 12, 13, 14, 15]);
        let ones = uuid::Builder::from_random_bytes([0xff; 16]).into_uuid();
        assert_eq!(ones.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let gpt_type = Uuid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
        assert_eq!(gpt_type.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    }
}
