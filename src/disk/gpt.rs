//! GUID partition table: primary header at LBA 1, entries at LBA 2..34, backup entries and header
//! at the end of the disk, both protected by CRC32.

use super::layout::SECTOR;
use uuid::Uuid;

const ENTRY_COUNT: usize = 128;
const ENTRY_SIZE: usize = 128;
const HEADER_SIZE: usize = 92;
/// Sectors the 128 entries fill (16 KiB).
pub const ENTRY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE / SECTOR) as u64;
/// Protective MBR + header + entries.
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRY_SECTORS;

pub const TYPE_LINUX_FS: Uuid = Uuid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
pub const TYPE_BIOS_BOOT: Uuid = Uuid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
pub const TYPE_EFI_SYSTEM: Uuid = Uuid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);

/// Attribute bit 2: "legacy BIOS bootable".
pub const ATTR_LEGACY_BOOTABLE: u64 = 1 << 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub kind: Uuid,
    pub unique: Uuid,
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// Both copies of the table, ready to write at their LBAs.
pub struct GptImage {
    /// LBA 1: primary header.
    pub primary_header: [u8; SECTOR],
    /// LBA 2 (primary) and `disk_sectors - 33` (backup): the entry array.
    pub entries: Vec<u8>,
    /// Last LBA: backup header.
    pub backup_header: [u8; SECTOR],
    pub backup_entries_lba: u64,
    pub backup_header_lba: u64,
}

/// Last LBA a partition may use on a disk of `disk_sectors`.
pub fn last_usable_lba(disk_sectors: u64) -> u64 {
    disk_sectors - 2 - ENTRY_SECTORS
}

pub fn render(disk_guid: Uuid, disk_sectors: u64, partitions: &[GptEntry]) -> GptImage {
    let entries = render_entries(partitions);
    let entries_crc = crc32(&entries);
    let backup_header_lba = disk_sectors - 1;
    let backup_entries_lba = disk_sectors - 1 - ENTRY_SECTORS;
    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| HeaderFields {
        my_lba,
        alternate_lba,
        first_usable: FIRST_USABLE_LBA,
        last_usable: last_usable_lba(disk_sectors),
        disk_guid,
        entries_lba,
        entries_crc,
    };
    GptImage {
        primary_header: render_header(&header(1, backup_header_lba, 2)),
        entries,
        backup_header: render_header(&header(backup_header_lba, 1, backup_entries_lba)),
        backup_entries_lba,
        backup_header_lba,
    }
}

struct HeaderFields {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Uuid,
    entries_lba: u64,
    entries_crc: u32,
}

fn render_header(fields: &HeaderFields) -> [u8; SECTOR] {
    let mut sector = [0u8; SECTOR];
    sector[0..8].copy_from_slice(b"EFI PART");
    sector[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    sector[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    // 16..20 is the header CRC, computed last over the header with the field zeroed.
    sector[24..32].copy_from_slice(&fields.my_lba.to_le_bytes());
    sector[32..40].copy_from_slice(&fields.alternate_lba.to_le_bytes());
    sector[40..48].copy_from_slice(&fields.first_usable.to_le_bytes());
    sector[48..56].copy_from_slice(&fields.last_usable.to_le_bytes());
    sector[56..72].copy_from_slice(&fields.disk_guid.to_bytes_le());
    sector[72..80].copy_from_slice(&fields.entries_lba.to_le_bytes());
    sector[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
    sector[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    sector[88..92].copy_from_slice(&fields.entries_crc.to_le_bytes());
    let header_crc = crc32(&sector[..HEADER_SIZE]);
    sector[16..20].copy_from_slice(&header_crc.to_le_bytes());
    sector
}

fn render_entries(partitions: &[GptEntry]) -> Vec<u8> {
    let mut bytes = vec![0u8; ENTRY_COUNT * ENTRY_SIZE];
    for (index, partition) in partitions.iter().take(ENTRY_COUNT).enumerate() {
        let entry = &mut bytes[index * ENTRY_SIZE..(index + 1) * ENTRY_SIZE];
        entry[0..16].copy_from_slice(&partition.kind.to_bytes_le());
        entry[16..32].copy_from_slice(&partition.unique.to_bytes_le());
        entry[32..40].copy_from_slice(&partition.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&partition.last_lba.to_le_bytes());
        entry[48..56].copy_from_slice(&partition.attributes.to_le_bytes());
        // The name is UTF-16LE, 36 code units at most.
        for (unit_index, unit) in partition.name.encode_utf16().take(36).enumerate() {
            let at = 56 + unit_index * 2;
            entry[at..at + 2].copy_from_slice(&unit.to_le_bytes());
        }
    }
    bytes
}

/// CRC-32 (IEEE 802.3, reflected), the checksum GPT uses. Bitwise: the table is 16 KiB once.
pub fn crc32(data: &[u8]) -> u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u64(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn read_u32(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn sample() -> GptImage {
        let root = GptEntry {
            kind: TYPE_LINUX_FS,
            unique: Uuid::from_u128(0x11111111_2222_3333_4444_555555555555),
            first_lba: 4096,
            last_lba: 8191,
            attributes: ATTR_LEGACY_BOOTABLE,
            name: "root".to_owned(),
        };
        render(Uuid::from_u128(0xAAAAAAAA_BBBB_CCCC_DDDD_EEEEEEEEEEEE), 16384, &[root])
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
    }

    #[test]
    fn crcs_verify() {
        let image = sample();
        for header in [&image.primary_header, &image.backup_header] {
            let mut copy = header[..HEADER_SIZE].to_vec();
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
