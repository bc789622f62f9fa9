//! `mesos-image test`'s arguments.

use std::path::PathBuf;

use clap::Args;

use super::OutputFormat;
use crate::vmtest::qemu::Accel;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The disk image to boot (qcow2, raw, vmdk or vhd; never modified).
    pub image: PathBuf,
    /// Recipe (name or path) whose checks run; default: the `recipe` in `<IMAGE>.manifest.json`.
    #[arg(long, value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    /// Extra directory searched for recipes before the built-in ones (repeatable).
    #[arg(long, value_name = "DIR")]
    pub recipes_dir: Vec<PathBuf>,
    /// Seconds from boot to the last check result before the VM is killed [default: 900 for
    /// amd64; 1800 for arm64 under TCG, which emulates every instruction].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// The image's architecture (amd64 or arm64; x86_64 and aarch64 too) [default: the `arch` in
    /// `<IMAGE>.manifest.json`, else amd64]. arm64 boots in qemu-system-aarch64 `-M virt` with
    /// UEFI firmware (qemu-efi-aarch64), under TCG on a host of another architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// qemu accelerator; `auto` uses KVM only when a probe guest runs under it.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Boot this kernel directly instead of the disk's bootloader (for bare filesystem images).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initrd for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line for --kernel.
    #[arg(long, value_name = "ARGS", requires = "kernel")]
    pub append: Option<String>,
    /// Result output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Copy the guest's serial console log here (kept whatever the outcome).
    #[arg(long, value_name = "PATH")]
    pub keep_serial_log: Option<PathBuf>,
}
