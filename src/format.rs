//! The one disk-image format sniffer: a format from the file's own header (and footer, for a
//! fixed VHD), named as Glance's `disk_format`; `qemu_name` gives qemu's name for the same.
//! `upload` checks declared formats with it, `test` tells qemu what it boots, preflight
//! refuses files that are no image (a tree archive, text, a headerless file with no disk
//! signature).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the start: enough to reach the ISO 9660 volume descriptor at 0x8001.
const HEAD_LEN: usize = 0x8001 + 5;
const VHD_FOOTER_LEN: u64 = 512;

/// The first bytes of the file at `path`: as many as every test here reads (fewer if it is
/// shorter).
pub fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    read_head_of(&mut File::open(path)?)
}

fn read_head_of(file: &mut File) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.take(HEAD_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Detect the disk format of the image at `path`.
pub fn detect_file(path: &Path) -> io::Result<&'static str> {
    let mut file = File::open(path)?;
    let head = read_head_of(&mut file)?;
    let len = file.metadata()?.len();
    let mut footer = [0u8; VHD_FOOTER_LEN as usize];
    let footer = if len >= VHD_FOOTER_LEN {
        file.seek(SeekFrom::Start(len - VHD_FOOTER_LEN))?;
        file.read_exact(&mut footer)?;
        Some(&footer[..])
    } else {
        None
    };
    Ok(detect(&head, footer))
}

/// Whether `magic` stands at `offset` of `head`.
fn magic_at(head: &[u8], offset: usize, magic: &[u8]) -> bool {
    head.get(offset..offset + magic.len()) == Some(magic)
}

/// Detect a format from the first bytes of an image and its last 512 bytes.
pub fn detect(head: &[u8], footer: Option<&[u8]>) -> &'static str {
    let at = |offset: usize, magic: &[u8]| magic_at(head, offset, magic);
    if at(0, b"QFI\xfb") {
        "qcow2"
    } else if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        "vmdk"
    } else if at(0, b"vhdxfile") {
        "vhdx"
    } else if at(0x40, &[0x7f, 0x10, 0xda, 0xbe]) {
        // VDI: the signature 0xbeda107f (little endian) follows the 64-byte text banner.
        "vdi"
    } else if at(0, b"conectix") || footer.is_some_and(|f| f.starts_with(b"conectix")) {
        // Dynamic VHDs repeat the footer at offset 0; fixed ones only have it at the end.
        "vhd"
    } else if at(0x8001, b"CD001") {
        "iso"
    } else {
        "raw"
    }
}

/// The tree formats `build` writes (tar, gzip'd tar, squashfs), named for a message: upload
/// and test take disks, and these hold no disk.
pub fn tree_archive(head: &[u8]) -> Option<&'static str> {
    if magic_at(head, 0, b"hsqs") {
        Some("squashfs")
    } else if magic_at(head, 257, b"ustar") {
        Some("tar archive")
    } else if magic_at(head, 0, &[0x1f, 0x8b]) {
        Some("gzip file")
    } else {
        None
    }
}

/// An MBR/GPT boot signature, an ext2/3/4 superblock, or an ISO 9660 descriptor: what a
/// headerless (raw) file that holds a disk starts with.
pub fn has_disk_signature(head: &[u8]) -> bool {
    magic_at(head, 510, &[0x55, 0xaa]) || magic_at(head, 0x438, &[0x53, 0xef]) || magic_at(head, 0x8001, b"CD001")
}

/// No NUL byte and valid UTF-8 in the first block: nothing binary, so no disk.
pub fn looks_like_text(head: &[u8]) -> bool {
    let block = &head[..head.len().min(4096)];
    !block.contains(&0) && std::str::from_utf8(block).is_ok()
}

/// qemu's `format=` name for a detected format (`vhd` is `vpc` there; an ISO is read as raw).
pub fn qemu_name(detected: &str) -> &str {
    match detected {
        "vhd" => "vpc",
        "iso" => "raw",
        other => other,
    }
}

