//! The real `mesos-image build`, killed while a host-side root.d script runs and while a
//! chrooted install.d script runs with the chroot's mounts active: the mounts never show on the
//! host, and afterwards no mount, process, loop device, output or temp file is left and the next
//! build succeeds. tests/faults.rs runs the full matrix (every phase, every stage boundary);
//! this is the quick check of the sandbox itself.

#[path = "fault_support/mod.rs"]
mod support;

use nix::sys::signal::Signal;
use support::{assert_signal_exit, mount_points, sleepers, Case, Fault};

const ELEMENTS: [&str; 1] = ["fault-os"];

const CASES: [(Signal, &str); 5] = [
    (Signal::SIGKILL, "root"),
    (Signal::SIGINT, "root"),
    (Signal::SIGKILL, "install"),
    (Signal::SIGINT, "install"),
    (Signal::SIGTERM, "install"),
];

#[test]
#[ignore = "needs root: drives the real `build` on the fault-os fixture element"]
fn killed_builds_leave_no_mount_process_or_output() {
    for (signal, phase) in CASES {
        let case = Case::new();
        let what = Fault::InScript(phase, signal).describe();
        case.control(Some(Fault::InScript(phase, signal)));
        let before = mount_points();
        let mut build = case.start(&ELEMENTS, &[]);
        build.wait_for(|| !sleepers(&case.marker).is_empty(), &format!("the {phase} sleeper"));
        // While the chrooted script runs, its /proc, /dev, /sys and hooks mounts exist, but only
        // inside the build's mount namespace.
        let leaked: Vec<String> = mount_points().into_iter().filter(|point| !before.contains(point)).collect();
        assert!(
            leaked.iter().all(|point| !point.contains(case.cache.to_str().unwrap())),
            "{what}: build mounts visible on the host: {leaked:?}"
        );
        build.signal(signal);
        let (status, log) = build.finish(std::time::Duration::from_secs(60));
        assert_signal_exit(status, signal, &what, &log);
        case.assert_host_clean(&what);
        case.next_build(&ELEMENTS, &what);
    }
}
