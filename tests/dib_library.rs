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

    let tested = Command::new(common::binary())
        .args(["test", "--accel", "tcg", "--format", "json", "--timeout", "900", "--recipe"])
        .arg(fixtures.join("checks.yaml"))
        .arg(&image)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "mesos-image test failed:\n{report}\n{}", String::from_utf8_lossy(&tested.stderr));
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(json["finished"], true, "{report}");
    let results = json["results"].as_array().expect("results");
    // Every check of the fixture reported (none silently dropped), and each one passed.
    let fixture: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(fixtures.join("checks.yaml")).unwrap()).unwrap();
    let expected = fixture["checks"].as_sequence().expect("checks list").len();
    assert_eq!(results.len(), expected, "{report}");
    for result in results {
        assert_eq!(result["result"], "pass", "{result}");
    }
}
