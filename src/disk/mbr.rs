//! The classic MBR: 446 bytes of boot code (GRUB's boot.img goes there), four partition entries
//! and the 0x55AA signature. Written by us, so no sfdisk is needed at build time.

use super::layout::SECTOR;

/// Where the disk signature lives (Windows NT's, used by `PARTUUID=xxxxxxxx-01`).
const DISK_SIGNATURE_OFFSET: usize = 440;
const TABLE_OFFSET: usize = 446;
const ENTRY_SIZE: usize = 16;
/// Boot code may use bytes 0..440; the rest belongs to the signature and the table.
pub const BOOT_CODE_SIZE: usize = DISK_SIGNATURE_OFFSET;

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

/// Render the first sector: no boot code yet, `entries` (at most four) in order.
pub fn render(disk_signature: u32, entries: &[MbrEntry]) -> [u8; SECTOR] {
    let mut sector = [0u8; SECTOR];
    sector[DISK_SIGNATURE_OFFSET..DISK_SIGNATURE_OFFSET + 4].copy_from_slice(&disk_signature.to_le_bytes());
    for (index, entry) in entries.iter().take(4).enumerate() {
        let at = TABLE_OFFSET + index * ENTRY_SIZE;
        sector[at..at + ENTRY_SIZE].copy_from_slice(&render_entry(entry));
    }
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

fn render_entry(entry: &MbrEntry) -> [u8; ENTRY_SIZE] {
    let mut bytes = [0u8; ENTRY_SIZE];
    bytes[0] = if entry.bootable { 0x80 } else { 0x00 };
    bytes[1..4].copy_from_slice(&chs(entry.first_lba));
    bytes[4] = entry.kind;
    bytes[5..8].copy_from_slice(&chs(entry.first_lba + entry.sectors.saturating_sub(1)));
    // LBA fields are 32-bit: a protective entry on a disk past 2 TiB saturates, as the spec says.
    bytes[8..12].copy_from_slice(&clamp_u32(entry.first_lba).to_le_bytes());
    bytes[12..16].copy_from_slice(&clamp_u32(entry.sectors).to_le_bytes());
    bytes
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// CHS address in the 255-head, 63-sector geometry every tool assumes; addresses past
/// cylinder 1023 get the conventional 1023/254/63 marker.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    // Cylinder bits 8-9 ride in the top two bits of the sector byte; values are < 256 here.
    [head as u8, (sector as u8) | (((cylinder >> 2) & 0xC0) as u8), (cylinder & 0xFF) as u8]
}

/// Put `boot_code` (GRUB's boot.img) in front of an already rendered table, keeping the disk
/// signature and the partition entries.
pub fn install_boot_code(sector: &mut [u8; SECTOR], boot_code: &[u8]) {
    let length = boot_code.len().min(BOOT_CODE_SIZE);
    sector[..length].copy_from_slice(&boot_code[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_entry() -> MbrEntry {
        MbrEntry { bootable: true, kind: TYPE_LINUX, first_lba: 2048, sectors: 4_192_256 }
    }

    #[test]
    fn table_has_signature_and_disk_id() {
        let sector = render(0xDEAD_BEEF, &[root_entry()]);
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
        assert_eq!(&sector[440..444], &[0xEF, 0xBE, 0xAD, 0xDE]);
        assert!(sector[..440].iter().all(|b| *b == 0));
    }

    #[test]
    fn root_entry_fields() {
        let sector = render(1, &[root_entry()]);
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
        assert_eq!(chs(1024 * 255 * 63), [0xFE, 0xFF, 0xFF]);
        assert_eq!(chs(0), [0, 1, 0]);
        // Cylinder 256: high bits go into the sector byte.
        assert_eq!(chs(256 * 255 * 63), [0, 0x41, 0]);
    }

    #[test]
    fn protective_entry_clamps_to_32_bits() {
        let big = MbrEntry { bootable: false, kind: TYPE_GPT_PROTECTIVE, first_lba: 1, sectors: 1 << 33 };
        let sector = render(0, &[big]);
        assert_eq!(&sector[458..462], &[0xFF; 4]);
    }

    #[test]
    fn boot_code_keeps_table_and_signature() {
        let mut sector = render(0x0102_0304, &[root_entry()]);
        let table_before = sector[440..].to_vec();
        install_boot_code(&mut sector, &[0xEB; 512]);
        assert_eq!(&sector[440..], &table_before[..]);
        assert!(sector[..440].iter().all(|b| *b == 0xEB));
    }
}
