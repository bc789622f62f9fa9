//! The sandbox's guarantees, tested with real namespaces, mounts and signals (root only):
//! an isolated build killed by SIGKILL or SIGINT leaves no mount and no process on the host,
//! orphans are reaped, and chroot mounts are gone after their guard drops.

#[path = "phases_support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mesos_image::sandbox::{self, chroot_command, Bind, ChrootMounts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const MARKER: &str = "MESOS_IMAGE_TEST_MARKER";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/stages-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mount points under `dir` as the host (this test process) sees them.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| point.starts_with(dir.to_str().unwrap()))
        .collect()
}

/// Host PIDs of live processes whose environment carries `marker`.
fn marked_processes(marker: &str) -> Vec<i32> {
    let needle = format!("{MARKER}={marker}");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|b| *b == 0).any(|var| var == needle.as_bytes())
        })
        .collect()
}

/// (pid, state) of the children of `parent`.
fn children(parent: i32) -> Vec<(i32, char)> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let mut fields = after_name.split(' ');
            let state = fields.next()?.chars().next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < timeout, "the isolated build did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `examples/sandbox_helper`, which `cargo test` builds beside the test binaries
/// (`target/<profile>/examples`, one level up from this binary's `deps`).
fn helper_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let helper = exe.parent().and_then(Path::parent).unwrap().join("examples/sandbox_helper");
    assert!(helper.is_file(), "{} missing: build it with `cargo test` (it builds examples)", helper.display());
    helper
}

fn start_helper(dir: &Path, marker: &str) -> Child {
    Command::new(helper_binary()).arg(dir).env(MARKER, marker).spawn().unwrap()
}

fn kill_isolated_build(signal: Signal) {
    if !support::is_root() {
        panic!("this test needs root");
    }
    let dir = scratch(&format!("{signal:?}"));
    let marker = format!("{signal:?}-{}", std::process::id());
    let mut helper = start_helper(&dir, &marker);
    wait_until("the helper to be ready", Duration::from_secs(30), || dir.join("ready").exists());

    // The mounts exist inside the namespace, but none is visible on the host.
    let inside = fs::read_to_string(dir.join("ready")).unwrap();
    assert!(inside.contains("tmpfs") && inside.contains("tree/x"), "mounts inside: {inside}");
    assert_eq!(host_mounts_under(&dir), Vec::<String>::new());
    // The sleeper and the orphan run; the short-lived orphan was reaped by init, no zombie.
    wait_until("both sleepers", Duration::from_secs(5), || marked_processes(&marker).len() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let init = children(helper.id() as i32);
    assert_eq!(init.len(), 1, "the tool has one child, the namespace's init: {init:?}");
    let zombies: Vec<_> = children(init[0].0).into_iter().filter(|(_, state)| *state == 'Z').collect();
    assert_eq!(zombies, Vec::new(), "init must reap orphans");

    kill(Pid::from_raw(helper.id() as i32), signal).unwrap();
    let status = wait_child(&mut helper, Duration::from_secs(10));
    if signal == Signal::SIGINT {
        assert_eq!(status.code(), Some(130), "an interrupted build exits through its error path");
    }
    wait_until("the build's processes to die", Duration::from_secs(5), || marked_processes(&marker).is_empty());
    assert_eq!(host_mounts_under(&dir), Vec::<String>::new());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs root: creates namespaces and mounts"]
fn sigkill_of_an_isolated_build_leaves_no_mount_and_no_process() {
    kill_isolated_build(Signal::SIGKILL);
}

#[test]
#[ignore = "needs root: creates namespaces and mounts"]
fn sigint_of_an_isolated_build_leaves_no_mount_and_no_process() {
    kill_isolated_build(Signal::SIGINT);
}

#[test]
#[ignore = "needs root: creates namespaces and mounts"]
fn sigterm_of_an_isolated_build_leaves_no_mount_and_no_process() {
    kill_isolated_build(Signal::SIGTERM);
}

#[test]
#[ignore = "needs root: mounts /proc, /sys and /dev into a tree"]
fn chroot_mounts_serve_a_chrooted_command_and_vanish_on_drop() {
    let dir = scratch("chroot");
    let tree = dir.join("tree");
    support::tiny_tree(&tree, &["bash"]);
    fs::create_dir_all(dir.join("hooks")).unwrap();
    fs::write(dir.join("hooks/hello"), "from the host\n").unwrap();
    {
        let mounts = ChrootMounts::mount(&tree, &[Bind::read_only(dir.join("hooks"), "/tmp/in_target.d")]).unwrap();
        let points = sandbox::mount_points_under(&tree).unwrap();
        for expected in ["proc", "sys", "dev", "dev/pts", "dev/null", "tmp/in_target.d"] {
            assert!(points.contains(&tree.join(expected)), "{expected} not mounted: {points:?}");
        }
        let script = "read -r line < /tmp/in_target.d/hello; echo \"$line\"; \
                      read -r stat < /proc/self/stat; echo \"${stat%% *}\"; echo x > /dev/null; \
                      echo nope > /tmp/in_target.d/new 2>/dev/null && echo writable || echo read-only";
        let output = chroot_command(&tree, "bash").unwrap().args(["-c", script]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.starts_with("from the host\n"), "{stdout}");
        assert!(stdout.ends_with("read-only\n"), "the hooks dir must be read-only: {stdout}");
        // A tree with something mounted inside must not be deletable.
        let err = sandbox::remove_tree(&tree).unwrap_err();
        assert!(err.to_string().contains("still mounted"), "{err}");
        assert!(dir.join("hooks/hello").exists());
        drop(mounts);
    }
    assert_eq!(sandbox::mount_points_under(&tree).unwrap(), Vec::<PathBuf>::new());
    sandbox::remove_tree(&dir).unwrap();
    assert!(!dir.exists());
}
