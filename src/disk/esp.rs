//! The UEFI system partition, made without mounting: `mkfs.fat --offset` formats its byte range
//! of the disk file and mtools copies GRUB's EFI binary (from the target's own grub-mkimage) to
//! the removable-media path firmware boots without NVRAM entries.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::grub::Platform;
use super::layout::{Layout, Partition};
use crate::arch::Efi;
use crate::progress::Reporter;
use crate::reproducible::Pins;

/// Where firmware looks on removable media (and on any disk without a boot entry), in mtools'
/// spelling: `::/EFI/BOOT/BOOTAA64.EFI` for arm64.
fn removable_path(efi: &Efi) -> String {
    format!("::/EFI/BOOT/{}", efi.removable_name)
}

/// GRUB's EFI image for `efi`, made by the target's own grub-mkimage (run under emulation for a
/// foreign tree), finding the root filesystem `root_uuid` wherever the disk is.
pub fn make_efi_image(
    tree: &Path,
    efi: &Efi,
    layout: &Layout,
    root_uuid: &str,
    reporter: &Reporter,
) -> anyhow::Result<Vec<u8>> {
    let _step = reporter.step(format!("grub-mkimage (target's own, {})", efi.grub_target));
    let config = super::grub::early_config(root_uuid);
    super::grub::run_mkimage_in_tree(tree, Platform::Efi(*efi), &layout.grub_root_partition(), Some(&config), reporter)
}

/// Format the ESP inside `raw` and put GRUB's EFI image on it, every byte from the pins: the
/// volume id from the seed, every FAT time from `SOURCE_DATE_EPOCH` (see [`mtools_command`]).
pub fn build_esp(
    raw: &Path,
    esp: &Partition,
    efi: &Efi,
    efi_image: &[u8],
    pins: &Pins,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let _step = reporter.step(format!("ESP (FAT, GRUB {})", efi.grub_target));
    reporter.run("mkfs.fat", &mut mkfs_fat_command(raw, esp, pins))?;
    let staging = tempfile::NamedTempFile::new().context("cannot create a temporary file for the EFI image")?;
    std::fs::write(staging.path(), efi_image).with_context(|| format!("cannot write {}", staging.path().display()))?;
    // `mcopy -m` keeps the source's mtime as the file's write time.
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
    reporter.run("mlabel", mtools_command("mlabel", pins).args(["-i", &image, &format!("::{LABEL}")]))?;
    reporter.run("mmd", mtools_command("mmd", pins).args(["-i", &image, "::/EFI", "::/EFI/BOOT"]))?;
    reporter.run(
        "mcopy",
        mtools_command("mcopy", pins).args(["-m", "-i", &image]).arg(staging.path()).arg(removable_path(efi)),
    )?;
    Ok(())
}

/// The ESP's volume label, set by mlabel (not `mkfs.fat -n`, see [`mkfs_fat_command`]).
const LABEL: &str = "ESP";

fn mkfs_fat_command(raw: &Path, esp: &Partition, pins: &Pins) -> Command {
    let mut command = Command::new("mkfs.fat");
    command
        // mkfs.fat ignores SOURCE_DATE_EPOCH: without --invariant it takes the volume id from
        // the clock and stamps the label's directory entry with the time of day. --invariant
        // makes it take nothing from the clock; -i, which must come after it, sets our id.
        // The label is written by mlabel under the pinned time instead of `-n`, whose entry
        // --invariant would date to a constant of its own.
        .arg("--invariant")
        .args(["-i", &format!("{:08X}", pins.seed.u32("esp-volume-id"))])
        // mkfs.fat picks the FAT size from the whole file, not the partition, and would choose
        // FAT32 for a 64 MiB range that is too small for it.
        .args(["-F", "16", "--offset", &esp.first_lba.to_string()])
        .arg(raw)
        // mkfs.fat counts in KiB blocks.
        .arg((esp.size_bytes() / 1024).to_string());
    command
}

