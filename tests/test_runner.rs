//! scripts/test, the suite's runner (CI's command), on a throwaway crate: every binary cargo
//! lists runs with the arguments given, a failing test fails the run and is named, and the table
//! and closing line count what ran.

use std::path::Path;
use std::process::{Command, Output};

mod common;

/// A crate with a passing unit test, a binary with one failing and one passing test, and a
/// binary whose only test is ignored.
fn probe_crate(dir: &Path) {
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("Cargo.toml", "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n");
    write("src/lib.rs", "#[cfg(test)]\nmod tests {\n    #[test]\n    fn unit() {}\n}\n");
    write(
        "tests/fails.rs",
        "#[test]\nfn passes() {}\n\n#[test]\nfn breaks() {\n    assert_eq!(1 + 1, 3, \"arithmetic\");\n}\n",
    );
    write("tests/slow.rs", "#[test]\n#[ignore = \"long\"]\nfn only_with_include_ignored() {}\n");
    let runner = dir.join("scripts/test");
    std::fs::create_dir_all(runner.parent().unwrap()).unwrap();
    std::fs::copy(common::repo_root().join("scripts/test"), &runner).unwrap();
}

fn run_tests(dir: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(dir.join("scripts/test"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("MESOS_IMAGE_TEST_TIMES")
        .output()
        .expect("python3 runs scripts/test")
}

#[test]
fn a_failing_test_fails_the_run_names_its_binary_and_every_binary_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    probe_crate(dir.path());

    let output = run_tests(dir.path(), &["--include-ignored"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("===== fails: FAILED (exit 101)"), "{stdout}");
    assert!(stdout.contains("arithmetic"), "the failing test's own message is in the log: {stdout}");
    assert!(stdout.contains("\nfailed: fails\n"), "{stdout}");
    // unit, fails::passes and slow's ignored test ran; fails::breaks failed.
    assert!(stdout.trim_end().ends_with("3 passed, 1 failed"), "{stdout}");
    for row in ["  probe\n", "  fails\n", "  slow\n", "  doc-tests\n", "total wall time"] {
        assert!(stdout.contains(row), "no `{}` row in the table: {stdout}", row.trim());
    }
}

#[test]
fn without_include_ignored_the_ignored_tests_do_not_run() {
    let dir = tempfile::tempdir().unwrap();
    probe_crate(dir.path());
    std::fs::remove_file(dir.path().join("tests/fails.rs")).unwrap();

    let output = run_tests(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 ignored"), "{stdout}");
    assert!(stdout.trim_end().ends_with("1 passed, 0 failed"), "{stdout}");
}
