//! The stamps `qemu-img convert` writes from the clock and the random pool, replaced with
//! pinned values: a VHD footer's timestamp and unique id, a VMDK descriptor's content id (CID).
//! qcow2 and raw carry neither (measured: two conversions of one raw file are identical).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context};

use super::Pins;

/// VHD times count from 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: i64 = 946_684_800;
const VHD_FOOTER: usize = 512;
const VHD_COOKIE: &[u8; 8] = b"conectix";
const VHD_TIMESTAMP: usize = 24;
const VHD_CHECKSUM: usize = 64;
const VHD_UNIQUE_ID: usize = 68;

/// Pin the footer of a VHD (qemu's `vpc`): the copy at the end and, for dynamic disks, the one
/// at the start. The checksum is recomputed so the file stays valid.
pub fn pin_vhd(path: &Path, pins: &Pins) -> anyhow::Result<()> {
    let file = open(path)?;
    let length = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
    let tail =
        length.checked_sub(VHD_FOOTER as u64).with_context(|| format!("{}: too short for VHD", path.display()))?;
    let mut pinned_any = false;
    for offset in [0, tail] {
        let mut footer = [0u8; VHD_FOOTER];
        file.read_exact_at(&mut footer, offset).with_context(|| format!("cannot read {}", path.display()))?;
        if &footer[..8] != VHD_COOKIE {
            continue;
        }
        pin_vhd_footer(&mut footer, pins);
        file.write_all_at(&footer, offset).with_context(|| format!("cannot write {}", path.display()))?;
        pinned_any = true;
    }
    if !pinned_any {
        bail!("{}: no VHD footer found", path.display());
    }
    Ok(())
}

fn pin_vhd_footer(footer: &mut [u8; VHD_FOOTER], pins: &Pins) {
    let stamp = u32::try_from((pins.epoch.seconds - VHD_EPOCH).max(0)).unwrap_or(u32::MAX);
    footer[VHD_TIMESTAMP..VHD_TIMESTAMP + 4].copy_from_slice(&stamp.to_be_bytes());
    footer[VHD_UNIQUE_ID..VHD_UNIQUE_ID + 16].copy_from_slice(&pins.seed.guid("vhd-unique-id").to_bytes_le());
    footer[VHD_CHECKSUM..VHD_CHECKSUM + 4].fill(0);
    let sum = footer.iter().fold(0u32, |sum, byte| sum.wrapping_add(u32::from(*byte)));
    footer[VHD_CHECKSUM..VHD_CHECKSUM + 4].copy_from_slice(&(!sum).to_be_bytes());
}

const VMDK_MAGIC: &[u8; 4] = b"KDMV";
const SECTOR: u64 = 512;

/// Pin the `CID=` of a sparse VMDK's embedded descriptor (same length, so in place).
pub fn pin_vmdk(path: &Path, pins: &Pins) -> anyhow::Result<()> {
    let file = open(path)?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).with_context(|| format!("cannot read {}", path.display()))?;
    if &header[..4] != VMDK_MAGIC {
        bail!("{}: not a sparse VMDK (no KDMV header)", path.display());
    }
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    let (descriptor_sector, descriptor_sectors) = (field(28), field(36));
    if descriptor_sector == 0 || descriptor_sectors == 0 || descriptor_sectors > 64 {
        bail!("{}: VMDK has no embedded descriptor", path.display());
    }
    let mut descriptor = vec![0u8; (descriptor_sectors * SECTOR) as usize];
    file.read_exact_at(&mut descriptor, descriptor_sector * SECTOR)
        .with_context(|| format!("cannot read the descriptor of {}", path.display()))?;
    if !pin_vmdk_cid(&mut descriptor, pins.seed.u32("vmdk-cid")) {
        bail!("{}: VMDK descriptor has no CID line", path.display());
    }
    file.write_all_at(&descriptor, descriptor_sector * SECTOR)
        .with_context(|| format!("cannot write the descriptor of {}", path.display()))
}

