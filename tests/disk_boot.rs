//! End to end: a real bookworm tree (mmdebstrap from the host's own Debian mirror) becomes a disk
//! file with our partition table, ext4 and embedded GRUB, is converted to every output format,
//! and boots under qemu TCG to a login prompt on the serial console, once with MBR and once GPT.
//!
//! `MESOS_IMAGE_TEST_TREE=/path` reuses a tree made earlier with the same package set (it is
//! modified: grub.cfg, fstab, /boot/grub/i386-pc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesos_image::disk::{build_disk, ext4, layout::Layout, Boot, DiskReport};
use mesos_image::manifest::OutputEntry;
use mesos_image::progress::Reporter;
use mesos_image::recipe::{ImageFormat, ImageSpec, Partitioning};
use mesos_image::reproducible::Pins;
use mesos_image::stage::{convert, publish};

const PACKAGES: &str = "linux-image-amd64,grub-pc-bin,grub-efi-amd64-bin,systemd-sysv,udev,ifupdown,login,iputils-ping";
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// amd64's boot: BIOS GRUB, plus UEFI where the spec asks for it, on ttyS0.
fn amd64() -> Boot<'static> {
    Boot::for_arch("amd64").unwrap()
}

/// The Debian mirror the host itself uses, as the planner reads it from its apt sources.
fn host_debian_mirror() -> String {
    mesos_image::mirror::host_archive_uri(Path::new("/etc/apt")).expect("the host's apt sources name no Debian mirror")
}

fn make_tree(scratch: &Path) -> PathBuf {
    if let Ok(tree) = std::env::var("MESOS_IMAGE_TEST_TREE") {
        return PathBuf::from(tree);
    }
    let tree = scratch.join("tree");
    let started = Instant::now();
    let status = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&tree)
        .arg(host_debian_mirror())
        .status()
        .expect("mmdebstrap runs");
    assert!(status.success(), "mmdebstrap failed");
    eprintln!("timing: mmdebstrap {:.1}s", started.elapsed().as_secs_f64());
    tree
}

/// Kills qemu whatever happens to the test.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boot `image` and wait for `login:` on the serial console; returns the time it took.
/// OVMF firmware for the UEFI boot (Debian's ovmf package).
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Firmware {
    Bios,
    Uefi,
}

