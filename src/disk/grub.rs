//! GRUB for BIOS by embedding, without grub-install (which wants block devices): boot.img goes in
//! the MBR, core.img (made by the TARGET's own grub-mkimage, so its modules match the target's
//! GRUB) goes in the gap after the MBR or in the BIOS boot partition, and grub.cfg is written into
//! the tree before mkfs.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::layout::SECTOR;
use crate::progress::Reporter;

/// Where the target keeps GRUB's i386-pc images and modules.
pub const I386_PC_DIR: &str = "usr/lib/grub/i386-pc";
/// boot.img field: 64-bit LBA of core.img's first sector.
const BOOT_KERNEL_SECTOR_OFFSET: usize = 0x5c;
/// diskboot.img (core.img's first sector) ends with a blocklist: 64-bit start LBA, 16-bit length,
/// 16-bit segment. Its start must name the sector right after core.img's first.
const DISKBOOT_BLOCKLIST_START_OFFSET: usize = SECTOR - 12;

#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    #[error("no kernel in {0} (expected vmlinuz-VERSION; install a kernel package)")]
    NoKernel(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is {actual} bytes, expected {expected} (is grub-pc-bin installed in the tree?)")]
    BadBootImage { path: PathBuf, actual: usize, expected: usize },
    #[error("core.img is {size} bytes but only {room} bytes are free for it before the first partition")]
    CoreTooLarge { size: usize, room: u64 },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the tree has no {path} (install {package} in the image)")]
    MissingTool { path: PathBuf, package: &'static str },
}

/// The kernel the image boots: the newest `vmlinuz-*` in /boot, and its initrd if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootKernel {
    pub version: String,
    pub initrd: bool,
}

pub fn find_kernel(tree: &Path) -> Result<BootKernel, GrubError> {
    let boot = tree.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(|source| GrubError::Read { path: boot.clone(), source })?;
    let mut versions: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.strip_prefix("vmlinuz-")).map(str::to_owned))
        .collect();
    versions.sort_by(|a, b| compare_versions(a, b));
    let version = versions.pop().ok_or_else(|| GrubError::NoKernel(boot.clone()))?;
    let initrd = boot.join(format!("initrd.img-{version}")).exists();
    Ok(BootKernel { version, initrd })
}

/// Compare kernel versions the way humans read them: digit runs numerically, the rest as text
/// (`6.1.0-10` > `6.1.0-9`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a, b);
    loop {
        match (left.is_empty(), right.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (l_chunk, l_rest) = split_chunk(left);
        let (r_chunk, r_rest) = split_chunk(right);
        let ordering = match (l_chunk.parse::<u64>(), r_chunk.parse::<u64>()) {
            (Ok(l), Ok(r)) => l.cmp(&r),
            _ => l_chunk.cmp(r_chunk),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
        (left, right) = (l_rest, r_rest);
    }
}

fn split_chunk(text: &str) -> (&str, &str) {
    let digits = text.starts_with(|c: char| c.is_ascii_digit());
    let end = text.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(text.len());
    text.split_at(end)
}

/// Everything grub.cfg needs to know.
pub struct BootConfig<'a> {
    pub kernel: &'a BootKernel,
    pub root_uuid: &'a str,
    pub kernel_args: &'a [String],
    /// The kernel's serial console, e.g. `ttyS0,115200n8` (`DIB_BOOTLOADER_SERIAL_CONSOLE`).
    pub console: &'a str,
    /// GRUB's terminals (`serial console`, or `console` where UEFI's console is the serial port).
    pub terminal: &'a str,
}

