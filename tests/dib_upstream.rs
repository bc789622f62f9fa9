//! The Heat Mesos guide's ELEMENTS_PATH with the REAL upstream trees (tripleo-image-elements
//! 15.0.0, heat-agents 13.0.0, magnum 5.0.2; fetched from PyPI at test time by
//! tests/upstream/fetch.sh): the plan resolves, with DIB's library from our elements/ appended
//! as disk-image-create appends its own, and each upstream element comes from its own tree.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::upstream::UpstreamTrees;

/// `mesos-image build --dry-run` of OS + the guide's elements; returns the plan text.
fn plan(trees: &UpstreamTrees, os: &str, release: &str) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let output = Command::new(common::binary())
        .args(["build", "--dry-run", "-o"])
        .arg(out_dir.path().join("guide.qcow2"))
        .arg(os)
        .args(common::HEAT_AGENT_ELEMENTS)
        .env("ELEMENTS_PATH", trees.guide_elements_path())
        .env("DIB_RELEASE", release)
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{os} {release} plan failed:\n{stdout}\n{stderr}");
    assert!(!out_dir.path().join("guide.qcow2").exists(), "--dry-run wrote an image");
    stdout
}

/// The plan's `elements:` section: element name -> directory.
fn planned_elements(plan: &str) -> BTreeMap<String, PathBuf> {
    plan.lines()
        .skip_while(|line| line.trim_end() != "elements:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_owned();
            (name, PathBuf::from(words.next().unwrap_or_else(|| panic!("no path in `{line}`"))))
        })
        .collect()
}

fn assert_from(elements: &BTreeMap<String, PathBuf>, names: &[&str], tree: &Path) {
    for name in names {
        let path = elements.get(*name).unwrap_or_else(|| panic!("`{name}` not planned: {elements:#?}"));
        assert_eq!(path, &tree.join(name), "`{name}` came from the wrong tree");
    }
}

fn check_guide_plan(os: &str, release: &str) {
    let trees = UpstreamTrees::fetch();
    let plan = plan(&trees, os, release);
    let elements = planned_elements(&plan);
    let ours = common::repo_root().join("elements");

    // Upstream wins over our elements of the same name (docker, mesos, os-*-config, heat-config*).
    assert_from(&elements, &["docker", "mesos"], &trees.magnum);
    assert_from(&elements, &["heat-config", "heat-config-script"], &trees.heat_agents);
    assert_from(
        &elements,
        &["os-collect-config", "os-refresh-config", "os-apply-config", "os-svc-install", "pip-manifest"],
        &trees.tripleo,
    );
    // What upstream names in element-deps and no upstream tree has: DIB's library, ours.
    assert_from(
        &elements,
        &["package-installs", "source-repositories", "pip-and-virtualenv", "manifests", "svc-map", "dib-python", os],
        &ours,
    );

    // The upstream scripts themselves are planned.
    for script in ["04-os-svc-install", "50-heat-config-hook-script", "01-pip-manifest", "99-install-config-templates"]
    {
        assert!(plan.lines().any(|l| l.split_whitespace().next() == Some(script)), "{script} not planned:\n{plan}");
    }
}

#[test]
#[ignore = "downloads the upstream element sdists with pip (network)"]
fn guide_elements_path_plans_for_trusty_with_upstream_elements_winning() {
    check_guide_plan("ubuntu", "trusty");
}

#[test]
#[ignore = "downloads the upstream element sdists with pip (network)"]
fn guide_elements_path_plans_for_bookworm_with_upstream_elements_winning() {
    check_guide_plan("debian-minimal", "bookworm");
}
