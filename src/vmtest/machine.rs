//! The guest machine of each architecture `mesos-image test` boots: which qemu, machine type,
//! CPU model, firmware and serial console. One table, read by the runner ([`super::qemu`]), the
//! seed (which console the results go to) and the timeouts.

use std::path::{Path, PathBuf};

/// Errors choosing or preparing a guest machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(
        "no guest machine for architecture `{0}`: mesos-image test boots amd64 (x86_64) and arm64 (aarch64) images"
    )]
    Unsupported(String),
    #[error("UEFI firmware {path} is missing (install Debian's {package}; see scripts/install-deps.sh)")]
    FirmwareMissing { path: PathBuf, package: &'static str },
    #[error("cannot copy the UEFI variable store {from} to {to}: {source}")]
    VarsCopy { from: PathBuf, to: PathBuf, source: std::io::Error },
}

/// UEFI firmware as two flash images: the code (read-only, shared) and a template of the
/// variable store, which each run copies into its own work directory (the guest writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub code: &'static str,
    pub vars_template: &'static str,
    /// The Debian package that ships both.
    pub package: &'static str,
}

/// A run's UEFI flash images: the system's code, read-only, and the run's own variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashImages {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// One guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Debian's name (`amd64`), as manifests and recipes write it.
    pub arch: &'static str,
    /// The qemu system emulator.
    pub qemu: &'static str,
    /// `-M` value; `None` keeps qemu's default (`pc` on x86_64).
    pub machine_type: Option<&'static str>,
    /// `-M` value under KVM, where the host's interrupt controller must be used.
    pub kvm_machine_type: Option<&'static str>,
    /// `-cpu` under TCG; `None` keeps qemu's default. (KVM always uses `host`.)
    pub tcg_cpu: Option<&'static str>,
    /// `None`: qemu's built-in BIOS (SeaBIOS on x86_64).
    pub firmware: Option<Firmware>,
    /// The guest's first serial port, where the kernel console and the check results go.
    pub console: &'static str,
    /// The default `--timeout` under TCG, in seconds, from qemu start to the last result.
    pub tcg_timeout_secs: u64,
}

/// AAVMF from Debian's `qemu-efi-aarch64`.
const AAVMF: Firmware = Firmware {
    code: "/usr/share/AAVMF/AAVMF_CODE.fd",
    vars_template: "/usr/share/AAVMF/AAVMF_VARS.fd",
    package: "qemu-efi-aarch64",
};

/// Every machine `test` can boot.
pub const MACHINES: [Machine; 2] = [
    Machine {
        arch: "amd64",
        qemu: "qemu-system-x86_64",
        machine_type: None,
        kvm_machine_type: None,
        tcg_cpu: None,
        firmware: None,
        console: "ttyS0",
        tcg_timeout_secs: 900,
    },
    Machine {
        arch: "arm64",
        qemu: "qemu-system-aarch64",
        machine_type: Some("virt"),
        kvm_machine_type: Some("virt,gic-version=host"),
        // `max` beat `cortex-a72` in both paired runs on these hosts (debian-base arm64 from qemu
        // start to its last result, the two guests side by side: 565 s vs 596 s, 555 s vs 600 s).
        tcg_cpu: Some("max"),
        firmware: Some(AAVMF),
        // The virt board's PL011 UART.
        console: "ttyAMA0",
        // debian-base took 357 s alone and up to 600 s beside two other guests on 2 loaded cores;
        // three times that is the margin, for the Mesos twin's Java and Docker too.
        tcg_timeout_secs: 1800,
    },
];

