//! The classic MBR: 440 bytes of boot code (GRUB's boot.img goes there), the disk signature,
//! four partition entries and the 0x55AA signature, written with the `mbrman` crate, so no
//! sfdisk is needed at build time.

use std::fs::File;

use mbrman::{MBRPartitionEntry, CHS, MBR};

use super::layout::SECTOR;

/// Boot code may use bytes 0..440; the rest belongs to the disk signature and the table.
pub const BOOT_CODE_SIZE: usize = 440;

pub const TYPE_LINUX: u8 = 0x83;
pub const TYPE_GPT_PROTECTIVE: u8 = 0xEE;

/// One primary partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    pub bootable: bool,
    pub kind: u8,
    pub first_lba: u64,
    pub sectors: u64,
}

/// Write sector 0 of `disk`: `boot_code` (GRUB's boot.img, cut to 440 bytes) in front of
/// `disk_signature` (Windows NT's, used by `PARTUUID=xxxxxxxx-01`) and `entries` (at most
/// four) in order.
pub fn write(disk: &File, disk_signature: u32, entries: &[MbrEntry], boot_code: &[u8]) -> mbrman::Result<()> {
    let mut disk = disk;
    let mut mbr = MBR::new_from(&mut disk, SECTOR as u32, disk_signature.to_le_bytes())?;
    let length = boot_code.len().min(BOOT_CODE_SIZE);
    mbr.header.bootstrap_code[..length].copy_from_slice(&boot_code[..length]);
    for (index, entry) in entries.iter().take(4).enumerate() {
        // mbrman numbers the primary entries from 1.
        mbr[index + 1] = partition_entry(entry);
    }
    mbr.write_into(&mut disk)
}

fn partition_entry(entry: &MbrEntry) -> MBRPartitionEntry {
    MBRPartitionEntry {
        boot: if entry.bootable { mbrman::BOOT_ACTIVE } else { mbrman::BOOT_INACTIVE },
        first_chs: chs(entry.first_lba),
        sys: entry.kind,
        last_chs: chs(entry.first_lba + entry.sectors.saturating_sub(1)),
        // LBA fields are 32-bit: a protective entry on a disk past 2 TiB saturates, as the spec says.
        starting_lba: clamp_u32(entry.first_lba),
        sectors: clamp_u32(entry.sectors),
    }
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// CHS address in the 255-head, 63-sector geometry every tool assumes; addresses past
/// cylinder 1023 get the conventional 1023/254/63 marker.
fn chs(lba: u64) -> CHS {
    CHS::from_lba_exact(clamp_u32(lba), 1023, 255, 63).unwrap_or(CHS::new(1023, 254, 63))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn root_entry() -> MbrEntry {
        MbrEntry { bootable: true, kind: TYPE_LINUX, first_lba: 2048, sectors: 4_192_256 }
    }

    /// Sector 0 as `write` leaves it on a 1 GiB sparse disk.
    fn written(disk_signature: u32, entries: &[MbrEntry], boot_code: &[u8]) -> [u8; SECTOR] {
        let mut disk = tempfile::tempfile().unwrap();
        disk.set_len(1 << 30).unwrap();
        write(&disk, disk_signature, entries, boot_code).unwrap();
        let mut sector = [0u8; SECTOR];
        std::io::Seek::rewind(&mut disk).unwrap();
        disk.read_exact(&mut sector).unwrap();
        sector
    }

    #[test]
    fn table_has_signature_and_disk_id() {
        let sector = written(0xDEAD_BEEF, &[root_entry()], &[]);
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
        assert_eq!(&sector[440..444], &[0xEF, 0xBE, 0xAD, 0xDE]);
        assert!(sector[..440].iter().all(|b| *b == 0));
    }

    #[test]
    fn root_entry_fields() {
        let sector = written(1, &[root_entry()], &[]);
        let entry = &sector[446..462];
        assert_eq!(entry[0], 0x80);
        // LBA 2048 = cylinder 0, head 32, sector 33.
        assert_eq!(&entry[1..4], &[32, 33, 0]);
        assert_eq!(entry[4], 0x83);
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 4_192_256);
        // The last sector sits at cylinder 261, below 1024, so it gets a real CHS address.
        let end = 2048 + 4_192_256 - 1;
        let cylinder = end / (255 * 63);
        assert_eq!(entry[7] as u64, cylinder & 0xFF);
        assert!(sector[462..510].iter().all(|b| *b == 0), "other entries stay empty");
    }

    #[test]
    fn chs_saturates_past_cylinder_1023() {
        let chs_bytes = |lba: u64| {
            let sector = written(0, &[MbrEntry { bootable: false, kind: TYPE_LINUX, first_lba: lba, sectors: 1 }], &[]);
            <[u8; 3]>::try_from(&sector[447..450]).unwrap()
        };
        assert_eq!(chs_bytes(1024 * 255 * 63), [0xFE, 0xFF, 0xFF]);
        assert_eq!(chs_bytes(0), [0, 1, 0]);
        // Cylinder 256: high bits go into the sector byte.
        assert_eq!(chs_bytes(256 * 255 * 63), [0, 0x41, 0]);
    }

    #[test]
    fn protective_entry_clamps_to_32_bits() {
        let big = MbrEntry { bootable: false, kind: TYPE_GPT_PROTECTIVE, first_lba: 1, sectors: 1 << 33 };
        let sector = written(0, &[big], &[]);
        assert_eq!(&sector[458..462], &[0xFF; 4]);
    }

    #[test]
    fn boot_code_keeps_table_and_signature() {
        let table_before = written(0x0102_0304, &[root_entry()], &[])[440..].to_vec();
        let sector = written(0x0102_0304, &[root_entry()], &[0xEB; 512]);
        assert_eq!(&sector[440..], &table_before[..]);
        assert!(sector[..440].iter().all(|b| *b == 0xEB));
    }
}
