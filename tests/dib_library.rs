//! DIB's library elements, ours, in a real image: `debian-minimal vm growroot devuser
//! cloud-init-datasources runtime-ssh-host-keys openssh-server` built DIB-style
//! (DIB_RELEASE=bookworm, elements on the command line), booted by `mesos-image test` (TCG),
//! and each element's effect checked in the guest by tests/fixtures/dib-library/checks.yaml.

mod common;

use std::process::Command;

const ELEMENTS: &[&str] = &[
    "debian-minimal",
    "vm",
    "growroot",
    "devuser",
    "cloud-init-datasources",
    "runtime-ssh-host-keys",
    "openssh-server",
];

#[test]
#[ignore = "root, network (Debian mirror), qemu boot: minutes"]
fn dib_library_elements_show_their_effect_in_a_booted_image() {
    let fixtures = common::repo_root().join("tests/fixtures/dib-library");
    let out_dir = tempfile::Builder::new().prefix("dib-library-").tempdir_in("/var/tmp").unwrap();
    let image = out_dir.path().join("dib-library.qcow2");
    let built = Command::new(common::binary())
        .args(["build", "-o"])
        .arg(&image)
        .args(ELEMENTS)
        .env("DIB_RELEASE", "bookworm")
        .env("DIB_DEV_USER_PWDLESS_SUDO", "1")
        .env("DIB_DEV_USER_AUTHORIZED_KEYS", fixtures.join("authorized_keys"))
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    common::boot_and_check(&image, &fixtures.join("checks.yaml"), 900);
}
