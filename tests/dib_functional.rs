//! diskimage-builder 3.43's own functional test for Debian, run the way its
//! tests/run_functests.sh runs it: the `debian` element with its test element `build-succeeds`,
//! `-t tar`, ELEMENTS_PATH holding the test-elements directory and DIB's element library
//! (which disk-image-create appends itself). The REAL diskimage-builder tree is fetched from
//! PyPI at test time (tests/upstream/fetch.sh); its elements run unchanged, its disk and OS
//! layers by our stated substitution rule.

mod common;

use std::process::Command;

use common::upstream::{join_path, UpstreamTrees};

/// Paths inside an image tarball, without a leading `./`.
fn tar_listing(tarball: &std::path::Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(tarball).output().unwrap();
    assert!(out.status.success(), "tar -tf {}: {}", tarball.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").to_owned()).collect()
}

#[test]
#[ignore = "root, network (PyPI for diskimage-builder, the Debian mirror); builds a Debian tree"]
fn dib_debian_build_succeeds_as_tar() {
    let trees = UpstreamTrees::fetch();
    let test_elements = trees.dib.join("debian/test-elements");
    let out_dir = tempfile::Builder::new().prefix("dib-functest-").tempdir_in("/var/tmp").unwrap();
    let image = out_dir.path().join("image");
    let output = Command::new(common::binary())
        .args(["build", "-t", "tar", "-o"])
        .arg(&image)
        .args(["debian", "build-succeeds"])
        .env("ELEMENTS_PATH", join_path(&[&test_elements, &trees.dib]))
        .env("DIB_SHOW_IMAGE_USAGE", "1")
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "debian + build-succeeds failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tarball = out_dir.path().join("image.tar");
    assert!(tarball.is_file(), "no {} (DIB names a tar image <name>.tar)", tarball.display());
    let listing = tar_listing(&tarball);
    // What run_functests.sh checks: the build did not leave DIB's should-fail sentinel.
    assert!(!listing.iter().any(|p| p == "tmp/dib-test-should-fail"), "sentinel present");
    // And that it is the Debian the `debian` element makes: its openssh-server dependency ran.
    for path in ["etc/debian_version", "usr/sbin/sshd"] {
        assert!(listing.iter().any(|p| p == path), "{path} missing from the tarball");
    }
}