/// An mtools command that writes `SOURCE_DATE_EPOCH` into every directory entry it makes. FAT
/// stores local time and mtools converts with the process's time zone, so it runs in UTC:
/// otherwise the builder's `TZ` would shift every time on the ESP.
fn mtools_command(tool: &str, pins: &Pins) -> Command {
    let mut command = Command::new(tool);
    command.env("SOURCE_DATE_EPOCH", pins.epoch.seconds.to_string()).env("TZ", "UTC");
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

    const ESP: Partition = Partition { number: 2, role: Role::Esp, first_lba: 4096, sectors: 131072 };
    const AMD64: crate::arch::Platform = crate::arch::PLATFORMS[0];

    #[test]
    fn the_removable_path_is_the_architectures() {
        assert_eq!(removable_path(&AMD64.efi), "::/EFI/BOOT/BOOTX64.EFI");
        assert_eq!(removable_path(&crate::arch::platform("arm64").unwrap().efi), "::/EFI/BOOT/BOOTAA64.EFI");
    }

    #[test]
    fn fat_lands_in_the_esp_range_with_nothing_from_the_clock() {
        let args: Vec<_> = mkfs_fat_command(Path::new("/d.raw"), &ESP, &Pins::fixed(0, "s"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let volume_id = format!("{:08X}", Pins::fixed(0, "s").seed.u32("esp-volume-id"));
        // -i after --invariant, or --invariant's constant id would win.
        assert_eq!(args, ["--invariant", "-i", &volume_id, "-F", "16", "--offset", "4096", "/d.raw", "65536"]);
        assert_eq!(mtools_image(Path::new("/d.raw"), &ESP), "/d.raw@@2097152");
    }

    #[test]
    fn mtools_write_the_epoch_in_utc() {
        let command = mtools_command("mcopy", &Pins::fixed(1_700_000_000, "s"));
        let envs: Vec<_> = command
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        assert!(envs.contains(&("TZ".into(), Some("UTC".into()))), "{envs:?}");
        assert!(envs.contains(&("SOURCE_DATE_EPOCH".into(), Some("1700000000".into()))), "{envs:?}");
    }

    /// The real tools, twice: the same bytes, the seed's volume id, and every time in every
    /// directory entry the epoch (2023-11-14 22:13:20 UTC), so none came from the clock.
    #[test]
    fn esp_is_the_same_bytes_with_every_time_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::fixed(1_700_000_000, "esp test");
        let efi_image: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let build = |name: &str| {
            let raw = dir.path().join(name);
            std::fs::File::create(&raw).unwrap().set_len(ESP.offset_bytes() + ESP.size_bytes()).unwrap();
            build_esp(&raw, &ESP, &AMD64.efi, &efi_image, &pins, &Reporter::silent()).unwrap();
            std::fs::read(&raw).unwrap()[ESP.offset_bytes() as usize..].to_vec()
        };
        let fat = build("a.raw");
        assert!(fat == build("b.raw"), "two ESPs of the same pins differ");

        assert_eq!(&fat[39..43], &pins.seed.u32("esp-volume-id").to_le_bytes(), "volume id");
        assert_eq!(&fat[43..54], b"ESP        ", "boot sector label");
        let entries = directory_entries(&fat);
        let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["ESP", "EFI", ".", "..", "BOOT", ".", "..", "BOOTX64.EFI"]);
        let (time, date) = (0xB1AAu16.to_le_bytes(), 0x576Eu16.to_le_bytes());
        for (name, entry) in &entries {
            assert_eq!(entry[13], 0, "{name}: creation time hundredths");
            assert_eq!([&entry[14..16], &entry[16..18], &entry[18..20]], [&time[..], &date[..], &date[..]], "{name}");
            assert_eq!([&entry[22..24], &entry[24..26]], [&time[..], &date[..]], "{name}: write time");
        }
    }

    /// Every 32-byte entry of a FAT16 file system's root directory and the directories below
    /// it (each one cluster, enough for the ESP), with its short name, in disk order.
    fn directory_entries(fat: &[u8]) -> Vec<(String, Vec<u8>)> {
        let word = |at: usize| u16::from_le_bytes([fat[at], fat[at + 1]]) as usize;
        let sector = word(11);
        let cluster = fat[13] as usize * sector;
        let root = (word(14) + fat[16] as usize * word(22)) * sector;
        let data = root + word(17) * 32;
        let mut out = Vec::new();
        let mut pending = vec![(root, word(17) * 32)];
        while let Some((start, len)) = pending.pop() {
            let mut subdirectories = Vec::new();
            for entry in fat[start..start + len].chunks(32) {
                match entry[0] {
                    0 => break,
                    0xE5 => continue,
                    _ if entry[11] == 0x0F => continue,
                    _ => {}
                }
                let base = String::from_utf8_lossy(&entry[0..8]).trim_end().to_owned();
                let ext = String::from_utf8_lossy(&entry[8..11]).trim_end().to_owned();
                let name = if ext.is_empty() { base } else { format!("{base}.{ext}") };
                if entry[11] & 0x10 != 0 && !name.starts_with('.') {
                    subdirectories.push((data + (word_of(entry, 26) - 2) * cluster, cluster));
                }
                out.push((name, entry.to_vec()));
            }
            pending.extend(subdirectories.into_iter().rev());
        }
        out
    }

    fn word_of(entry: &[u8], at: usize) -> usize {
        u16::from_le_bytes([entry[at], entry[at + 1]]) as usize
    }
}
