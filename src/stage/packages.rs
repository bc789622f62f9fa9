//! apt inside the target: one transaction per phase for all elements' packages, removals,
//! and the installed-package list for the manifests. The caller holds the chroot's mounts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::Context;
use nix::fcntl::Flock;

use super::deferred::{self, Shims};
use super::native_unpack::NativeUnpack;
use super::BuildContext;
use crate::io::{lock_file, LockMode};
use crate::sandbox::{chroot_command, Bind, ChrootMounts};

/// apt options for every run: never prompt, keep files elements placed (as DIB's
/// install-packages does), no recommends (DIB's dpkg element disables them), run downloads as
/// root because the bound host cache is not writable by the target's `_apt` user, and keep
/// what was downloaded so the shared cache fills.
const APT_OPTIONS: [&str; 10] = [
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "APT::Install-Recommends=false",
    "-o",
    "APT::Sandbox::User=root",
    "-o",
    "APT::Keep-Downloaded-Packages=true",
];

/// Install `names` in one `apt-get install`, with the host's archive cache bound in.
/// Runs `apt-get update` first when the lists are missing or older than the apt sources.
pub fn install(ctx: &BuildContext, names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let _step = ctx.reporter.step(format!("packages: install {}", names.len()));
    if lists_are_stale(&ctx.target) {
        ctx.reporter.run("apt-get update", &mut apt_get(ctx, &["update"])?)?;
    }
    let mut args = vec!["install", "--assume-yes"];
    args.extend(names.iter().map(String::as_str));
    download(ctx, &args)?;
    // Everything is in the shared cache now: the transaction (maintainer scripts, under
    // emulation a quarter of an hour for an arm64 Mesos image) reads it bound read-only and
    // without the lock, so other builds sharing the cache do not wait for it.
    let cache = ArchiveCache::bind_read_only(ctx)?;
    args.extend(["-o", "Debug::NoLocking=true"]);
    let result = run_apt(ctx, &format!("apt-get install {}", names.join(" ")), &args);
    cache.release()?;
    result
}

/// What apt `args` would install, fetched into the shared cache while holding its lock.
fn download(ctx: &BuildContext, args: &[&str]) -> anyhow::Result<()> {
    let cache = ArchiveCache::bind(ctx)?;
    let result = ctx.reporter.run("apt-get download", &mut apt_get(ctx, &[args, &["--download-only"]].concat())?);
    cache.release()?;
    result
}

/// One apt transaction with the maintainer scripts' deferred work (`deferred`) shimmed, made
/// once when apt is done, and under emulation host programs standing in for the tree's
/// (`native_unpack`: dpkg-deb, and the file tools of update-ca-certificates and mkinitramfs).
fn run_apt(ctx: &BuildContext, label: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut native = NativeUnpack::bind(ctx)?;
    let result = Shims::install(&ctx.target).and_then(|shims| {
        let dpkg_path = deferred::dpkg_path(native.as_ref().map(NativeUnpack::path_dirs));
        match ctx.reporter.run(label, &mut apt_get(ctx, &[&["-o", dpkg_path.as_str()], args].concat())?) {
            Ok(()) => shims.finish(ctx, || native.as_mut().map(NativeUnpack::for_initramfs).transpose()),
            Err(err) => {
                shims.remove()?;
                Err(err)
            }
        }
    });
    // Released whatever apt did; apt's failure, if any, is the one to report.
    let released = native.map_or(Ok(()), NativeUnpack::release);
    result.and(released)
}

/// The host's shared package cache, bound onto the tree's `/var/cache/apt/archives` while
/// apt or mmdebstrap downloads into it. A bind mount, not a copy: the cache grows with every
/// recipe built on the host (measured past 1 GiB in CI), and copying it into each tree cost
/// time and tmpfs memory, and once failed mid-copy (mmdebstrap's sync-in tar died of SIGPIPE).
pub(crate) struct ArchiveCache {
    mounts: ChrootMounts,
    cache: PathBuf,
    partial: PathBuf,
    /// Held while apt may write the cache; `None` for a read-only binding.
    exclusive: Option<Flock<fs::File>>,
}

impl ArchiveCache {
    /// Wait for other builds using the same cache (apt inside each chroot takes the archives
    /// lock without waiting, so a concurrent build would fail instead of queueing), then bind.
    pub(crate) fn bind(ctx: &BuildContext) -> anyhow::Result<ArchiveCache> {
        fs::create_dir_all(ctx.apt_cache.join("partial"))
            .with_context(|| format!("cannot create the apt cache {}", ctx.apt_cache.display()))?;
        let exclusive = Some(lock_cache(ctx)?);
        let mounts = ChrootMounts::binds(&ctx.target, &[Bind::read_write(&ctx.apt_cache, ARCHIVES)])?;
        let partial = ctx.target.join(ARCHIVES.trim_start_matches('/')).join("partial");
        Ok(ArchiveCache { mounts, cache: ctx.apt_cache.clone(), partial, exclusive })
    }

    /// Bind the cache read-only, without waiting: for a transaction whose packages were all
    /// downloaded already (apt, told not to lock, then only reads them). Downloads of other
    /// builds only add files, each renamed into place whole.
    pub(crate) fn bind_read_only(ctx: &BuildContext) -> anyhow::Result<ArchiveCache> {
        let mounts = ChrootMounts::binds(&ctx.target, &[Bind::read_only(&ctx.apt_cache, ARCHIVES)])?;
        let partial = ctx.target.join(ARCHIVES.trim_start_matches('/')).join("partial");
        Ok(ArchiveCache { mounts, cache: ctx.apt_cache.clone(), partial, exclusive: None })
    }

