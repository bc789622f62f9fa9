//! The cleanup step, after element `cleanup.d` (the pipeline's step before it): everything the
//! build put in the tree for itself is taken out again, and nothing is left mounted below the
//! target.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;

use super::target_config::{self, remove_if_present};
use super::BuildContext;
use crate::sandbox;

/// Directories whose contents are build leftovers (the directories themselves stay).
const EMPTIED_DIRS: [&str; 4] = ["tmp", "var/tmp", "var/lib/apt/lists", "var/cache/apt/archives"];
/// apt's binary caches, rebuilt on the first apt run in the guest.
const APT_CACHES: [&str; 2] = ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"];

/// Files that hold the build's clock or random pool, or describe the build host's run rather
/// than the image: each is rebuilt in the guest when needed (ldconfig's aux-cache holds file
/// times, debconf's `-old` copies and systemd's random seed differ every run, a D-Bus machine
/// id must be the guest's own).
const RUN_STATE_FILES: [&str; 6] = [
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "var/lib/systemd/random-seed",
    "var/lib/dbus/machine-id",
];
/// Directories whose contents are caches some package's trigger wrote with time stamps
/// (man-db's index, fontconfig's caches); rebuilt in the guest on demand.
const STAMPED_CACHE_DIRS: [&str; 2] = ["var/cache/man", "var/cache/fontconfig"];
/// Where Python byte code compiled during the build lives (it records compile-time details and
/// marshal output that differs between runs; Python recompiles on first import).
const PYTHON_DIRS: [&str; 3] = ["usr/lib", "usr/local/lib", "usr/share"];

/// Unblock services, restore resolv.conf, drop dpkg's unsafe-io setting, and clear /tmp, the
/// apt lists and archives and the logs. Refuses to delete through a mount.
pub fn run(ctx: &BuildContext) -> anyhow::Result<()> {
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
    forget_run_state(target)?;
    truncate_logs(&target.join("var/log"))
}

/// Take out everything that would make two builds of the same inputs differ, or make every
/// guest booted from the image share an identity: the machine id (left empty, as Debian's
/// cloud images do, so systemd makes one at first boot), the SSH host keys (cloud-init or
/// the first start of sshd makes them), run-state files, stamped caches and Python byte code.
fn forget_run_state(target: &Path) -> anyhow::Result<()> {
    let machine_id = target.join("etc/machine-id");
    if fs::symlink_metadata(&machine_id).is_ok() {
        fs::write(&machine_id, "").with_context(|| format!("cannot empty {}", machine_id.display()))?;
    }
    for file in RUN_STATE_FILES {
        let path = target.join(file);
        // D-Bus's id as a symlink to /etc/machine-id is Debian's layout and carries no id.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        remove_if_present(&path)?;
    }
    remove_ssh_host_keys(&target.join("etc/ssh"))?;
    for dir in STAMPED_CACHE_DIRS {
        remove_files_below(&target.join(dir))?;
    }
    for dir in PYTHON_DIRS {
        remove_python_bytecode(&target.join(dir))?;
    }
    Ok(())
}

fn remove_ssh_host_keys(ssh_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(ssh_dir) else { return Ok(()) };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("ssh_host_") && (name.ends_with("_key") || name.ends_with("_key.pub")) {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Call `action` on every entry below `dir` that is not a directory, without following links
/// or leaving the tree's file system; a missing `dir` has none.
fn each_file_below(dir: &Path, mut action: impl FnMut(&walkdir::DirEntry) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).follow_links(false).same_file_system(true) {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        if !entry.file_type().is_dir() {
            action(&entry)?;
        }
    }
    Ok(())
}

/// Remove the files (not the directories, which packages own) below `dir`.
fn remove_files_below(dir: &Path) -> anyhow::Result<()> {
    each_file_below(dir, |entry| remove_if_present(entry.path()))
}

/// `__pycache__` directories and stray `.pyc` files below `dir`. Nothing is mounted in the
/// tree any more (checked by the caller), so a plain recursive removal cannot reach the host.
fn remove_python_bytecode(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut walk = walkdir::WalkDir::new(dir).follow_links(false).same_file_system(true).into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_dir() && name == "__pycache__" {
            walk.skip_current_dir();
            fs::remove_dir_all(entry.path()).with_context(|| format!("cannot remove {}", entry.path().display()))?;
        } else if entry.file_type().is_file() && (name.ends_with(".pyc") || name.ends_with(".pyo")) {
            remove_if_present(entry.path())?;
        }
    }
    Ok(())
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
    each_file_below(dir, |entry| {
        if entry.file_type().is_file() {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(entry.path())
                .with_context(|| format!("cannot truncate {}", entry.path().display()))?;
        }
        Ok(())
    })
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

    #[test]
    fn run_state_identity_and_bytecode_are_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path();
        let write = |path: &str, text: &str| {
            fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
            fs::write(tree.join(path), text).unwrap();
        };
        write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        write("etc/ssh/ssh_host_ed25519_key", "secret");
        write("etc/ssh/ssh_host_ed25519_key.pub", "public");
        write("etc/ssh/sshd_config", "kept");
        write("var/cache/ldconfig/aux-cache", "stamps");
        write("var/cache/debconf/config.dat", "kept");
        write("var/cache/debconf/config.dat-old", "old");
        write("var/lib/systemd/random-seed", "random");
        write("var/cache/man/index.db", "stamped");
        write("usr/lib/python3/dist-packages/x/__pycache__/y.cpython-311.pyc", "code");
        write("usr/lib/python3/dist-packages/x/y.py", "kept");
        write("usr/lib/python2.7/dist-packages/z.pyc", "code");
        fs::create_dir_all(tree.join("var/lib/dbus")).unwrap();
        std::os::unix::fs::symlink("/etc/machine-id", tree.join("var/lib/dbus/machine-id")).unwrap();

        forget_run_state(tree).unwrap();

        assert_eq!(fs::read_to_string(tree.join("etc/machine-id")).unwrap(), "");
        for gone in [
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub",
            "var/cache/ldconfig/aux-cache",
            "var/cache/debconf/config.dat-old",
            "var/lib/systemd/random-seed",
            "var/cache/man/index.db",
            "usr/lib/python3/dist-packages/x/__pycache__",
            "usr/lib/python2.7/dist-packages/z.pyc",
        ] {
            assert!(fs::symlink_metadata(tree.join(gone)).is_err(), "{gone} is still there");
        }
        for kept in ["etc/ssh/sshd_config", "var/cache/debconf/config.dat", "usr/lib/python3/dist-packages/x/y.py"] {
            assert!(tree.join(kept).is_file(), "{kept} was removed");
        }
        assert!(tree.join("var/cache/man").is_dir());
        assert!(fs::symlink_metadata(tree.join("var/lib/dbus/machine-id")).unwrap().file_type().is_symlink());
    }
}
