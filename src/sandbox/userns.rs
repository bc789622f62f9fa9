//! Builds without root (DESIGN.md section 9, "Rootless"): a user namespace in which the invoking
//! user is id 0 and ids 1..65536 are the user's subordinate range (`/etc/subuid`,
//! `/etc/subgid`, mapped by the setuid helpers `newuidmap`/`newgidmap` of package `uidmap`).
//! Inside it the build has the capabilities its mount and PID namespaces, chroot and `chown`
//! need, and every file is owned by the same in-namespace id as in a root build, so
//! `mkfs.ext4 -d` and `tar --numeric-owner`, run inside, record the same owners.
//!
//! Root without CAP_SYS_ADMIN (a container without `--privileged`) maps ids 0..65535 onto
//! themselves instead: it holds CAP_SETUID/CAP_SETGID, which is what such a map needs.
//!
//! A build with a single id (no subordinate range) is not offered: every Debian tree has files
//! owned by other ids (`/etc/shadow` is `root:shadow`, apt's `_apt`), so it would fail at the
//! first `chown`; the one line of [`UsernsError::NoRange`] says what to add instead.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Gid, Pid, Uid};

/// Ids a build needs inside besides 0: Debian's static ids go up to 65534 (`nobody`,
/// `nogroup`); a whole 64 Ki block is what `useradd` hands out by default.
pub const NEEDED_IDS: u32 = 65536;

/// CAP_SYS_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// What stands between this user and a rootless build; each is one line with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespaces are disabled ({setting} = 0): enable them with `sysctl -w {setting}={enable}` (as root), or build as root")]
    Disabled { setting: &'static str, enable: &'static str },
    #[error("user {user} has no subordinate {kind} range in {file}, and a build needs ids beyond its own (Debian's files belong to root, shadow, _apt, ...): add one with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (as root)")]
    NoRange { user: String, kind: &'static str, file: PathBuf },
    #[error("user {user}'s subordinate {kind} range in {file} holds {count} ids; a build needs {NEEDED_IDS}: add one with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (as root)")]
    SmallRange { user: String, kind: &'static str, file: PathBuf, count: u32 },
    #[error("{program} is missing: install the package uidmap (it maps the subordinate ids of a rootless build)")]
    NoHelper { program: &'static str },
}

/// One line of a uid_map or gid_map: `count` ids from `inside` on are `outside` on in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of a build's user namespace, and who writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// Written with newuidmap/newgidmap (an ordinary user's subordinate ranges), else directly
    /// (root's identity map, allowed by CAP_SETUID/CAP_SETGID).
    pub helpers: bool,
}

/// The host files and settings a rootless build depends on; tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    /// `/proc/sys`, where the user-namespace switches are.
    pub proc_sys: PathBuf,
    /// Where newuidmap and newgidmap are looked up (`PATH` plus the sbin directories).
    pub path: OsString,
}

impl HostFiles {
    pub fn system() -> HostFiles {
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        path.push(":/usr/sbin:/usr/bin:/sbin:/bin");
        HostFiles {
            subuid: PathBuf::from("/etc/subuid"),
            subgid: PathBuf::from("/etc/subgid"),
            proc_sys: PathBuf::from("/proc/sys"),
            path,
        }
    }
}

/// Who runs the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

impl Invoker {
    pub fn current() -> Invoker {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|user| user.name);
        Invoker {
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            name: name.unwrap_or_else(|| uid.to_string()),
        }
    }
}

