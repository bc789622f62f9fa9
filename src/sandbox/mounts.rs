//! Mounts of a build: the work dir's tmpfs, the chroot's API filesystems and bind mounts, and
//! removal of trees that refuses to cross a mount point.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Errors at the sandbox's mount edge; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot mount {what} on {path}: {source}")]
    Mount { what: String, path: PathBuf, source: Errno },
    #[error("cannot prepare mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("refusing to mount on {path}: {component} inside the tree is a symlink")]
    Symlink { path: PathBuf, component: PathBuf },
    #[error("cannot unmount {path}: {source}")]
    Unmount { path: PathBuf, source: Errno },
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
    #[error("refusing to delete {path}: {mount_point} is still mounted inside it")]
    StillMounted { path: PathBuf, mount_point: PathBuf },
    #[error("cannot delete {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// A host directory bound into the chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the chroot, e.g. `/tmp/in_target.d`.
    pub target: PathBuf,
    pub read_only: bool,
}

impl Bind {
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind { source: source.into(), target: target.into(), read_only: true }
    }

    pub fn read_write(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind { source: source.into(), target: target.into(), read_only: false }
    }
}

/// Mount a tmpfs of `size_bytes` on `path` (created if missing). Inside the build's private
/// mount namespace it disappears with the build, whatever way the build ends.
pub fn mount_tmpfs(path: &Path, size_bytes: u64) -> Result<(), MountError> {
    fs::create_dir_all(path).map_err(|source| MountError::MountPoint { path: path.to_owned(), source })?;
    let options = format!("size={size_bytes},mode=0755");
    mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|source| MountError::Mount { what: "tmpfs".into(), path: path.to_owned(), source })
}

/// The mounts a chroot needs, unmounted in reverse order when dropped (lazily if busy).
///
/// `/dev` is a private tmpfs holding bind mounts of the few host device nodes a package
/// installation needs plus a new devpts instance, so nothing in the chroot can create or delete
/// nodes in the host's `/dev`.
#[derive(Debug)]
pub struct ChrootMounts {
    /// Mount points on the host, in mount order.
    mounted: Vec<PathBuf>,
}

/// Host device nodes bound into the chroot's `/dev`.
const DEVICE_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

impl ChrootMounts {
    /// Mount `/proc`, `/sys` (read-only), a minimal `/dev` with `/dev/pts` and `/dev/shm`, then
    /// `binds`, under `root`. On error everything mounted so far is unmounted again.
    pub fn mount(root: &Path, binds: &[Bind]) -> Result<ChrootMounts, MountError> {
        let mut mounts = ChrootMounts { mounted: Vec::new() };
        mounts.mount_api_filesystems(root)?;
        mounts.add_binds(root, binds)?;
        Ok(mounts)
    }

    /// Only bind mounts (e.g. the apt archive cache around one apt run).
    pub fn binds(root: &Path, binds: &[Bind]) -> Result<ChrootMounts, MountError> {
        let mut mounts = ChrootMounts { mounted: Vec::new() };
        mounts.add_binds(root, binds)?;
        Ok(mounts)
    }

