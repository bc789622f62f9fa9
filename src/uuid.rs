//! Version-4-shaped UUIDs: the filesystem's and the GPT's (`disk/`), a VHD's unique id
//! (`reproducible/formats.rs`). A build derives them from its seed
//! ([`crate::reproducible::Seed`]), so the same inputs give the same identifiers.

use std::fmt;
use std::io::Read;

/// A UUID held as its big-endian text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(u128);

impl Guid {
    pub const fn from_u128(value: u128) -> Guid {
        Guid(value)
    }

    /// A fresh version-4 UUID from the kernel's random pool (for callers outside a build).
    pub fn random() -> std::io::Result<Guid> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Guid::version4_from_bytes(bytes))
    }

    /// `bytes` with the version-4 and RFC 4122 variant bits set: what a random UUID looks like,
    /// whether the bytes came from the random pool or from a seed.
    pub fn version4_from_bytes(bytes: [u8; 16]) -> Guid {
        let value = u128::from_be_bytes(bytes);
        // Version 4 in the high nibble of byte 6, RFC 4122 variant in the top bits of byte 8.
        let value = (value & !(0xF << 76)) | (0x4 << 76);
        let value = (value & !(0x3 << 62)) | (0x2 << 62);
        Guid(value)
    }

    /// The on-disk GPT form: first three fields little-endian, the rest as written.
    pub fn to_mixed_endian(self) -> [u8; 16] {
        let be = self.0.to_be_bytes();
        let mut out = be;
        out[0..4].copy_from_slice(&[be[3], be[2], be[1], be[0]]);
        out[4..6].copy_from_slice(&[be[5], be[4]]);
        out[6..8].copy_from_slice(&[be[7], be[6]]);
        out
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(f, "{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuid_is_version_4() {
        let text = Guid::random().unwrap().to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert_ne!(Guid::random().unwrap().to_string(), text);
    }

    #[test]
    fn display_is_lowercase_hyphenated() {
        let guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
        assert_eq!(guid.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    }
}
