//! Sizes as the build settings give them: parsed once into bytes, keeping the spelling the
//! user wrote so a message names the value as typed and the plan (and the cache keys derived
//! from it) read the same as before the value was typed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MIB: u64 = 1 << 20;
/// The smallest disk a bootable image fits on (kernel, initrd and GRUB alone take more).
const MIN_DISK: u64 = 64 << 20;
/// ext4 with 4 KiB blocks and 32-bit block numbers ends at 16 TiB; nobody means more here.
const MAX_DISK: u64 = 16 << 40;

/// A size in bytes, with the text it was written as (`4G`, `2560M`, a byte count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize {
    bytes: u64,
    text: String,
}

impl ByteSize {
    /// Our size syntax: `4G`, `2560M`, `512MiB` or a byte count.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        Ok(ByteSize { bytes: parse_size(text)?, text: text.to_owned() })
    }

    /// A whole number of MiB, written as `<n>M`.
    pub fn from_mib(mib: u64) -> ByteSize {
        ByteSize { bytes: mib * MIB, text: format!("{mib}M") }
    }

    /// disk-image-create's reading of `--image-size`/`--image-extra-size`: a bare number is GB
    /// (fractions allowed), rounded to whole MiB and written as `<n>M`; with a unit, our syntax.
    /// `range` bounds a bare number, checked while the value is still the one the user typed.
    pub fn parse_gigabytes(text: &str, range: impl Fn(u64) -> Result<(), String>) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() || !trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return ByteSize::parse(text);
        }
        let gigabytes: f64 =
            trimmed.parse().map_err(|_| format!("`{text}` is not a size (try 4 for 4 GB, or 2560M)"))?;
        let mebibytes = (gigabytes * 1024.0).round();
        if mebibytes < 1.0 {
            return Err(format!("`{text}` GB is less than 1 MiB"));
        }
        // Beyond 16T every range refuses it; also keeps the conversion to whole MiB exact.
        if mebibytes > (MAX_DISK / MIB) as f64 {
            range(u64::MAX).map_err(|problem| format!("`{text}` GB: {problem}"))?;
        }
        let size = ByteSize::from_mib(mebibytes as u64);
        range(size.bytes).map_err(|problem| format!("`{text}` GB: {problem}"))?;
        Ok(size)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A whole disk: between 64M and 16T.
    pub fn check_disk(bytes: u64) -> Result<(), String> {
        if !(MIN_DISK..=MAX_DISK).contains(&bytes) {
            return Err("out of range: a disk is between 64M and 16T".to_owned());
        }
        Ok(())
    }

    /// Room added to the tree: between 1 MiB and 16T.
    pub fn check_extra(bytes: u64) -> Result<(), String> {
        if !(MIB..=MAX_DISK).contains(&bytes) {
            return Err("out of range (1 MiB to 16T)".to_owned());
        }
        Ok(())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        let text = String::deserialize(deserializer)?;
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parse a size such as `4G`, `2560M`, `512MiB` or a byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size (try 4G or 2560M)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("`{text}` has an unknown unit (use K, M, G or T)")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("2560M").unwrap(), 2560 << 20);
        assert!(parse_size("4Q").is_err());
        assert!(parse_size("big").is_err());
    }

    #[test]
    fn a_bare_number_is_gigabytes_as_disk_image_create_reads_it() {
        let size = ByteSize::parse_gigabytes("1.5", ByteSize::check_disk).unwrap();
        assert_eq!((size.bytes(), size.as_str()), (1536 << 20, "1536M"));
        let given = ByteSize::parse_gigabytes("4G", ByteSize::check_disk).unwrap();
        assert_eq!((given.bytes(), given.as_str()), (4 << 30, "4G"));
        assert_eq!(ByteSize::parse_gigabytes("0", ByteSize::check_disk).unwrap_err(), "`0` GB is less than 1 MiB");
        let err = ByteSize::parse_gigabytes("0.01", ByteSize::check_disk).unwrap_err();
        assert_eq!(err, "`0.01` GB: out of range: a disk is between 64M and 16T");
        let err = ByteSize::parse_gigabytes("18446744073709551615", ByteSize::check_disk).unwrap_err();
        assert!(err.starts_with("`18446744073709551615` GB: out of range"), "{err}");
    }

    #[test]
    fn the_spelling_is_kept_for_messages_and_the_plan() {
        let size: ByteSize = serde_json::from_str("\"4G\"").unwrap();
        assert_eq!(size.bytes(), 4 << 30);
        assert_eq!(serde_json::to_string(&size).unwrap(), "\"4G\"");
        assert!(serde_json::from_str::<ByteSize>("\"4Q\"").is_err());
    }
}
