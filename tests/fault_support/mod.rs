//! Shared by tests/faults.rs and tests/kill.rs: the real `mesos-image build` on the fault
//! fixture elements (tests/fixtures/fault-elements), a fault injected, and the host checked
//! afterwards: no mount, no process, no loop device, no output, no temp dir, canaries intact,
//! and the next build succeeds from the cache that is left.
#![allow(dead_code)]

pub mod mirror;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Every phase that runs element scripts, in pipeline order.
pub const PHASES: [&str; 9] = [
    "root",
    "extra-data",
    "pre-install",
    "install",
    "post-install",
    "post-root",
    "pre-finalise",
    "finalise",
    "cleanup",
];

/// Where the fault-hooks scripts read their instructions, one file per image name.
const CONTROL_DIR: &str = "/run/mesos-image-faults";

pub fn elements_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault-elements")
}

/// The fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Signal the build when its progress output announces this step (a stage boundary).
    AtStep(&'static str, Signal),
    /// Signal the build while the fault-hooks script of this phase sleeps.
    InScript(&'static str, Signal),
    /// The fault-hooks script of this phase exits 3.
    FailingScript(&'static str),
}

impl Fault {
    pub fn describe(&self) -> String {
        match self {
            Fault::AtStep(step, signal) => format!("{signal:?} at the start of `{step}`"),
            Fault::InScript(phase, signal) => format!("{signal:?} inside a running {phase}.d script"),
            Fault::FailingScript(phase) => format!("a failing {phase}.d script"),
        }
    }
}

/// One case's private world: scratch dir (outputs, TMPDIR), cache dir, canaries, marker.
pub struct Case {
    pub scratch: PathBuf,
    /// ELEMENTS_PATH of the builds: the fixture elements, or a copy a test edits.
    pub elements_path: PathBuf,
    pub cache: PathBuf,
    pub marker: String,
    pub image_name: String,
    dev_canary: PathBuf,
    mounts_before: Vec<String>,
}

static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

impl Case {
    /// A fresh case with an empty cache and both canaries planted.
    pub fn new() -> Case {
        let n = NEXT_CASE.fetch_add(1, Ordering::SeqCst);
        // Digits only: it becomes the fraction of the fixture's `sleep 1000.<marker>`.
        let marker = format!("{}{:04}", std::process::id(), n);
        let scratch = PathBuf::from(format!("/var/tmp/mi-faults-{marker}"));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(scratch.join("tmp")).unwrap();
        let cache = scratch.join("cache");
        fs::create_dir_all(cache.join("apt/archives")).unwrap();
        fs::write(cache.join("apt/archives/canary"), &marker).unwrap();
        let dev_canary = PathBuf::from(format!("/dev/mesos-image-canary-{marker}"));
        fs::write(&dev_canary, &marker).unwrap();
        let image_name = format!("out{marker}");
        Case {
            scratch,
            elements_path: elements_path(),
            cache,
            marker,
            image_name,
            dev_canary,
            mounts_before: mount_points(),
        }
    }

    pub fn output(&self) -> PathBuf {
        self.scratch.join(format!("{}.qcow2", self.image_name))
    }

    /// Write the fault-hooks control file for this case (nothing to inject: an empty file).
    pub fn control(&self, fault: Option<Fault>) {
        fs::create_dir_all(CONTROL_DIR).unwrap();
        let text = match fault {
            Some(Fault::InScript(phase, _)) => format!("FAULT_AT={phase}\nFAULT_MARKER={}\n", self.marker),
            Some(Fault::FailingScript(phase)) => format!("FAULT_FAIL={phase}\n"),
            _ => String::new(),
        };
        fs::write(Path::new(CONTROL_DIR).join(&self.image_name), text).unwrap();
    }

    /// Start `mesos-image test IMAGE` (plus `extra` arguments) in its own process group (so a
    /// signal can reach it and qemu together, as a terminal's Ctrl-C does), TMPDIR in scratch.
    pub fn start_test(&self, image: &Path, extra: &[&str]) -> Running {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_mesos-image"));
        command
            .arg("test")
            .arg(image)
            .args(extra)
            .env("TMPDIR", self.scratch.join("tmp"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Running::spawn(command)
    }

    /// Start `mesos-image build` of `elements` (plus `extra` arguments); stderr is collected.
    pub fn start(&self, elements: &[&str], extra: &[&str]) -> Running {
        self.start_to(&self.output(), elements, extra)
    }

    /// As [`Self::start`], writing `output`.
    pub fn start_to(&self, output: &Path, elements: &[&str], extra: &[&str]) -> Running {
        let mut command = self.build_command(output, elements, extra);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        Running::spawn(command)
    }

    /// The `mesos-image build` command of this case, its standard streams left to the caller.
    pub fn build_command(&self, output: &Path, elements: &[&str], extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mesos-image"));
        command
            // -n: the fixture OS is a few host programs, not Debian, so disk-image-create's
            // `base` (which installs packages) is left out as DIB users do with -n.
            .args(["build", "-n", "-o"])
            .arg(output)
            .args(extra)
            .args(elements)
            .env("ELEMENTS_PATH", &self.elements_path)
            .env("DIB_RELEASE", "bookworm")
            .env("MESOS_IMAGE_CACHE_DIR", &self.cache)
            .env("TMPDIR", self.scratch.join("tmp"));
        command
    }

    /// Run a build of `elements` with `fault` injected; returns how it ended and its stderr.
    pub fn inject(&self, elements: &[&str], extra: &[&str], fault: Fault) -> (ExitStatus, String) {
        self.control(Some(fault));
        let mut build = self.start(elements, extra);
        match fault {
            Fault::AtStep(step, signal) => {
                build.wait_for_line(&format!("==> {step}"));
                build.signal(signal);
            }
            Fault::InScript(phase, signal) => {
                build.wait_for(|| !sleepers(&self.marker).is_empty(), &format!("the {phase} sleeper"));
                build.signal(signal);
            }
            Fault::FailingScript(_) => {}
        }
        build.finish(Duration::from_secs(120))
    }

    /// Everything the issue requires after a fault, except the next build (see [`Self::next_build`]).
    pub fn assert_host_clean(&self, what: &str) {
        self.assert_host_clean_but(what, false);
    }

    /// As [`Self::assert_host_clean`]; with `whole_outputs_allowed`, finished output files may
    /// remain (a signal during publishing, the commit point), but no temporary one.
    pub fn assert_host_clean_but(&self, what: &str, whole_outputs_allowed: bool) {
        let start = Instant::now();
        while !self.processes().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}: processes left: {:?}", self.processes());
            std::thread::sleep(Duration::from_millis(100));
        }
        let mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|point| !self.mounts_before.contains(point))
            .filter(|point| point.contains(self.scratch.to_str().unwrap()) || point.contains("mesos-image"))
            .collect();
        assert_eq!(mounts, Vec::<String>::new(), "{what}: mounts left");
        assert_eq!(loop_devices_on(&self.scratch), Vec::<String>::new(), "{what}: loop devices left");
        let outputs: Vec<String> = entries(&self.scratch)
            .into_iter()
            .filter(|name| name.contains("out"))
            .filter(|name| !whole_outputs_allowed || name.starts_with('.'))
            .collect();
        assert_eq!(outputs, Vec::<String>::new(), "{what}: output left");
        assert_eq!(entries(&self.scratch.join("tmp")), Vec::<String>::new(), "{what}: temp files left in TMPDIR");
        self.assert_canaries(what);
    }

    /// Work directories of this case's builds; SIGKILL leaves an empty one for the next build.
    pub fn work_dirs(&self) -> Vec<String> {
        entries(&self.cache.join("work"))
    }

    pub fn assert_canaries(&self, what: &str) {
        let apt = fs::read_to_string(self.cache.join("apt/archives/canary")).unwrap_or_default();
        assert_eq!(apt, self.marker, "{what}: the package-cache canary was touched");
        let dev = fs::read_to_string(&self.dev_canary).unwrap_or_default();
        assert_eq!(dev, self.marker, "{what}: the /dev canary was touched");
    }

    /// The next, fault-free build on the cache that is left must succeed and clean up.
    pub fn next_build(&self, elements: &[&str], what: &str) {
        self.next_build_with(elements, &[], what);
    }

    /// As [`Self::next_build`], with `extra` arguments.
    pub fn next_build_with(&self, elements: &[&str], extra: &[&str], what: &str) {
        self.control(None);
        let (status, log) = self.start(elements, extra).finish(Duration::from_secs(300));
        assert!(status.success(), "{what}: the next build failed ({status}):\n{log}");
        assert!(self.output().is_file(), "{what}: the next build wrote no image");
        assert_eq!(self.work_dirs(), Vec::<String>::new(), "{what}: work directories left after the next build");
        self.assert_canaries(what);
        self.remove_outputs();
    }

    /// Remove the image and the files beside it, so the next build must make them again.
    pub fn remove_outputs(&self) {
        for name in entries(&self.scratch) {
            if name.contains("out") {
                fs::remove_file(self.scratch.join(name)).unwrap();
            }
        }
    }

    /// Processes of this case: its marker or scratch path on their command line.
    pub fn processes(&self) -> Vec<i32> {
        let scratch = self.scratch.to_str().unwrap().to_owned();
        let marker = format!("1000.{}", self.marker);
        pids().into_iter().filter(|pid| cmdline_contains(*pid, &scratch) || cmdline_contains(*pid, &marker)).collect()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.dev_canary);
        let _ = fs::remove_file(Path::new(CONTROL_DIR).join(&self.image_name));
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}

/// A running build.
pub struct Running {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Spawn `command` (stderr piped) and collect its stderr lines.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines, reader: Some(reader) }
    }
    pub fn wait_for_line(&mut self, prefix: &str) {
        let lines = Arc::clone(&self.lines);
        self.wait_for(|| lines.lock().unwrap().iter().any(|line| line.starts_with(prefix)), prefix);
    }

    /// Poll `ready` until true; the build ending first is a test failure.
    pub fn wait_for(&mut self, mut ready: impl FnMut() -> bool, what: &str) {
        let start = Instant::now();
        while !ready() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the build ended ({status}) before {what}:\n{}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(180), "the build never reached {what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Signal the process group the command leads (see [`Case::start_test`]).
    pub fn signal_group(&self, signal: Signal) {
        nix::sys::signal::killpg(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait for the build to exit; returns its status and stderr.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < timeout, "the build did not exit within {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

/// What a signal must turn into: 130 for SIGINT, 143 for SIGTERM, death by SIGKILL.
pub fn assert_signal_exit(status: ExitStatus, signal: Signal, what: &str, log: &str) {
    match signal {
        Signal::SIGKILL => assert_eq!(status.signal(), Some(9), "{what}: {status}\n{log}"),
        other => assert_eq!(status.code(), Some(128 + other as i32), "{what}: {status}\n{log}"),
    }
}

/// A failed build's error: exactly one `error:` line.
pub fn assert_one_error_line(log: &str, what: &str, must_name: &str) {
    let errors: Vec<&str> = log.lines().filter(|line| line.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{what}: expected one error line:\n{log}");
    assert!(errors[0].contains(must_name), "{what}: the error must name {must_name:?}: {}", errors[0]);
}

pub fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .collect()
}

/// Loop devices whose backing file lies below `dir`.
pub fn loop_devices_on(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_dir("/sys/block")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let backing = fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
                    backing.contains(dir).then(|| entry.file_name().to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of the fixture's sleeping scripts (`sleep 1000.<marker>`).
pub fn sleepers(marker: &str) -> Vec<i32> {
    let wanted = format!("1000.{marker}");
    pids().into_iter().filter(|pid| cmdline_contains(*pid, &wanted)).collect()
}

pub fn pids() -> Vec<i32> {
    let own = std::process::id() as i32;
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .collect()
}

pub fn cmdline_contains(pid: i32, needle: &str) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Sorted names in `dir` (none if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}
