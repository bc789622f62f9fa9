//! `build --check-reproducible` on the fault fixture OS (tests/fixtures/fault-elements: a tree
//! of a few MiB from host programs, seconds per build, no mirror): a deterministic build
//! reports identical and exits 0; one with an element writing a random UUID to /etc/nondet
//! exits 1 and names that file with what differs inside it. The full check of a real image is
//! tests/reproducible.rs. A check stopped by a signal leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `build --check-reproducible` of fault-os and `elements`, writing `out.qcow2` in `scratch`
/// with its cache (and so the check's work directory) in `scratch/cache`.
fn command(scratch: &Path, elements: &[&str]) -> Command {
    let elements_path = format!(
        "{}:{}",
        fixtures().join("fault-elements").display(),
        fixtures().join("reproducible-elements").display()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesos-image"));
    command
        // -n: the fixture OS is a few host programs, not Debian (as tests/faults.rs builds it).
        .args(["build", "-n", "--check-reproducible", "--source-date-epoch", "1700000000", "-o"])
        .arg(scratch.join("out.qcow2"))
        .args(["fault-os"])
        .args(elements)
        .env("ELEMENTS_PATH", elements_path)
        .env("DIB_RELEASE", "bookworm")
        .env("MESOS_IMAGE_CACHE_DIR", scratch.join("cache"))
        .env("TMPDIR", scratch);
    command
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("mi-repro-check-").tempdir_in("/var/tmp").unwrap()
}

/// The check of `elements` run to its end; its output and what it left in its work directory.
fn check(elements: &[&str]) -> (Output, Vec<String>) {
    let scratch = scratch();
    let output = command(scratch.path(), elements).output().unwrap();
    (output, names(&scratch.path().join("cache/work")))
}

/// Processes whose command line is exactly `sleep 1000.1313` (the stall-second fixture's).
fn sleepers() -> Vec<u32> {
    names(Path::new("/proc"))
        .into_iter()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x001000.1313\x00"))
        .collect()
}

#[test]
#[ignore = "needs root: two real builds of the fault-os fixture element"]
fn a_deterministic_build_is_reported_identical() {
    let (output, left) = check(&[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("reproducible: identical\n"), "{stdout}\n{stderr}");
    assert_eq!(left, Vec::<String>::new(), "the check left its work directory");
}

#[test]
#[ignore = "needs root: two real builds of the fault-os fixture element"]
fn a_random_file_is_named_with_what_differs_inside_it() {
    let (output, left) = check(&["nondet"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("NOT reproducible\n"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("    /etc/nondet  [made by the build]  content\n        @@ line 1 @@\n        -"),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| l.trim() == "@@ line 1 @@").unwrap();
    let (minus, plus) = (lines[at + 1].trim(), lines[at + 2].trim());
    let uuid = |line: &str, sign: char| {
        let id = line.strip_prefix(sign).unwrap_or_default();
        id.len() == 36 && id.matches('-').count() == 4
    };
    assert!(uuid(minus, '-') && uuid(plus, '+') && minus[1..] != plus[1..], "{stdout}");
    assert!(stderr.contains("the two builds differ"), "{stderr}");
    assert_eq!(left, Vec::<String>::new(), "the check left its work directory (and the kept trees)");
}

/// SIGTERM to the check alone while its second build runs (the first build's tree kept): the
/// build is stopped too, and nothing of the check is left: no kept tree, no work directory, no
/// second outputs, no process.
#[test]
#[ignore = "needs root: real builds of the fault-os fixture element, one stopped by a signal"]
fn a_stopped_check_leaves_nothing() {
    let scratch = scratch();
    // stderr to a file, not a pipe: a build the signal failed to stop would hold a pipe open.
    let log = scratch.path().join("check.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let mut child = command(scratch.path(), &["stall-second"]).stderr(stderr).stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while sleepers().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(120), "the second build never reached stall-second");
        assert!(child.try_wait().unwrap().is_none(), "the check ended before its second build stalled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let work = scratch.path().join("cache/work");
    let kept: Vec<String> = names(&work).iter().flat_map(|dir| names(&work.join(dir))).collect();
    assert!(
        kept.contains(&"first.root".to_owned()),
        "the first tree is not kept while the second build runs: {kept:?}"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert_eq!(names(&work), Vec::<String>::new(), "the check left its work directory");
    let hidden: Vec<String> =
        names(scratch.path()).into_iter().filter(|n| n.starts_with(".check-reproducible")).collect();
    assert_eq!(hidden, Vec::<String>::new(), "the second build's directory was left");
    let started = Instant::now();
    while !sleepers().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the second build's script outlived the check");
        std::thread::sleep(Duration::from_millis(100));
    }
}
