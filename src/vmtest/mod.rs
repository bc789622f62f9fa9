//! `mesos-image test`: boot an image in qemu with a NoCloud seed, run the recipe's checks inside
//! the guest after cloud-init has finished, and collect the results from the serial console.
//!
//! - [`machine`]: the guest board of each architecture (qemu, firmware, console).
//! - [`qemu`]: the VM runner (serial log, pattern waits, kill on drop), reusable by other tests.
//! - [`seed`]: the NoCloud seed, built without mounting.
//! - [`checks`]: recipe checks compiled to one POSIX `sh` script.
//! - [`report`]: serial-log parsing and the result table.

pub mod checks;
pub mod machine;
pub mod qemu;
pub mod report;
pub mod seed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::recipe::Check;
use machine::Machine;
use qemu::{Accel, Drive, Vm, VmConfig, VmError};
use report::Report;

/// How the image is booted and how long it may take.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The guest architecture's machine (the image's, from its manifest or `--arch`).
    pub machine: &'static Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// From qemu start to the end marker.
    pub timeout: Duration,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            machine: Machine::default_machine(),
            accel: Accel::Auto,
            memory_mib: 2048,
            cpus: 2,
            timeout: Duration::from_secs(900),
            kernel: None,
            initrd: None,
            append: None,
        }
    }
}

/// An automatically chosen KVM guest that shows no kernel output this long after the bootloader
/// hands over has stalled (these hosts: /dev/kvm opens, the probe passes, a real guest stops
/// right after GRUB). TCG reaches the kernel in a few seconds.
const KVM_KERNEL_GRACE: Duration = Duration::from_secs(30);
/// Without even a bootloader line, a KVM guest this long after start has stalled too.
const KVM_SILENT_START: Duration = Duration::from_secs(90);
/// How often a boot wait looks up from the console to notice a stop signal.
const WAIT_SLICE: Duration = Duration::from_millis(500);

/// Milestones of a boot, recognised on the serial console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMilestone {
    Bootloader,
    Kernel,
    CloudInit,
    Checks,
    Done,
}

impl BootMilestone {
    const ALL: [BootMilestone; 5] = [
        BootMilestone::Bootloader,
        BootMilestone::Kernel,
        BootMilestone::CloudInit,
        BootMilestone::Checks,
        BootMilestone::Done,
    ];

    fn pattern(self) -> &'static str {
        match self {
            // GRUB's "Booting `ENTRY'" as it hands over to the kernel.
            BootMilestone::Bootloader => "Booting ",
            BootMilestone::Kernel => "Linux version",
            BootMilestone::CloudInit => "Cloud-init v.",
            BootMilestone::Checks => checks::BEGIN_MARKER,
            BootMilestone::Done => checks::END_MARKER,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BootMilestone::Bootloader => "bootloader",
            BootMilestone::Kernel => "kernel started",
            BootMilestone::CloudInit => "cloud-init running",
            BootMilestone::Checks => "checks running",
            BootMilestone::Done => "checks finished",
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
    pub phases: Vec<(BootMilestone, f64)>,
    /// Why the run ended early (timeout, VM exited), if it did.
    pub problem: Option<String>,
    /// Why the accelerator was switched during the run, if it was.
    pub accel_switch: Option<String>,
    /// The guest's serial console, for `--keep-serial-log` (written after the results).
    #[serde(skip)]
    pub serial_log: Vec<u8>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.report.all_passed()
    }

    /// Seconds from qemu start to the end marker.
    pub fn boot_to_results(&self) -> Option<f64> {
        self.phases.iter().find(|(phase, _)| *phase == BootMilestone::Done).map(|(_, secs)| *secs)
    }
}

