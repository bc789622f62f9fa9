//! Preflight of a build without root (README, "Builds without root"): what the user namespace
//! needs (user namespaces switched on, a subordinate id range, newuidmap/newgidmap) and a
//! cache directory the user owns, each one line with its fix, before any work.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::culprit::{bad, PreflightError};
use crate::cli::args::build::BuildArgs;
use crate::sandbox::{self, HostFiles, Invoker};

/// What the checks read, so tests can point them at files of their own.
pub struct Host {
    pub files: HostFiles,
    pub invoker: Invoker,
    /// Whether this process may create namespaces itself (root with CAP_SYS_ADMIN).
    pub can_isolate: bool,
}

impl Host {
    pub fn current() -> Host {
        Host { files: HostFiles::system(), invoker: Invoker::current(), can_isolate: sandbox::can_isolate() }
    }
}

/// `mesos-image build`'s rootless checks (nothing for `--dry-run`, which builds nothing).
pub fn build(args: &BuildArgs) -> Result<(), PreflightError> {
    if args.dry_run {
        return Ok(());
    }
    let (option, cache) = match &args.cache_dir {
        Some(dir) => ("--cache-dir", dir.clone()),
        None => ("cache directory", crate::paths::default_cache_dir()),
    };
    check(&Host::current(), option, &cache)
}

/// The checks themselves: the cache's owner first (it matters with or without root), then
/// the user namespace when this process cannot isolate a build by itself.
pub fn check(host: &Host, option: &str, cache: &Path) -> Result<(), PreflightError> {
    cache_owner(&host.invoker, option, cache)?;
    if host.can_isolate {
        return Ok(());
    }
    let culprit = format!("building without root as {}", host.invoker.name);
    sandbox::id_maps(&host.files, &host.invoker).map(drop).map_err(|err| bad(culprit, err.to_string()))
}

/// A cache directory (or, not made yet, its nearest existing parent below the home) owned by
/// another user: the build would fail writing into it, or leave files there its owner cannot
/// remove. Root may use any.
fn cache_owner(invoker: &Invoker, option: &str, cache: &Path) -> Result<(), PreflightError> {
    if invoker.uid == 0 {
        return Ok(());
    }
    let Some(existing) = nearest_existing(cache) else { return Ok(()) };
    let Ok(meta) = existing.metadata() else { return Ok(()) };
    if meta.uid() == invoker.uid || (existing != cache && meta.uid() == 0) {
        // A cache not made yet under a root-owned parent (/var/tmp) is the user's to make.
        return Ok(());
    }
    let whose = nix::unistd::User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", meta.uid()), |user| user.name);
    Err(bad(
        format!("{option} {}", cache.display()),
        format!(
            "{} is owned by {whose}, not by {}: pass --cache-dir with a directory of your own (the default is ~/.cache/mesos-image)",
            existing.display(),
            invoker.name
        ),
    ))
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|ancestor| ancestor.symlink_metadata().is_ok()).map(Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn host(dir: &Path, invoker: Invoker) -> Host {
        fs::create_dir_all(dir.join("sys")).unwrap();
        fs::create_dir_all(dir.join("bin")).unwrap();
        for helper in ["newuidmap", "newgidmap"] {
            fs::write(dir.join("bin").join(helper), "").unwrap();
        }
        let files = HostFiles {
            subuid: dir.join("subuid"),
            subgid: dir.join("subgid"),
            proc_sys: dir.join("sys"),
            path: dir.join("bin").into_os_string(),
        };
        Host { files, invoker, can_isolate: false }
    }

    fn me() -> Invoker {
        let mut invoker = Invoker::current();
        if invoker.uid == 0 {
            // As root the cache check is off; test it as the owner of the test's files would be
            // seen by another user.
            invoker = Invoker { uid: 4242, gid: 4242, name: "someone".into() };
        }
        invoker
    }

    #[test]
    fn a_user_without_a_range_is_told_what_to_add() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), me());
        let name = host.invoker.name.clone();
        fs::write(dir.path().join("subuid"), "").unwrap();
        let err = check(&host, "--cache-dir", &dir.path().join("nothing/yet")).unwrap_err().to_string();
        let head = format!("building without root as {name}: user {name} has no subordinate uid range");
        assert!(err.starts_with(&head), "{err}");
        assert!(
            err.contains(&format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}")),
            "{err}"
        );
        assert!(!err.contains('\n'));
        fs::write(dir.path().join("subuid"), format!("{name}:100000:65536\n")).unwrap();
        fs::write(dir.path().join("subgid"), format!("{name}:100000:65536\n")).unwrap();
        check(&host, "--cache-dir", &dir.path().join("nothing/yet")).unwrap();
        fs::remove_file(dir.path().join("bin/newuidmap")).unwrap();
        let err = check(&host, "--cache-dir", &dir.path().join("nothing/yet")).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "newuidmap is missing: install the package uidmap (it maps the subordinate ids of a rootless build)"
            ),
            "{err}"
        );
    }

    #[test]
    fn switched_off_user_namespaces_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), me());
        fs::create_dir_all(dir.path().join("sys/user")).unwrap();
        fs::write(dir.path().join("sys/user/max_user_namespaces"), "0\n").unwrap();
        let err = check(&host, "--cache-dir", &dir.path().join("not/yet")).unwrap_err().to_string();
        assert!(err.contains("user namespaces are disabled (user.max_user_namespaces = 0)"), "{err}");
        assert!(err.contains("sysctl -w user.max_user_namespaces="), "{err}");
    }

    #[test]
    fn a_cache_owned_by_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path(), me());
        host.can_isolate = true;
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let owner = fs::metadata(&cache).unwrap().uid();
        if owner == host.invoker.uid {
            check(&host, "--cache-dir", &cache).unwrap();
            // The same directory seen by another user.
            host.invoker.uid += 1;
        }
        let err = check(&host, "--cache-dir", &cache).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("--cache-dir {}: {} is owned by ", cache.display(), cache.display())),
            "{err}"
        );
        assert!(err.contains("pass --cache-dir with a directory of your own"), "{err}");
        // Root may use anyone's.
        host.invoker.uid = 0;
        check(&host, "--cache-dir", &cache).unwrap();
    }
}
