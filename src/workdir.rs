//! The build's scratch directory: in tmpfs when memory allows, and removed without ever
//! deleting through a mount point (the sandbox refuses while anything is mounted below).

use std::fs;
use std::path::{Path, PathBuf};

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

/// The file in each work directory the tool made, holding its maker's process identity
/// (`pid starttime`): only directories carrying one are ever swept as stale.
const MARKER: &str = ".mesos-image-work";

/// Make this build's work directory `build-<pid>` below `work_root`, marked as ours. An
/// existing directory of that name is someone else's (or a live build's): refused, never reused.
pub fn create(work_root: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    fs::create_dir_all(work_root).with_context(|| format!("cannot create work directory {}", work_root.display()))?;
    let pid = std::process::id();
    let work = work_root.join(format!("build-{pid}"));
    fs::create_dir(&work).with_context(|| format!("cannot create work directory {}", work.display()))?;
    let identity = process_identity(pid).unwrap_or_default();
    fs::write(work.join(MARKER), format!("{pid} {identity}\n"))
        .with_context(|| format!("cannot mark work directory {}", work.display()))?;
    Ok(work)
}

/// Work directories of builds that died are removed at the next start: only those carrying our
/// marker whose process is gone (or is another process that reused the pid). A `build-<pid>`
/// directory without the marker is the user's, and stays. Their mounts died with their
/// namespaces, so nothing host-owned is reachable through them.
pub fn remove_stale(work_root: &Path) {
    let Ok(entries) = fs::read_dir(work_root) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("build-") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(marker) = fs::read_to_string(entry.path().join(MARKER)) else { continue };
        let mut fields = marker.split_whitespace();
        let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let started = fields.next().unwrap_or("");
        let alive = process_identity(pid).is_some_and(|now| now == started || started.is_empty());
        if !alive && format!("build-{pid}") == name {
            release(&entry.path());
        }
    }
}

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22): with the pid, it
/// names one process even after the pid is reused.
fn process_identity(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after its last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_owned)
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
    fn only_marked_directories_of_dead_processes_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let ours = create(root.path()).unwrap();
        // A user's directory that merely looks like a work dir, of a pid that is not running.
        let users = root.path().join("build-999999999");
        fs::create_dir(&users).unwrap();
        // A marked one whose process is gone.
        let dead = root.path().join("build-999999998");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(MARKER), "999999998 1\n").unwrap();
        remove_stale(root.path());
        assert!(ours.exists(), "a live build's directory is kept");
        assert!(users.exists(), "an unmarked directory is never swept");
        assert!(!dead.exists());
        assert!(create(root.path()).is_err(), "an existing directory is not reused");
    }

    #[test]
    fn process_identity_is_the_start_time() {
        let me = process_identity(std::process::id()).unwrap();
        assert!(me.parse::<u64>().is_ok(), "{me}");
        assert_eq!(process_identity(999_999_999), None);
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
