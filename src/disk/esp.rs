//! The UEFI system partition, made without mounting: `mkfs.fat --offset` formats its byte range
//! of the disk file and mtools copies GRUB's EFI binary (from the target's own grub-mkimage) to
//! the removable-media path firmware boots without NVRAM entries.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::grub::Platform;
use super::layout::{Layout, Partition};
use crate::progress::Reporter;
use crate::reproducible::Pins;

/// Where firmware looks on removable media (and on any disk without a boot entry).
const REMOVABLE_PATH: &str = "::/EFI/BOOT/BOOTX64.EFI";

/// GRUB's EFI image, made by the target's own grub-mkimage.
pub fn make_efi_image(tree: &Path, layout: &Layout, reporter: &Reporter) -> anyhow::Result<Vec<u8>> {
    let _step = reporter.step("grub-mkimage (target's own, x86_64-efi)");
    super::run_mkimage_in_tree(tree, Platform::X86_64Efi, &layout.grub_root_partition(), reporter)
}

/// Format the ESP inside `raw` and put GRUB's EFI image on it. The volume id comes from the
/// seed; FAT times from `SOURCE_DATE_EPOCH` (which mkfs.fat reads) and the staged file's
/// clamped mtime (which `mcopy -m` keeps).
pub fn build_esp(
    raw: &Path,
    esp: &Partition,
    efi_image: &[u8],
    pins: &Pins,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let _step = reporter.step("ESP (FAT, GRUB x86_64-efi)");
    reporter.run("mkfs.fat", &mut mkfs_fat_command(raw, esp, pins))?;
    let staging = tempfile::NamedTempFile::new().context("cannot create a temporary file for the EFI image")?;
    std::fs::write(staging.path(), efi_image).with_context(|| format!("cannot write {}", staging.path().display()))?;
    let time = nix::sys::time::TimeSpec::new(pins.epoch.seconds, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        staging.path(),
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .with_context(|| format!("cannot set the time of {}", staging.path().display()))?;
    let image = mtools_image(raw, esp);
    let epoch = pins.epoch.seconds.to_string();
    reporter.run(
        "mmd",
        Command::new("mmd").env("SOURCE_DATE_EPOCH", &epoch).args(["-i", &image, "::/EFI", "::/EFI/BOOT"]),
    )?;
    reporter.run(
        "mcopy",
        Command::new("mcopy")
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-m", "-i", &image])
            .arg(staging.path())
            .arg(REMOVABLE_PATH),
    )?;
    Ok(())
}

fn mkfs_fat_command(raw: &Path, esp: &Partition, pins: &Pins) -> Command {
    let mut command = Command::new("mkfs.fat");
    command
        .env("SOURCE_DATE_EPOCH", pins.epoch.seconds.to_string())
        .args(["-i", &format!("{:08X}", pins.seed.u32("esp-volume-id"))])
        // mkfs.fat picks the FAT size from the whole file, not the partition, and would choose
        // FAT32 for a 64 MiB range that is too small for it.
        .args(["-F", "16", "-n", "ESP", "--offset", &esp.first_lba.to_string()])
        .arg(raw)
        // mkfs.fat counts in KiB blocks.
        .arg((esp.size_bytes() / 1024).to_string());
    command
}

/// mtools addresses a partition inside an image file as `FILE@@OFFSET`.
fn mtools_image(raw: &Path, esp: &Partition) -> String {
    format!("{}@@{}", raw.display(), esp.offset_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::Role;

    #[test]
    fn fat_lands_in_the_esp_range() {
        let esp = Partition { number: 2, role: Role::Esp, first_lba: 4096, sectors: 131072 };
        let args: Vec<_> = mkfs_fat_command(Path::new("/d.raw"), &esp, &Pins::fixed(0, "s"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let volume_id = format!("{:08X}", Pins::fixed(0, "s").seed.u32("esp-volume-id"));
        assert_eq!(args, ["-i", &volume_id, "-F", "16", "-n", "ESP", "--offset", "4096", "/d.raw", "65536"]);
        assert_eq!(mtools_image(Path::new("/d.raw"), &esp), "/d.raw@@2097152");
    }
}
