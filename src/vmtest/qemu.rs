//! qemu runner: boot a VM with its serial console in a file, watch the file for patterns, and
//! kill the VM when the handle drops (or when this process dies, via the parent-death signal).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::machine::{FlashImages, Machine};

/// How often the serial log is polled.
const POLL: Duration = Duration::from_millis(250);
/// Time qemu gets to exit after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long an automatically chosen KVM guest must survive before we trust it.
const KVM_STARTUP_GRACE: Duration = Duration::from_secs(8);

/// Budget for the KVM probe: on hosts where KVM cannot run guests SeaBIOS stalls forever. Where
/// KVM works it still takes seconds to give up on the missing disks and print "No bootable
/// device" (measured on these 2-core hosts: 4.5 s idle, 9 s while builds ran; a 5 s budget
/// chose TCG six times in a row, so the stall watcher never ran).
const KVM_PROBE_BUDGET: Duration = Duration::from_secs(20);

/// Errors at the runner's edge.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {qemu}: {source}")]
    Spawn { qemu: String, source: std::io::Error },
    #[error("cannot read serial log {path}: {source}")]
    SerialLog { path: PathBuf, source: std::io::Error },
    #[error("the VM did not print {pattern:?} within {}s (serial log: {log})", timeout.as_secs())]
    Timeout { pattern: String, timeout: Duration, log: PathBuf },
    #[error("the VM exited ({status}) before printing {pattern:?}{}", stderr_suffix(.stderr))]
    Exited { pattern: String, status: ExitStatus, stderr: String },
    #[error("KVM was requested but {0}")]
    KvmUnusable(String),
}

fn stderr_suffix(stderr: &str) -> String {
    match stderr.trim().lines().last() {
        Some(line) => format!(": {line}"),
        None => String::new(),
    }
}

/// Which accelerator qemu uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Accel {
    /// KVM when /dev/kvm opens and a probe guest runs under it, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// The name qemu's `-accel` takes (`auto` is resolved before qemu starts).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg | Accel::Auto => "tcg",
        }
    }
}

/// One disk attached as a virtio drive.
#[derive(Debug, Clone)]
pub struct Drive {
    pub path: PathBuf,
    /// qemu format name (`qcow2`, `raw`, `vmdk`, `vpc`).
    pub format: String,
    /// Writes go to a temporary overlay; the file is never modified.
    pub snapshot: bool,
}

impl Drive {
    /// A drive whose format is detected from the file's header, attached read-only in effect.
    pub fn snapshot_of(path: &Path) -> std::io::Result<Drive> {
        let format = crate::format::qemu_name(crate::format::detect_file(path)?).to_owned();
        Ok(Drive { path: path.to_owned(), format, snapshot: true })
    }
}

/// Everything needed to boot one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The guest architecture's board, CPU, firmware and console.
    pub machine: &'static Machine,
    pub qemu: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The first drive is the boot disk (`/dev/vda`).
    pub drives: Vec<Drive>,
    /// Direct kernel boot (for trees that have no bootloader); the disk's GRUB otherwise.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// The UEFI flash images (see [`Machine::prepare_firmware`]); `None` boots qemu's BIOS.
    pub firmware: Option<FlashImages>,
    /// Where the guest's first serial port is written; qemu's own stderr goes beside it (`.qemu.log`).
    pub serial_log: PathBuf,
}

impl VmConfig {
    /// An amd64 guest: 2 GiB, 2 vCPUs, automatic accelerator, `image` as a snapshot boot disk.
    pub fn new(image: &Path, serial_log: &Path) -> std::io::Result<VmConfig> {
        VmConfig::for_machine(Machine::default_machine(), image, serial_log)
    }

    /// The same for `machine`'s architecture. A UEFI machine still needs [`VmConfig::firmware`].
    pub fn for_machine(machine: &'static Machine, image: &Path, serial_log: &Path) -> std::io::Result<VmConfig> {
        Ok(VmConfig {
            machine,
            qemu: PathBuf::from(machine.qemu),
            accel: Accel::Auto,
            memory_mib: 2048,
            cpus: 2,
            drives: vec![Drive::snapshot_of(image)?],
            kernel: None,
            initrd: None,
            append: None,
            firmware: None,
            serial_log: serial_log.to_owned(),
        })
    }

