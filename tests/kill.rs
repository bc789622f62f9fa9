//! A real `mesos-image build`, killed at several points (SIGKILL, SIGINT, SIGTERM; during a
//! host-side root.d script and during a chrooted install.d script with the chroot's mounts
//! active), must leave the host as it was: no new mount, no process of the build, no output.
//!
//! The build runs DIB-style on the `kill-os` fixture element (tests/fixtures/kill-elements),
//! which sleeps with a unique marker on its command line where the test asks.

#[path = "phases_support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .collect()
}

/// Mounts present now but not in `before` that belong to a build: below our scratch dir or
/// named after the tool (other work on the machine may mount things meanwhile).
fn new_build_mounts(before: &[String], scratch: &Path) -> Vec<String> {
    mount_points()
        .into_iter()
        .filter(|point| !before.contains(point))
        .filter(|point| point.starts_with(scratch.to_str().unwrap()) || point.contains("mesos-image"))
        .collect()
}

/// PIDs whose command line or environment carries `marker`.
fn marked_processes(marker: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            contains(&cmdline, marker.as_bytes()) || contains(&environ, marker.as_bytes())
        })
        .collect()
}

/// PIDs of the sleeping fixture script (its command line is `sleep 1000.<marker>`).
fn sleepers(marker: &str) -> Vec<i32> {
    let wanted = format!("1000.{marker}");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| contains(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(), wanted.as_bytes()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn start_build(scratch: &Path, at: &str, marker: &str) -> Child {
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kill-elements");
    Command::new(env!("CARGO_BIN_EXE_mesos-image"))
        .args(["build", "-o"])
        .arg(scratch.join("out.qcow2"))
        .arg("kill-os")
        .env("ELEMENTS_PATH", elements)
        .env("DIB_RELEASE", "bookworm")
        .env("DIB_KILL_TEST_AT", at)
        .env("DIB_KILL_TEST_MARKER", marker)
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("TMPDIR", scratch.join("tmp"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.join("build.log")).unwrap())
        .spawn()
        .unwrap()
}

const DRIVER_DIR: &str = "MESOS_IMAGE_TEST_KILL_DIR";

/// Until `build` drives the stages, the same pipeline the lead wires (isolate, tmpfs work dir,
/// hooks, root, extra-data, pre-install, install, ...), run by this test binary re-executed
/// with `DRIVER_DIR` set. Without the variable this does nothing.
#[test]
fn helper_pipeline_build() {
    let Some(scratch) = std::env::var_os(DRIVER_DIR).map(PathBuf::from) else { return };
    mesos_image::sandbox::isolate().unwrap();
    let result = std::panic::catch_unwind(|| drive_pipeline(&scratch));
    std::process::exit(match result {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            eprintln!("error: {err:#}");
            if mesos_image::sandbox::interrupted() {
                130
            } else {
                1
            }
        }
        Err(_) => 101,
    });
}

fn drive_pipeline(scratch: &Path) -> anyhow::Result<()> {
    use mesos_image::element::Phase;
    use mesos_image::stage::{cleanup, finalise, phases, root};
    let work = scratch.join("tmp/work");
    mesos_image::sandbox::mount_tmpfs(&work, 256 << 20)?;
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kill-elements");
    let mut plan = support::empty_plan();
    support::add_element(&mut plan, "kill-os", &elements.join("kill-os"));
    let reporter = mesos_image::progress::Reporter::silent();
    let dirs = support::Dirs::new(&work);
    let ctx = dirs.context(&plan, &reporter);
    phases::prepare_hooks(&ctx)?;
    root::run(&ctx)?;
    for phase in [Phase::ExtraData, Phase::PreInstall, Phase::Install, Phase::PostInstall, Phase::PostRoot] {
        phases::run_phase(&ctx, phase)?;
    }
    finalise::run(&ctx)?;
    cleanup::run(&ctx)?;
    let output = scratch.join("out.qcow2");
    fs::write(scratch.join(".out.qcow2.partial"), "image")?;
    fs::rename(scratch.join(".out.qcow2.partial"), output)?;
    Ok(())
}

fn start_driver(scratch: &Path, at: &str, marker: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_pipeline_build", "--nocapture", "--test-threads=1"])
        .env(DRIVER_DIR, scratch)
        .env("DIB_KILL_TEST_AT", at)
        .env("DIB_KILL_TEST_MARKER", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.join("build.log")).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for_sleeper(build: &mut Child, scratch: &Path, marker: &str, at: &str) {
    let start = Instant::now();
    while sleepers(marker).is_empty() {
        if let Some(status) = build.try_wait().unwrap() {
            let log = fs::read_to_string(scratch.join("build.log")).unwrap_or_default();
            panic!("the build ended ({status}) before reaching the {at} sleeper: {log}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the build never reached the {at} sleeper");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(build: &mut Child, timeout: Duration) {
    let start = Instant::now();
    while build.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < timeout, "the build did not exit after the signal");
        std::thread::sleep(Duration::from_millis(50));
    }
}

type Starter = fn(&Path, &str, &str) -> Child;

/// `driver` is a digit unique to each test: the tests run in parallel in one process, so the
/// marker (and the scratch directory named after it) must differ between them.
fn kill_case(driver: u8, start_build: Starter, signal: Signal, at: &str) {
    // Digits only: it becomes the fraction of the fixture's `sleep 1000.<marker>`.
    let marker = format!("{}{driver}{}{}", std::process::id(), signal as i32, at.len());
    let scratch = PathBuf::from(format!("/var/tmp/stages-kill-{marker}"));
    fs::create_dir_all(scratch.join("tmp")).unwrap();
    let before = mount_points();
    let mut build = start_build(&scratch, at, &marker);
    wait_for_sleeper(&mut build, &scratch, &marker, at);
    if at == "install" {
        // The chroot's mounts exist, but only inside the build's namespace.
        assert_eq!(new_build_mounts(&before, &scratch), Vec::<String>::new(), "mounts leaked to the host");
    }
    kill(Pid::from_raw(build.id() as i32), signal).unwrap();
    wait_exit(&mut build, Duration::from_secs(30));

    let start = Instant::now();
    while !marked_processes(&marker).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "processes left: {:?}", marked_processes(&marker));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(new_build_mounts(&before, &scratch), Vec::<String>::new(), "{signal:?} at {at}");
    let outputs: Vec<_> = fs::read_dir(&scratch)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("out"))
        .collect();
    assert_eq!(outputs, Vec::<String>::new(), "no output may exist after {signal:?} at {at}");
    fs::remove_dir_all(&scratch).unwrap();
}

const CASES: [(Signal, &str); 5] = [
    (Signal::SIGKILL, "root"),
    (Signal::SIGINT, "root"),
    (Signal::SIGKILL, "install"),
    (Signal::SIGINT, "install"),
    (Signal::SIGTERM, "install"),
];

#[test]
#[ignore = "needs root; drives the real `build` command on the kill-os fixture element"]
fn killed_builds_leave_no_mount_process_or_output() {
    for (signal, at) in CASES {
        kill_case(1, start_build, signal, at);
    }
}

#[test]
#[ignore = "needs root: the stages in a private namespace, killed at each point"]
fn killed_stage_pipelines_leave_no_mount_process_or_output() {
    for (signal, at) in CASES {
        kill_case(2, start_driver, signal, at);
    }
}

#[test]
#[ignore = "needs root: the stages in a private namespace on the kill-os fixture"]
fn unkilled_stage_pipeline_publishes_its_output() {
    let scratch = PathBuf::from(format!("/var/tmp/stages-kill-ok-{}", std::process::id()));
    fs::create_dir_all(scratch.join("tmp")).unwrap();
    let status = start_driver(&scratch, "nowhere", "0").wait().unwrap();
    let log = fs::read_to_string(scratch.join("build.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert!(scratch.join("out.qcow2").is_file());
    fs::remove_dir_all(&scratch).unwrap();
}
