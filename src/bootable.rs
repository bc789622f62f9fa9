//! Whether an image file can boot at all, judged from its bytes in well under a second, so
//! `mesos-image test` refuses a truncated qcow2, a file of zeros or a binary before it starts
//! a guest and waits out its timeout. Also refuses a qcow2 whose backing file lies outside the
//! image's directory: qemu would attach that host file (`/etc/shadow`) to the guest.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// Version 2's header; version 3 adds fields after it.
const QCOW2_HEADER_LEN: u64 = 72;
/// Host offset bits of an L1/L2 entry.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
/// qemu inflates compressed clusters with a 4 KiB window (windowBits -12).
const WINDOW_BITS: u8 = 12;

/// `Ok` when `path` holds something a guest may boot; else what is wrong. `direct_kernel`:
/// with `--kernel` the disk needs no boot sector (the root file system may fill it).
pub fn check(path: &Path, direct_kernel: bool) -> Result<(), String> {
    let mut file = File::open(path).map_err(|err| err.to_string())?;
    let len = file.metadata().map_err(|err| err.to_string())?.len();
    let mut head = vec![0u8; 4096.min(len) as usize];
    file.read_exact(&mut head).map_err(|err| err.to_string())?;
    if head.starts_with(QCOW2_MAGIC) {
        let first_sector = qcow2(path, &file, len)?;
        return match first_sector {
            Some(sector) if !direct_kernel => boot_sector("its disk", &sector),
            _ => Ok(()),
        };
    }
    if crate::format::detect(&head, None) != "raw" || direct_kernel {
        // vmdk, vhd, ...: qemu reads their headers itself; a bare file system boots with --kernel.
        return Ok(());
    }
    boot_sector("the file", &head)
}

/// A disk's first sector must carry the MBR boot signature (GPT keeps a protective MBR).
fn boot_sector(what: &str, sector: &[u8]) -> Result<(), String> {
    if sector.get(510..512) == Some(&[0x55, 0xaa][..]) {
        return Ok(());
    }
    if sector.iter().all(|b| *b == 0) {
        return Err(format!("{what} starts with zeros: no partition table, nothing a guest can boot"));
    }
    if sector.starts_with(b"\x7fELF") {
        return Err("is an ELF binary, not a disk image".to_owned());
    }
    Err(format!("{what} has no partition table (no boot signature in its first sector): nothing a guest can boot"))
}

struct Header {
    cluster_bits: u32,
    virtual_size: u64,
    l1_size: u64,
    l1_offset: u64,
    backing: Option<(u64, u32)>,
    refcount_offset: u64,
    refcount_clusters: u64,
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]))
}

/// Checks the qcow2 structure against the file's length and its backing file's place; returns
/// the guest's first sector when the image itself holds it (None: it comes from the backing file).
fn qcow2(path: &Path, file: &File, len: u64) -> Result<Option<Vec<u8>>, String> {
    if len < QCOW2_HEADER_LEN {
        return Err(format!("truncated qcow2: {len} bytes, shorter than its header"));
    }
    let mut raw = [0u8; QCOW2_HEADER_LEN as usize];
    file.read_exact_at(&mut raw, 0).map_err(|err| err.to_string())?;
    let backing_offset = be64(&raw, 8);
    let header = Header {
        cluster_bits: be32(&raw, 20),
        virtual_size: be64(&raw, 24),
        l1_size: u64::from(be32(&raw, 36)),
        l1_offset: be64(&raw, 40),
        backing: (backing_offset != 0).then(|| (backing_offset, be32(&raw, 16))),
        refcount_offset: be64(&raw, 48),
        refcount_clusters: u64::from(be32(&raw, 56)),
    };
    if !(9..=21).contains(&header.cluster_bits) {
        return Err(format!("not a valid qcow2: cluster_bits {}", header.cluster_bits));
    }
    if header.virtual_size == 0 {
        return Err("qcow2 of a 0-byte disk: nothing a guest can boot".to_owned());
    }
    let cluster = 1u64 << header.cluster_bits;
    let ends = [
        ("L1 table", header.l1_offset.checked_add(header.l1_size.saturating_mul(8))),
        ("refcount table", header.refcount_offset.checked_add(header.refcount_clusters.saturating_mul(cluster))),
    ];
    for (table, end) in ends {
        match end {
            Some(end) if end <= len => {}
            _ => return Err(format!("truncated qcow2: its {table} lies beyond the file's end ({len} bytes)")),
        }
    }
    if let Some((offset, size)) = header.backing {
        backing_file(path, file, offset, size, len)?;
    }
    first_sector(file, &header, len)
}

