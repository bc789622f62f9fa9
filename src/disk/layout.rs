//! Where each partition goes. Everything is MiB-aligned; the root partition comes last so the
//! guest can grow it into a resized disk (cloud-init growpart).

use crate::recipe::Partitioning;

pub const SECTOR: usize = 512;
pub const MIB: u64 = 1 << 20;
const SECTORS_PER_MIB: u64 = MIB / SECTOR as u64;
/// Room for GRUB's core.img when it sits in a BIOS boot partition.
pub const BIOS_BOOT_BYTES: u64 = MIB;
/// The ESP holds only GRUB's EFI image; FAT16 in 64 MiB is what firmware reads everywhere.
pub const ESP_BYTES: u64 = 64 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    BiosBoot,
    Esp,
    Root,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel and GRUB count (`msdos1`, `gpt3`).
    pub number: u32,
    pub role: Role,
    pub first_lba: u64,
    pub sectors: u64,
}

impl Partition {
    pub fn offset_bytes(&self) -> u64 {
        self.first_lba * SECTOR as u64
    }

    pub fn size_bytes(&self) -> u64 {
        self.sectors * SECTOR as u64
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub table: Partitioning,
    pub disk_bytes: u64,
    /// In disk order; root is always the last.
    pub partitions: Vec<Partition>,
    root: Partition,
}

/// Which firmware the disk boots from: BIOS (GRUB embedded; a BIOS boot partition on GPT),
/// UEFI (an ESP), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub bios: bool,
    pub uefi: bool,
}

/// Bytes the layout spends outside the root partition.
pub fn overhead_bytes(table: Partitioning, firmware: Firmware) -> u64 {
    match table {
        Partitioning::Mbr => MIB,
        // Leading MiB (tables), BIOS boot, ESP, trailing MiB (backup table).
        Partitioning::Gpt => {
            let bios = if firmware.bios { BIOS_BOOT_BYTES } else { 0 };
            MIB + bios + if firmware.uefi { ESP_BYTES } else { 0 } + MIB
        }
    }
}

impl Layout {
    /// A disk of `disk_bytes` that BIOS boots (and UEFI too with `uefi`): see [`Self::for_firmware`].
    pub fn for_disk(table: Partitioning, uefi: bool, disk_bytes: u64) -> Option<Layout> {
        Layout::for_firmware(table, Firmware { bios: true, uefi }, disk_bytes)
    }

    /// A disk of `disk_bytes` (rounded up to whole MiB) for `firmware`; the root partition gets
    /// what the other partitions leave. `None` when nothing is left for root.
    pub fn for_firmware(table: Partitioning, firmware: Firmware, disk_bytes: u64) -> Option<Layout> {
        let disk_bytes = disk_bytes.div_ceil(MIB) * MIB;
        let root_bytes = disk_bytes.checked_sub(overhead_bytes(table, firmware)).filter(|b| *b > 0)?;
        let mut partitions = Vec::new();
        let mut next_lba = SECTORS_PER_MIB;
        let mut push = |role: Role, bytes: u64| {
            let sectors = bytes / SECTOR as u64;
            let number = partitions.len() as u32 + 1;
            partitions.push(Partition { number, role, first_lba: next_lba, sectors });
            next_lba += sectors;
        };
        if table == Partitioning::Gpt {
            if firmware.bios {
                push(Role::BiosBoot, BIOS_BOOT_BYTES);
            }
            if firmware.uefi {
                push(Role::Esp, ESP_BYTES);
            }
        }
        let root = Partition {
            number: partitions.len() as u32 + 1,
            role: Role::Root,
            first_lba: next_lba,
            sectors: root_bytes / SECTOR as u64,
        };
        partitions.push(root);
        Some(Layout { table, disk_bytes, partitions, root })
    }

    pub fn disk_sectors(&self) -> u64 {
        self.disk_bytes / SECTOR as u64
    }

    pub fn root(&self) -> Partition {
        self.root
    }

    pub fn find(&self, role: Role) -> Option<Partition> {
        self.partitions.iter().copied().find(|p| p.role == role)
    }

    /// Where GRUB's core.img goes and how many sectors it may fill: the gap after the MBR, or
    /// the BIOS boot partition on GPT.
    pub fn core_img_area(&self) -> (u64, u64) {
        match self.find(Role::BiosBoot) {
            Some(bios) => (bios.first_lba, bios.sectors),
            None => (1, self.root().first_lba - 1),
        }
    }

    /// GRUB's name for the root partition, e.g. `msdos1` or `gpt2`.
    pub fn grub_root_partition(&self) -> String {
        let scheme = match self.table {
            Partitioning::Mbr => "msdos",
            Partitioning::Gpt => "gpt",
        };
        format!("{scheme}{}", self.root().number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_root_starts_at_one_mib() {
        let layout = Layout::for_disk(Partitioning::Mbr, false, 2048 * MIB).unwrap();
        let root = layout.root();
        assert_eq!((root.number, root.first_lba), (1, 2048));
        assert_eq!(root.size_bytes(), 2047 * MIB);
        assert_eq!(layout.core_img_area(), (1, 2047));
        assert_eq!(layout.grub_root_partition(), "msdos1");
    }

    #[test]
    fn gpt_with_uefi_orders_bios_esp_root() {
        let layout = Layout::for_disk(Partitioning::Gpt, true, 1024 * MIB).unwrap();
        let roles: Vec<_> = layout.partitions.iter().map(|p| (p.number, p.role, p.first_lba)).collect();
        assert_eq!(roles, vec![(1, Role::BiosBoot, 2048), (2, Role::Esp, 4096), (3, Role::Root, 4096 + 131072)]);
        let root = layout.root();
        // The last MiB stays free for the backup table.
        assert_eq!(root.offset_bytes() + root.size_bytes(), 1023 * MIB);
        assert_eq!(layout.core_img_area(), (2048, 2048));
        assert_eq!(layout.grub_root_partition(), "gpt3");
    }

    #[test]
    fn uefi_only_gpt_orders_esp_root_without_a_bios_boot_partition() {
        let layout = Layout::for_firmware(Partitioning::Gpt, Firmware { bios: false, uefi: true }, 1024 * MIB).unwrap();
        let roles: Vec<_> = layout.partitions.iter().map(|p| (p.number, p.role, p.first_lba)).collect();
        assert_eq!(roles, vec![(1, Role::Esp, 2048), (2, Role::Root, 2048 + 131072)]);
        assert_eq!(layout.root().offset_bytes() + layout.root().size_bytes(), 1023 * MIB);
        assert_eq!(layout.grub_root_partition(), "gpt2");
    }

    #[test]
    fn disk_size_rounds_up_to_mib_and_rejects_tiny_disks() {
        let layout = Layout::for_disk(Partitioning::Mbr, false, 10 * MIB + 1).unwrap();
        assert_eq!(layout.disk_bytes, 11 * MIB);
        assert!(Layout::for_disk(Partitioning::Mbr, false, MIB).is_none());
        assert!(Layout::for_disk(Partitioning::Gpt, false, 3 * MIB).is_none());
    }
}