/// Whether this process may create mount and PID namespaces itself (root with CAP_SYS_ADMIN,
/// or already inside the build's user namespace).
pub fn can_isolate() -> bool {
    effective_capabilities().is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The id maps a build of `invoker` would get, or the one thing missing for it.
pub fn id_maps(files: &HostFiles, invoker: &Invoker) -> Result<IdMaps, UsernsError> {
    namespaces_enabled(&files.proc_sys, invoker.uid == 0)?;
    if invoker.uid == 0 {
        let identity = vec![IdRange { inside: 0, outside: 0, count: NEEDED_IDS }];
        return Ok(IdMaps { uids: identity.clone(), gids: identity, helpers: false });
    }
    let uid_range = subordinate_range(&files.subuid, invoker, "uid")?;
    let gid_range = subordinate_range(&files.subgid, invoker, "gid")?;
    for program in ["newuidmap", "newgidmap"] {
        if find_program(&files.path, program).is_none() {
            return Err(UsernsError::NoHelper { program });
        }
    }
    let own = |id| IdRange { inside: 0, outside: id, count: 1 };
    let rest = |start| IdRange { inside: 1, outside: start, count: NEEDED_IDS };
    Ok(IdMaps {
        uids: vec![own(invoker.uid), rest(uid_range)],
        gids: vec![own(invoker.gid), rest(gid_range)],
        helpers: true,
    })
}

/// Debian's `kernel.unprivileged_userns_clone` (unprivileged users only) and the generic
/// `user.max_user_namespaces` (everyone); a missing file means the kernel has no such switch.
fn namespaces_enabled(proc_sys: &Path, root: bool) -> Result<(), UsernsError> {
    let off = |file: &str| fs::read_to_string(proc_sys.join(file)).is_ok_and(|value| value.trim() == "0");
    if off("user/max_user_namespaces") {
        return Err(UsernsError::Disabled { setting: "user.max_user_namespaces", enable: "15000" });
    }
    if !root && off("kernel/unprivileged_userns_clone") {
        return Err(UsernsError::Disabled { setting: "kernel.unprivileged_userns_clone", enable: "1" });
    }
    Ok(())
}

/// The start of the invoker's first range of at least [`NEEDED_IDS`] ids in `file`
/// (`name-or-uid:start:count` lines).
fn subordinate_range(file: &Path, invoker: &Invoker, kind: &'static str) -> Result<u32, UsernsError> {
    let text = fs::read_to_string(file).unwrap_or_default();
    let uid = invoker.uid.to_string();
    let ranges: Vec<(u32, u32)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse().ok()?;
            let count = fields.next()?.trim().parse().ok()?;
            (owner == invoker.name || owner == uid).then_some((start, count))
        })
        .collect();
    if let Some((start, _)) = ranges.iter().find(|(_, count)| *count >= NEEDED_IDS) {
        return Ok(*start);
    }
    let user = invoker.name.clone();
    let file = file.to_owned();
    match ranges.iter().map(|(_, count)| *count).max() {
        Some(count) => Err(UsernsError::SmallRange { user, kind, file, count }),
        None => Err(UsernsError::NoRange { user, kind, file }),
    }
}

