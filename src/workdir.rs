//! The build's scratch directory: in tmpfs when memory allows, and removed without ever
//! deleting through a mount point.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Below this much available memory the tree stays on disk: a Mesos image tree is ~1.7 GiB and
/// the raw disk and its conversions sit beside it.
const TMPFS_MIN_AVAILABLE: u64 = 6 << 30;

/// Mount a tmpfs on `dir` when the machine has memory to spare. Must run inside the build's
/// private mount namespace, so the mount dies with the build. Returns whether it mounted.
pub fn mount_tmpfs_if_memory_allows(dir: &Path) -> anyhow::Result<bool> {
    let Some(available) = mem_available() else { return Ok(false) };
    if available < TMPFS_MIN_AVAILABLE {
        tracing::info!("building on disk: only {} MiB of memory available", available >> 20);
        return Ok(false);
    }
    // tmpfs only takes the memory it uses; the cap keeps a runaway build from starving the host.
    let size = format!("size={}k,mode=0755", available / 4 * 3 / 1024);
    mount(Some("mesos-image"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(size.as_str()))
        .with_context(|| format!("cannot mount a tmpfs on {}", dir.display()))?;
    Ok(true)
}

fn mem_available() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&meminfo)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Unmount everything at or below `dir` (deepest first), then delete it. Deleting only after
/// unmounting is what keeps a bind-mounted host directory (the apt cache) safe.
pub fn release(dir: &Path) {
    for mount_point in mounts_below(dir).into_iter().rev() {
        if let Err(err) = umount2(&mount_point, MntFlags::MNT_DETACH) {
            tracing::warn!("cannot unmount {}: {err}", mount_point.display());
        }
    }
    if !mounts_below(dir).is_empty() {
        tracing::warn!("{} still has mounts; leaving it in place", dir.display());
        return;
    }
    if let Err(err) = fs::remove_dir_all(dir) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {err}", dir.display());
        }
    }
}

/// Mount points at or below `dir`, in mountinfo order (parents before children).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    parse_mount_points(&mountinfo).into_iter().filter(|point| point.starts_with(&dir)).collect()
}

/// Field 5 of each mountinfo line, with the kernel's octal escapes (`\040` for space) undone.
fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .collect()
}

fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3 && digits.chars().all(|d| ('0'..='7').contains(&d)) {
                if let Ok(code) = u8::from_str_radix(&digits, 8) {
                    out.push(code as char);
                    for _ in 0..3 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(2048 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let mountinfo = "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                         37 35 98:0 / /proc rw - proc proc rw\n";
        assert_eq!(parse_mount_points(mountinfo), vec![PathBuf::from("/mnt/with space"), PathBuf::from("/proc")]);
    }

    #[test]
    fn release_removes_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("build-1");
        fs::create_dir_all(work.join("root/etc")).unwrap();
        fs::write(work.join("root/etc/x"), "x").unwrap();
        release(&work);
        assert!(!work.exists());
    }
}
