//! The janitor of a rootless build: removes the build's work directories once every process of
//! the build's user namespace is gone, however the tool ended (SIGKILL included).
//!
//! A rootless build's tree holds files owned by subordinate ids (`_apt`, `man`, ...) in
//! directories owned by them; outside the namespace the user cannot delete those. The work dir
//! is normally removed by the build itself; after a SIGKILL nobody inside is left to do it. So
//! right after entering the namespace the tool forks this process: inside the user namespace
//! (it may delete what any mapped id owns), outside the build's mount and PID namespaces (it
//! outlives them and sees no bind mount of the build), in its own session (a Ctrl-C or a
//! signal to the tool's process group does not reach it). It reads directory names from a pipe
//! whose write end every process of the tool holds (close-on-exec, so programs the build runs
//! do not); end of file means the tool and all its forks are dead. It then waits until no
//! other process is left in the namespace and removes what is still there.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, pipe2, ForkResult};

/// The write end of the janitor's pipe, or -1 when there is none (a root build).
static JANITOR: AtomicI32 = AtomicI32::new(-1);

/// How long the janitor waits for the namespace's last processes (killed with their PID
/// namespace, or a forked build finishing) before removing anyway.
const GRACE: Duration = Duration::from_secs(60);

/// Start the janitor. Call once, in the user namespace, while single-threaded.
pub fn start() -> anyhow::Result<()> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("cannot create the janitor's pipe")?;
    // SAFETY: single-threaded (the caller's contract); the child runs the janitor and exits.
    match unsafe { fork() }.context("cannot fork the janitor")? {
        ForkResult::Child => {
            drop(write_end);
            janitor(read_end)
        }
        ForkResult::Parent { .. } => {
            drop(read_end);
            JANITOR.store(write_end.as_raw_fd(), Ordering::SeqCst);
            // Kept open for the rest of this process's life: its closing is the signal.
            std::mem::forget(write_end);
            Ok(())
        }
    }
}

/// Have the janitor remove `dir` after the tool is gone, if it is still there then. A no-op
/// without a janitor (a root build, whose leftovers root can remove).
pub fn remove_on_exit(dir: &Path) {
    let fd = JANITOR.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let mut message = dir.as_os_str().as_bytes().to_vec();
    message.push(0);
    // SAFETY: the descriptor stays open for the life of the process (see `start`).
    let pipe = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // One write below PIPE_BUF is atomic, so names from several processes never interleave.
    if nix::unistd::write(pipe, &message).is_err() {
        tracing::warn!("cannot hand {} to the janitor", dir.display());
    }
}

/// The janitor's whole life; never returns.
fn janitor(read_end: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    for stop in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: ignoring a signal installs no handler code.
        let _ = unsafe { signal(stop, SigHandler::SigIgn) };
    }
    quiet_standard_streams();
    let dirs = read_names(read_end);
    wait_until_alone(GRACE);
    for dir in dirs.iter().filter(|dir| dir.symlink_metadata().is_ok()) {
        if let Err(err) = super::mounts::remove_tree(dir) {
            eprintln!("warning: the janitor could not remove {}: {err}", dir.display());
        }
    }
    std::process::exit(0)
}

/// Standard input and output go to /dev/null: a caller reading the tool's output until end of
/// file is not kept waiting by the janitor (standard error stays, for its one warning).
fn quiet_standard_streams() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Every NUL-terminated name written to the pipe until its end.
fn read_names(read_end: OwnedFd) -> Vec<PathBuf> {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(read_end).read_to_end(&mut bytes);
    let mut names: Vec<PathBuf> = bytes
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(OsString::from_vec(name.to_vec())))
        .collect();
    names.dedup();
    names
}

/// Wait until this is the only process left in its user namespace (or `grace` passed).
fn wait_until_alone(grace: Duration) {
    let Ok(mine) = std::fs::read_link("/proc/self/ns/user") else { return };
    let me = std::process::id().to_string();
    let started = Instant::now();
    while started.elapsed() < grace {
        let others = std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let is_pid = name.as_bytes().iter().all(u8::is_ascii_digit);
            is_pid
                && name != me.as_str()
                && std::fs::read_link(entry.path().join("ns/user")).is_ok_and(|ns| ns == mine)
                && !is_zombie(&entry.path())
        });
        if !others {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process that has exited and waits to be reaped: the tool itself, once its caller (blocked
/// reading the output this janitor still holds) has not yet waited for it. It runs nothing.
fn is_zombie(proc_dir: &Path) -> bool {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    matches!(state, Some('Z' | 'X'))
}

/// For tests: a pipe handed to [`remove_on_exit`] in place of a janitor's.
#[cfg(test)]
fn attach(fd: i32) {
    JANITOR.store(fd, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cross_the_pipe_whole_and_once() {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).unwrap();
        attach(write_end.as_raw_fd());
        remove_on_exit(Path::new("/var/tmp/a b/build-1"));
        remove_on_exit(Path::new("/var/tmp/a b/build-1"));
        remove_on_exit(Path::new("/x\ny"));
        attach(-1);
        drop(write_end);
        let names = read_names(read_end);
        assert_eq!(names, [PathBuf::from("/var/tmp/a b/build-1"), PathBuf::from("/x\ny")]);
    }

    #[test]
    fn a_zombie_runs_nothing() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        let started = Instant::now();
        while !is_zombie(&proc_dir) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_zombie(&proc_dir), "an exited, unreaped child is a zombie");
        child.wait().unwrap();
        assert!(!is_zombie(Path::new("/proc/self")));
    }

    #[test]
    fn alone_is_seen_at_once() {
        // Outside a build this test shares its user namespace with the whole host: the wait
        // must end at the grace period, not hang.
        let started = Instant::now();
        wait_until_alone(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
