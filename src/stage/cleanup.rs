//! The cleanup stage: element `cleanup.d` on the host, then everything the build put in the
//! tree for itself is taken out again, and nothing is left mounted below the target.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;

use super::target_config::{self, remove_if_present};
use super::{phases, BuildContext};
use crate::element::Phase;
use crate::sandbox;

/// Directories whose contents are build leftovers (the directories themselves stay).
const EMPTIED_DIRS: [&str; 4] = ["tmp", "var/tmp", "var/lib/apt/lists", "var/cache/apt/archives"];
/// apt's binary caches, rebuilt on the first apt run in the guest.
const APT_CACHES: [&str; 2] = ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"];

/// Run cleanup.d, unblock services, restore resolv.conf, drop dpkg's unsafe-io setting, and
/// clear /tmp, the apt lists and archives and the logs. Refuses to delete through a mount.
pub fn run(ctx: &BuildContext) -> anyhow::Result<()> {
    phases::run_phase(ctx, Phase::Cleanup)?;
    let _step = ctx.reporter.step("cleanup: build leftovers");
    // Nothing of ours is mounted any more; anything left (an element's own mount) goes first
    // so no deletion below can reach a host directory.
    sandbox::unmount_below(&ctx.target)?;
    if let Some(still) = sandbox::mount_points_under(&ctx.target)?.first() {
        anyhow::bail!("refusing to clean the tree: {} is still mounted", still.display());
    }
    target_config::leave(ctx)?;
    let target = &ctx.target;
    for dir in EMPTIED_DIRS {
        empty_dir(&target.join(dir))?;
    }
    for file in APT_CACHES {
        remove_if_present(&target.join(file))?;
    }
    truncate_logs(&target.join("var/log"))
}

/// Delete what is in `dir`, keeping `dir` (and apt's `partial/` and `lock`, recreated empty).
fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            sandbox::remove_tree(&path)?;
            if entry.file_name() == "partial" {
                fs::create_dir(&path).with_context(|| format!("cannot recreate {}", path.display()))?;
            }
        } else if entry.file_name() != "lock" {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

/// Empty every regular log file (owners and modes stay, as packages expect the files).
fn truncate_logs(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).follow_links(false).same_file_system(true) {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        if entry.file_type().is_file() {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(entry.path())
                .with_context(|| format!("cannot truncate {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dir_keeps_apt_partial_and_lock() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("lists");
        fs::create_dir_all(dir.join("partial/x")).unwrap();
        fs::write(dir.join("lock"), "").unwrap();
        fs::write(dir.join("a_Packages"), "data").unwrap();
        empty_dir(&dir).unwrap();
        assert!(dir.join("partial").is_dir());
        assert!(!dir.join("partial/x").exists());
        assert!(dir.join("lock").exists());
        assert!(!dir.join("a_Packages").exists());
    }

    #[test]
    fn logs_are_emptied_not_removed() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("apt")).unwrap();
        fs::write(root.path().join("apt/history.log"), "lots").unwrap();
        truncate_logs(root.path()).unwrap();
        assert_eq!(fs::read_to_string(root.path().join("apt/history.log")).unwrap(), "");
    }
}
