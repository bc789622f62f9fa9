//! Tree -> bootable raw disk file, without loop devices, device-mapper or mounts: the partition
//! table and GRUB's boot sectors are written by us, the root filesystem by `mkfs.ext4 -d` straight
//! into its byte range of the file.

pub mod esp;
pub mod ext4;
pub mod gpt;
pub mod grub;
pub mod layout;
pub mod mbr;
pub mod size;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::arch::Platform;
use crate::progress::Reporter;
use crate::recipe::{ImageSpec, Partitioning};
use crate::reproducible::{clamp, Pins};
use ext4::{Ext4Generation, Ext4Spec};
use grub::{BootConfig, BootKernel};
use layout::{Firmware, Layout, Role, MIB, SECTOR};

/// How the disk boots: the architecture's entry of [`crate::arch::PLATFORMS`] and the kernel's
/// serial console.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    pub platform: &'a Platform,
    /// `DIB_BOOTLOADER_SERIAL_CONSOLE`, e.g. `ttyAMA0,115200n8`.
    pub console: &'a str,
}

impl Boot<'static> {
    /// The architecture's defaults; `None` for one no disk is written for.
    pub fn for_arch(debian: &str) -> Option<Boot<'static>> {
        crate::arch::platform(debian).map(|platform| Boot { platform, console: platform.serial_console })
    }
}

impl Boot<'_> {
    /// BIOS where the architecture has one; UEFI where asked for (`image.uefi`) or the only way.
    pub fn firmware(&self, spec: &ImageSpec) -> Firmware {
        Firmware { bios: self.platform.bios, uefi: spec.uefi || self.platform.uefi_only }
    }
}

/// What the disk stage made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskReport {
    pub path: PathBuf,
    pub disk_bytes: u64,
    pub partitioning: Partitioning,
    /// What boots it: BIOS, UEFI or both.
    pub firmware: Firmware,
    pub root_partition: u32,
    pub root_uuid: String,
    pub root_label: String,
    /// The `-O` string given to mke2fs.
    pub ext4_features: String,
    pub kernel_version: String,
    /// Bytes the tree occupies as ext4 will store it.
    pub tree_bytes: u64,
    pub mkfs_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("--image-size (image.size) `{given}` is too small for the tree: it needs at least {needed_mib} MiB")]
    ImageSizeTooSmall { given: String, needed_mib: u64 },
    #[error("image.uefi needs `partitioning: gpt` (an ESP cannot live in this MBR layout)")]
    UefiNeedsGpt,
    #[error("cannot measure the tree {tree}: {source}")]
    Measure { tree: PathBuf, source: walkdir::Error },
}

