//! The build's scratch directory: in tmpfs when memory allows, and removed without ever
//! deleting through a mount point (the sandbox refuses while anything is mounted below).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use crate::io::{lock_file, LockMode};
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

/// The file in each work directory the tool made: its maker holds an exclusive `flock` on it
/// for as long as the build (or any process it forked) lives. Only directories carrying one are
/// ever swept, and only once nobody holds that lock. A lock, not a pid: the kernel drops it when
/// the last holder dies, whatever PID namespace the build ran in (a build in a container sees
/// its own pids, which mean other processes, or none, on the host sharing its cache) and
/// however soon its pid is reused.
const MARKER: &str = ".mesos-image-work";

/// A build's work directory, and the lock on its marker that says the build is alive.
pub struct WorkDir {
    path: PathBuf,
    _alive: nix::fcntl::Flock<fs::File>,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Make this build's work directory below `work_root`: `build-<pid>-<random>`, a new name
/// (builds in two containers sharing a cache may have the same pid), marked as ours and locked.
pub fn create(work_root: &Path) -> anyhow::Result<WorkDir> {
    use anyhow::Context;
    fs::create_dir_all(work_root).with_context(|| format!("cannot create work directory {}", work_root.display()))?;
    let path = tempfile::Builder::new()
        .prefix(&format!("build-{}-", std::process::id()))
        .rand_bytes(6)
        .tempdir_in(work_root)
        .with_context(|| format!("cannot create a work directory in {}", work_root.display()))?
        .keep();
    // A rootless build's tree holds files the user cannot delete from outside: if this build is
    // killed, the janitor (inside the namespace) removes them.
    sandbox::remove_on_exit(&path);
    let marker = path.join(MARKER);
    let alive = lock_file(&marker, LockMode::Exclusive, false)
        .with_context(|| format!("cannot mark work directory {}", path.display()))?
        .with_context(|| format!("{} is locked by another process", marker.display()))?;
    Ok(WorkDir { path, _alive: alive })
}

/// Work directories of builds that died are removed at the next start: only those carrying our
/// marker, and only when no process holds its lock. A `build-*` directory without the marker is
/// the user's, and stays. Their mounts died with their namespaces, so nothing host-owned is
/// reachable through them.
pub fn remove_stale(work_root: &Path) {
    let Ok(entries) = fs::read_dir(work_root) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("build-") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let marker = entry.path().join(MARKER);
        if !marker.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        // Held while we remove it, so a build cannot start using a directory being swept.
        if let Ok(Some(_dead)) = lock_file(&marker, LockMode::Exclusive, false) {
            release(&entry.path());
        }
    }
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
    fn only_marked_directories_nobody_holds_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let ours = create(root.path()).unwrap();
        // A user's directory that merely looks like a work dir.
        let users = root.path().join("build-999999999");
        fs::create_dir(&users).unwrap();
        // A marked one whose build died: nobody holds the lock on its marker.
        let dead = root.path().join("build-14-dead00");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(MARKER), "").unwrap();
        // A marked one of a live build elsewhere (another PID namespace: its pid means nothing here).
        let elsewhere = root.path().join("build-14-alive0");
        fs::create_dir(&elsewhere).unwrap();
        let _held = lock_file(&elsewhere.join(MARKER), LockMode::Exclusive, false).unwrap().unwrap();
        remove_stale(root.path());
        assert!(ours.path().exists(), "a live build's directory is kept");
        assert!(users.exists(), "an unmarked directory is never swept");
        assert!(elsewhere.exists(), "a directory whose marker is locked is a live build's");
        assert!(!dead.exists());
        let again = create(root.path()).unwrap();
        assert_ne!(again.path(), ours.path(), "every build gets a new directory");
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