    /// Unmount now and report the first failure (drop does the same, silently).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.unmount_all()
    }

    fn mount_api_filesystems(&mut self, root: &Path) -> Result<(), MountError> {
        let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.mount_fs(root, "/proc", "proc", nosuid_nodev_noexec, None)?;
        self.mount_sysfs(root, nosuid_nodev_noexec | MsFlags::MS_RDONLY)?;
        self.mount_fs(root, "/dev", "tmpfs", MsFlags::MS_NOSUID, Some("mode=0755,size=1m"))?;
        let dev = inside(root, "/dev")?;
        for node in DEVICE_NODES {
            let host = Path::new("/dev").join(node);
            if host.exists() {
                let point = dev.join(node);
                fs::File::create(&point).map_err(|source| MountError::MountPoint { path: point.clone(), source })?;
                self.bind(&host, &point, false)?;
            }
        }
        self.mount_fs(
            root,
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?;
        self.mount_fs(root, "/dev/shm", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))?;
        for (link, to) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            let path = dev.join(link);
            symlink(to, &path).map_err(|source| MountError::MountPoint { path, source })?;
        }
        Ok(())
    }

    /// A new sysfs; in a rootless build's user namespace, which cannot mount one without also
    /// owning a network namespace (the build needs the host's network), the host's `/sys`
    /// bound recursively instead, as mmdebstrap does. Its files belong to ids the namespace
    /// does not map, so the chroot cannot write them either way.
    fn mount_sysfs(&mut self, root: &Path, flags: MsFlags) -> Result<(), MountError> {
        let point = inside(root, "/sys")?;
        match mount(Some("sysfs"), &point, Some("sysfs"), flags, None::<&str>) {
            Err(Errno::EPERM) => {
                let recursive = MsFlags::MS_BIND | MsFlags::MS_REC;
                let result = mount(Some("/sys"), &point, None::<&str>, recursive, None::<&str>);
                self.record(result, "/sys (recursive bind)", point)
            }
            result => self.record(result, "sysfs", point),
        }
    }

    fn add_binds(&mut self, root: &Path, binds: &[Bind]) -> Result<(), MountError> {
        for bind in binds {
            let point = inside(root, &bind.target)?;
            self.bind(&bind.source, &point, bind.read_only)?;
        }
        Ok(())
    }

    fn mount_fs(
        &mut self,
        root: &Path,
        at: &str,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), MountError> {
        let point = inside(root, at)?;
        let result = mount(Some(fstype), &point, Some(fstype), flags, data);
        self.record(result, fstype, point)
    }

    fn bind(&mut self, source: &Path, point: &Path, read_only: bool) -> Result<(), MountError> {
        let what = source.display().to_string();
        let result = mount(Some(source), point, None::<&str>, MsFlags::MS_BIND, None::<&str>);
        self.record(result, &what, point.to_owned())?;
        if read_only {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, point, None::<&str>, flags, None::<&str>).map_err(|source| MountError::Mount {
                what: format!("{what} (read-only)"),
                path: point.to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    fn record(&mut self, result: nix::Result<()>, what: &str, point: PathBuf) -> Result<(), MountError> {
        match result {
            Ok(()) => {
                self.mounted.push(point);
                Ok(())
            }
            Err(source) => {
                let _ = self.unmount_all();
                Err(MountError::Mount { what: what.to_owned(), path: point, source })
            }
        }
    }

    fn unmount_all(&mut self) -> Result<(), MountError> {
        let mut first_error = None;
        while let Some(point) = self.mounted.pop() {
            if let Err(err) = unmount(&point) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

/// Unmount `point`; if something still uses it (a daemon a postinst started), detach it lazily
/// so the tree is free and the kernel drops the mount when the last user goes.
fn unmount(point: &Path) -> Result<(), MountError> {
    match umount2(point, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EBUSY) => umount2(point, MntFlags::MNT_DETACH)
            .map_err(|source| MountError::Unmount { path: point.to_owned(), source }),
        Err(source) => Err(MountError::Unmount { path: point.to_owned(), source }),
    }
}

/// The host path of `path` inside `root`, creating missing directories. Refuses symlinks on the
/// way, so a tree cannot redirect a mount to somewhere on the host (e.g. `/var/cache -> /`).
fn inside(root: &Path, path: impl AsRef<Path>) -> Result<PathBuf, MountError> {
    let mut current = root.to_owned();
    for component in path.as_ref().components() {
        let Component::Normal(name) = component else { continue };
        current.push(name);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(MountError::Symlink { path: path.as_ref().to_owned(), component: current });
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|source| MountError::MountPoint { path: current.clone(), source })?;
            }
            Err(source) => return Err(MountError::MountPoint { path: current, source }),
        }
    }
    Ok(current)
}

/// Mount points strictly below `dir` (not `dir` itself, which may be the build's own tmpfs),
/// in the order they were mounted (per /proc/self/mountinfo).
pub fn mount_points_under(dir: &Path) -> Result<Vec<PathBuf>, MountError> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(&dir) && point != &dir)
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let code = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything mounted below `dir`, newest first (lazily when busy).
pub fn unmount_below(dir: &Path) -> Result<(), MountError> {
    let mut points = mount_points_under(dir)?;
    while let Some(point) = points.pop() {
        unmount(&point)?;
    }
    Ok(())
}

/// Delete `dir` and everything in it, but only if nothing is mounted below it: a bind mount
/// of a host directory (the apt cache) must never be deleted through.
pub fn remove_tree(dir: &Path) -> Result<(), MountError> {
    if let Some(mount_point) = mount_points_under(dir)?.into_iter().next() {
        return Err(MountError::StillMounted { path: dir.to_owned(), mount_point });
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MountError::Remove { path: dir.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo(r"/plain\04"), r"/plain\04");
    }

    #[test]
    fn inside_refuses_symlinked_components() {
        let root = tempfile::tempdir().unwrap();
        symlink("/", root.path().join("var")).unwrap();
        let err = inside(root.path(), "/var/cache/apt/archives").unwrap_err();
        assert!(matches!(err, MountError::Symlink { .. }), "{err}");
        let made = inside(root.path(), "/tmp/in_target.d").unwrap();
        assert!(made.is_dir());
    }

    #[test]
    fn remove_tree_deletes_an_unmounted_tree() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/file"), "x").unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
    }
}
