//! Host-side element code (environment.d sourced while planning) runs before the build's PID
//! namespace exists. Each such child gets a process group of its own that the tool kills:
//! when the child ends (so a backgrounded grandchild does not outlive it), when its time limit
//! runs out, and when the tool is stopped by SIGINT, SIGTERM or SIGHUP while it runs.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The process group of the child running now (0: none). One at a time: planning is sequential.
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);

/// How often the wait loop looks at the child.
const POLL: Duration = Duration::from_millis(10);

/// What a bounded child produced.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    /// With what it wrote on stderr until then, to tell where it hung.
    #[error("still running after {} s, killed", limit.as_secs_f64())]
    TimedOut { limit: Duration, stderr: Vec<u8> },
}

/// Run `command` (stdin closed, stdout and stderr captured) in a process group of its own,
/// killed as a whole when it exits, after `limit`, or when the tool is stopped meanwhile.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Result<Finished, ChildError> {
    let previous = install_stop_handler();
    let result = run_in_group(command, limit);
    restore_handlers(previous);
    result
}

fn run_in_group(command: &mut Command, limit: Duration) -> Result<Finished, ChildError> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // A stop signal between spawn and noting the group would leave the child running: hold
    // stop signals until the group is noted (the child unblocks them for itself).
    let stops: SigSet = STOP_SIGNALS.iter().copied().collect();
    let restore = |mask: Option<SigSet>| {
        if let Some(mask) = mask {
            let _ = mask.thread_set_mask();
        }
    };
    let before = stops.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
    // SAFETY: sigprocmask(2) is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            restore(before);
            Ok(())
        });
    }
    let spawned = command.spawn();
    if let Ok(child) = &spawned {
        RUNNING_GROUP.store(child.id() as i32, Ordering::SeqCst);
    }
    restore(before);
    let mut child = spawned.map_err(ChildError::Spawn)?;
    let group = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= limit => break None,
            Ok(None) => std::thread::sleep(POLL),
            Err(_) => break None,
        }
    };
    // The whole group, every time: what the child left running in the background dies with it
    // (and the pipes close, so the readers finish).
    let _ = killpg(group, Signal::SIGKILL);
    RUNNING_GROUP.store(0, Ordering::SeqCst);
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader.and_then(|handle| handle.join().ok()).unwrap_or_default()
    };
    match status {
        Some(status) => Ok(Finished { status, stdout: collect(stdout), stderr: collect(stderr) }),
        None => {
            let _ = child.wait();
            Err(ChildError::TimedOut { limit, stderr: collect(stderr) })
        }
    }
}

fn drain<R: Read + Send + 'static>(mut reader: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// While a child runs, a stop signal kills its group, then exits 128 + N as every stopped
/// command does (README, "Exit status"). Returns the handlers it replaced.
fn install_stop_handler() -> Vec<(Signal, SigAction)> {
    let action = SigAction::new(SigHandler::Handler(kill_group_and_die), SaFlags::empty(), SigSet::empty());
    let mut previous = Vec::new();
    for signal in STOP_SIGNALS {
        // SAFETY: the handler calls only async-signal-safe functions (kill, _exit).
        if let Ok(old) = unsafe { sigaction(signal, &action) } {
            previous.push((signal, old));
        }
    }
    previous
}

fn restore_handlers(previous: Vec<(Signal, SigAction)>) {
    for (signal, action) in previous {
        // SAFETY: puts back what was installed before.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

extern "C" fn kill_group_and_die(signal: nix::libc::c_int) {
    let group = RUNNING_GROUP.load(Ordering::SeqCst);
    // SAFETY: kill(2) and _exit(2) are async-signal-safe.
    unsafe {
        if group > 0 {
            nix::libc::kill(-group, nix::libc::SIGKILL);
        }
        nix::libc::_exit(128 + signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_and_background_children_die_with_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("bg.pid");
        let script = format!("sleep 300 & echo $! > {}; echo out; echo err >&2", pid_file.display());
        let done = run_bounded(Command::new("bash").arg("-c").arg(script), Duration::from_secs(10)).unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        // Gone, or a zombie until init reaps it.
        assert!(stat.is_empty() || stat.contains(") Z "), "background sleep still running: {stat}");
    }

    #[test]
    fn a_child_past_its_limit_is_killed() {
        let started = Instant::now();
        let err = run_bounded(Command::new("bash").arg("-c").arg("while :; do :; done"), Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, ChildError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