    /// Unmount, leaving the tree its own empty archives directory as apt keeps it, then unlock.
    pub(crate) fn release(self) -> anyhow::Result<()> {
        self.mounts.unmount()?;
        if self.exclusive.is_some() {
            own_downloads(&self.cache)?;
        }
        fs::create_dir_all(&self.partial).with_context(|| format!("cannot create {}", self.partial.display()))
    }
}

const ARCHIVES: &str = "/var/cache/apt/archives";

/// Give the build's own id what apt left in the shared cache under another: apt (mmdebstrap's
/// run on the host side) hands `partial/` and its downloads to `_apt`. In a rootless build
/// that is a subordinate id, and `partial/` (mode 0700) would be a directory of the user's
/// cache the user cannot empty. Root builds get the same, so both keep one layout.
fn own_downloads(cache: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let partial = cache.join("partial");
    let entries = fs::read_dir(cache).into_iter().chain(fs::read_dir(&partial)).flatten();
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()).chain([partial.clone()]) {
        let Ok(meta) = path.symlink_metadata() else { continue };
        if meta.uid() != uid.as_raw() || meta.gid() != gid.as_raw() {
            std::os::unix::fs::lchown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                .with_context(|| format!("cannot take back {} from apt", path.display()))?;
        }
    }
    Ok(())
}

/// Wait for other builds using the same host cache; debootstrap takes it too, as it reads and
/// writes the same directory through `--cache-dir`. The wait polls rather than blocks, so a
/// stop signal ends it (a blocked flock is restarted after the handler: a build queued behind
/// a long one ignored SIGTERM for minutes), and it says once what it waits for.
pub(crate) fn lock_cache(ctx: &BuildContext) -> anyhow::Result<Flock<fs::File>> {
    let path = ctx.apt_cache.join(".mesos-image.lock");
    let mut said = false;
    loop {
        if let Some(lock) = lock_file(&path, LockMode::Exclusive, false)? {
            return Ok(lock);
        }
        crate::sandbox::check_interrupted()?;
        if !said {
            ctx.reporter.println(&format!("waiting for another build using the package cache ({})", path.display()));
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Remove `names` (configuration kept, as DIB's `uninstall`).
pub fn remove(ctx: &BuildContext, names: &[String]) -> anyhow::Result<()> {
    remove_with(ctx, "remove", names)
}

/// Purge `names` and the dependencies nothing else needs (`build-only` packages).
pub fn purge(ctx: &BuildContext, names: &[String]) -> anyhow::Result<()> {
    remove_with(ctx, "purge", names)?;
    if !names.is_empty() {
        run_apt(ctx, "apt-get autoremove", &["autoremove", "--purge", "--assume-yes"])?;
    }
    Ok(())
}

fn remove_with(ctx: &BuildContext, action: &str, names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let _step = ctx.reporter.step(format!("packages: {action} {}", names.len()));
    let mut args = vec![action, "--assume-yes"];
    args.extend(names.iter().map(String::as_str));
    run_apt(ctx, &format!("apt-get {action} {}", names.join(" ")), &args)
}

fn apt_get(ctx: &BuildContext, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = chroot_command(&ctx.target, "apt-get").context("cannot prepare apt-get in the chroot")?;
    command.env("DEBIAN_FRONTEND", "noninteractive").args(APT_OPTIONS).args(args);
    Ok(command)
}

/// The lists need an update when there are none, or when a source or key changed after the
/// newest list was written (a pre-slot script added a repository).
fn lists_are_stale(target: &Path) -> bool {
    let lists = newest_mtime(&target.join("var/lib/apt/lists"), |name| {
        name.ends_with("Packages") || name.contains("Packages.")
    });
    let Some(lists) = lists else { return true };
    let config_dirs = ["etc/apt/sources.list.d", "etc/apt/trusted.gpg.d", "etc/apt/keyrings", "etc/apt/preferences.d"];
    let mut newest_config =
        newest_mtime(&target.join("etc/apt"), |name| name == "sources.list" || name == "trusted.gpg");
    for dir in config_dirs {
        newest_config = newest_config.max(newest_mtime(&target.join(dir), |_| true));
    }
    newest_config.is_some_and(|config| config > lists)
}

fn newest_mtime(dir: &Path, wanted: impl Fn(&str) -> bool) -> Option<SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| wanted(&entry.file_name().to_string_lossy()))
        .filter_map(|entry| entry.metadata().ok()?.modified().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_lists_are_stale_and_a_new_source_makes_them_stale() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path();
        assert!(lists_are_stale(target));
        fs::create_dir_all(target.join("var/lib/apt/lists")).unwrap();
        fs::create_dir_all(target.join("etc/apt/sources.list.d")).unwrap();
        fs::write(target.join("etc/apt/sources.list"), "deb x y z\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(target.join("var/lib/apt/lists/x_dists_y_main_binary-amd64_Packages"), "").unwrap();
        assert!(!lists_are_stale(target));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(target.join("etc/apt/sources.list.d/mesos.list"), "deb a b c\n").unwrap();
        assert!(lists_are_stale(target));
    }
}