/// Build the bootable raw disk `raw` from `tree` for a target of `release`, booting as `boot`
/// says (BIOS GRUB embedded, a UEFI ESP, or both).
///
/// Writes `/boot/grub/grub.cfg` and `/etc/fstab` into the tree first, so they land in the image.
/// Every identifier comes from `pins.seed` and every time from `pins.epoch`, so the same tree
/// and pins give the same bytes.
pub fn build_disk(
    tree: &Path,
    spec: &ImageSpec,
    boot: &Boot<'_>,
    release: &str,
    raw: &Path,
    pins: &Pins,
    reporter: &Reporter,
) -> anyhow::Result<DiskReport> {
    let firmware = boot.firmware(spec);
    let efi = boot.platform.efi;
    if firmware.uefi && spec.partitioning != Partitioning::Gpt {
        return Err(DiskError::UefiNeedsGpt.into());
    }
    let kernel = grub::find_kernel(tree)?;
    if firmware.bios {
        grub::check_tree_has_grub(tree)?;
    }
    if firmware.uefi {
        grub::check_tree_has_efi_grub(tree, &efi)?;
    }
    let root_uuid = pins.seed.guid("root-filesystem-uuid");
    // Everything the disk adds to the tree goes in before the tree is measured, so the size
    // counts what mkfs copies, and a tree that went through here before measures the same.
    write_boot_files(tree, &kernel, &root_uuid.to_string(), &spec.kernel_args, boot)?;
    if firmware.bios {
        grub::install_modules(tree, grub::Platform::I386Pc.name())?;
    }
    if firmware.uefi {
        grub::install_modules(tree, efi.grub_target)?;
    }
    let usage = size::measure_tree(tree).map_err(|source| DiskError::Measure { tree: tree.to_owned(), source })?;
    let layout = choose_layout(spec, firmware, usage)?;
    let core = if firmware.bios { Some(make_core_img(tree, &layout, reporter)?) } else { None };
    // Both GRUB images are made before the tree's times are clamped: nothing may write into
    // the tree between the clamp and mkfs.
    let efi_image = match firmware.uefi {
        true => Some(esp::make_efi_image(tree, &efi, &layout, &root_uuid.to_string(), reporter)?),
        false => None,
    };
    create_sparse_file(raw, layout.disk_bytes)?;

    let paths = {
        let _step = reporter.step(format!("clamp file times to SOURCE_DATE_EPOCH {}", pins.epoch.seconds));
        clamp::clamp_tree(tree, pins.epoch.seconds)?
    };
    let generation = Ext4Generation::for_release(release);
    let ext4 = Ext4Spec {
        tree,
        label: &spec.root_label,
        uuid: root_uuid,
        hash_seed: pins.seed.guid("ext4-hash-seed"),
        epoch: pins.epoch.seconds,
        generation,
        extra_options: spec.mkfs_options.as_deref().unwrap_or_default(),
    };
    let root = layout.root();
    let started = Instant::now();
    {
        let _step = reporter.step(format!("mkfs.ext4 -d ({} MiB root filesystem)", root.size_bytes() / MIB));
        reporter.run("mkfs.ext4", &mut ext4::mkfs_command(&ext4, raw, &root))?;
    }
    pin_ctimes(raw, &root, &paths, pins.epoch.seconds, reporter)?;
    let mkfs_time = started.elapsed();
    if let (Some(esp), Some(efi_image)) = (layout.find(Role::Esp), efi_image) {
        esp::build_esp(raw, &esp, &efi, &efi_image, pins, reporter)?;
    }
    // The table and boot sectors go in after mkfs, so nothing mkfs does can touch them.
    match core {
        Some(core) => write_boot_area(tree, raw, &layout, &core, pins)?,
        // UEFI only: the firmware reads the ESP; the MBR is GPT's protective one, no boot code.
        None => write_partition_table(raw, &layout, &[], pins)?,
    }
    Ok(DiskReport {
        path: raw.to_owned(),
        disk_bytes: layout.disk_bytes,
        partitioning: layout.table,
        firmware,
        root_partition: root.number,
        root_uuid: root_uuid.to_string(),
        root_label: spec.root_label.clone(),
        ext4_features: generation.feature_flags().to_owned(),
        kernel_version: kernel.version,
        tree_bytes: usage.data_bytes,
        mkfs_time,
    })
}

/// The disk layout for the given or computed size; a given size must hold the tree.
fn choose_layout(spec: &ImageSpec, firmware: Firmware, usage: size::TreeUsage) -> Result<Layout, DiskError> {
    if firmware.uefi && spec.partitioning != Partitioning::Gpt {
        return Err(DiskError::UefiNeedsGpt);
    }
    let overhead = layout::overhead_bytes(spec.partitioning, firmware);
    let minimum_disk = size::minimum_fs_bytes(usage) + overhead;
    let Some(given) = &spec.size else {
        // disk-image-create adds --image-extra-size to the measured tree in place of its headroom.
        let fs_bytes = match &spec.extra_size {
            Some(extra) => size::minimum_fs_bytes(usage) + extra.bytes().div_ceil(MIB) * MIB,
            None => size::default_fs_bytes(usage),
        };
        let disk_bytes = fs_bytes + overhead;
        return Layout::for_firmware(spec.partitioning, firmware, disk_bytes).ok_or(DiskError::ImageSizeTooSmall {
            given: format!("{}M (computed)", disk_bytes / MIB),
            needed_mib: minimum_disk / MIB,
        });
    };
    let too_small = || DiskError::ImageSizeTooSmall { given: given.to_string(), needed_mib: minimum_disk / MIB };
    let layout = Layout::for_firmware(spec.partitioning, firmware, given.bytes()).ok_or_else(too_small)?;
    if layout.root().size_bytes() < size::minimum_fs_bytes(usage) {
        return Err(too_small());
    }
    Ok(layout)
}

