//! The upstream Heat agent elements, unchanged from their sdists (tripleo-image-elements 15.0.0:
//! os-collect-config, os-refresh-config, os-apply-config; heat-agents 13.0.0: heat-config,
//! heat-config-script; fetched by tests/upstream/fetch.sh), built as an operator runs
//! disk-image-create: the binary invoked under that name, the trees on ELEMENTS_PATH, DIB's
//! library appended, the source install type (DIB's default). Debian bullseye, because
//! tripleo-image-elements 15.0.0 fails on bookworm under DIB itself (docs/dib-compat.md). The
//! image is booted by `mesos-image test` under TCG and tests/fixtures/dib-agents/checks.yaml
//! checks the agent chain in the environment the guest's services get (issue #23): the Python
//! locale round trip os-collect-config's local collector does, then Heat `script` deployments
//! through the local collector, one applied by the running os-collect-config service on its own
//! and one by a one-shot `os-collect-config --one-time --force ... local` run. Our `docker` and `zookeeper` elements (the latter with `java`) are in the image too,
//! as issue #9 asks, and the checks see them installed, off at boot, and working.

mod common;

use std::process::Command;

use common::upstream::{join_path, UpstreamTrees};

const ELEMENTS: &[&str] = &[
    "debian-minimal",
    "vm",
    "os-collect-config",
    "os-refresh-config",
    "os-apply-config",
    "heat-config",
    "heat-config-script",
    // cloud-init reads the test's NoCloud seed; debian-minimal has none.
    "cloud-init-datasources",
    // The site element that trusts the build host's CAs (a TLS-inspecting proxy) for pip.
    "host-ca",
    // Ours, as the image has them: Docker and ZooKeeper (with java) installed, off at boot.
    "docker",
    "zookeeper",
];

#[test]
#[ignore = "root, network (Debian mirror and PyPI), qemu boot (TCG): about 10 minutes"]
fn upstream_agent_elements_apply_a_heat_deployment_in_a_booted_bullseye_image() {
    let trees = UpstreamTrees::fetch();
    let fixtures = common::repo_root().join("tests/fixtures/dib-agents");
    let out_dir = tempfile::Builder::new().prefix("dib-agents-").tempdir_in("/var/tmp").unwrap();
    let dib = common::disk_image_create_in(out_dir.path());

    let started = std::time::Instant::now();
    let built = Command::new(&dib)
        .arg("-o")
        .arg(out_dir.path().join("agents"))
        .args(ELEMENTS)
        .env("ELEMENTS_PATH", join_path(&[&trees.tripleo, &trees.heat_agents, &fixtures.join("elements")]))
        .env("DIB_RELEASE", "bullseye")
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "build failed:\n{}\n{stderr}", String::from_utf8_lossy(&built.stdout));
    eprintln!("built in {:.0?}", started.elapsed());
    // The upstream elements won over ours of the same name, each said so once.
    let upstream = [
        (&trees.tripleo, "os-collect-config"),
        (&trees.tripleo, "os-refresh-config"),
        (&trees.tripleo, "os-apply-config"),
        (&trees.heat_agents, "heat-config"),
        (&trees.heat_agents, "heat-config-script"),
    ];
    for (tree, name) in upstream {
        let line = format!("element {name}: {} overrides", tree.join(name).display());
        assert_eq!(stderr.matches(&line).count(), 1, "`{line}` not logged once:\n{stderr}");
    }
    let image = out_dir.path().join("agents.qcow2");
    assert!(image.is_file(), "no {}", image.display());

    let took = common::boot_and_check(&image, &fixtures.join("checks.yaml"), 1200);
    eprintln!("booted and checked in {took:.0?}");
}