/// grub.cfg: serial and VGA console, one entry, short timeout. Written by us instead of
/// update-grub, which probes block devices the build does not have.
pub fn render_grub_cfg(config: &BootConfig<'_>) -> String {
    let version = &config.kernel.version;
    let mut cmdline = format!(
        "root=UUID={} ro console=tty0 console={} net.ifnames=0 biosdevname=0",
        config.root_uuid, config.console
    );
    for arg in config.kernel_args {
        cmdline.push(' ');
        cmdline.push_str(arg);
    }
    let initrd = if config.kernel.initrd { format!("\tinitrd /boot/initrd.img-{version}\n") } else { String::new() };
    // GRUB drives the serial port itself only where it has one of its own (x86's com0).
    let serial = if config.terminal.contains("serial") { "serial --unit=0 --speed=115200\n" } else { "" };
    format!(
        "# Written by mesos-image; regenerate with update-grub inside the guest if you like.\n\
         {serial}\
         terminal_input {terminal}\n\
         terminal_output {terminal}\n\
         set default=0\n\
         set timeout=1\n\
         \n\
         menuentry 'Linux {version}' {{\n\
         \tinsmod part_msdos\n\
         \tinsmod part_gpt\n\
         \tinsmod ext2\n\
         \tsearch --no-floppy --fs-uuid --set=root {uuid}\n\
         \tlinux /boot/vmlinuz-{version} {cmdline}\n\
         {initrd}}}\n",
        uuid = config.root_uuid,
        terminal = config.terminal,
    )
}

/// /etc/fstab with our root line first; other mounts the elements wrote stay, any other `/`
/// line goes (it names a filesystem that no longer exists).
pub fn render_fstab(existing: &str, root_uuid: &str) -> String {
    let mut out = format!("UUID={root_uuid} / ext4 defaults,errors=remount-ro 0 1\n");
    for line in existing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_root_mount = !line.trim_start().starts_with('#') && fields.get(1) == Some(&"/");
        if !is_root_mount {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A GRUB platform we build a core image for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// BIOS: core.img embedded after the MBR or in the BIOS boot partition.
    I386Pc,
    /// UEFI: an EFI binary on the ESP, for the architecture's GRUB target (`crate::arch`).
    Efi(crate::arch::Efi),
}

impl Platform {
    /// GRUB's name, used by `-O` and as the module directory name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::I386Pc => "i386-pc",
            Platform::Efi(efi) => efi.grub_target,
        }
    }

    /// What the core must hold to read grub.cfg; the rest loads from `$prefix/<platform>`.
    /// The EFI core also finds the root by UUID ([`early_config`]), so it needs `search`.
    fn core_modules(self, partmap: &'static str) -> Vec<&'static str> {
        match self {
            Platform::I386Pc => vec!["biosdisk", partmap, "ext2"],
            Platform::Efi(_) => vec![partmap, "ext2", "search_fs_uuid"],
        }
    }
}

/// The config embedded in the EFI core, as grub-install's `load.cfg`: the root filesystem found
/// by UUID wherever the firmware enumerates the disk (a NoCloud seed attached as another disk,
/// a cloud's extra volumes), then `$prefix` there.
pub fn early_config(root_uuid: &str) -> String {
    format!("search.fs_uuid {root_uuid} root\nset prefix=($root)/boot/grub\n")
}

/// grub-mkimage command, run chrooted in the tree so the target's GRUB builds its own core;
/// chrooted as every stage's commands are (`sandbox::chroot_command`: chroot(2) in the child,
/// the tree's PATH, the host environment cleared), not through the host's `chroot` binary.
/// `output_in_tree` is a path inside the tree.
pub fn mkimage_command(
    tree: &Path,
    platform: Platform,
    output_in_tree: &str,
    grub_root_partition: &str,
    config_in_tree: Option<&str>,
) -> std::io::Result<Command> {
    let partmap = if grub_root_partition.starts_with("gpt") { "part_gpt" } else { "part_msdos" };
    let mut command = crate::sandbox::chroot_command(tree, "grub-mkimage")?;
    command
        .args(["-O", platform.name(), "-d", &format!("/usr/lib/grub/{}", platform.name())])
        .args(["-o", output_in_tree])
        .args(["-p", &format!("(hd0,{grub_root_partition})/boot/grub")]);
    if let Some(config) = config_in_tree {
        command.args(["-c", config]);
    }
    command.args(platform.core_modules(partmap));
    Ok(command)
}

