//! Faults injected into the real `mesos-image build`, each followed by the same checks: no
//! mount, no process of the build, no loop device, no output, no temp file, the canaries in the
//! bind-mounted package cache and in the host's /dev intact, and the next build succeeding from
//! the cache that is left (tests/fault_support).
//!
//! The builds use the fault fixture elements (tests/fixtures/fault-elements): a tree of a few
//! MiB from host programs, so each build takes seconds and the faults, not the image, are the
//! point. Each case has its own cache, so a fault in an early phase really runs that phase.
//!
//! README's "Faults" table is generated from the case lists below (`faults_table`), and
//! `readme_faults_table_is_the_tested_one` fails when README differs; run it with
//! `MESOS_IMAGE_WRITE_README=1` to rewrite that table.

#[path = "fault_support/mod.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use support::{assert_one_error_line, assert_signal_exit, Case, Fault, PHASES};

const ELEMENTS: [&str; 1] = ["fault-os"];
const SIGNALS: [Signal; 3] = [Signal::SIGKILL, Signal::SIGINT, Signal::SIGTERM];

/// Steps the build announces at each stage boundary (`==> STEP` on stderr).
const BOUNDARIES: [&str; 15] = [
    "hooks",
    "root phase",
    "save base snapshot",
    "extra-data phase",
    "pre-install phase",
    "install phase",
    "save install snapshot",
    "post-install phase",
    "post-root phase",
    "pre-finalise phase",
    "finalise phase",
    "cleanup phase",
    "disk",
    "convert",
    "publish",
];

/// A fault that ends the build by a signal: exit code, host clean, next build fine.
fn signal_case(case: &Case, fault: Fault, signal: Signal, extra: &[&str]) {
    let what = fault.describe();
    let (status, log) = case.inject(&ELEMENTS, extra, fault);
    // Publishing is the commit point: each file appears whole or not at all, and a signal
    // that lands after the last one is too late to stop the build.
    let publishing = fault == Fault::AtStep("publish", signal);
    if !(publishing && status.success()) {
        assert_signal_exit(status, signal, &what, &log);
    }
    case.assert_host_clean_but(&what, publishing);
    if signal != Signal::SIGKILL {
        // Only SIGKILL cannot clean up; the next build removes the empty work dir it leaves.
        assert_eq!(case.work_dirs(), Vec::<String>::new(), "{what}: work dir left");
    }
    case.next_build(&ELEMENTS, &what);
}

#[test]
#[ignore = "needs root: real builds killed inside every phase's running script"]
fn signals_inside_a_running_script_of_every_phase() {
    for phase in PHASES {
        for signal in SIGNALS {
            signal_case(&Case::new(), Fault::InScript(phase, signal), signal, &[]);
        }
    }
}

#[test]
#[ignore = "needs root: real builds killed at every stage boundary"]
fn signals_at_every_stage_boundary() {
    for step in BOUNDARIES {
        for signal in SIGNALS {
            signal_case(&Case::new(), Fault::AtStep(step, signal), signal, &[]);
        }
    }
}

#[test]
#[ignore = "needs root: real builds killed while restoring the install snapshot"]
fn signals_while_restoring_from_the_cache() {
    for signal in SIGNALS {
        let case = Case::new();
        // A first build with --checksum fills the stage cache; the build without it has other
        // outputs, so it restores the install snapshot instead of the finished image.
        case.control(None);
        let (status, log) = case.start(&ELEMENTS, &["--checksum"]).finish(std::time::Duration::from_secs(300));
        assert!(status.success(), "{log}");
        for name in support::entries(&case.scratch) {
            if name.contains("out") {
                fs::remove_file(case.scratch.join(name)).unwrap();
            }
        }
        signal_case(&case, Fault::AtStep("restore install snapshot", signal), signal, &[]);
    }
}

#[test]
#[ignore = "needs root: real builds with a failing script in every phase"]
fn a_failing_script_in_every_phase() {
    for phase in PHASES {
        let case = Case::new();
        let fault = Fault::FailingScript(phase);
        let what = fault.describe();
        let (status, log) = case.inject(&ELEMENTS, &[], fault);
        assert_eq!(status.code(), Some(1), "{what}: {status}\n{log}");
        assert_one_error_line(&log, &what, &format!("{phase}.d/50-fault"));
        case.assert_host_clean(&what);
        assert_eq!(case.work_dirs(), Vec::<String>::new(), "{what}: work dir left");
        case.next_build(&ELEMENTS, &what);
    }
}

