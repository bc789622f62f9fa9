//! `mesos-image test`: boot an image in qemu with a NoCloud seed, run the recipe's checks inside
//! the guest after cloud-init has finished, and collect the results from the serial console.
//!
//! - [`qemu`]: the VM runner (serial log, pattern waits, kill on drop), reusable by other tests.
//! - [`seed`]: the NoCloud seed, built without mounting.
//! - [`checks`]: recipe checks compiled to one POSIX `sh` script.
//! - [`report`]: serial-log parsing and the result table.

pub mod checks;
pub mod qemu;
pub mod report;
pub mod seed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::recipe::Check;
use qemu::{Accel, Drive, Vm, VmConfig, VmError};
use report::Report;

/// How the image is booted and how long it may take.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// From qemu start to the end marker.
    pub timeout: Duration,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// Copy the serial log here when the run ends, whatever the outcome.
    pub keep_serial_log: Option<PathBuf>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            accel: Accel::Auto,
            memory_mib: 2048,
            cpus: 2,
            timeout: Duration::from_secs(900),
            kernel: None,
            initrd: None,
            append: None,
            keep_serial_log: None,
        }
    }
}

/// Milestones of a boot, recognised on the serial console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Kernel,
    CloudInit,
    Checks,
    Done,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Kernel, Phase::CloudInit, Phase::Checks, Phase::Done];

    fn pattern(self) -> &'static str {
        match self {
            Phase::Kernel => "Linux version",
            Phase::CloudInit => "Cloud-init v.",
            Phase::Checks => checks::BEGIN_MARKER,
            Phase::Done => checks::END_MARKER,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Phase::Kernel => "kernel started",
            Phase::CloudInit => "cloud-init running",
            Phase::Checks => "checks running",
            Phase::Done => "checks finished",
        }
    }
}

/// What a test run produced.
#[derive(Debug, Serialize)]
pub struct TestOutcome {
    #[serde(flatten)]
    pub report: Report,
    pub accel: String,
    /// Seconds from qemu start to each phase reached.
    pub phases: Vec<(Phase, f64)>,
    /// Why the run ended early (timeout, VM exited), if it did.
    pub problem: Option<String>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.report.all_passed()
    }

    /// Seconds from qemu start to the end marker.
    pub fn boot_to_results(&self) -> Option<f64> {
        self.phases.iter().find(|(phase, _)| *phase == Phase::Done).map(|(_, secs)| *secs)
    }
}

/// Boot `image` (never modified: the disk is a snapshot), run `checks` in the guest, and
/// return their results. `on_phase` hears each boot milestone with its elapsed time.
pub fn run_checks(
    image: &Path,
    checks: &[Check],
    options: &TestOptions,
    on_phase: &mut dyn FnMut(Phase, Duration),
) -> anyhow::Result<TestOutcome> {
    let script = checks::script(checks)?;
    let work =
        tempfile::Builder::new().prefix("mesos-image-test-").tempdir().context("cannot create a work directory")?;
    let spec = seed::SeedSpec {
        instance_id: format!("mesos-image-test-{}", std::process::id()),
        hostname: "mesos-image-test".to_owned(),
        ssh_authorized_keys: throwaway_ssh_key(work.path()),
        check_script: script,
    };
    let seed_image = seed::build_seed(&spec, work.path())?;
    let serial_log = work.path().join("serial.log");
    let config = vm_config(image, &seed_image, &serial_log, options)?;

    let mut vm = Vm::boot(&config)?;
    let accel = vm.accel();
    let (phases, problem) = follow_boot(&mut vm, options.timeout, on_phase);
    // Results are on the console already; no need to wait for the guest's poweroff.
    drop(vm);

    if let Some(keep) = &options.keep_serial_log {
        keep_copy(&serial_log, keep)?;
    }
    let log = std::fs::read(&serial_log).with_context(|| format!("cannot read {}", serial_log.display()))?;
    let report = Report::from_serial_log(&String::from_utf8_lossy(&log), checks);
    Ok(TestOutcome { report, accel: accel.name().to_owned(), phases, problem })
}

/// A key for the default user makes the guest reachable when debugging a run; without
/// ssh-keygen the checks still work, so a missing tool only costs the key.
fn throwaway_ssh_key(dir: &Path) -> Vec<String> {
    match seed::generate_ssh_key(dir) {
        Ok(key) => vec![key],
        Err(err) => {
            tracing::warn!("no ssh key injected into the guest: {err:#}");
            Vec::new()
        }
    }
}

/// Copy under a temporary name beside the target, then rename: no half-written log is left.
fn keep_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    std::fs::copy(from, &partial).with_context(|| format!("cannot copy the serial log to {}", partial.display()))?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), to.display()))?;
    Ok(())
}

fn vm_config(image: &Path, seed_image: &Path, serial_log: &Path, options: &TestOptions) -> anyhow::Result<VmConfig> {
    let mut config =
        VmConfig::new(image, serial_log).with_context(|| format!("cannot read image {}", image.display()))?;
    config.accel = options.accel;
    config.memory_mib = options.memory_mib;
    config.cpus = options.cpus;
    config.kernel.clone_from(&options.kernel);
    config.initrd.clone_from(&options.initrd);
    config.append.clone_from(&options.append);
    config.drives.push(Drive { path: seed_image.to_owned(), format: "raw".to_owned(), snapshot: false });
    Ok(config)
}

/// Watch the console until the end marker, the timeout, or the VM's exit.
fn follow_boot(
    vm: &mut Vm,
    timeout: Duration,
    on_phase: &mut dyn FnMut(Phase, Duration),
) -> (Vec<(Phase, f64)>, Option<String>) {
    let deadline = Instant::now() + timeout;
    let mut reached = Vec::new();
    let mut next = 0;
    while next < Phase::ALL.len() {
        let remaining = &Phase::ALL[next..];
        let patterns: Vec<&str> = remaining.iter().map(|phase| phase.pattern()).collect();
        match vm.wait_for_any(&patterns, deadline.saturating_duration_since(Instant::now())) {
            Ok(found) => {
                let phase = remaining[found];
                let elapsed = vm.elapsed();
                on_phase(phase, elapsed);
                reached.push((phase, elapsed.as_secs_f64()));
                next += found + 1;
            }
            Err(VmError::Timeout { .. }) => {
                return (reached, Some(format!("timed out after {}s (raise --timeout?)", timeout.as_secs())));
            }
            Err(err) => return (reached, Some(err.to_string())),
        }
    }
    (reached, None)
}