impl Machine {
    /// The machine for `arch` (Debian or kernel name: `arm64` or `aarch64`).
    pub fn for_arch(arch: &str) -> Result<&'static Machine, MachineError> {
        let debian = crate::arch::normalize(arch);
        MACHINES.iter().find(|m| m.arch == debian).ok_or_else(|| MachineError::Unsupported(arch.to_owned()))
    }

    /// The default machine: amd64, what every image was before architectures were recorded.
    pub fn default_machine() -> &'static Machine {
        &MACHINES[0]
    }

    /// The kernel's name of the guest architecture (`aarch64`).
    pub fn kernel_arch(&self) -> &'static str {
        crate::arch::kernel_name(self.arch)
    }

    /// True when the host runs this architecture itself: only then can KVM run the guest.
    pub fn is_native(&self) -> bool {
        crate::arch::normalize(std::env::consts::ARCH) == self.arch
    }

    /// Check the firmware is installed and copy its variable store into `dir`; `None` for a
    /// BIOS machine. The system's template is only read: the guest writes its own copy, which
    /// goes with `dir`.
    pub fn prepare_firmware(&self, dir: &Path) -> Result<Option<FlashImages>, MachineError> {
        self.firmware.map(|firmware| firmware.prepare(dir)).transpose()
    }
}

impl Firmware {
    fn prepare(&self, dir: &Path) -> Result<FlashImages, MachineError> {
        for path in [self.code, self.vars_template] {
            if !Path::new(path).is_file() {
                return Err(MachineError::FirmwareMissing { path: path.into(), package: self.package });
            }
        }
        let vars = dir.join("uefi-vars.fd");
        std::fs::copy(self.vars_template, &vars).map_err(|source| MachineError::VarsCopy {
            from: self.vars_template.into(),
            to: vars.clone(),
            source,
        })?;
        Ok(FlashImages { code: PathBuf::from(self.code), vars })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_names_of_an_architecture_find_its_machine() {
        assert_eq!(Machine::for_arch("arm64").unwrap().qemu, "qemu-system-aarch64");
        assert_eq!(Machine::for_arch("aarch64").unwrap().console, "ttyAMA0");
        assert_eq!(Machine::for_arch("x86_64").unwrap().arch, "amd64");
        assert_eq!(Machine::for_arch("arm64").unwrap().kernel_arch(), "aarch64");
        let err = Machine::for_arch("s390x").unwrap_err().to_string();
        assert!(err.contains("`s390x`") && err.contains("arm64"), "{err}");
    }

    #[test]
    fn every_machine_names_a_known_architecture() {
        for machine in &MACHINES {
            assert!(crate::arch::KNOWN.contains(&machine.arch), "{}", machine.arch);
        }
        // This test host is amd64 (CI and these machines): arm64 is foreign here.
        if std::env::consts::ARCH == "x86_64" {
            assert!(Machine::for_arch("amd64").unwrap().is_native());
            assert!(!Machine::for_arch("arm64").unwrap().is_native());
        }
    }

    #[test]
    fn the_variable_store_is_a_copy_in_the_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Machine::for_arch("amd64").unwrap().prepare_firmware(dir.path()).unwrap(), None);
        let leak = |path: PathBuf| -> &'static str { Box::leak(path.display().to_string().into_boxed_str()) };
        let (code, vars) = (dir.path().join("CODE,1.fd"), dir.path().join("VARS.fd"));
        let firmware = Firmware { code: leak(code.clone()), vars_template: leak(vars.clone()), package: "pkg-x" };
        let err = firmware.prepare(dir.path()).unwrap_err().to_string();
        assert!(err.contains("CODE,1.fd is missing") && err.contains("pkg-x"), "{err}");
        std::fs::write(&code, b"code").unwrap();
        std::fs::write(&vars, b"template").unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let flash = firmware.prepare(&run).unwrap();
        assert_eq!(flash, FlashImages { code: code.clone(), vars: run.join("uefi-vars.fd") });
        assert_eq!(std::fs::read(run.join("uefi-vars.fd")).unwrap(), b"template");
        // The guest writes its copy; the template stays as it was.
        std::fs::write(run.join("uefi-vars.fd"), b"written").unwrap();
        assert_eq!(std::fs::read(&vars).unwrap(), b"template");
    }
}
