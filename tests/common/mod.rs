//! Helpers for the end-to-end tests that drive the real `mesos-image` binary.
//!
//! All of them share one cache directory (`MESOS_IMAGE_CACHE_DIR`, else a fixed path under
//! /var/tmp), so an image one test builds is restored from the stage cache by the next.

#![allow(dead_code)]

pub mod upstream;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mesos-image")
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The stdout of `command`, which must succeed (its stderr in the panic otherwise).
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `tests/fixtures/PATH`.
pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// Our shipped elements.
pub fn elements_dir() -> PathBuf {
    repo_root().join("elements")
}

/// Our shipped recipes.
pub fn recipes_dir() -> PathBuf {
    repo_root().join("recipes")
}

/// The Heat Mesos guide's agent elements, after its operating-system element: the image the
/// `ubuntu-mesos` recipe builds and the guide's `disk-image-create` line names.
pub const HEAT_AGENT_ELEMENTS: &[&str] = &[
    "vm",
    "docker",
    "mesos",
    "os-collect-config",
    "os-refresh-config",
    "os-apply-config",
    "heat-config",
    "heat-config-script",
];

/// A request that must end at once (bad input is refused before any work) is killed after this:
/// one that slipped through would start a real build.
pub const KILL_AFTER: Duration = Duration::from_secs(10);

/// `mesos-image ARGS` to run in `dir` with a hermetic environment: none of the host's DIB_*,
/// OS_* or ELEMENTS_PATH; HOME, TMPDIR and the cache dir inside `dir`; then `env`. Output piped.
pub fn hermetic_command<A: AsRef<std::ffi::OsStr>>(
    dir: &Path,
    env: &[(&str, &str)],
    args: impl IntoIterator<Item = A>,
) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("TMPDIR", dir.join("tmp"))
        .env("MESOS_IMAGE_CACHE_DIR", dir.join("cache"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Run [`hermetic_command`], killed after [`KILL_AFTER`]. Returns the output and how long it ran.
pub fn run_hermetic(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, Duration) {
    let mut command = hermetic_command(dir, env, args);
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < KILL_AFTER {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    (child.wait_with_output().unwrap(), elapsed)
}

/// Records a long test's wall time, pass or fail, in the file `$MESOS_IMAGE_TEST_TIMES` names
/// (scripts/test sets it and lists the long tests in its closing table); nothing without it.
pub struct TestClock {
    name: String,
    started: Instant,
}

impl TestClock {
    /// Start timing the running test: `binary::test`, from the executable and libtest's thread.
    pub fn start() -> TestClock {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy();
        let binary = stem.rsplit_once('-').map_or(&*stem, |(name, _hash)| name).to_owned();
        let test = std::thread::current().name().unwrap_or("main").to_owned();
        TestClock { name: format!("{binary}::{test}"), started: Instant::now() }
    }
}

impl Drop for TestClock {
    fn drop(&mut self) {
        use std::io::Write;
        let Some(path) = std::env::var_os("MESOS_IMAGE_TEST_TIMES") else { return };
        let line = format!("{:.1} {}\n", self.started.elapsed().as_secs_f64(), self.name);
        // One short O_APPEND write per test: lines of tests ending together do not interleave.
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("MESOS_IMAGE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mesos-image-test-cache"))
}

/// Run `mesos-image ARGS...` and return its output; panics with stderr when it fails.
pub fn mesos_image(args: &[&str]) -> Output {
    let output = Command::new(binary()).args(args).env("MESOS_IMAGE_CACHE_DIR", cache_dir()).output().unwrap();
    assert!(
        output.status.success(),
        "mesos-image {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The FIXTURE Mesos repository (tests/fixtures/mesos-repo), built and served on 127.0.0.1
/// while this value lives.
pub struct FixtureRepo {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl FixtureRepo {
    pub fn start() -> FixtureRepo {
        let dir = tempfile::Builder::new().prefix("mesos-fixture-").tempdir_in("/var/tmp").unwrap();
        let scripts = repo_root().join("tests/fixtures/mesos-repo");
        let built = Command::new(scripts.join("build.sh")).arg(dir.path()).output().unwrap();
        assert!(built.status.success(), "fixture build: {}", String::from_utf8_lossy(&built.stderr));
        let port = free_port();
        let served = Command::new(scripts.join("serve.sh")).arg(dir.path()).arg(port.to_string()).output().unwrap();
        assert!(served.status.success(), "fixture serve: {}", String::from_utf8_lossy(&served.stderr));
        FixtureRepo { dir, port }
    }

    /// `--mesos-repo ... --mesos-repo-key ...` for `suite`.
    pub fn build_args(&self, suite: &str) -> Vec<String> {
        vec![
            "--mesos-repo".into(),
            format!("http://127.0.0.1:{} {suite} main", self.port),
            "--mesos-repo-key".into(),
            self.dir.path().join("fixture-key.asc").display().to_string(),
        ]
    }
}

impl Drop for FixtureRepo {
    fn drop(&mut self) {
        let scripts = repo_root().join("tests/fixtures/mesos-repo");
        let _ = Command::new(scripts.join("serve.sh")).arg("--stop").arg(self.dir.path()).status();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Boots `image` with `mesos-image test` under TCG, running the checks of the recipe file
/// `checks` (a YAML file with a `checks:` list), and asserts that every check of that file
/// reported (none silently dropped) and passed. Returns the wall time of the test run.
pub fn boot_and_check(image: &Path, checks: &Path, timeout_seconds: u32) -> std::time::Duration {
    let started = std::time::Instant::now();
    let tested = Command::new(binary())
        .args(["test", "--accel", "tcg", "--format", "json", "--timeout", &timeout_seconds.to_string(), "--recipe"])
        .arg(checks)
        .arg(image)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "mesos-image test failed:\n{report}\n{}", String::from_utf8_lossy(&tested.stderr));
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(json["finished"], true, "{report}");
    let results = json["results"].as_array().expect("results");
    let fixture: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(checks).unwrap()).unwrap();
    let expected = fixture["checks"].as_sequence().expect("checks list").len();
    assert_eq!(results.len(), expected, "{report}");
    for result in results {
        assert_eq!(result["result"], "pass", "{result}");
    }
    started.elapsed()
}

/// Our binary under DIB's name in `dir`, as nodepool-builder and DIB's users call it: the
/// binary then behaves as disk-image-create.
pub fn disk_image_create_in(dir: &Path) -> PathBuf {
    let dib = dir.join("disk-image-create");
    std::os::unix::fs::symlink(binary(), &dib).unwrap();
    dib
}
