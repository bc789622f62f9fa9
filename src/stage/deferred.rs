//! Work maintainer scripts repeat or throw away, kept out of each package transaction. For
//! the length of one apt run, programs the scripts find on `PATH` are shadowed by shims in the
//! tree's `/tmp` (removed afterwards; cleanup empties `/tmp` anyway):
//!
//! - `update-initramfs`: Debian makes the initramfs in the kernel's postinst (`-c`, through
//!   `/etc/kernel/postinst.d/initramfs-tools`) and again, whole, in initramfs-tools' trigger
//!   (`-u`) at the end of the same transaction, so that hooks configured after the kernel get
//!   in. The shim records each request; after apt returns, each is made once (as DIB's
//!   `dracut-regenerate` makes it once, at the end). The initramfs then holds what the second
//!   run of a plain transaction would have written. Other modes (`-d`) run at once.
//! - `py3compile` (dh-python's postinst snippet, found with `command -v`): byte code in the
//!   tree is removed at cleanup (it differs between runs, see `cleanup.rs`), so compiling it
//!   during the build is work thrown away; under qemu-user it was a minute of an arm64 build.
//!
//! Both apply to every architecture; under emulation each saved process counts ~7 times.
//! Under emulation the host's own programs stand in for some of the tree's (`native_unpack`),
//! from a directory put on `PATH` after this one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::BuildContext;
use crate::sandbox::chroot_command;

/// The shims' directory inside the tree, first on the apt run's `PATH`.
pub const SHIM_DIR: &str = "/tmp/mesos-image-shims";
/// apt's default `DPkg::Path`, the `PATH` dpkg and the maintainer scripts get.
const APT_DPKG_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The apt option that puts the shims, then `native` (a directory of host programs), first on
/// the maintainer scripts' `PATH`.
pub fn dpkg_path(native: Option<&str>) -> String {
    match native {
        Some(dir) => format!("DPkg::Path={SHIM_DIR}:{dir}:{APT_DPKG_PATH}"),
        None => format!("DPkg::Path={SHIM_DIR}:{APT_DPKG_PATH}"),
    }
}

/// Where the `update-initramfs` shim records the requests, one per line, inside the tree.
const REQUESTS: &str = "initramfs-requests";
/// The real program, run for the recorded requests (Debian's path since usrmerge).
const UPDATE_INITRAMFS: &str = "/usr/sbin/update-initramfs";

const SHIMS: [(&str, &str); 2] = [
    (
        "update-initramfs",
        "#!/bin/sh\n\
         # mesos-image: the initramfs is made once, after the package transaction.\n\
         case \" $* \" in\n\
         *\" -c \"*|*\" -u \"*) echo \"$*\" >> /tmp/mesos-image-shims/initramfs-requests; exit 0 ;;\n\
         esac\n\
         exec /usr/sbin/update-initramfs \"$@\"\n",
    ),
    (
        "py3compile",
        "#!/bin/sh\n# mesos-image: byte code is removed from the image at cleanup; nothing to compile.\nexit 0\n",
    ),
];

/// The shims of one apt run; [`Shims::finish`] makes what they deferred and removes them.
pub struct Shims {
    dir: PathBuf,
}

impl Shims {
    /// Write the shims into `target`'s `/tmp` (a leftover of an interrupted run is replaced).
    pub fn install(target: &Path) -> anyhow::Result<Shims> {
        use std::os::unix::fs::PermissionsExt;
        let dir = target.join(SHIM_DIR.trim_start_matches('/'));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in SHIMS {
            let path = dir.join(name);
            fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot chmod {}", path.display()))?;
        }
        Ok(Shims { dir })
    }