/// Copy the platform's modules and lists to `/boot/grub/<platform>`, where core.img's prefix
/// makes GRUB look for `normal.mod` and the rest (grub-install does the same).
pub fn install_modules(tree: &Path, platform: &str) -> Result<(), GrubError> {
    let source = tree.join("usr/lib/grub").join(platform);
    let target = tree.join("boot/grub").join(platform);
    std::fs::create_dir_all(&target).map_err(|source| GrubError::Write { path: target.clone(), source })?;
    let entries = std::fs::read_dir(&source).map_err(|err| GrubError::Read { path: source.clone(), source: err })?;
    for entry in entries {
        let entry = entry.map_err(|err| GrubError::Read { path: source.clone(), source: err })?;
        let name = entry.file_name();
        let wanted = Path::new(&name).extension().is_some_and(|ext| ext == "mod" || ext == "lst");
        if wanted {
            let destination = target.join(&name);
            std::fs::copy(entry.path(), &destination)
                .map_err(|source| GrubError::Write { path: destination, source })?;
        }
    }
    Ok(())
}

/// Check the target can build a core.img before any work is done.
pub fn check_tree_has_grub(tree: &Path) -> Result<(), GrubError> {
    require_in_tree(
        tree,
        &["usr/bin/grub-mkimage", "usr/lib/grub/i386-pc/boot.img", "usr/lib/grub/i386-pc/biosdisk.mod"],
        "grub-pc-bin",
    )
}

/// Check the target can build a UEFI GRUB image for `efi` (`image.uefi`, and every arm64 disk).
pub fn check_tree_has_efi_grub(tree: &Path, efi: &crate::arch::Efi) -> Result<(), GrubError> {
    let modules = format!("usr/lib/grub/{}/part_gpt.mod", efi.grub_target);
    require_in_tree(tree, &["usr/bin/grub-mkimage", &modules], efi.grub_package)
}

fn require_in_tree(tree: &Path, relatives: &[&str], package: &'static str) -> Result<(), GrubError> {
    match relatives.iter().find(|relative| !tree.join(relative).exists()) {
        Some(missing) => Err(GrubError::MissingTool { path: Path::new("/").join(missing), package }),
        None => Ok(()),
    }
}

/// The 440 bytes of boot code for the MBR: the tree's boot.img pointed at `core_sector`.
pub fn boot_code(boot_img: &[u8], boot_img_path: &Path, core_sector: u64) -> Result<Vec<u8>, GrubError> {
    if boot_img.len() != SECTOR {
        return Err(GrubError::BadBootImage {
            path: boot_img_path.to_owned(),
            actual: boot_img.len(),
            expected: SECTOR,
        });
    }
    let mut code = boot_img.to_vec();
    code[BOOT_KERNEL_SECTOR_OFFSET..BOOT_KERNEL_SECTOR_OFFSET + 8].copy_from_slice(&core_sector.to_le_bytes());
    code.truncate(super::mbr::BOOT_CODE_SIZE);
    Ok(code)
}

/// core.img as it must lie at `core_sector`: its first sector's blocklist points at the rest.
pub fn place_core(mut core: Vec<u8>, core_sector: u64, room_sectors: u64) -> Result<Vec<u8>, GrubError> {
    let room = room_sectors * SECTOR as u64;
    if core.len() as u64 > room || core.len() < SECTOR {
        return Err(GrubError::CoreTooLarge { size: core.len(), room });
    }
    let at = DISKBOOT_BLOCKLIST_START_OFFSET;
    core[at..at + 8].copy_from_slice(&(core_sector + 1).to_le_bytes());
    Ok(core)
}

