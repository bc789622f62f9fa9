//! End to end: `mesos-image build` makes images that boot (issue 3) and, for debian-mesos, pass
//! their recipe's checks inside the guest (issue 4). Root, the Debian mirror and qemu needed.

mod common;

use std::process::Command;
use std::time::Duration;

use mesos_image::manifest::Manifest;
use mesos_image::vmtest::qemu::{Vm, VmConfig};

#[test]
#[ignore = "needs root, the Debian mirror and qemu: builds debian-base and boots it"]
fn bookworm_image_boots_to_a_login_prompt() {
    let out = tempfile::Builder::new().prefix("image-build-").tempdir_in("/var/tmp").unwrap();
    let image = out.path().join("debian-base.qcow2");
    let image_arg = image.display().to_string();
    common::mesos_image(&[
        "--quiet",
        "build",
        "--recipe",
        "debian-base",
        "-t",
        "qcow2,vmdk",
        "--checksum",
        "-o",
        &image_arg,
    ]);

    // Every requested format, its checksum file and the manifest exist; nothing else does.
    let mut names: Vec<String> =
        std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "debian-base.qcow2",
            "debian-base.qcow2.manifest.json",
            "debian-base.qcow2.sha256",
            "debian-base.vmdk",
            "debian-base.vmdk.sha256"
        ]
    );
    let manifest = Manifest::read_beside(&image).unwrap().expect("manifest beside the image");
    assert_eq!(manifest.recipe.as_deref(), Some("debian-base"));
    assert!(manifest.packages.iter().any(|p| p.name == "cloud-init"), "cloud-init in the package list");
    assert!(manifest.packages.iter().any(|p| p.name.starts_with("linux-image-")), "a kernel in the package list");
    let sums = std::fs::read_to_string(out.path().join("debian-base.qcow2.sha256")).unwrap();
    assert_eq!(sums, format!("{}  debian-base.qcow2\n", manifest.outputs[0].sha256));
    for (file, format) in [("debian-base.qcow2", "qcow2"), ("debian-base.vmdk", "vmdk")] {
        let info =
            Command::new("qemu-img").args(["info", "--output=json"]).arg(out.path().join(file)).output().unwrap();
        assert!(
            String::from_utf8_lossy(&info.stdout).contains(&format!("\"format\": \"{format}\"")),
            "{file} is {format}"
        );
    }
    let check = Command::new("qemu-img").arg("check").arg(&image).output().unwrap();
    assert!(check.status.success(), "qemu-img check: {}", String::from_utf8_lossy(&check.stdout));

    let serial = out.path().join("serial.log");
    let mut vm = Vm::boot(&VmConfig::new(&image, &serial).unwrap()).unwrap();
    let booted = vm.wait_for("login:", Duration::from_secs(300));
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    vm.kill();
    booted.unwrap_or_else(|err| panic!("no login prompt within 5 minutes ({err}); serial log:\n{log}"));
    assert!(log.contains("GRUB") || log.contains("Booting"), "the bootloader ran:\n{log}");
}

#[test]
#[ignore = "needs root, the Debian mirror and qemu: builds debian-mesos against the fixture repository and tests it"]
fn debian_mesos_image_passes_its_checks_in_the_guest() {
    let fixture = common::FixtureRepo::start();
    let out = tempfile::Builder::new().prefix("image-build-").tempdir_in("/var/tmp").unwrap();
    let image = out.path().join("debian-mesos.qcow2");
    let image_arg = image.display().to_string();
    let repo_args = fixture.build_args("bookworm");
    let mut args = vec!["--quiet", "build", "--recipe", "debian-mesos", "-o", &image_arg];
    args.extend(repo_args.iter().map(String::as_str));
    common::mesos_image(&args);

    // The recipe comes from the manifest beside the image.
    let tested = Command::new(common::binary()).args(["test", "--format", "json", &image_arg]).output().unwrap();
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "mesos-image test failed:\n{report}\n{}", String::from_utf8_lossy(&tested.stderr));
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    let text = json.to_string();
    for expected in ["heat", "zookeeperd", "2181", "os-collect-config"] {
        assert!(text.contains(expected), "the report covers {expected}: {text}");
    }
}