/// Boot `image` (never modified: the disk is a snapshot), run `checks` in the guest, and
/// return their results. `on_phase` hears each boot milestone with its elapsed time. A stop
/// signal (see [`crate::sandbox::catch_stop_signals`]) ends the wait: the VM is killed and the
/// temporary directory removed on the way out.
pub fn run_checks(
    image: &Path,
    checks: &[Check],
    options: &TestOptions,
    on_phase: &mut dyn FnMut(BootMilestone, Duration),
) -> anyhow::Result<TestOutcome> {
    let script = checks::script(checks)?;
    remove_stale_work_dirs(&std::env::temp_dir());
    let work = tempfile::Builder::new()
        .prefix(&format!("{WORK_PREFIX}{}-", std::process::id()))
        .tempdir()
        .context("cannot create a work directory")?;
    // Dropped before `work`: the guardian removes the directory on every way out, SIGKILL
    // included; `work`'s own removal is then a no-op kept for a host without `sh`.
    let _guardian = Guardian::watch(work.path());
    let spec = seed::SeedSpec {
        instance_id: format!("mesos-image-test-{}", std::process::id()),
        hostname: "mesos-image-test".to_owned(),
        ssh_authorized_keys: throwaway_ssh_key(work.path()),
        check_script: script,
        console: options.machine.console.to_owned(),
    };
    let seed_image = seed::build_seed(&spec, work.path())?;
    let serial_log = work.path().join("serial.log");
    let mut config = vm_config(image, &seed_image, &serial_log, options)?;
    config.firmware = options.machine.prepare_firmware(work.path())?;

    let mut vm = Vm::boot(&config)?;
    let mut accel_switch = vm.accel_fallback().map(str::to_owned);
    if let Some(note) = &accel_switch {
        tracing::warn!("{note}");
    }
    let watch_kvm = options.accel == Accel::Auto && vm.accel() == Accel::Kvm;
    let mut phases = Vec::new();
    let direct_kernel = options.kernel.is_some();
    let mut end = follow_boot(&mut vm, options.timeout, watch_kvm, direct_kernel, &mut phases, on_phase)?;
    if let BootEnd::KvmStalled(why) = end {
        // Results are on the console already; no need to wait for the guest's poweroff.
        drop(vm);
        let note = format!("{why}: restarted under TCG");
        tracing::warn!("{note}");
        accel_switch = Some(note);
        config.accel = Accel::Tcg;
        vm = Vm::boot(&config)?;
        phases.clear();
        end = follow_boot(&mut vm, options.timeout, false, direct_kernel, &mut phases, on_phase)?;
    }
    let accel = vm.accel();
    drop(vm);
    let problem = match end {
        BootEnd::Finished(problem) => problem,
        BootEnd::KvmStalled(why) => Some(why),
    };
    let log = std::fs::read(&serial_log).with_context(|| format!("cannot read {}", serial_log.display()))?;
    let report = Report::from_serial_log(&String::from_utf8_lossy(&log), checks);
    Ok(TestOutcome { report, accel: accel.name().to_owned(), phases, problem, accel_switch, serial_log: log })
}

/// Temporary directories are `mesos-image-test-<pid>-XXXXXX`.
const WORK_PREFIX: &str = "mesos-image-test-";