/// grub-mkimage chrooted in the tree, writing to the tree's /tmp; returns the image bytes and
/// never leaves the file (or the embedded `config`) behind.
pub(crate) fn run_mkimage_in_tree(
    tree: &Path,
    platform: Platform,
    partition: &str,
    config: Option<&str>,
    reporter: &Reporter,
) -> anyhow::Result<Vec<u8>> {
    let tmp = tree.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let name = format!("mesos-image-{}-{}.img", platform.name(), std::process::id());
    let in_tree = format!("/tmp/{name}");
    let on_host = tmp.join(&name);
    let config_name = format!("{name}.cfg");
    let config_on_host = tmp.join(&config_name);
    if let Some(text) = config {
        std::fs::write(&config_on_host, text).with_context(|| format!("cannot write {}", config_on_host.display()))?;
    }
    let config_in_tree = config.map(|_| format!("/tmp/{config_name}"));
    let mut mkimage = mkimage_command(tree, platform, &in_tree, partition, config_in_tree.as_deref())
        .with_context(|| format!("cannot chroot into {}", tree.display()))?;
    let result = reporter.run("grub-mkimage", &mut mkimage);
    let image =
        result.and_then(|()| std::fs::read(&on_host).with_context(|| format!("cannot read {}", on_host.display())));
    let _ = std::fs::remove_file(&on_host);
    let _ = std::fs::remove_file(&config_on_host);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_wins_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        for name in ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64", "config-7.0"] {
            std::fs::write(boot.join(name), b"").unwrap();
        }
        let kernel = find_kernel(dir.path()).unwrap();
        assert_eq!(kernel, BootKernel { version: "6.1.0-10-amd64".into(), initrd: true });
    }

    #[test]
    fn missing_kernel_names_boot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        let err = find_kernel(dir.path()).unwrap_err().to_string();
        assert!(err.contains("/boot") && err.contains("no kernel"), "{err}");
    }

    #[test]
    fn version_order() {
        assert_eq!(compare_versions("3.13.0-170-generic", "3.13.0-24-generic"), Ordering::Greater);
        assert_eq!(compare_versions("6.1.0", "6.1.0-1"), Ordering::Less);
        assert_eq!(compare_versions("5.4", "5.4"), Ordering::Equal);
    }

    #[test]
    fn grub_cfg_has_serial_console_uuid_and_args() {
        let kernel = BootKernel { version: "6.1.0-10-amd64".into(), initrd: true };
        let args = vec!["quiet".to_owned()];
        let cfg = render_grub_cfg(&BootConfig {
            kernel: &kernel,
            root_uuid: "abcd",
            kernel_args: &args,
            console: "ttyS0,115200n8",
            terminal: "serial console",
        });
        assert!(cfg.contains("serial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("terminal_input serial console\n"));
        assert!(cfg.contains("set timeout=1\n"));
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=root abcd\n"));
        assert!(cfg.contains(
            "\tlinux /boot/vmlinuz-6.1.0-10-amd64 root=UUID=abcd ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0 quiet\n"
        ));
        assert!(cfg.contains("\tinitrd /boot/initrd.img-6.1.0-10-amd64\n}\n"));
    }

    #[test]
    fn grub_cfg_without_initrd_has_no_initrd_line() {
        let kernel = BootKernel { version: "5".into(), initrd: false };
        let cfg = render_grub_cfg(&BootConfig {
            kernel: &kernel,
            root_uuid: "u",
            kernel_args: &[],
            console: "ttyS0,115200n8",
            terminal: "serial console",
        });
        assert!(!cfg.contains("initrd"));
    }

    #[test]
    fn arm64_grub_cfg_uses_the_uefi_console_and_ttyama0() {
        let kernel = BootKernel { version: "6.1.0-10-cloud-arm64".into(), initrd: true };
        let arm64 = crate::arch::platform("arm64").unwrap();
        let cfg = render_grub_cfg(&BootConfig {
            kernel: &kernel,
            root_uuid: "u",
            kernel_args: &[],
            console: arm64.serial_console,
            terminal: arm64.grub_terminal,
        });
        assert!(!cfg.contains("serial --unit"), "{cfg}");
        assert!(cfg.contains("terminal_input console\nterminal_output console\n"), "{cfg}");
        assert!(cfg.contains(" console=tty0 console=ttyAMA0,115200n8 "), "{cfg}");
    }

    #[test]
    fn fstab_replaces_root_line_and_keeps_others() {
        let existing =
            "# comment with / in it\nLABEL=cloudimg-rootfs / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n";
        let fstab = render_fstab(existing, "u-1");
        assert_eq!(
            fstab,
            "UUID=u-1 / ext4 defaults,errors=remount-ro 0 1\n# comment with / in it\nproc /proc proc defaults 0 0\n"
        );
    }

    #[test]
    fn boot_code_points_at_core_and_stops_before_the_table() {
        let boot_img = vec![0xAAu8; 512];
        let code = boot_code(&boot_img, Path::new("boot.img"), 2048).unwrap();
        assert_eq!(code.len(), 440);
        assert_eq!(&code[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(code[0x5b], 0xAA);
        assert!(boot_code(&[0; 10], Path::new("boot.img"), 1).unwrap_err().to_string().contains("boot.img"));
    }

    #[test]
    fn core_blocklist_follows_its_sector_and_size_is_checked() {
        let core = place_core(vec![0u8; 4 * 512], 2048, 2048).unwrap();
        assert_eq!(&core[500..508], &2049u64.to_le_bytes());
        let err = place_core(vec![0u8; 3 * 512], 1, 2).unwrap_err();
        assert!(matches!(err, GrubError::CoreTooLarge { .. }));
    }

    #[test]
    fn mkimage_uses_the_partition_map_of_the_table() {
        let args = |part: &str| {
            mkimage_command(Path::new("/t"), Platform::I386Pc, "/tmp/core.img", part, None)
                .unwrap()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(args("msdos1").ends_with("-p (hd0,msdos1)/boot/grub biosdisk part_msdos ext2"));
        assert!(args("gpt2").ends_with("-p (hd0,gpt2)/boot/grub biosdisk part_gpt ext2"));
        let efi = Platform::Efi(crate::arch::platform("arm64").unwrap().efi);
        let command = mkimage_command(Path::new("/t"), efi, "/tmp/x.efi", "gpt2", Some("/tmp/x.cfg")).unwrap();
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "-O arm64-efi -d /usr/lib/grub/arm64-efi -o /tmp/x.efi -p (hd0,gpt2)/boot/grub -c /tmp/x.cfg part_gpt ext2 search_fs_uuid"
        );
    }

    #[test]
    fn mkimage_runs_the_trees_grub_without_the_host_chroot_binary() {
        let command = mkimage_command(Path::new("/t"), Platform::I386Pc, "/tmp/core.img", "msdos1", None).unwrap();
        assert_eq!(command.get_program(), "grub-mkimage");
        assert!(command.get_args().all(|arg| arg != "/t"), "the tree is chroot(2)ed into, not an argument");
        let path = command.get_envs().find(|(name, _)| *name == "PATH").and_then(|(_, value)| value);
        assert!(path.is_some_and(|p| p.to_string_lossy().contains("/usr/sbin")), "the tree's PATH is set");
    }

    /// The host's grub-mkimage, its libraries and modules copied into an otherwise empty tree:
    /// the core is built by the tree's binary, chrooted, nothing is left in its /tmp, and a
    /// second core is the same bytes.
    #[test]
    #[ignore = "needs root (chroot) and the host's grub-mkimage with i386-pc modules"]
    fn mkimage_runs_chrooted_in_a_tree() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        let copy = |path: &Path| {
            let dest = root.join(path.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(std::fs::canonicalize(path).unwrap(), &dest).unwrap();
        };
        copy(Path::new("/usr/bin/grub-mkimage"));
        let ldd = Command::new("ldd").arg("/usr/bin/grub-mkimage").output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            if let Some(lib) = line.split_whitespace().find(|word| word.starts_with('/')) {
                copy(Path::new(lib));
            }
        }
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        let copied = Command::new("cp").args(["-a", "/usr/lib/grub"]).arg(root.join("usr/lib/")).status().unwrap();
        assert!(copied.success());
        let reporter = crate::progress::Reporter::silent();
        let core = run_mkimage_in_tree(root, Platform::I386Pc, "msdos1", None, &reporter).unwrap();
        assert!(core.len() > 4 * 512, "a core.img of {} bytes", core.len());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0, "the core is not left in the tree");
        // GRUB's share of the disk takes nothing from the clock or the random pool: made again
        // a second later, the core is the same bytes (nothing to seed, nothing to pin).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let again = run_mkimage_in_tree(root, Platform::I386Pc, "msdos1", None, &reporter).unwrap();
        assert!(core == again, "two core.img of the same tree differ");
    }
}
