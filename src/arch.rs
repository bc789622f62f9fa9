//! Architecture names: Debian's (`amd64`) are ours; the kernel's (`x86_64`), which DIB users
//! and elements also write, are aliases. The one table both directions read, and the one table
//! of what each architecture an image can boot on needs ([`Platform`]): firmware, GRUB targets,
//! the serial console, and how a foreign host runs its binaries.

/// Debian architectures the root stage can build (mmdebstrap/debootstrap `--arch`).
pub const KNOWN: &[&str] = &["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "riscv64"];

/// (Debian name, kernel names); the first kernel name is the canonical one.
const ALIASES: &[(&str, &[&str])] =
    &[("amd64", &["x86_64"]), ("arm64", &["aarch64"]), ("i386", &["i686", "i586", "i486"]), ("ppc64el", &["ppc64le"])];

/// GRUB's UEFI build for one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Efi {
    /// GRUB's platform name (`grub-mkimage -O`, the module directory `/usr/lib/grub/<name>`).
    pub grub_target: &'static str,
    /// The file name firmware boots from `EFI/BOOT/` of a disk without NVRAM entries.
    pub removable_name: &'static str,
    /// The Debian package in the tree that holds the modules.
    pub grub_package: &'static str,
}

/// What one architecture's bootable disk is made of. Everything the disk stage, the planner's
/// defaults and the emulation preflight need to know about an architecture lives here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Debian's name (`arm64`).
    pub debian: &'static str,
    /// BIOS boots it too: GRUB `i386-pc`, core.img embedded after the MBR or in a BIOS boot
    /// partition. No BIOS exists on arm64.
    pub bios: bool,
    /// GRUB for UEFI.
    pub efi: Efi,
    /// UEFI is the only firmware: the disk is GPT with an ESP whatever the recipe's partitioning.
    pub uefi_only: bool,
    /// The serial console the kernel and the getty use (`DIB_BOOTLOADER_SERIAL_CONSOLE`'s
    /// default, as DIB's bootloader element sets it per architecture).
    pub serial_console: &'static str,
    /// GRUB terminals in grub.cfg: `serial console` where GRUB drives a serial port itself,
    /// `console` where the UEFI console is the serial port already (AAVMF's PL011).
    pub grub_terminal: &'static str,
}

/// Bootable platforms: the disk stage writes disks for these architectures only.
pub const PLATFORMS: &[Platform] = &[
    Platform {
        debian: "amd64",
        bios: true,
        efi: Efi { grub_target: "x86_64-efi", removable_name: "BOOTX64.EFI", grub_package: "grub-efi-amd64-bin" },
        uefi_only: false,
        serial_console: "ttyS0,115200n8",
        grub_terminal: "serial console",
    },
    Platform {
        debian: "arm64",
        bios: false,
        efi: Efi { grub_target: "arm64-efi", removable_name: "BOOTAA64.EFI", grub_package: "grub-efi-arm64-bin" },
        uefi_only: true,
        serial_console: "ttyAMA0,115200n8",
        grub_terminal: "console",
    },
];

/// How an architecture's executables identify themselves in their ELF header: what a
/// binfmt_misc entry that runs them matches (`EI_CLASS`, `EI_DATA`, `e_machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfId {
    /// 1: 32-bit, 2: 64-bit.
    pub class: u8,
    /// 1: little-endian, 2: big-endian.
    pub data: u8,
    pub machine: u16,
}

/// (Debian name, its executables' ELF identity).
const ELF: &[(&str, ElfId)] = &[
    ("amd64", ElfId { class: 2, data: 1, machine: 62 }),
    ("arm64", ElfId { class: 2, data: 1, machine: 183 }),
    ("armhf", ElfId { class: 1, data: 1, machine: 40 }),
    ("i386", ElfId { class: 1, data: 1, machine: 3 }),
    ("ppc64el", ElfId { class: 2, data: 1, machine: 21 }),
    ("s390x", ElfId { class: 2, data: 2, machine: 22 }),
    ("riscv64", ElfId { class: 2, data: 1, machine: 243 }),
];