/// grub.cfg and fstab, written into the tree before mkfs copies it.
fn write_boot_files(
    tree: &Path,
    kernel: &BootKernel,
    root_uuid: &str,
    kernel_args: &[String],
    boot: &Boot<'_>,
) -> anyhow::Result<()> {
    let grub_dir = tree.join("boot/grub");
    std::fs::create_dir_all(&grub_dir).with_context(|| format!("cannot create {}", grub_dir.display()))?;
    let config =
        BootConfig { kernel, root_uuid, kernel_args, console: boot.console, terminal: boot.platform.grub_terminal };
    let cfg = grub::render_grub_cfg(&config);
    write_file(&grub_dir.join("grub.cfg"), &cfg)?;
    let fstab_path = tree.join("etc/fstab");
    let existing = match std::fs::read_to_string(&fstab_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", fstab_path.display())),
    };
    write_file(&fstab_path, &grub::render_fstab(&existing, root_uuid))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn pin_ctimes(
    raw: &Path,
    root: &layout::Partition,
    paths: &[PathBuf],
    epoch: i64,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let _step = reporter.step(format!("debugfs: change times of {} inodes to the epoch", paths.len()));
    ext4::pin_ctimes(raw, root, paths, epoch)
}

/// Run the target's grub-mkimage in the tree and return core.img placed for its sector.
fn make_core_img(tree: &Path, layout: &Layout, reporter: &Reporter) -> anyhow::Result<Vec<u8>> {
    let _step = reporter.step("grub-mkimage (target's own, i386-pc)");
    let core = grub::run_mkimage_in_tree(tree, grub::Platform::I386Pc, &layout.grub_root_partition(), None, reporter)?;
    let (sector, room) = layout.core_img_area();
    Ok(grub::place_core(core, sector, room)?)
}

fn create_sparse_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.set_len(bytes).with_context(|| format!("cannot size {} to {bytes} bytes", path.display()))
}