/// A run killed by SIGKILL cannot remove its temporary directory: the next run does, once the
/// process named in it is gone.
fn remove_stale_work_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(WORK_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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

/// Write the serial log kept in `outcome` to `to`, atomically (no half-written log is left).
pub fn keep_serial_log(outcome: &TestOutcome, to: &Path) -> anyhow::Result<()> {
    crate::output::publish_bytes(&outcome.serial_log, to)
        .with_context(|| format!("cannot keep the serial log at {}", to.display()))?;
    Ok(())
}

fn vm_config(image: &Path, seed_image: &Path, serial_log: &Path, options: &TestOptions) -> anyhow::Result<VmConfig> {
    let mut config = VmConfig::for_machine(options.machine, image, serial_log)
        .with_context(|| format!("cannot read image {}", image.display()))?;
    config.accel = options.accel;
    config.memory_mib = options.memory_mib;
    config.cpus = options.cpus;
    config.kernel.clone_from(&options.kernel);
    config.initrd.clone_from(&options.initrd);
    config.append.clone_from(&options.append);
    config.drives.push(Drive { path: seed_image.to_owned(), format: "raw".to_owned(), snapshot: false });
    Ok(config)
}

/// How following a boot ended.
enum BootEnd {
    /// The end marker, or the problem that stopped the run (timeout, VM exited).
    Finished(Option<String>),
    /// An automatically chosen KVM guest stopped showing progress.
    KvmStalled(String),
}

/// Watch the console until the end marker, the timeout, the VM's exit, a stop signal, or (with
/// `watch_kvm`) a KVM guest that shows no kernel output after the bootloader.
fn follow_boot(
    vm: &mut Vm,
    timeout: Duration,
    watch_kvm: bool,
    direct_kernel: bool,
    reached: &mut Vec<(BootMilestone, f64)>,
    on_phase: &mut dyn FnMut(BootMilestone, Duration),
) -> anyhow::Result<BootEnd> {
    let started = Instant::now();
    let deadline = started + timeout;
    // With --kernel qemu hands over at once (there is no bootloader line to wait for): the
    // kernel's own grace runs from the start.
    let first_wait = if direct_kernel {
        (
            KVM_KERNEL_GRACE,
            format!("KVM guest showed no kernel output {}s after qemu loaded --kernel", KVM_KERNEL_GRACE.as_secs()),
        )
    } else {
        (KVM_SILENT_START, format!("KVM guest printed nothing in {}s", KVM_SILENT_START.as_secs()))
    };
    let mut kvm_deadline = watch_kvm.then(|| (started + first_wait.0, first_wait.1));
    let mut next = 0;
    while next < BootMilestone::ALL.len() {
        stopped()?;
        let now = Instant::now();
        if let Some((limit, why)) = &kvm_deadline {
            if now >= *limit {
                return Ok(BootEnd::KvmStalled(why.clone()));
            }
        }
        if now >= deadline {
            return Ok(BootEnd::Finished(Some(format!("timed out after {}s (raise --timeout?)", timeout.as_secs()))));
        }
        let remaining = &BootMilestone::ALL[next..];
        let patterns: Vec<&str> = remaining.iter().map(|phase| phase.pattern()).collect();
        match vm.wait_for_any(&patterns, WAIT_SLICE.min(deadline - now)) {
            Ok(found) => {
                let phase = remaining[found];
                let elapsed = vm.elapsed();
                on_phase(phase, elapsed);
                reached.push((phase, elapsed.as_secs_f64()));
                next += found + 1;
                kvm_deadline = match (kvm_deadline, phase) {
                    (Some(_), BootMilestone::Bootloader) => Some((
                        Instant::now() + KVM_KERNEL_GRACE,
                        format!(
                            "KVM guest showed no kernel output {}s after the bootloader handed over",
                            KVM_KERNEL_GRACE.as_secs()
                        ),
                    )),
                    _ => None,
                };
            }
            Err(VmError::Timeout { .. }) => continue,
            // On these hosts KVM can also abort a guest after it started ("failed to set MSR"):
            // qemu dies of a signal or an error status, which a guest's own poweroff never gives.
            Err(VmError::Exited { status, stderr, .. }) if watch_kvm && !status.success() => {
                stopped()?;
                let cause = stderr.lines().map(str::trim).rfind(|line| !line.is_empty()).unwrap_or("no message");
                let why = format!("KVM guest's qemu died ({status}: {cause}) after {}s", vm.elapsed().as_secs());
                return Ok(BootEnd::KvmStalled(why));
            }
            Err(err) => {
                // A terminal's Ctrl-C reaches qemu too (same process group): its exit is then
                // the stop, not a problem of the guest.
                stopped()?;
                return Ok(BootEnd::Finished(Some(err.to_string())));
            }
        }
    }
    Ok(BootEnd::Finished(None))
}

/// `Err` once a stop signal (SIGINT, SIGTERM, SIGHUP) reached `test`; the exit status is then
/// 128 + the signal (see [`crate::failure::exit_code`]).
fn stopped() -> anyhow::Result<()> {
    match crate::sandbox::stop_signal() {
        Some(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("a signal");
            anyhow::bail!("test stopped by {name}: the VM was killed and its work directory removed")
        }
        None => Ok(()),
    }
}

/// Removes the work directory once this process is gone, however it ends. SIGKILL runs no
/// destructor, so a destructor cannot do it; the next run's sweep ([`remove_stale_work_dirs`])
/// would, but only when there is a next run. The guardian is a shell blocked reading a pipe
/// whose only write end this process holds (close-on-exec, so qemu does not inherit it): end of
/// file means we exited. It runs in its own process group, so a terminal's Ctrl-C, which
/// reaches our group, does not end it first; it ignores SIGINT, SIGTERM and SIGHUP besides.
struct Guardian(Option<std::process::Child>);

impl Guardian {
    fn watch(dir: &Path) -> Guardian {
        use std::os::unix::process::CommandExt;
        let spawned = std::process::Command::new("sh")
            .args(["-c", "trap '' INT TERM HUP; read -r line; rm -rf -- \"$1\"", "mesos-image-test-guardian"])
            .arg(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => Guardian(Some(child)),
            Err(err) => {
                // Only a SIGKILL would then leave the directory, until the next run's sweep.
                tracing::debug!("no guardian for {}: {err}", dir.display());
                Guardian(None)
            }
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // Closing the pipe is the signal; then reap the shell.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}
