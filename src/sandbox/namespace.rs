//! A private mount and PID namespace for the whole build.
//!
//! Process layout after [`isolate`]:
//!
//! ```text
//! tool (host PID ns)            forwards SIGINT/SIGTERM/SIGHUP, exits with the build's status
//!  └─ init (PID 1 of the new ns) parent-death signal SIGKILL; reaps orphans; forwards signals
//!      └─ build (PID 2)          returns from isolate() and runs the rest of the build
//! ```
//!
//! When the tool dies by any signal, init gets SIGKILL; when a PID namespace's init dies the
//! kernel kills every process in it, and the mount namespace (with every mount the build made)
//! goes away with its last process. Nothing propagates back to the host because the whole
//! mount tree is made private before anything is mounted.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// Signals a user (or a service manager) sends to stop a build.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Where the supervising processes forward stop signals.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// Set in the build process once a stop signal arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Which stop signal arrived, for the exit status (128 + N, as a shell reports a killed job).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The build was stopped by SIGINT, SIGTERM or SIGHUP.
#[derive(Debug, thiserror::Error)]
#[error("build interrupted by a signal")]
pub struct Interrupted;

/// Move the rest of the build into a private mount and PID namespace (see the module docs).
///
/// Call it once, early, while the process has a single thread: it forks twice. It returns
/// `Ok(())` in the build process; the original process never returns from it (it waits for the
/// build and exits with its status). Needs CAP_SYS_ADMIN: root's, or a user namespace's
/// (`super::ensure_privileges`).
pub fn isolate() -> anyhow::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .context("cannot create private mount and PID namespaces for the build")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("cannot make the build's mount namespace private")?;
    // The tool keeps the write end open until it exits; init sees EOF on the read end if the tool
    // died before init could arm its parent-death signal (which would then never fire).
    let (alive_read, alive_write) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("cannot create the liveness pipe")?;
    // SAFETY: the caller guarantees a single-threaded process; the child continues normally.
    match unsafe { fork() }.context("cannot fork the build's init process")? {
        ForkResult::Parent { child } => {
            drop(alive_read);
            let code = supervise(child, WaitFor::Child);
            drop(alive_write);
            std::process::exit(code)
        }
        ForkResult::Child => {
            drop(alive_write);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("cannot set the parent-death signal")?;
            if tool_is_gone(&alive_read) {
                std::process::exit(1);
            }
            drop(alive_read);
            become_init()
        }
    }
}

/// True once a stop signal reached the build.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The stop signal that reached the build, if one did.
pub fn stop_signal() -> Option<i32> {
    Some(STOP_SIGNAL.load(Ordering::SeqCst)).filter(|signal| *signal > 0)
}

/// `Err(Interrupted)` once a stop signal reached the build: call between steps so an
/// interrupted build stops before starting the next command.
pub fn check_interrupted() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// For commands that run no sandbox (`test`): remember a stop signal instead of dying at once,
/// so the command unwinds (killing its VM, removing its temporary directory) and exits with
/// 128 + the signal. Callers poll [`check_interrupted`].
pub fn catch_stop_signals() -> anyhow::Result<()> {
    install_handler(on_stop_remember).context("cannot install signal handlers")
}

extern "C" fn on_stop_remember(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn tool_is_gone(alive_read: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    // EOF means every write end is closed: the tool has exited. EAGAIN means it is alive.
    matches!(nix::unistd::read(alive_read, &mut byte), Ok(0))
}

/// In PID 1 of the new namespace: fork the build process, then reap until it exits.
fn become_init() -> anyhow::Result<()> {
    // SAFETY: still single-threaded (we are a fresh fork of a single-threaded process).
    match unsafe { fork() }.context("cannot fork the build process")? {
        ForkResult::Parent { child } => std::process::exit(supervise(child, WaitFor::AnyChild)),
        ForkResult::Child => {
            install_handler(on_stop_in_build).context("cannot install the build's signal handlers")?;
            Ok(())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    /// Only our child exists (the tool process).
    Child,
    /// We are init: orphans are reparented to us and must be reaped too.
    AnyChild,
}

/// Forward stop signals to `child` and wait for it; returns the exit code to use.
fn supervise(child: Pid, wait_for: WaitFor) -> i32 {
    FORWARD_TO.store(child.as_raw(), Ordering::SeqCst);
    if install_handler(forward_stop_signal).is_err() {
        // Without forwarding, a Ctrl-C still reaches the build through the process group.
        eprintln!("warning: cannot install signal forwarding for the build");
    }
    let target = match wait_for {
        WaitFor::Child => {
            hang_up_when_output_is_lost(child);
            Some(child)
        }
        WaitFor::AnyChild => None,
    };
    loop {
        match waitpid(target, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => return 128 + signal as i32,
            // A reaped orphan (a daemon a postinst left behind) or a stop/continue report.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

/// Stop the build as a hangup does once nobody reads its output: the process that started it
/// (a nodepool-builder, a CI job) died and closed the pipe our stdout and stderr write into. A
/// shell script would die of SIGPIPE at its next line; the build might print nothing for
/// minutes (a long, quiet script) and then fail where it cannot clean up. Returns when the
/// build has exited, the hangup is sent, or there is nothing to watch. No thread: after
/// unshare(CLONE_NEWPID) this process cannot start one, so the wait is one poll on the build's
/// pidfd and both streams.
fn hang_up_when_output_is_lost(child: Pid) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, FromRawFd};
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    let Ok(raw) = i32::try_from(raw) else { return };
    if raw < 0 {
        return; // A kernel without pidfds (before 5.3): a lost reader is noticed at the next line.
    }
    // SAFETY: a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    // No event is asked of the streams: only POLLERR/POLLHUP (a pipe or socket whose reader has
    // gone) can wake the wait; files, terminals and /dev/null never report one.
    let mut fds = [
        PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        PollFd::new(stdout.as_fd(), PollFlags::empty()),
        PollFd::new(stderr.as_fd(), PollFlags::empty()),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let [build, streams @ ..] = &fds;
                if build.revents().is_some_and(|events| !events.is_empty()) {
                    return; // The build exited.
                }
                let events = streams.iter().filter_map(PollFd::revents).fold(PollFlags::empty(), |all, one| all | one);
                if events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                    // SAFETY: kill(2) on our own child.
                    unsafe { libc::kill(child.as_raw(), libc::SIGHUP) };
                    return;
                }
                if !events.is_empty() {
                    return; // POLLNVAL: a stream that was never open (`>&-`); polling would spin.
                }
            }
            // A stop signal was forwarded meanwhile.
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

fn install_handler(handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    let action = SigAction::new(SigHandler::Handler(handler), SaFlags::SA_RESTART, SigSet::empty());
    for signal in STOP_SIGNALS {
        // SAFETY: the handlers only call async-signal-safe functions (kill) and touch atomics.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

extern "C" fn forward_stop_signal(signal: libc::c_int) {
    let child = FORWARD_TO.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(child, signal) };
    }
}

/// In the build process: remember the stop, and kill every other process of the namespace
/// (kill(-1) spares init and the caller), so the running command fails at once and the build
/// unwinds through its normal error path, dropping its mount guards.
extern "C" fn on_stop_in_build(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
    // SAFETY: kill(2) is async-signal-safe.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}