fn find_program(path: &OsString, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Move this process into a new user namespace with `maps` (see the module docs). Call it
/// while the process has a single thread: it forks the helper that writes the maps from the
/// parent namespace, which this process, once inside, can no longer do.
pub fn enter(maps: &IdMaps) -> anyhow::Result<()> {
    let (unshared_read, unshared_write) = pipe().context("cannot create a pipe for the id-map helper")?;
    let me = nix::unistd::getpid();
    // SAFETY: single-threaded (the caller's contract); the child only reads a pipe, runs the
    // helpers and exits.
    match unsafe { fork() }.context("cannot fork the id-map helper")? {
        ForkResult::Child => {
            drop(unshared_write);
            let mut byte = [0u8; 1];
            let code = match nix::unistd::read(&unshared_read, &mut byte) {
                Ok(1) if byte[0] == 1 => match write_maps(me, maps) {
                    Ok(()) => 0,
                    Err(err) => {
                        eprintln!("error: {err:#}");
                        1
                    }
                },
                _ => 1,
            };
            // SAFETY: leave without running the parent's exit handlers or destructors twice.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(unshared_read);
            let unshared = unshare(CloneFlags::CLONE_NEWUSER);
            let _ = nix::unistd::write(&unshared_write, &[u8::from(unshared.is_ok())]);
            drop(unshared_write);
            let helper = waitpid(child, None).context("cannot wait for the id-map helper")?;
            unshared.context("cannot create a user namespace for the build")?;
            if helper != WaitStatus::Exited(child, 0) {
                anyhow::bail!("cannot map the build's ids into its user namespace (see above)");
            }
            become_root()
        }
    }
}

/// Inside the new namespace: our own ids are already 0 (the maps say so); drop the host's
/// supplementary groups, which mean nothing here (they show as `nogroup`).
fn become_root() -> anyhow::Result<()> {
    nix::unistd::setgroups(&[]).context("cannot drop supplementary groups in the user namespace")?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .context("cannot become gid 0 in the user namespace")?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .context("cannot become uid 0 in the user namespace")?;
    Ok(())
}

/// In the helper, from the parent namespace: write `pid`'s maps.
fn write_maps(pid: Pid, maps: &IdMaps) -> anyhow::Result<()> {
    if maps.helpers {
        run_map_helper("newuidmap", pid, &maps.uids)?;
        run_map_helper("newgidmap", pid, &maps.gids)
    } else {
        write_map_file(pid, "uid_map", &maps.uids)?;
        write_map_file(pid, "gid_map", &maps.gids)
    }
}

fn run_map_helper(program: &str, pid: Pid, ranges: &[IdRange]) -> anyhow::Result<()> {
    let mut command = Command::new(program);
    command.arg(pid.to_string());
    for range in ranges {
        command.args([range.inside.to_string(), range.outside.to_string(), range.count.to_string()]);
    }
    let output = command.output().with_context(|| format!("cannot run {program} (package uidmap)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!("{program} failed: {}", stderr.trim());
    }
    Ok(())
}

fn write_map_file(pid: Pid, file: &str, ranges: &[IdRange]) -> anyhow::Result<()> {
    let text: String = ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect();
    let path = format!("/proc/{pid}/{file}");
    fs::write(&path, text).with_context(|| format!("cannot write {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("sys/user")).unwrap();
            fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
            fs::create_dir_all(dir.path().join("bin")).unwrap();
            for helper in ["newuidmap", "newgidmap"] {
                fs::write(dir.path().join("bin").join(helper), "").unwrap();
            }
            fs::write(dir.path().join("subuid"), "alice:100000:65536\n").unwrap();
            fs::write(dir.path().join("subgid"), "1001:300000:70000\n").unwrap();
            Host { dir }
        }

        fn files(&self) -> HostFiles {
            let dir = self.dir.path();
            HostFiles {
                subuid: dir.join("subuid"),
                subgid: dir.join("subgid"),
                proc_sys: dir.join("sys"),
                path: dir.join("bin").into_os_string(),
            }
        }

        fn write(&self, name: &str, text: &str) {
            fs::write(self.dir.path().join(name), text).unwrap();
        }
    }

    fn alice() -> Invoker {
        Invoker { uid: 1001, gid: 1002, name: "alice".into() }
    }

    #[test]
    fn the_user_is_root_inside_and_the_range_follows() {
        let host = Host::new();
        let maps = id_maps(&host.files(), &alice()).unwrap();
        assert!(maps.helpers);
        assert_eq!(
            maps.uids,
            [IdRange { inside: 0, outside: 1001, count: 1 }, IdRange { inside: 1, outside: 100000, count: 65536 }]
        );
        // subgid names the user by uid.
        assert_eq!(maps.gids[0], IdRange { inside: 0, outside: 1002, count: 1 });
        assert_eq!(maps.gids[1].outside, 300000);
    }

    #[test]
    fn root_without_the_capability_maps_its_ids_onto_themselves() {
        let host = Host::new();
        host.write("subuid", "");
        let root = Invoker { uid: 0, gid: 0, name: "root".into() };
        let maps = id_maps(&host.files(), &root).unwrap();
        assert!(!maps.helpers);
        assert_eq!(maps.uids, [IdRange { inside: 0, outside: 0, count: NEEDED_IDS }]);
    }

    #[test]
    fn each_missing_piece_is_one_line_with_its_fix() {
        let host = Host::new();
        host.write("subuid", "bob:100000:65536\n# alice:1:2\n");
        let err = id_maps(&host.files(), &alice()).unwrap_err().to_string();
        assert!(err.contains("no subordinate uid range") && err.contains("usermod --add-subuids"), "{err}");
        assert!(err.contains(" alice") && !err.contains('\n'), "{err}");

        host.write("subuid", "alice:100000:1000\n");
        let err = id_maps(&host.files(), &alice()).unwrap_err().to_string();
        assert!(err.contains("holds 1000 ids") && err.contains("65536"), "{err}");

        let host = Host::new();
        fs::remove_file(host.dir.path().join("bin/newgidmap")).unwrap();
        let err = id_maps(&host.files(), &alice()).unwrap_err().to_string();
        assert_eq!(
            err,
            "newgidmap is missing: install the package uidmap (it maps the subordinate ids of a rootless build)"
        );
    }

    #[test]
    fn disabled_user_namespaces_are_named_by_their_switch() {
        let host = Host::new();
        host.write("sys/kernel/unprivileged_userns_clone", "0\n");
        let err = id_maps(&host.files(), &alice()).unwrap_err().to_string();
        assert!(err.contains("kernel.unprivileged_userns_clone = 0"), "{err}");
        assert!(err.contains("sysctl -w kernel.unprivileged_userns_clone=1"), "{err}");
        // That switch binds unprivileged users only.
        let root = Invoker { uid: 0, gid: 0, name: "root".into() };
        assert!(id_maps(&host.files(), &root).is_ok());
        host.write("sys/user/max_user_namespaces", "0\n");
        let err = id_maps(&host.files(), &root).unwrap_err().to_string();
        assert!(err.contains("user.max_user_namespaces = 0"), "{err}");
    }
}
