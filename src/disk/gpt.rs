//! GUID partition table: primary header at LBA 1, entries at LBA 2..34, backup entries and header
//! at the end of the disk, both protected by CRC32. Written by the `gpt` crate onto the disk
//! file, with the GUIDs the build's seed chose.

use std::fs::File;

use ::gpt::partition::Partition;
use ::gpt::partition_types::{Type, BIOS, EFI, LINUX_FS};
use uuid::Uuid;

use super::layout::SECTOR;

const ENTRY_COUNT: usize = 128;
const ENTRY_SIZE: usize = 128;

/// Sectors the 128 entries fill (16 KiB).
pub const ENTRY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE / SECTOR) as u64;
/// Protective MBR + header + entries.
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRY_SECTORS;

pub const TYPE_LINUX_FS: Type = LINUX_FS;
pub const TYPE_BIOS_BOOT: Type = BIOS;
pub const TYPE_EFI_SYSTEM: Type = EFI;

/// Attribute bit 2: "legacy BIOS bootable".
pub const ATTR_LEGACY_BOOTABLE: u64 = 1 << 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub kind: Type,
    pub unique: Uuid,
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// Last LBA a partition may use on a disk of `disk_sectors`.
pub fn last_usable_lba(disk_sectors: u64) -> u64 {
    disk_sectors - 2 - ENTRY_SECTORS
}

/// Write both copies of the table (headers and entry arrays) into `disk`, a file already of
/// its final size; the protective MBR is the caller's.
pub fn write(disk: &File, disk_guid: Uuid, partitions: &[GptEntry]) -> Result<(), ::gpt::GptError> {
    let mut table = ::gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(::gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(disk, Some(disk_guid))?;
    let entries = partitions.iter().zip(1u32..).map(|(partition, number)| {
        let entry = Partition {
            part_type_guid: partition.kind.clone(),
            part_guid: partition.unique,
            first_lba: partition.first_lba,
            last_lba: partition.last_lba,
            flags: partition.attributes,
            name: partition.name.clone(),
        };
        (number, entry)
    });
    table.update_partitions(entries.collect())?;
    table.write()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    const SECTORS: u64 = 16384;

    fn read_u64(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn read_u32(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// CRC-32 (IEEE 802.3, reflected), computed here independently of the writer.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = u32::MAX;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }

    /// What a reader finds on the disk: primary header, entries, backup entries, backup header.
    struct Written {
        primary_header: Vec<u8>,
        entries: Vec<u8>,
        backup_entries: Vec<u8>,
        backup_header: Vec<u8>,
    }

    fn sample() -> Written {
        let root = GptEntry {
            kind: TYPE_LINUX_FS,
            unique: Uuid::from_u128(0x11111111_2222_3333_4444_555555555555),
            first_lba: 4096,
            last_lba: 8191,
            attributes: ATTR_LEGACY_BOOTABLE,
            name: "root".to_owned(),
        };
        let file = tempfile::tempfile().unwrap();
        file.set_len(SECTORS * SECTOR as u64).unwrap();
        write(&file, Uuid::from_u128(0xAAAAAAAA_BBBB_CCCC_DDDD_EEEEEEEEEEEE), &[root]).unwrap();
        let read = |lba: u64, sectors: u64| {
            let mut bytes = vec![0u8; (sectors as usize) * SECTOR];
            file.read_exact_at(&mut bytes, lba * SECTOR as u64).unwrap();
            bytes
        };
        Written {
            primary_header: read(1, 1),
            entries: read(2, ENTRY_SECTORS),
            backup_entries: read(SECTORS - 1 - ENTRY_SECTORS, ENTRY_SECTORS),
            backup_header: read(SECTORS - 1, 1),
        }
    }

    #[test]
    fn crc32_known_vector() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn headers_point_at_each_other() {
        let image = sample();
        assert_eq!(&image.primary_header[..8], b"EFI PART");
        assert_eq!(read_u64(&image.primary_header, 24), 1);
        assert_eq!(read_u64(&image.primary_header, 32), 16383);
        assert_eq!(read_u64(&image.primary_header, 72), 2);
        assert_eq!(read_u64(&image.backup_header, 24), 16383);
        assert_eq!(read_u64(&image.backup_header, 32), 1);
        assert_eq!(read_u64(&image.backup_header, 72), 16383 - 32);
        assert_eq!(read_u64(&image.primary_header, 40), 34);
        assert_eq!(read_u64(&image.primary_header, 48), 16384 - 34);
        assert_eq!(read_u64(&image.primary_header, 48), last_usable_lba(SECTORS));
        assert_eq!(read_u64(&image.primary_header, 40), FIRST_USABLE_LBA);
    }

    #[test]
    fn crcs_verify() {
        let image = sample();
        assert_eq!(image.entries, image.backup_entries);
        for header in [&image.primary_header, &image.backup_header] {
            let mut copy = header[..92].to_vec();
            let stored = read_u32(&copy, 16);
            copy[16..20].fill(0);
            assert_eq!(crc32(&copy), stored);
            assert_eq!(read_u32(header, 88), crc32(&image.entries));
        }
    }

    #[test]
    fn entry_uses_mixed_endian_guid_and_utf16_name() {
        let image = sample();
        // 0FC63DAF-8483-4772-... : the first three groups are little-endian on disk.
        assert_eq!(&image.entries[..8], &[0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47]);
        assert_eq!(&image.entries[8..16], &[0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
        assert_eq!(read_u64(&image.entries, 32), 4096);
        assert_eq!(read_u64(&image.entries, 40), 8191);
        assert_eq!(read_u64(&image.entries, 48), ATTR_LEGACY_BOOTABLE);
        assert_eq!(&image.entries[56..64], &[b'r', 0, b'o', 0, b'o', 0, b't', 0]);
        assert!(image.entries[128..].iter().all(|b| *b == 0));
    }
}
