//! `build --check-reproducible` on the fault fixture OS (tests/fixtures/fault-elements: a tree
//! of a few MiB from host programs, seconds per build, no mirror): a deterministic build
//! reports identical and exits 0; one with an element writing a random UUID to /etc/nondet
//! exits 1 and names that file with what differs inside it. The full check of a real image is
//! tests/reproducible.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `build --check-reproducible` of `elements` in a fresh scratch directory; the output and
/// whether the check left anything in its work directory.
fn check(elements: &[&str]) -> (Output, Vec<String>) {
    let scratch = tempfile::Builder::new().prefix("mi-repro-check-").tempdir_in("/var/tmp").unwrap();
    let cache = scratch.path().join("cache");
    let elements_path = format!(
        "{}:{}",
        fixtures().join("fault-elements").display(),
        fixtures().join("reproducible-elements").display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_mesos-image"))
        // -n: the fixture OS is a few host programs, not Debian (as tests/faults.rs builds it).
        .args(["build", "-n", "--check-reproducible", "--source-date-epoch", "1700000000", "-o"])
        .arg(scratch.path().join("out.qcow2"))
        .args(["fault-os"])
        .args(elements)
        .env("ELEMENTS_PATH", elements_path)
        .env("DIB_RELEASE", "bookworm")
        .env("MESOS_IMAGE_CACHE_DIR", &cache)
        .env("TMPDIR", scratch.path())
        .output()
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(cache.join("work"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    (output, left)
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