#[test]
#[ignore = "needs root: a build whose --work-dir (a 6 MiB tmpfs) fills up"]
fn the_work_directory_filling_up() {
    let case = Case::new();
    let work = case.scratch.join("small-work");
    fs::create_dir_all(&work).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"]).arg(&work).status().unwrap();
    assert!(mounted.success());
    case.control(None);
    let (status, log) =
        case.start(&ELEMENTS, &["--work-dir", work.to_str().unwrap()]).finish(std::time::Duration::from_secs(120));
    let listing = support::entries(&work);
    let unmounted = Command::new("umount").arg(&work).status().unwrap();
    assert!(unmounted.success());
    let what = "the work directory filling up";
    assert_eq!(status.code(), Some(1), "{what}: {status}\n{log}");
    assert_one_error_line(&log, what, "No space left on device");
    assert_eq!(listing, Vec::<String>::new(), "{what}: the full work dir was not cleaned");
    fs::remove_dir(&work).unwrap();
    case.assert_host_clean(what);
    case.next_build(&ELEMENTS, what);
}

#[test]
#[ignore = "needs root: two real builds at once on one cache"]
fn two_builds_at_once_on_one_cache() {
    let case = Case::new();
    case.control(None);
    // Different image names, same stage keys: both save and restore the same entries at once.
    let second = case.scratch.join("second.qcow2");
    let one = case.start(&ELEMENTS, &[]);
    let two = case.start_to(&second, &ELEMENTS, &[]);
    let (first_status, first_log) = one.finish(std::time::Duration::from_secs(300));
    let (second_status, second_log) = two.finish(std::time::Duration::from_secs(300));
    assert!(first_status.success(), "{first_log}");
    assert!(second_status.success(), "{second_log}");
    assert!(case.output().is_file() && second.is_file());
    assert_eq!(case.work_dirs(), Vec::<String>::new());
    case.assert_canaries("two builds at once");
}

/// What every signal case asserts afterwards (the table's last column).
const AFTER_SIGNAL: &str = "exit 130 (SIGINT), 143 (SIGTERM) or killed (SIGKILL); nothing left; next build succeeds";
const AFTER_SIGNAL_STAGE: &str = "as above; during `publish` (the commit point) each file appears whole or not at all";
const AFTER_FAILURE: &str =
    "exit 1, one error line naming the script and its element; nothing left; next build succeeds";

/// README's Faults table: one row per kind of fault, from the same lists the tests run.
fn faults_table() -> String {
    let phases = PHASES.map(|p| format!("`{p}.d`")).join(", ");
    let boundaries =
        BOUNDARIES.iter().chain(["restore install snapshot"].iter()).map(|b| format!("`{b}`")).collect::<Vec<_>>();
    let rows = [
        ("SIGKILL, SIGINT, SIGTERM inside a running script of every phase".to_owned(), phases.clone(), AFTER_SIGNAL),
        ("SIGKILL, SIGINT, SIGTERM at every stage boundary".to_owned(), boundaries.join(", "), AFTER_SIGNAL_STAGE),
        ("a failing script in every phase".to_owned(), phases, AFTER_FAILURE),
        (
            "the work directory filling up".to_owned(),
            "`--work-dir` on a 6 MiB tmpfs".to_owned(),
            "exit 1, one error line (No space left on device); work dir emptied; next build succeeds",
        ),
        (
            "two builds at once on one cache".to_owned(),
            "same stage keys, different outputs".to_owned(),
            "both succeed (per-entry flock); nothing left",
        ),
    ];
    let mut table = String::from("| fault | where | what remained, what happened |\n|---|---|---|\n");
    for (fault, place, outcome) in rows {
        table.push_str(&format!("| {fault} | {place} | {outcome} |\n"));
    }
    table
}

const BEGIN: &str = "<!-- faults table: generated by tests/faults.rs -->\n";
const END: &str = "<!-- end of faults table -->\n";

#[test]
fn readme_faults_table_is_the_tested_one() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = fs::read_to_string(&readme_path).unwrap();
    let (start, end) = (readme.find(BEGIN), readme.find(END));
    let expected = faults_table();
    if std::env::var_os("MESOS_IMAGE_WRITE_README").is_some() {
        let (Some(start), Some(end)) = (start, end) else { panic!("README has no faults table markers") };
        let updated = format!("{}{BEGIN}{expected}{}", &readme[..start], &readme[end..]);
        fs::write(&readme_path, updated).unwrap();
        return;
    }
    let (Some(start), Some(end)) = (start, end) else { panic!("README lacks the faults table markers") };
    assert_eq!(
        &readme[start + BEGIN.len()..end],
        expected,
        "README's Faults table is stale: rerun with MESOS_IMAGE_WRITE_README=1"
    );
}