/// GRUB's boot code and partition table in the MBR, core.img where boot.img looks.
fn write_boot_area(tree: &Path, raw: &Path, layout: &Layout, core: &[u8], pins: &Pins) -> anyhow::Result<()> {
    let boot_img_path = tree.join(grub::I386_PC_DIR).join("boot.img");
    let boot_img = std::fs::read(&boot_img_path).with_context(|| format!("cannot read {}", boot_img_path.display()))?;
    let (core_sector, _) = layout.core_img_area();
    let code = grub::boot_code(&boot_img, &boot_img_path, core_sector)?;
    write_partition_table(raw, layout, &code, pins)?;
    let file = OpenOptions::new().write(true).open(raw).with_context(|| format!("cannot open {}", raw.display()))?;
    file.write_all_at(core, core_sector * SECTOR as u64)
        .with_context(|| format!("cannot write core.img to {} at sector {core_sector}", raw.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", raw.display()))
}

/// Write `layout`'s partition table (MBR, or protective MBR + both GPT copies) into the disk
/// file `raw`, with `boot_code` (at most 440 bytes) in front of the MBR's table. The disk
/// signature and GUIDs come from `pins.seed`.
pub fn write_partition_table(raw: &Path, layout: &Layout, boot_code: &[u8], pins: &Pins) -> anyhow::Result<()> {
    // Read as well: the GPT writer looks for an old backup header before it writes.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .with_context(|| format!("cannot open {}", raw.display()))?;
    let entries = match layout.table {
        Partitioning::Mbr => mbr_entries(layout),
        Partitioning::Gpt => {
            gpt::write(&file, pins.seed.guid("gpt-disk-guid"), &gpt_entries(layout, pins))
                .with_context(|| format!("cannot write the GPT of {}", raw.display()))?;
            let protective = mbr::MbrEntry {
                bootable: false,
                kind: mbr::TYPE_GPT_PROTECTIVE,
                first_lba: 1,
                sectors: layout.disk_sectors() - 1,
            };
            vec![protective]
        }
    };
    mbr::write(&file, pins.seed.u32("mbr-disk-signature"), &entries, boot_code)
        .with_context(|| format!("cannot write the MBR of {}", raw.display()))
}

fn mbr_entries(layout: &Layout) -> Vec<mbr::MbrEntry> {
    let root = layout.root();
    vec![mbr::MbrEntry { bootable: true, kind: mbr::TYPE_LINUX, first_lba: root.first_lba, sectors: root.sectors }]
}

fn gpt_entries(layout: &Layout, pins: &Pins) -> Vec<gpt::GptEntry> {
    layout
        .partitions
        .iter()
        .map(|partition| {
            let (kind, name, attributes) = match partition.role {
                Role::BiosBoot => (gpt::TYPE_BIOS_BOOT, "bios", 0),
                Role::Esp => (gpt::TYPE_EFI_SYSTEM, "esp", 0),
                Role::Root => (gpt::TYPE_LINUX_FS, "root", gpt::ATTR_LEGACY_BOOTABLE),
            };
            gpt::GptEntry {
                kind,
                unique: pins.seed.guid(&format!("gpt-partition-{}", partition.number)),
                first_lba: partition.first_lba,
                last_lba: partition.first_lba + partition.sectors - 1,
                attributes,
                name: name.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ByteSize;

    const BIOS: Firmware = Firmware { bios: true, uefi: false };

    fn usage(mib: u64) -> size::TreeUsage {
        size::TreeUsage { data_bytes: mib * MIB, inodes: 1000 }
    }

    #[test]
    fn computed_size_has_headroom() {
        let layout = choose_layout(&ImageSpec::default(), BIOS, usage(1000)).unwrap();
        assert!(layout.root().size_bytes() >= size::default_fs_bytes(usage(1000)));
        assert_eq!(layout.disk_bytes % MIB, 0);
    }

    #[test]
    fn given_size_too_small_names_the_option() {
        let spec = ImageSpec { size: ByteSize::parse("512M").ok(), ..ImageSpec::default() };
        let err = choose_layout(&spec, BIOS, usage(1000)).unwrap_err().to_string();
        assert!(err.starts_with("--image-size (image.size) `512M` is too small"), "{err}");
    }

    #[test]
    fn extra_size_replaces_the_headroom_and_a_given_size_wins() {
        let extra = ImageSpec { extra_size: ByteSize::parse("2048M").ok(), ..ImageSpec::default() };
        let layout = choose_layout(&extra, BIOS, usage(1000)).unwrap();
        let wanted = size::minimum_fs_bytes(usage(1000)) + (2048 << 20);
        let root = layout.root().size_bytes();
        assert!(root >= wanted && root < wanted + 4 * MIB, "{root} for {wanted}");
        let both = ImageSpec { size: ByteSize::parse("4G").ok(), ..extra };
        assert_eq!(choose_layout(&both, BIOS, usage(1000)).unwrap().disk_bytes, 4 << 30);
    }

    #[test]
    fn given_size_is_the_disk_size() {
        let spec = ImageSpec { size: ByteSize::parse("4G").ok(), ..ImageSpec::default() };
        let layout = choose_layout(&spec, BIOS, usage(1000)).unwrap();
        assert_eq!(layout.disk_bytes, 4 << 30);
    }

    #[test]
    fn bad_size_names_the_value() {
        // A size is parsed where it is given (flag or recipe), so the disk stage never sees `4Q`.
        let err = ByteSize::parse("4Q").unwrap_err();
        assert!(err.starts_with("`4Q`"), "{err}");
    }
}
