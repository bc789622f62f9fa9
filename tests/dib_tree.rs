//! diskimage-builder 3.43's own functional-test image, built by mesos-image: its `debian`
//! element and `debian/test-elements/build-succeeds` (DIB_RELEASE=stable), with DIB's tree on
//! ELEMENTS_PATH as tests/run_functests.sh puts it, `-n` as DIB's functional tests build, and
//! `vm` (qcow2: -t tar is not built). DIB's vm, debian-minimal, dpkg and package-installs are
//! replaced by ours (one line each); the rest of DIB's library runs unchanged. Booted by
//! `mesos-image test` under TCG; tests/fixtures/dib-tree/checks.yaml checks DIB's elements'
//! effects in the guest.

mod common;

use std::process::Command;

use common::upstream::{join_path, UpstreamTrees};

#[test]
#[ignore = "root, network (Debian mirror), qemu boot (TCG): about 10 minutes"]
fn dib_debian_build_succeeds_builds_and_boots_with_dibs_tree_on_the_path() {
    let trees = UpstreamTrees::fetch();
    let fixtures = common::repo_root().join("tests/fixtures/dib-tree");
    let out_dir = tempfile::Builder::new().prefix("dib-tree-").tempdir_in("/var/tmp").unwrap();
    let dib = common::disk_image_create_in(out_dir.path());

    let started = std::time::Instant::now();
    let built = Command::new(&dib)
        // DIB's functional tests build `-t tar`; the disk is what gets booted below.
        .args(["-n", "-t", "qcow2,tar", "-o"])
        .arg(out_dir.path().join("image"))
        .args(["debian", "build-succeeds", "vm"])
        .env("ELEMENTS_PATH", join_path(&[&trees.dib, &trees.dib.join("debian/test-elements")]))
        // DIB 3.43's dib-python still picks Python 2 on Debian; stable has none.
        .env("DIB_PYTHON_VERSION", "3")
        .env_remove("DIB_RELEASE")
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "build failed:\n{}\n{stderr}", String::from_utf8_lossy(&built.stdout));
    eprintln!("built in {:.0?}", started.elapsed());
    // Each replacement was logged once; DIB's `debian` itself was not replaced.
    for name in ["vm", "debian-minimal", "dpkg", "package-installs"] {
        let note = format!("element {name}: diskimage-builder's {} is replaced by", trees.dib.join(name).display());
        assert_eq!(stderr.matches(&note).count(), 1, "`{note}` not logged once:\n{stderr}");
        // ...and only that line: DIB's copy did not "override" ours, it was replaced.
        let overridden = format!("element {name}: {} overrides", trees.dib.join(name).display());
        assert!(!stderr.contains(&overridden), "{stderr}");
    }
    assert!(!stderr.contains("element debian: diskimage-builder's"), "{stderr}");
    let image = out_dir.path().join("image.qcow2");
    assert!(image.is_file(), "no {}", image.display());
    let tar = Command::new("tar").arg("-tf").arg(out_dir.path().join("image.tar")).output().unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let listing = String::from_utf8_lossy(&tar.stdout);
    for path in ["./etc/debian_version", "./usr/bin/apt-get", "./boot/"] {
        assert!(listing.lines().any(|line| line == path), "{path} not in image.tar");
    }
    assert!(!listing.lines().any(|line| line.starts_with("./proc/") && line != "./proc/"), "proc archived");

    let took = common::boot_and_check(&image, &fixtures.join("checks.yaml"), 1200);
    eprintln!("booted and checked in {took:.0?}");
}