    fn qemu_log(&self) -> PathBuf {
        let mut name = self.serial_log.clone().into_os_string();
        name.push(".qemu.log");
        PathBuf::from(name)
    }

    /// The qemu command line (without the accelerator choice, which `boot` resolves).
    fn args(&self, accel: Accel) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let machine_type = match accel {
            Accel::Kvm => self.machine.kvm_machine_type,
            Accel::Tcg | Accel::Auto => self.machine.machine_type,
        };
        if let Some(machine_type) = machine_type {
            args.extend(["-M".into(), machine_type.into()]);
        }
        args.extend([
            "-accel".into(),
            accel.qemu_name().into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", self.serial_log.display()),
            "-nic".into(),
            "user,model=virtio-net-pci".into(),
            // A guest reboot ends the run instead of looping.
            "-no-reboot".into(),
        ]);
        let cpu = if accel == Accel::Kvm { Some("host") } else { self.machine.tcg_cpu };
        if let Some(cpu) = cpu {
            args.extend(["-cpu".into(), cpu.into()]);
        }
        if let Some(flash) = &self.firmware {
            let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={}", escape_option(&flash.code));
            let vars = format!("if=pflash,format=raw,unit=1,file={}", escape_option(&flash.vars));
            args.extend(["-drive".into(), code, "-drive".into(), vars]);
        }
        for drive in &self.drives {
            let mut spec = format!("file={},if=virtio,format={}", escape_option(&drive.path), drive.format);
            if drive.snapshot {
                spec.push_str(",snapshot=on");
            }
            args.extend(["-drive".into(), spec]);
        }
        if let Some(kernel) = &self.kernel {
            args.extend(["-kernel".into(), kernel.display().to_string()]);
        }
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        if let Some(append) = &self.append {
            args.extend(["-append".into(), append.clone()]);
        }
        args
    }
}