/// The backing file must lie in the image's own directory (after resolving links).
fn backing_file(path: &Path, file: &File, offset: u64, size: u32, len: u64) -> Result<(), String> {
    if size == 0 || size > 1023 || offset.saturating_add(u64::from(size)) > len {
        return Err("truncated qcow2: its backing file name lies beyond the file's end".to_owned());
    }
    let mut name = vec![0u8; size as usize];
    file.read_exact_at(&mut name, offset).map_err(|err| err.to_string())?;
    let name = PathBuf::from(String::from_utf8_lossy(&name).into_owned());
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).map_err(|err| err.to_string())?;
    let resolved = crate::guard::resolve(&dir.join(&name));
    if resolved.parent() != Some(dir.as_path()) {
        return Err(format!(
            "its backing file {} lies outside the image's directory: refused (qemu would hand that host file to the guest)",
            name.display()
        ));
    }
    Ok(())
}

/// The guest's first 512 bytes, through L1 and L2 (and inflating a compressed cluster).
fn first_sector(mut file: &File, header: &Header, len: u64) -> Result<Option<Vec<u8>>, String> {
    let cluster = 1u64 << header.cluster_bits;
    let zeros = || Ok(Some(vec![0u8; 512]));
    if header.l1_size == 0 {
        return if header.backing.is_some() { Ok(None) } else { zeros() };
    }
    let read_u64 = |at: u64| -> Result<u64, String> {
        let mut bytes = [0u8; 8];
        if at.saturating_add(8) > len {
            return Err("truncated qcow2: a table of the first cluster lies beyond the file's end".to_owned());
        }
        file.read_exact_at(&mut bytes, at).map_err(|err| err.to_string())?;
        Ok(u64::from_be_bytes(bytes))
    };
    let l2_offset = read_u64(header.l1_offset)? & OFFSET_MASK;
    let entry = if l2_offset == 0 { 0 } else { read_u64(l2_offset)? };
    if entry & COMPRESSED != 0 {
        let shift = 62 - (header.cluster_bits - 8);
        let host = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (header.cluster_bits - 8)) - 1)) + 1;
        let size = (sectors * 512 - (host & 511)).min(len.saturating_sub(host));
        let mut compressed = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(host)).map_err(|err| err.to_string())?;
        file.read_exact(&mut compressed)
            .map_err(|_| "truncated qcow2: its first cluster lies beyond the file's end")?;
        let mut inflater = flate2::Decompress::new_with_window_bits(false, WINDOW_BITS);
        let mut out = Vec::with_capacity(cluster as usize);
        let _ = inflater.decompress_vec(&compressed, &mut out, flate2::FlushDecompress::Finish);
        out.resize(512, 0);
        return Ok(Some(out[..512].to_vec()));
    }
    let host = entry & OFFSET_MASK;
    if host == 0 {
        // Unallocated: from the backing file if there is one, else zeros.
        return if header.backing.is_some() && entry & 1 == 0 { Ok(None) } else { zeros() };
    }
    if host.saturating_add(512) > len {
        return Err("truncated qcow2: its first cluster lies beyond the file's end".to_owned());
    }
    let mut sector = vec![0u8; 512];
    file.read_exact_at(&mut sector, host).map_err(|err| err.to_string())?;
    Ok(Some(sector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn qemu_img(args: &[&str]) {
        assert!(Command::new("qemu-img").args(args).status().unwrap().success(), "qemu-img {args:?}");
    }

    #[test]
    fn qcow2_of_a_disk_passes_and_damaged_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        let mut disk = vec![0u8; 1 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        std::fs::write(&raw, &disk).unwrap();
        let raw_s = raw.to_str().unwrap();
        check(&raw, false).unwrap();
        for (name, extra) in [("plain.qcow2", &[][..]), ("small.qcow2", &["-c"][..])] {
            let out = dir.path().join(name);
            let mut args = vec!["convert", "-q", "-O", "qcow2"];
            args.extend(extra);
            args.extend([raw_s, out.to_str().unwrap()]);
            qemu_img(&args);
            check(&out, false).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            let cut = dir.path().join(format!("cut-{name}"));
            std::fs::write(&cut, &bytes[..100]).unwrap();
            assert!(check(&cut, false).unwrap_err().starts_with("truncated qcow2"), "{name}");
        }
        let empty = dir.path().join("empty.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", empty.to_str().unwrap(), "1M"]);
        assert!(check(&empty, false).unwrap_err().contains("starts with zeros"));
        assert!(check(&empty, true).is_ok(), "--kernel boots a disk without a boot sector");
        let outside = dir.path().join("outside.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", outside.to_str().unwrap(), "1M"]);
        assert!(check(&outside, false).unwrap_err().contains("lies outside the image's directory"));
        let inside = dir.path().join("inside.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "d.raw", inside.to_str().unwrap(), "1M"]);
        check(&inside, false).unwrap();
        let zeros = dir.path().join("zeros.img");
        std::fs::write(&zeros, vec![0u8; 8192]).unwrap();
        assert!(check(&zeros, false).unwrap_err().contains("starts with zeros"));
    }
}
