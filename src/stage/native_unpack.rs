//! Under emulation, dpkg's unpacking backend runs natively. dpkg hands every package to
//! `dpkg-deb` (`--control`, then `--fsys-tarfile`, which decompresses the data member, xz or
//! zstd, into a plain tar stream), found on the `PATH` apt gives it. For the length of one apt
//! run the host's `/usr` is bound read-only into the tree and a `dpkg-deb` shim (see
//! `deferred`) starts the host's own dpkg-deb through the host's dynamic loader, which needs
//! nothing from the tree. The stream is the same bytes whichever CPU decompresses it (checked:
//! the arm64 cloud kernel's tar, same sha256, 1.3 s of CPU instead of 5.6 s under qemu-user);
//! dpkg itself, which writes the files, and every maintainer script stay the target's own.
//!
//! Not used for a native build (nothing to gain), nor on a host whose loader is not under
//! `/usr` (a host without merged /usr) or that has no dpkg-deb.

use std::path::{Path, PathBuf};

use super::BuildContext;
use crate::sandbox::{Bind, ChrootMounts};

/// Where the host's `/usr` appears inside the tree while apt runs (in the tree's `/tmp`,
/// which cleanup empties; the mount point is removed when the bind goes).
const HOST_USR: &str = "/tmp/mesos-image-host-usr";

/// The host's `/usr`, bound into the tree; dropping it unmounts.
pub struct NativeUnpack {
    mounts: ChrootMounts,
    point: PathBuf,
    shim: String,
}

impl NativeUnpack {
    /// Bind the host's `/usr` when the build emulates the target and the host can lend its
    /// dpkg-deb; `None` otherwise.
    pub fn bind(ctx: &BuildContext) -> anyhow::Result<Option<NativeUnpack>> {
        let host = crate::arch::host();
        if crate::arch::runs_natively(&host, &ctx.plan.arch) {
            return Ok(None);
        }
        let Some(shim) = loader(&host).and_then(|loader| shim_text(Path::new("/"), loader)) else {
            return Ok(None);
        };
        let mounts = ChrootMounts::binds(&ctx.target, &[Bind::read_only("/usr", HOST_USR)])?;
        Ok(Some(NativeUnpack { mounts, point: ctx.target.join(HOST_USR.trim_start_matches('/')), shim }))
    }

    /// The `dpkg-deb` shim: the host's dpkg-deb under the host's loader and libraries.
    pub fn shim(&self) -> (&'static str, String) {
        ("dpkg-deb", self.shim.clone())
    }

    /// Unmount and remove the (then empty) mount point.
    pub fn release(self) -> anyhow::Result<()> {
        self.mounts.unmount()?;
        std::fs::remove_dir(&self.point).map_err(|err| anyhow::anyhow!("cannot remove {}: {err}", self.point.display()))
    }
}

/// The ELF interpreter of the host's programs, per Debian architecture.
fn loader(host: &str) -> Option<&'static str> {
    match host {
        "amd64" => Some("/lib64/ld-linux-x86-64.so.2"),
        "arm64" => Some("/lib/ld-linux-aarch64.so.1"),
        _ => None,
    }
}

/// The shim for a host whose root is `root`: the loader resolved to its real place under
/// `/usr` (merged /usr), its directory as the library path, all seen from inside the tree.
fn shim_text(root: &Path, loader: &str) -> Option<String> {
    let real = root.join(loader.trim_start_matches('/')).canonicalize().ok()?;
    let in_usr = real.strip_prefix(root.join("usr").canonicalize().ok()?).ok()?;
    let libraries = in_usr.parent()?;
    root.join("usr/bin/dpkg-deb").is_file().then(|| {
        format!(
            "#!/bin/sh\n# mesos-image: the host's dpkg-deb, native (see native_unpack.rs).\n\
             exec {HOST_USR}/{} --library-path {HOST_USR}/{} {HOST_USR}/bin/dpkg-deb \"$@\"\n",
            in_usr.display(),
            libraries.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_runs_the_hosts_dpkg_deb_through_its_loader_under_usr() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(lib.join("ld-linux-x86-64.so.2"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.path().join("lib64")).unwrap();
        std::os::unix::fs::symlink(
            "x86_64-linux-gnu/ld-linux-x86-64.so.2",
            root.path().join("usr/lib/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        assert_eq!(shim_text(root.path(), "/lib64/ld-linux-x86-64.so.2"), None, "no dpkg-deb on the host");
        std::fs::write(root.path().join("usr/bin/dpkg-deb"), "").unwrap();
        let text = shim_text(root.path(), "/lib64/ld-linux-x86-64.so.2").unwrap();
        assert!(text.ends_with(
            "exec /tmp/mesos-image-host-usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path \
             /tmp/mesos-image-host-usr/lib/x86_64-linux-gnu /tmp/mesos-image-host-usr/bin/dpkg-deb \"$@\"\n"
        ));
        assert_eq!(shim_text(root.path(), "/lib/ld-linux-aarch64.so.1"), None, "no such loader");
        assert_eq!(loader("riscv64"), None);
    }
}