fn boot_to_login(image: &Path, format: &str, firmware: Firmware, serial_log: &Path) -> Duration {
    let started = Instant::now();
    let mut command = Command::new("qemu-system-x86_64");
    if firmware == Firmware::Uefi {
        command.args(["-bios", OVMF]);
    }
    let child = command
        .args(["-accel", "tcg", "-m", "1024", "-display", "none", "-monitor", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()))
        .arg("-drive")
        .arg(format!("file={},format={format},if=virtio", image.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(serial_log.with_extension("stderr")).unwrap())
        .spawn()
        .expect("qemu starts");
    let mut qemu = Qemu(child);
    loop {
        let console = std::fs::read(serial_log).unwrap_or_default();
        if String::from_utf8_lossy(&console).contains("login:") {
            return started.elapsed();
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            let stderr = std::fs::read_to_string(serial_log.with_extension("stderr")).unwrap_or_default();
            panic!("qemu exited ({status}) before a login prompt: {stderr}; console:\n{}", tail(&console));
        }
        assert!(started.elapsed() < BOOT_LIMIT, "no login prompt within {BOOT_LIMIT:?}; console:\n{}", tail(&console));
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn tail(console: &[u8]) -> String {
    let text = String::from_utf8_lossy(console);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn command_output(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The filesystem is clean, labelled, and kept the tree's capabilities, setuid bits and owners.
fn check_root_filesystem(raw: &Path, report: &DiskReport, spec: &ImageSpec) {
    let layout = Layout::for_disk(spec.partitioning, spec.uefi, report.disk_bytes).unwrap();
    let device = ext4::offset_device(raw, &layout.root());
    command_output(Command::new("e2fsck").args(["-fn", &device]));
    let header = command_output(Command::new("dumpe2fs").args(["-h", &device]));
    assert!(header.contains(&format!("Filesystem UUID:          {}", report.root_uuid)), "{header}");
    assert!(header.contains("Filesystem volume name:   cloudimg-rootfs"), "{header}");
    assert!(!header.contains("metadata_csum_seed"), "{header}");
    let xattrs = command_output(Command::new("debugfs").args(["-R", "ea_list /usr/bin/ping", &device]));
    assert!(xattrs.contains("security.capability"), "ping lost its capability: {xattrs}");
    let su = command_output(Command::new("debugfs").args(["-R", "stat /usr/bin/su", &device]));
    assert!(su.contains("Mode:  04755"), "su lost its setuid bit: {su}");
    let fstab = command_output(Command::new("debugfs").args(["-R", "cat /etc/fstab", &device]));
    assert!(fstab.starts_with(&format!("UUID={} / ext4", report.root_uuid)), "{fstab}");
}

fn check_outputs(dir: &Path, outputs: &[OutputEntry]) {
    for output in outputs {
        let path = dir.join(&output.file);
        let format: ImageFormat = output.format.parse().unwrap();
        let info = command_output(Command::new("qemu-img").args(["info", "--output=json"]).arg(&path));
        let expected = format!("\"format\": \"{}\"", format.qemu_name());
        assert!(info.contains(&expected), "{} is not {format}: {info}", path.display());
        if matches!(format, ImageFormat::Qcow2 | ImageFormat::Vmdk) {
            command_output(Command::new("qemu-img").arg("check").arg(&path));
        }
        let sum_file = publish::checksum_path(&path);
        command_output(Command::new("sha256sum").arg("-c").arg(sum_file).current_dir(dir));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), output.size);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
#[ignore = "needs root, network to the Debian mirror, qemu; takes several minutes"]
fn bookworm_tree_boots_from_mbr_and_gpt_disks() {
    let scratch = tempfile::Builder::new().prefix("disk-boot-").tempdir_in("/var/tmp").unwrap();
    let tree = make_tree(scratch.path());
    let reporter = Reporter::silent();

    // MBR, every output format, booted from qcow2.
    let spec = ImageSpec {
        formats: vec![ImageFormat::Qcow2, ImageFormat::Raw, ImageFormat::Vmdk, ImageFormat::Vhd],
        ..ImageSpec::default()
    };
    let raw = scratch.path().join("mbr.raw");
    let started = Instant::now();
    let pins = Pins::fixed(1_700_000_000, "disk boot test");
    let report = build_disk(&tree, &spec, &amd64(), "bookworm", &raw, &pins, &reporter).unwrap();
    eprintln!(
        "timing: disk (MBR, {} MiB, tree {} MiB) {:.1}s, of which mkfs.ext4 {:.1}s",
        report.disk_bytes >> 20,
        report.tree_bytes >> 20,
        started.elapsed().as_secs_f64(),
        report.mkfs_time.as_secs_f64()
    );
    let dump = command_output(Command::new("sfdisk").arg("--dump").arg(&raw));
    assert!(dump.contains("start=        2048,") && dump.contains("type=83, bootable"), "{dump}");
    check_root_filesystem(&raw, &report, &spec);

    let out_dir = scratch.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let started = Instant::now();
    let destinations = publish::output_paths(&out_dir.join("bookworm.qcow2"), &spec.formats).unwrap();
    let convert_dir = scratch.path().join("convert");
    std::fs::create_dir(&convert_dir).unwrap();
    let files = publish::image_files(&destinations, &convert_dir);
    let converted: Vec<_> = files.iter().map(|f| (f.format, f.source.clone())).collect();
    convert::run(&raw, &converted, &spec, &pins, &reporter).unwrap();
    let outputs = publish::images(&files, true, Default::default()).unwrap();
    eprintln!("timing: convert to qcow2, raw, vmdk, vhd + publish + sha256 {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(outputs.len(), 4);
    check_outputs(&out_dir, &outputs);
    let qcow2 = &out_dir.join(&outputs[0].file);
    let boot = boot_to_login(qcow2, "qcow2", Firmware::Bios, &scratch.path().join("mbr-serial.log"));
    eprintln!("timing: MBR qcow2 boot to login: {:.1}s", boot.as_secs_f64());

    // GPT with a BIOS boot partition and an ESP, booted from the raw file by BIOS and by UEFI.
    let gpt_spec = ImageSpec { partitioning: Partitioning::Gpt, uefi: true, ..ImageSpec::default() };
    let gpt_raw = scratch.path().join("gpt.raw");
    let gpt_report = build_disk(&tree, &gpt_spec, &amd64(), "bookworm", &gpt_raw, &pins, &reporter).unwrap();
    // Same tree, same pins: the same bytes, ESP and GPT included, even in another time zone
    // (FAT stores local time) and seconds later (mkfs.fat stamps its label with the clock).
    // The only test in this binary, so changing the process's TZ races with nothing.
    std::thread::sleep(Duration::from_secs(2));
    std::env::set_var("TZ", "Pacific/Chatham");
    let again = scratch.path().join("gpt-again.raw");
    build_disk(&tree, &gpt_spec, &amd64(), "bookworm", &again, &pins, &reporter).unwrap();
    std::env::remove_var("TZ");
    let differing = first_differing_bytes(&gpt_raw, &again);
    assert!(differing.is_empty(), "two GPT+ESP disks of one tree and pins differ at byte offsets {differing:?}");
    std::fs::remove_file(&again).unwrap();
    let verify = command_output(Command::new("sfdisk").arg("--verify").arg(&gpt_raw));
    assert!(verify.contains("No errors detected"), "{verify}");
    check_root_filesystem(&gpt_raw, &gpt_report, &gpt_spec);
    let boot = boot_to_login(&gpt_raw, "raw", Firmware::Bios, &scratch.path().join("gpt-serial.log"));
    eprintln!("timing: GPT raw BIOS boot to login: {:.1}s", boot.as_secs_f64());
    let esp = Layout::for_disk(Partitioning::Gpt, true, gpt_report.disk_bytes).unwrap().partitions[1];
    let listing = command_output(Command::new("mdir").args([
        "-i",
        &format!("{}@@{}", gpt_raw.display(), esp.offset_bytes()),
        "::/EFI/BOOT",
    ]));
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    let boot = boot_to_login(&gpt_raw, "raw", Firmware::Uefi, &scratch.path().join("uefi-serial.log"));
    eprintln!("timing: GPT raw UEFI boot to login: {:.1}s", boot.as_secs_f64());
}

/// Up to 16 offsets where two files differ (a length difference counts at the shorter's end).
fn first_differing_bytes(a: &Path, b: &Path) -> Vec<u64> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut left, mut right) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let (mut offset, mut found) = (0u64, Vec::new());
    loop {
        let n = a.read(&mut left).unwrap();
        let m = b.read_exact(&mut right[..n]).map(|()| n);
        let Ok(m) = m else {
            found.push(offset);
            return found;
        };
        if n == 0 {
            if b.read(&mut right[..1]).unwrap() != 0 {
                found.push(offset);
            }
            return found;
        }
        for i in (0..m).filter(|&i| left[i] != right[i]) {
            found.push(offset + i as u64);
            if found.len() == 16 {
                return found;
            }
        }
        offset += n as u64;
    }
}