/// Whether a file detected as `detected` may be uploaded as `declared`.
///
/// Formats with no header of their own (`ami`, `aki`, `ari`) are raw bytes to a detector.
pub fn compatible(detected: &str, declared: &str) -> bool {
    detected == declared || (detected == "raw" && matches!(declared, "ami" | "aki" | "ari"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_magic(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; HEAD_LEN + 1024];
        data[offset..offset + magic.len()].copy_from_slice(magic);
        data
    }

    #[test]
    fn recognises_each_header() {
        assert_eq!(detect(&with_magic(0, b"QFI\xfb\0\0\0\x03"), None), "qcow2");
        assert_eq!(detect(&with_magic(0, b"KDMV"), None), "vmdk");
        assert_eq!(detect(b"# Disk DescriptorFile\nversion=1\n", None), "vmdk");
        assert_eq!(detect(&with_magic(0, b"vhdxfile"), None), "vhdx");
        assert_eq!(detect(&with_magic(0x40, &[0x7f, 0x10, 0xda, 0xbe]), None), "vdi");
        assert_eq!(detect(&with_magic(0, b"conectix"), None), "vhd");
        assert_eq!(detect(&with_magic(0x8001, b"CD001"), None), "iso");
        assert_eq!(detect(&with_magic(0, b"\xebc\x90"), None), "raw");
        assert_eq!(detect(b"", None), "raw");
    }

    #[test]
    fn fixed_vhd_is_found_by_its_footer() {
        let mut footer = vec![0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        assert_eq!(detect(&[0u8; 4096], Some(&footer)), "vhd");
        assert_eq!(detect(&[0u8; 4096], Some(&[0u8; 512])), "raw");
    }

    #[test]
    fn detects_real_files_made_by_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        for format in ["qcow2", "vmdk", "vdi", "vpc", "vhdx", "raw"] {
            let path = dir.path().join(format!("disk.{format}"));
            let made = std::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", format])
                .arg(&path)
                .arg("1M")
                .status();
            // qemu-img is the tool's own dependency (the convert stage runs it): required here.
            assert!(made.expect("qemu-img").success(), "qemu-img create -f {format}");
            let expected = if format == "vpc" { "vhd" } else { format };
            assert_eq!(detect_file(&path).unwrap(), expected, "{format}");
        }
        let fixed = dir.path().join("fixed.vhd");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "vpc", "-o", "subformat=fixed"])
            .arg(&fixed)
            .arg("1M")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(detect_file(&fixed).unwrap(), "vhd");
    }

    #[test]
    fn short_files_are_raw() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"hello").unwrap();
        assert_eq!(detect_file(file.path()).unwrap(), "raw");
    }

    #[test]
    fn qemu_names_follow_qemu_img() {
        assert_eq!(qemu_name("vhd"), "vpc");
        assert_eq!(qemu_name("qcow2"), "qcow2");
        assert_eq!(qemu_name("vhdx"), "vhdx");
        assert_eq!(qemu_name("iso"), "raw");
    }

    #[test]
    fn files_are_detected_from_header_or_footer() {
        let dir = tempfile::tempdir().unwrap();
        let qcow = dir.path().join("a");
        std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03rest").unwrap();
        assert_eq!(detect_file(&qcow).unwrap(), "qcow2");
        let raw = dir.path().join("b");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert_eq!(detect_file(&raw).unwrap(), "raw");
        let vhd = dir.path().join("c");
        let mut data = vec![0u8; 4096];
        data[4096 - 512..4096 - 504].copy_from_slice(b"conectix");
        std::fs::write(&vhd, data).unwrap();
        assert_eq!(detect_file(&vhd).unwrap(), "vhd");
    }

    #[test]
    fn text_is_not_a_disk_but_an_mbr_is() {
        assert!(looks_like_text(b"hello\nworld\n"));
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert!(!looks_like_text(&mbr));
        assert!(has_disk_signature(&mbr));
        assert!(!has_disk_signature(&[0u8; 4096]));
        assert!(has_disk_signature(&with_magic(0x438, &[0x53, 0xef])), "an ext4 superblock");
    }

    #[test]
    fn tree_formats_are_named_and_disks_are_not_trees() {
        let mut tar = vec![0u8; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(tree_archive(&tar), Some("tar archive"));
        assert_eq!(tree_archive(b"hsqs\0\0\0\0"), Some("squashfs"));
        assert_eq!(tree_archive(&[0x1f, 0x8b, 8, 0]), Some("gzip file"));
        assert_eq!(tree_archive(&with_magic(0, b"QFI\xfb")), None);
        assert_eq!(tree_archive(b""), None);
    }

    #[test]
    fn the_head_is_what_every_test_reads_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iso");
        std::fs::write(&path, with_magic(0x8001, b"CD001")).unwrap();
        let head = read_head(&path).unwrap();
        assert_eq!(head.len(), HEAD_LEN);
        assert_eq!(detect(&head, None), "iso");
        std::fs::write(&path, b"ab").unwrap();
        assert_eq!(read_head(&path).unwrap(), b"ab");
    }

    #[test]
    fn headerless_formats_accept_raw_data() {
        assert!(compatible("raw", "ami"));
        assert!(compatible("qcow2", "qcow2"));
        assert!(!compatible("qcow2", "raw"));
        assert!(!compatible("raw", "qcow2"));
    }
}