/// qemu option values escape a comma by doubling it.
fn escape_option(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// A running VM. Dropping it kills qemu (SIGTERM, then SIGKILL after a grace period).
pub struct Vm {
    child: Child,
    serial_log: PathBuf,
    qemu_log: PathBuf,
    accel: Accel,
    started: Instant,
    reader: SerialReader,
    /// Why an automatic KVM choice was dropped for TCG while starting, if it was.
    fallback: Option<String>,
}

impl Vm {
    /// Start qemu. Returns once the process runs; use [`Vm::wait_for`] to follow the boot.
    pub fn boot(config: &VmConfig) -> Result<Vm, VmError> {
        let accel = resolve_accel(config)?;
        let mut vm = Vm::start(config, accel)?;
        // The probe is not the whole truth: on some hosts KVM passes it and then aborts a real
        // guest while setting up its vCPUs ("failed to set MSR"). An automatic choice falls
        // back to TCG then, and says so: the caller reports the switch with the results.
        if config.accel == Accel::Auto && accel == Accel::Kvm && vm.died_starting() {
            let stderr = std::fs::read_to_string(&vm.qemu_log).unwrap_or_default();
            let cause = stderr.lines().map(str::trim).rfind(|line| !line.is_empty()).unwrap_or("no message");
            let why = format!("KVM guest died while starting ({cause}): restarted under TCG");
            vm = Vm::start(config, Accel::Tcg)?;
            vm.fallback = Some(why);
        }
        Ok(vm)
    }

    /// True when qemu exits before the guest printed anything on its serial console (and not
    /// because a stop signal reached us and, through the terminal, qemu).
    fn died_starting(&mut self) -> bool {
        let deadline = Instant::now() + KVM_STARTUP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return !status.success() && !crate::sandbox::interrupted();
            }
            if std::fs::metadata(&self.serial_log).map(|m| m.len() > 0).unwrap_or(false) {
                return false;
            }
            std::thread::sleep(POLL);
        }
        false
    }

    fn start(config: &VmConfig, accel: Accel) -> Result<Vm, VmError> {
        let qemu_log = config.qemu_log();
        // The serial file must exist before anyone watches it; qemu truncates it again.
        File::create(&config.serial_log)
            .map_err(|source| VmError::SerialLog { path: config.serial_log.clone(), source })?;
        let stderr = File::create(&qemu_log).map_err(|source| VmError::SerialLog { path: qemu_log.clone(), source })?;
        let mut command = Command::new(&config.qemu);
        command.args(config.args(accel)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        kill_with_parent(&mut command);
        tracing::debug!("starting {command:?}");
        let child =
            command.spawn().map_err(|source| VmError::Spawn { qemu: config.qemu.display().to_string(), source })?;
        Ok(Vm {
            child,
            serial_log: config.serial_log.clone(),
            qemu_log,
            accel,
            started: Instant::now(),
            reader: SerialReader::new(&config.serial_log),
            fallback: None,
        })
    }

    /// The accelerator actually used.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Why an automatic KVM choice became TCG while the VM started, if it did.
    pub fn accel_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Time since qemu started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The file receiving the guest's serial console.
    pub fn serial_log(&self) -> &Path {
        &self.serial_log
    }

    /// Wait until the serial console prints `pattern` (searching only output not yet consumed
    /// by earlier waits).
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<(), VmError> {
        self.wait_for_any(&[pattern], timeout).map(|_| ())
    }

    /// Wait until one of `patterns` appears; returns the index of the earliest match in the log.
    pub fn wait_for_any(&mut self, patterns: &[&str], timeout: Duration) -> Result<usize, VmError> {
        let deadline = Instant::now() + timeout;
        let describe = || patterns.join("\" or \"");
        loop {
            // Poll the process first so output written just before exiting is still searched.
            let exited = self.child.try_wait().ok().flatten();
            if let Some(found) = self.reader.search(patterns)? {
                return Ok(found);
            }
            if let Some(status) = exited {
                let stderr = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
                return Err(VmError::Exited { pattern: describe(), status, stderr });
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout { pattern: describe(), timeout, log: self.serial_log.clone() });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait for qemu to exit by itself (e.g. the guest powered off); false on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        false
    }

    /// Stop the VM now: SIGTERM, then SIGKILL after a grace period.
    pub fn kill(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if !self.wait_exit(KILL_GRACE) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the serial log incrementally, keeping just enough unmatched tail for patterns that
/// straddle two reads.
struct SerialReader {
    path: PathBuf,
    offset: u64,
    pending: Vec<u8>,
}

impl SerialReader {
    fn new(path: &Path) -> SerialReader {
        SerialReader { path: path.to_owned(), offset: 0, pending: Vec::new() }
    }

    fn search(&mut self, patterns: &[&str]) -> Result<Option<usize>, VmError> {
        self.read_new()?;
        let earliest = patterns
            .iter()
            .enumerate()
            .filter_map(|(index, pattern)| {
                find(&self.pending, pattern.as_bytes()).map(|at| (at + pattern.len(), index))
            })
            .min();
        if let Some((end, index)) = earliest {
            self.pending.drain(..end);
            return Ok(Some(index));
        }
        let keep = patterns.iter().map(|p| p.len()).max().unwrap_or(1).saturating_sub(1);
        let drop_len = self.pending.len().saturating_sub(keep);
        self.pending.drain(..drop_len);
        Ok(None)
    }

    fn read_new(&mut self) -> Result<(), VmError> {
        let error = |source| VmError::SerialLog { path: self.path.clone(), source };
        let mut file = File::open(&self.path).map_err(error)?;
        let len = file.metadata().map_err(error)?.len();
        if len < self.offset {
            // qemu truncated the file when it opened it.
            self.offset = 0;
            self.pending.clear();
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(error)?;
        let read = file.read_to_end(&mut self.pending).map_err(error)?;
        self.offset += read as u64;
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// qemu dies with us even when we are SIGKILLed: the kernel sends it SIGKILL.
fn kill_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
}

fn resolve_accel(config: &VmConfig) -> Result<Accel, VmError> {
    // The probe's scratch goes beside the serial log, inside the caller's work directory, so
    // whatever removes that directory (even after a SIGKILL) removes the probe's too.
    let scratch = match config.serial_log.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    match config.accel {
        Accel::Tcg => Ok(Accel::Tcg),
        Accel::Kvm => probe_kvm(config, &scratch).map(|()| Accel::Kvm).map_err(VmError::KvmUnusable),
        Accel::Auto => match probe_kvm(config, &scratch) {
            Ok(()) => Ok(Accel::Kvm),
            Err(reason) => {
                tracing::debug!("using TCG: {reason}");
                Ok(Accel::Tcg)
            }
        },
    }
}

/// KVM runs only guests of the host's own architecture: a foreign one is TCG, always.
/// Otherwise KVM is usable when /dev/kvm opens and, for an x86_64 guest, a diskless SeaBIOS run
/// under it reaches "No bootable device" on its debug console. Opening /dev/kvm is not enough:
/// on some x86 hosts (nested, restricted) guests stall right after the firmware's memory map.
/// Other boards have no such debug port: there the boot watcher (a guest that shows no progress
/// is restarted under TCG) is the only guard.
fn probe_kvm(config: &VmConfig, scratch: &Path) -> Result<(), String> {
    let machine = config.machine;
    if !machine.is_native() {
        return Err(format!(
            "the host ({}) cannot run {} guests under KVM: a foreign architecture runs under TCG",
            std::env::consts::ARCH,
            machine.kernel_arch()
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|err| format!("/dev/kvm cannot be opened: {err}"))?;
    if machine.firmware.is_some() || machine.machine_type.is_some() {
        return Ok(());
    }
    probe_seabios(&config.qemu, scratch)
}

/// A diskless SeaBIOS guest under KVM must reach "No bootable device" within the budget.
fn probe_seabios(qemu: &Path, scratch: &Path) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("kvm-probe-")
        .tempdir_in(scratch)
        .map_err(|err| format!("cannot create a probe directory in {}: {err}", scratch.display()))?;
    let debugcon = dir.path().join("seabios.log");
    let mut command = Command::new(qemu);
    command
        .args(["-accel", "kvm", "-nodefaults", "-display", "none", "-m", "32", "-no-reboot", "-boot", "menu=off"])
        .arg("-debugcon")
        .arg(format!("file:{}", debugcon.display()))
        .args(["-global", "isa-debugcon.iobase=0x402"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_with_parent(&mut command);
    let child = command.spawn().map_err(|err| format!("cannot start {}: {err}", qemu.display()))?;
    let mut probe = ProbeGuard(child);
    let deadline = Instant::now() + KVM_PROBE_BUDGET;
    while Instant::now() < deadline {
        let log = std::fs::read(&debugcon).unwrap_or_default();
        if find(&log, b"No bootable device").is_some() {
            return Ok(());
        }
        if let Ok(Some(status)) = probe.0.try_wait() {
            return Err(format!("the KVM probe guest exited ({status})"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("a probe guest under KVM stalled for {}s", KVM_PROBE_BUDGET.as_secs()))
}

/// Kills the probe qemu however `probe_kvm` returns.
struct ProbeGuard(Child);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn serial_reader_finds_patterns_split_across_reads_and_consumes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial");
        let mut file = File::create(&path).unwrap();
        let mut reader = SerialReader::new(&path);
        file.write_all(b"boot... log").unwrap();
        assert_eq!(reader.search(&["login:"]).unwrap(), None);
        file.write_all(b"in: \r\n").unwrap();
        assert_eq!(reader.search(&["login:"]).unwrap(), Some(0));
        // Consumed: the same text does not match twice.
        assert_eq!(reader.search(&["login:"]).unwrap(), None);
        file.write_all(b"B then A").unwrap();
        assert_eq!(reader.search(&["A", "B"]).unwrap(), Some(1));
        assert_eq!(reader.search(&["A", "B"]).unwrap(), Some(0));
    }

    #[test]
    fn drive_options_escape_commas_and_use_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a,b.img");
        std::fs::write(&image, vec![0u8; 1024]).unwrap();
        let config = VmConfig::new(&image, &dir.path().join("serial.log")).unwrap();
        let args = config.args(Accel::Tcg).join(" ");
        assert!(args.contains("a,,b.img,if=virtio,format=raw,snapshot=on"), "{args}");
        assert!(args.contains("-accel tcg"));
    }

    #[test]
    fn an_arm64_guest_is_the_virt_board_with_its_flash_and_a_tcg_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        std::fs::write(&image, vec![0u8; 1024]).unwrap();
        let machine = Machine::for_arch("arm64").unwrap();
        let mut config = VmConfig::for_machine(machine, &image, &dir.path().join("serial.log")).unwrap();
        config.firmware = Some(FlashImages { code: "/fw/CODE.fd".into(), vars: dir.path().join("vars,1.fd") });
        assert_eq!(config.qemu, PathBuf::from("qemu-system-aarch64"));
        let args = config.args(Accel::Tcg).join(" ");
        assert!(args.starts_with("-M virt -accel tcg "), "{args}");
        assert!(args.contains("-cpu max"), "{args}");
        assert!(args.contains("-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd "), "{args}");
        assert!(args.contains(&format!("unit=1,file={}/vars,,1.fd", dir.path().display())), "{args}");
        let kvm = config.args(Accel::Kvm).join(" ");
        assert!(kvm.starts_with("-M virt,gic-version=host -accel kvm ") && kvm.contains("-cpu host"), "{kvm}");
        // amd64 stays qemu's default board and CPU under TCG, with its BIOS.
        let amd64 = VmConfig::new(&image, &dir.path().join("serial.log")).unwrap().args(Accel::Tcg).join(" ");
        assert!(!amd64.contains("-M ") && !amd64.contains("-cpu") && !amd64.contains("pflash"), "{amd64}");
    }

    #[test]
    fn kvm_is_never_chosen_for_a_foreign_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        std::fs::write(&image, vec![0u8; 1024]).unwrap();
        // On any host one of the two machines is foreign (arm64 on CI's amd64).
        let foreign = crate::vmtest::machine::MACHINES.iter().find(|m| !m.is_native()).unwrap();
        let config = VmConfig::for_machine(foreign, &image, &dir.path().join("serial.log")).unwrap();
        // No probe guest is started: the answer comes at once.
        assert_eq!(resolve_accel(&config).unwrap(), Accel::Tcg);
        let forced = VmConfig { accel: Accel::Kvm, ..config };
        let err = resolve_accel(&forced).unwrap_err().to_string();
        assert!(err.contains(&format!("cannot run {} guests under KVM", foreign.kernel_arch())), "{err}");
    }

    #[test]
    #[ignore = "needs qemu-system-x86_64: boots a diskless VM and checks that drop kills it"]
    fn dropping_the_vm_kills_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("empty.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let mut config = VmConfig::new(&disk, &dir.path().join("serial.log")).unwrap();
        config.accel = Accel::Tcg;
        config.memory_mib = 64;
        let vm = Vm::boot(&config).unwrap();
        let pid = Pid::from_raw(i32::try_from(vm.child.id()).unwrap());
        assert!(kill(pid, None).is_ok());
        drop(vm);
        // Reaped by Drop, so the pid no longer exists.
        assert!(kill(pid, None).is_err());
    }

    #[test]
    #[ignore = "needs qemu-system-x86_64: runs the KVM probe guest"]
    fn auto_accel_is_decided_within_the_probe_budget() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("empty.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let config = VmConfig::new(&disk, &dir.path().join("serial.log")).unwrap();
        let started = Instant::now();
        let accel = resolve_accel(&config).unwrap();
        assert_ne!(accel, Accel::Auto);
        // Not a speed measurement: the probe must not hang. Generous slack for a loaded host.
        assert!(started.elapsed() < KVM_PROBE_BUDGET + Duration::from_secs(30));
        if accel == Accel::Tcg {
            // Forcing KVM where the probe failed must be an error naming KVM, not a hung boot.
            let forced = VmConfig { accel: Accel::Kvm, ..config };
            assert!(matches!(resolve_accel(&forced), Err(VmError::KvmUnusable(_))));
        }
    }
}