/// Rewrite the `CID=` line at a line start to the given 8 hex digits; false if there is none.
/// qemu-img writes the CID without zero padding (`%x`), so the field is 1 to 8 digits long: the
/// rest of the descriptor is shifted to fit and the NUL padding after it absorbs the difference,
/// so the result does not depend on how long the random CID happened to be.
fn pin_vmdk_cid(descriptor: &mut [u8], cid: u32) -> bool {
    let needle = b"\nCID=";
    let Some(at) = descriptor.windows(needle.len()).position(|w| w == needle) else { return false };
    let start = at + needle.len();
    let digits = descriptor[start..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 8 {
        return false;
    }
    let mut pinned = Vec::with_capacity(descriptor.len());
    pinned.extend_from_slice(&descriptor[..start]);
    pinned.extend_from_slice(format!("{cid:08x}").as_bytes());
    pinned.extend_from_slice(&descriptor[start + digits..]);
    // Only NUL padding may be dropped from the end; anything else means no room.
    if pinned[descriptor.len()..].iter().any(|&b| b != 0) {
        return false;
    }
    pinned.truncate(descriptor.len());
    // The text ends at its first NUL. qemu rewrites the CID when it first writes data, in
    // place: a new CID shorter than the one it replaced leaves the old text's last bytes after
    // that NUL (measured: 1 conversion in ~17 differed so). Readers stop at the NUL; clear the rest.
    if let Some(end) = pinned.iter().position(|&b| b == 0) {
        pinned[end..].fill(0);
    }
    descriptor.copy_from_slice(&pinned);
    true
}

fn open(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().read(true).write(true).open(path).with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmdk_cid_of_any_length_becomes_the_same_pinned_line() {
        let pinned = |cid_text: &str| {
            let mut descriptor =
                format!("# Disk DescriptorFile\nversion=1\nCID={cid_text}\nparentCID=ffffffff\n").into_bytes();
            descriptor.resize(512, 0);
            assert!(pin_vmdk_cid(&mut descriptor, 0x0123_abcd));
            descriptor
        };
        let short = pinned("abcdef1");
        assert_eq!(short, pinned("fabcdef1"));
        assert!(String::from_utf8_lossy(&short).contains("\nCID=0123abcd\nparentCID=ffffffff\n"));
        let mut no_cid = b"version=1\n".to_vec();
        assert!(!pin_vmdk_cid(&mut no_cid, 1));
    }

    #[test]
    fn vhd_footer_gets_pinned_time_and_id_and_a_valid_checksum() {
        let mut footer = [0u8; VHD_FOOTER];
        footer[..8].copy_from_slice(VHD_COOKIE);
        footer[VHD_TIMESTAMP..VHD_TIMESTAMP + 4].copy_from_slice(&[1, 2, 3, 4]);
        footer[VHD_UNIQUE_ID] = 0xAA;
        let pins = Pins::fixed(VHD_EPOCH + 1000, "s");
        pin_vhd_footer(&mut footer, &pins);
        assert_eq!(&footer[VHD_TIMESTAMP..VHD_TIMESTAMP + 4], &1000u32.to_be_bytes());
        assert_eq!(&footer[VHD_UNIQUE_ID..VHD_UNIQUE_ID + 16], &pins.seed.guid("vhd-unique-id").to_bytes_le());
        let stored = u32::from_be_bytes(footer[VHD_CHECKSUM..VHD_CHECKSUM + 4].try_into().unwrap());
        let mut without = footer;
        without[VHD_CHECKSUM..VHD_CHECKSUM + 4].fill(0);
        assert_eq!(stored, !without.iter().map(|b| u32::from(*b)).sum::<u32>());
    }

    #[test]
    fn what_a_shorter_rewritten_cid_left_after_the_text_is_cleared() {
        let text = "# Disk DescriptorFile\nversion=1\nCID=abc\nparentCID=ffffffff\n";
        let mut left_over = format!("{text}\0\n\0\0\0\0\0\0\0\0").into_bytes();
        let mut clean = format!("{text}\0\0\0\0\0\0\0\0\0\0").into_bytes();
        assert!(pin_vmdk_cid(&mut left_over, 0x1234) && pin_vmdk_cid(&mut clean, 0x1234));
        assert_eq!(left_over, clean);
    }

    #[test]
    fn vmdk_cid_is_replaced_in_place() {
        let mut descriptor = b"# Disk DescriptorFile\nversion=1\nCID=7d72b373\nparentCID=ffffffff\n".to_vec();
        let length = descriptor.len();
        assert!(pin_vmdk_cid(&mut descriptor, 0x1234));
        assert_eq!(descriptor.len(), length);
        let text = String::from_utf8(descriptor).unwrap();
        assert!(text.contains("\nCID=00001234\nparentCID=ffffffff"), "{text}");
        assert!(!pin_vmdk_cid(&mut b"version=1\nparentCID=ffffffff\n".to_vec(), 1));
    }

    /// Two conversions of one raw disk, a second apart (qemu-img stamps VHDs with the time) and
    /// with fresh random ids, are byte-identical in every format, compressed qcow2 included.
    #[test]
    fn converting_twice_gives_identical_files_in_every_format() {
        use crate::progress::Reporter;
        use crate::recipe::{ImageFormat, ImageSpec};
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let mut content = vec![0u8; 2 << 20];
        for (index, byte) in content.iter_mut().enumerate() {
            *byte = (index % 251) as u8;
        }
        std::fs::write(&raw, &content).unwrap();
        File::options().write(true).open(&raw).unwrap().set_len(16 << 20).unwrap();
        let formats = vec![ImageFormat::Qcow2, ImageFormat::Raw, ImageFormat::Vmdk, ImageFormat::Vhd];
        let pins = Pins::fixed(1_700_000_000, "formats test");
        let convert = |name: &str, compress: bool| {
            let out = dir.path().join(name);
            std::fs::create_dir(&out).unwrap();
            let spec = ImageSpec { formats: formats.clone(), compress, ..ImageSpec::default() };
            let outputs: Vec<_> = formats.iter().map(|f| (*f, out.join(format!("x.{}", f.name())))).collect();
            crate::stage::convert::run(&raw, &outputs, &spec, &pins, &Reporter::silent()).unwrap();
            outputs.iter().map(|(format, path)| (*format, crate::io::sha256_file(path).unwrap().0)).collect::<Vec<_>>()
        };
        for compress in [false, true] {
            let first = convert(&format!("a-{compress}"), compress);
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let second = convert(&format!("b-{compress}"), compress);
            assert_eq!(first.len(), 4);
            assert_eq!(first, second, "compress={compress}");
        }
        let info = std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(dir.path().join("a-false/x.vhd"))
            .output()
            .unwrap();
        assert!(info.status.success() && String::from_utf8_lossy(&info.stdout).contains("\"vpc\""));
    }
}