    /// After a successful apt run: make each recorded initramfs once, then remove the shims.
    /// `native` readies a directory of host programs to put first on update-initramfs' `PATH`
    /// (`native_unpack`'s stand-ins), if any; it is asked only when there is an initramfs to make.
    pub fn finish(
        self,
        ctx: &BuildContext,
        native: impl FnOnce() -> anyhow::Result<Option<&'static str>>,
    ) -> anyhow::Result<()> {
        let requests = fs::read_to_string(self.dir.join(REQUESTS)).unwrap_or_default();
        self.remove()?;
        let requests = replayed(&requests);
        if requests.is_empty() || !ctx.target.join(UPDATE_INITRAMFS.trim_start_matches('/')).exists() {
            return Ok(());
        }
        let native = native()?;
        for args in requests {
            let mut command =
                chroot_command(&ctx.target, UPDATE_INITRAMFS).context("cannot prepare update-initramfs")?;
            if let Some(dir) = native {
                let path = command.get_envs().find(|(name, _)| *name == "PATH").and_then(|(_, value)| value);
                let path =
                    path.map(|path| format!("{dir}:{}", path.to_string_lossy())).unwrap_or_else(|| dir.to_owned());
                command.env("PATH", path);
            }
            command.args(&args);
            ctx.reporter.run(&format!("update-initramfs {}", args.join(" ")), &mut command)?;
        }
        Ok(())
    }

    /// Take the shims out of the tree (after a failed apt run too).
    pub fn remove(&self) -> anyhow::Result<()> {
        fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))
    }
}

/// The requests to make, in order, each once: every distinct `-c`; a `-u` only for a kernel
/// no `-c` made (one without `-k` means the newest kernel, which a `-c` in the same
/// transaction made: the kernel the transaction installed).
fn replayed(requests: &str) -> Vec<Vec<String>> {
    let parsed: Vec<Vec<String>> =
        requests.lines().map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>()).collect();
    let version = |args: &[String]| args.iter().position(|a| a == "-k").and_then(|i| args.get(i + 1)).cloned();
    let created: Vec<Option<String>> =
        parsed.iter().filter(|args| args.iter().any(|a| a == "-c")).map(|args| version(args)).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for args in parsed {
        let update = args.iter().any(|a| a == "-u");
        let covered = update && !created.is_empty() && version(&args).is_none_or(|v| created.contains(&Some(v)));
        if !args.is_empty() && !covered && !out.contains(&args) {
            out.push(args);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(requests: &[Vec<String>]) -> Vec<String> {
        requests.iter().map(|args| args.join(" ")).collect()
    }

    #[test]
    fn the_kernels_initramfs_is_made_once_after_the_trigger_asked_again() {
        let requests = "-c -k 6.1.0-50-cloud-arm64\n-u\n-u\n";
        assert_eq!(lines(&replayed(requests)), ["-c -k 6.1.0-50-cloud-arm64"]);
        let named = "-c -k 6.1.0-50-cloud-amd64 -b /boot\n-u -k 6.1.0-50-cloud-amd64\n";
        assert_eq!(lines(&replayed(named)), ["-c -k 6.1.0-50-cloud-amd64 -b /boot"]);
    }

    #[test]
    fn an_update_without_a_new_kernel_or_for_another_kernel_is_made_once() {
        assert_eq!(lines(&replayed("-u\n-u\n")), ["-u"]);
        let other = "-c -k 6.1.0-50-amd64\n-u -k 6.1.0-40-amd64\n";
        assert_eq!(lines(&replayed(other)), ["-c -k 6.1.0-50-amd64", "-u -k 6.1.0-40-amd64"]);
        assert!(replayed("").is_empty());
    }

    #[test]
    fn the_shims_are_written_and_removed_without_a_trace() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("tmp")).unwrap();
        let shims = Shims::install(root.path()).unwrap();
        let dir = root.path().join("tmp/mesos-image-shims");
        for name in SHIMS.iter().map(|(name, _)| *name) {
            assert!(dir.join(name).is_file(), "{name}");
        }
        assert!(SHIMS[0].1.contains(&format!("{SHIM_DIR}/{REQUESTS}")), "the shim writes where finish reads");
        shims.remove().unwrap();
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }
}
