//! The build's scratch directory: in tmpfs when memory allows, and removed without ever
//! deleting through a mount point (the sandbox refuses while anything is mounted below).

use std::fs;
use std::path::Path;

use nix::mount::{umount2, MntFlags};

use crate::sandbox;

/// Below this much available memory the tree stays on disk: a Mesos image tree is ~1.7 GiB and
/// the raw disk and its conversions sit beside it.
const TMPFS_MIN_AVAILABLE: u64 = 6 << 30;

/// Mount a tmpfs on `dir` when the machine has memory to spare. Must run inside the build's
/// private mount namespace, so the mount dies with the build. `min_available` (`--min-tmpfs`)
/// replaces the default threshold. Returns whether it mounted.
pub fn mount_tmpfs_if_memory_allows(dir: &Path, min_available: Option<u64>) -> anyhow::Result<bool> {
    let Some(available) = mem_available() else { return Ok(false) };
    if available < min_available.unwrap_or(TMPFS_MIN_AVAILABLE) {
        tracing::info!("building on disk: only {} MiB of memory available", available >> 20);
        return Ok(false);
    }
    // tmpfs only takes the memory it uses; the cap keeps a runaway build from starving the host.
    sandbox::mount_tmpfs(dir, available / 4 * 3)?;
    Ok(true)
}

fn mem_available() -> Option<u64> {
    parse_mem_available(&fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Unmount everything below `dir` and `dir` itself (it may be the build's tmpfs), then delete it.
pub fn release(dir: &Path) {
    if let Err(err) = sandbox::unmount_below(dir) {
        tracing::warn!("{err}");
    }
    // Not mounted is the common case when the build ran on disk; nothing to report then.
    let _ = umount2(dir, MntFlags::MNT_DETACH);
    if let Err(err) = sandbox::remove_tree(dir) {
        tracing::warn!("{err}");
    }
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
    fn release_removes_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("build-1");
        fs::create_dir_all(work.join("root/etc")).unwrap();
        fs::write(work.join("root/etc/x"), "x").unwrap();
        release(&work);
        assert!(!work.exists());
    }
}
