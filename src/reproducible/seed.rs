//! The build seed: 32 bytes every identifier in the image is derived from, so two builds of
//! the same inputs get the same filesystem UUID, hash seed, partition GUIDs and disk signature,
//! and two builds of different inputs do not collide.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::uuid::Guid;

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
    pub fn guid(&self, purpose: &str) -> Guid {
        let bytes = self.derive(purpose);
        let mut first = [0u8; 16];
        first.copy_from_slice(&bytes[..16]);
        Guid::version4_from_bytes(first)
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
}
