//! The parallel qcow2 writer (src/qcow2.rs) checked by qemu itself: `qemu-img check` finds no
//! error and no leak, `qemu-img compare` and a read back through `qemu-img convert -O raw` see
//! the raw disk's bytes, the output is the same with 1 and 4 threads, and it is about as small
//! as `qemu-img convert -c`'s.

use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use mesos_image::qcow2::write_compressed;

const CLUSTER: u64 = 64 << 10;

fn qemu_img(args: &[&str], files: &[&Path]) -> Output {
    let output = Command::new("qemu-img").args(args).args(files).output().expect("qemu-img runs");
    println!(
        "qemu-img {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Compressible text, different for each `seed`.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut line = seed * 100_000;
    while out.len() < len {
        out.extend_from_slice(
            format!("{line:08} /usr/share/doc/package-{}/copyright sha256 {:x}\n", line % 97, line * 2654435761)
                .as_bytes(),
        );
        line += 1;
    }
    out.truncate(len);
    out
}

/// Incompressible bytes (xorshift), different for each `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A raw disk of `len` bytes (sparse) with, from `base`: text, allocated zero clusters, noise
/// clusters between text clusters (plain clusters amid packed compressed ones), a region that is
/// half text half zeros, and text running into the last, partial cluster.
fn raw_disk(path: &Path, len: u64, bases: &[u64]) {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path).unwrap();
    file.set_len(len).unwrap();
    for (n, &base) in bases.iter().enumerate() {
        let seed = n as u64 * 1000;
        file.write_all_at(&text(seed, 40 * CLUSTER as usize + 777), base).unwrap();
        file.write_all_at(&vec![0; 8 * CLUSTER as usize], base + 41 * CLUSTER).unwrap();
        for i in 0..12 {
            let at = base + (49 + 2 * i) * CLUSTER;
            file.write_all_at(&noise(seed + i, CLUSTER as usize), at).unwrap();
            file.write_all_at(&text(seed + i, CLUSTER as usize), at + CLUSTER).unwrap();
        }
        file.write_all_at(&text(seed + 99, 1000), base + 80 * CLUSTER + 5000).unwrap();
    }
    file.write_all_at(&text(7, 3 * CLUSTER as usize), len - 3 * CLUSTER).unwrap();
    file.write_all_at(b"the end", len - 7).unwrap();
}

fn check_clean(image: &Path) {
    let check = qemu_img(&["check", "-f", "qcow2"], &[image]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "qemu-img check failed: {report}");
    assert!(report.contains("No errors were found"), "{report}");
    assert!(!report.contains("leaked"), "{report}");
}

fn info(image: &Path) -> serde_json::Value {
    let out = qemu_img(&["info", "--output=json", "-f", "qcow2"], &[image]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_sparse_disk_over_4_gib_is_clean_identical_deterministic_and_as_small_as_qemus() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Past 4 GiB and not a whole cluster (but whole sectors, as disks are): L1 has 10 entries,
    // and data sits in several L2 tables and past the 32-bit offsets.
    let len = (4 << 30) + 700 * CLUSTER + 3 * 512;
    raw_disk(&raw, len, &[0, 8 << 20, 600 << 20, 2 << 30, (4 << 30) + 100 * CLUSTER]);

    let one = dir.path().join("one.qcow2");
    let four = dir.path().join("four.qcow2");
    let summary = write_compressed(&raw, &one, NonZeroUsize::MIN).unwrap();
    write_compressed(&raw, &four, NonZeroUsize::new(4).unwrap()).unwrap();
    println!("{summary:?}");
    assert!(summary.compressed_clusters > 200 && summary.uncompressed_clusters == 60, "{summary:?}");
    assert!(std::fs::read(&one).unwrap() == std::fs::read(&four).unwrap(), "1 and 4 threads wrote different images");
    assert_eq!(std::fs::metadata(&one).unwrap().len(), summary.file_size);

    check_clean(&one);
    let compare = qemu_img(&["compare", "-f", "raw", "-F", "qcow2"], &[&raw, &one]);
    assert!(compare.status.success(), "qemu-img compare: images differ");
    let info = info(&one);
    assert_eq!(info["virtual-size"], len, "{info}");
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{info}");
    assert_eq!(info["format-specific"]["data"]["compression-type"], "zlib", "{info}");

    let theirs = dir.path().join("qemu.qcow2");
    let convert = qemu_img(&["convert", "-f", "raw", "-O", "qcow2", "-c"], &[&raw, &theirs]);
    assert!(convert.status.success());
    let (ours, qemus) = (summary.file_size, std::fs::metadata(&theirs).unwrap().len());
    println!("qcow2 sizes: ours {ours} bytes, qemu-img convert -c {qemus} bytes");
    assert!(ours * 100 <= qemus * 103, "ours {ours} vs qemu-img's {qemus}");
}

#[test]
fn qemu_reads_every_byte_back() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let len = 200 * CLUSTER + 512;
    raw_disk(&raw, len, &[0, 90 * CLUSTER]);
    let image = dir.path().join("disk.qcow2");
    write_compressed(&raw, &image, NonZeroUsize::new(2).unwrap()).unwrap();
    check_clean(&image);
    let back = dir.path().join("back.raw");
    let convert = qemu_img(&["convert", "-f", "qcow2", "-O", "raw"], &[&image, &back]);
    assert!(convert.status.success());
    let original = std::fs::read(&raw).unwrap();
    assert_eq!(original.len() as u64, len);
    assert!(std::fs::read(&back).unwrap() == original, "qemu read back other bytes");
}

#[test]
fn an_empty_disk_is_a_valid_empty_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    File::create(&raw).unwrap().set_len(16 << 20).unwrap();
    let image = dir.path().join("disk.qcow2");
    let summary = write_compressed(&raw, &image, NonZeroUsize::new(2).unwrap()).unwrap();
    assert_eq!((summary.compressed_clusters, summary.uncompressed_clusters), (0, 0));
    check_clean(&image);
    assert_eq!(info(&image)["virtual-size"], 16 << 20);
    let compare = qemu_img(&["compare", "-f", "raw", "-F", "qcow2"], &[&raw, &image]);
    assert!(compare.status.success());
}