/// The ELF identity of a Debian architecture's executables.
pub fn elf_id(debian: &str) -> Option<ElfId> {
    ELF.iter().find(|(name, _)| *name == debian).map(|(_, id)| *id)
}

/// Whether a host of architecture `host` runs `target`'s binaries without emulation (the CPU
/// runs its own and its 32-bit predecessor's).
pub fn runs_natively(host: &str, target: &str) -> bool {
    host == target || matches!((host, target), ("amd64", "i386") | ("arm64", "armhf"))
}

/// The boot facts of a Debian architecture; `None` for one the disk stage cannot boot.
pub fn platform(debian: &str) -> Option<&'static Platform> {
    PLATFORMS.iter().find(|p| p.debian == debian)
}

impl Platform {
    /// The console device without its speed (`ttyAMA0`), for the getty and the guest's output.
    pub fn console_device(&self) -> &'static str {
        console_device(self.serial_console)
    }
}

/// `ttyAMA0,115200n8` -> `ttyAMA0`.
pub fn console_device(console: &str) -> &str {
    console.split(',').next().unwrap_or(console)
}

/// The Debian name of the machine this tool runs on.
pub fn host() -> String {
    normalize(std::env::consts::ARCH)
}

/// `amd64,arm64` (the `-a` list) as Debian names, in order, each once.
pub fn parse_list(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(normalize) {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The Debian name of `arch` (a kernel name maps to Debian's; anything else is kept).
pub fn normalize(arch: &str) -> String {
    ALIASES.iter().find(|(_, kernel)| kernel.contains(&arch)).map_or(arch, |(debian, _)| debian).to_owned()
}

/// The kernel's name for a Debian architecture (`amd64` -> `x86_64`); itself when it has none.
pub fn kernel_name(arch: &str) -> &str {
    ALIASES.iter().find(|(debian, _)| *debian == arch).map_or(arch, |(_, kernel)| kernel[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_map_to_debian_and_back() {
        assert_eq!(normalize("x86_64"), "amd64");
        assert_eq!(normalize("aarch64"), "arm64");
        assert_eq!(normalize("i586"), "i386");
        assert_eq!(normalize("ppc64le"), "ppc64el");
        assert_eq!(normalize("s390x"), "s390x");
        assert_eq!(kernel_name("amd64"), "x86_64");
        assert_eq!(kernel_name("i386"), "i686");
        assert_eq!(kernel_name("riscv64"), "riscv64");
    }

    #[test]
    fn platforms_are_known_architectures_and_arm64_boots_by_uefi_on_ttyama0() {
        for platform in PLATFORMS {
            assert!(KNOWN.contains(&platform.debian), "{}", platform.debian);
            assert!(platform.bios || platform.uefi_only, "{}: no firmware", platform.debian);
        }
        let arm64 = platform("arm64").unwrap();
        assert_eq!((arm64.bios, arm64.uefi_only, arm64.console_device()), (false, true, "ttyAMA0"));
        assert_eq!(arm64.efi.removable_name, "BOOTAA64.EFI");
        assert_eq!(platform("amd64").unwrap().console_device(), "ttyS0");
        assert!(platform("s390x").is_none());
    }

    #[test]
    fn arch_lists_are_debian_names_in_order_once_each() {
        assert_eq!(parse_list("amd64,aarch64, arm64,"), ["amd64", "arm64"]);
        assert_eq!(parse_list("x86_64"), ["amd64"]);
    }

    #[test]
    fn every_known_architecture_has_an_elf_identity() {
        for arch in KNOWN {
            assert!(elf_id(arch).is_some(), "{arch}");
        }
        assert_eq!(elf_id("arm64").map(|id| id.machine), Some(0xb7));
        assert!(runs_natively("amd64", "amd64") && runs_natively("amd64", "i386"));
        assert!(!runs_natively("amd64", "arm64"));
    }

    #[test]
    fn every_alias_names_a_known_architecture() {
        for (debian, _) in ALIASES {
            assert!(KNOWN.contains(debian), "{debian}");
            assert_eq!(normalize(kernel_name(debian)), *debian);
        }
    }
}
