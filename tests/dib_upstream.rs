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

/// `mesos-image build --dry-run --json` with diskimage-builder's own tree on ELEMENTS_PATH.
fn dib_tree_plan(trees: &UpstreamTrees, elements: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(common::binary());
    command
        .args(["build", "--dry-run", "--json"])
        .args(elements)
        .env("ELEMENTS_PATH", &trees.dib)
        .env("DIB_RELEASE", "bookworm")
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
#[ignore = "downloads the upstream element sdists with pip (network)"]
fn dib_tree_disk_and_os_elements_are_replaced_by_ours_with_a_note() {
    let trees = UpstreamTrees::fetch();
    let ours = common::repo_root().join("elements");
    let output = dib_tree_plan(&trees, &["debian", "vm", "block-device-gpt"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan JSON");

    // Each replacement is in the plan, with what stands in and why.
    let replaced: BTreeMap<String, String> = plan["substitutions"]
        .as_array()
        .expect("substitutions")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["by"].as_str().unwrap().to_owned()))
        .collect();
    for name in ["vm", "debian-minimal", "dpkg", "package-installs"] {
        let by = replaced.get(name).unwrap_or_else(|| panic!("{name} not replaced: {replaced:?}"));
        assert_eq!(by, &format!("mesos-image's {}", ours.join(name).display()), "{name}");
    }
    assert_eq!(replaced["block-device-gpt"], "the disk stage (GPT)");
    assert_eq!(plan["image"]["partitioning"], "gpt", "block-device-gpt chose the disk stage's table");

    // Ours are planned; DIB's `debian` and the rest of its library run unchanged.
    let planned: BTreeMap<String, PathBuf> = plan["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), PathBuf::from(e["path"].as_str().unwrap())))
        .collect();
    assert_from(&planned, &["vm", "debian-minimal", "dpkg", "package-installs"], &ours);
    assert_from(&planned, &["debian", "sysprep", "openssh-server"], &trees.dib);
    for gone in ["bootloader", "block-device-gpt", "debootstrap"] {
        assert!(!planned.contains_key(gone), "{gone} planned: {planned:?}");
    }
    // DIB's package-installs scripts are not planned beside our package step.
    let scripts = plan["scripts"].as_object().unwrap();
    for list in scripts.values() {
        for script in list.as_array().unwrap() {
            let name = script["name"].as_str().unwrap_or_default();
            assert!(!name.contains("package-installs") && !name.contains("package-uninstalls"), "{script}");
        }
    }

    // `elements resolve` agrees with build, and logs the same notes.
    let resolved = Command::new(common::binary())
        .args(["elements", "resolve", "debian", "vm", "block-device-gpt"])
        .env("ELEMENTS_PATH", &trees.dib)
        .env("DIB_RELEASE", "bookworm")
        .output()
        .unwrap();
    assert!(resolved.status.success(), "{}", String::from_utf8_lossy(&resolved.stderr));
    let names: Vec<String> = String::from_utf8_lossy(&resolved.stdout).lines().map(str::to_owned).collect();
    assert_eq!(names, planned.keys().cloned().collect::<Vec<_>>());
    let notes = String::from_utf8_lossy(&resolved.stderr);
    let vm_note =
        format!("element vm: diskimage-builder's {} is replaced by mesos-image's", trees.dib.join("vm").display());
    assert_eq!(notes.matches(&vm_note).count(), 1, "{notes}");
    // A replaced element has that one line only, never also "DIB's overrides ours"; an element of
    // DIB's that wins over ours (openssh-server) gets the override line, as DIB's search order says.
    for replaced in ["vm", "debian-minimal", "dpkg", "package-installs"] {
        assert!(!notes.contains(&format!("element {replaced}: {}", trees.dib.join(replaced).display())), "{notes}");
    }
    let ssh_override = format!("element openssh-server: {} overrides ", trees.dib.join("openssh-server").display());
    assert_eq!(notes.matches(&ssh_override).count(), 1, "{notes}");
}

#[test]
#[ignore = "downloads the upstream element sdists with pip (network)"]
fn dib_tree_layouts_that_cannot_run_are_refused_in_one_line() {
    let trees = UpstreamTrees::fetch();
    let lvm = dib_tree_plan(&trees, &["debian", "vm", "block-device-efi-lvm"], &[]);
    let err = String::from_utf8_lossy(&lvm.stderr);
    assert!(!lvm.status.success());
    assert_eq!(
        err.trim_end().lines().last().unwrap(),
        "error: element `block-device-efi-lvm` (diskimage-builder's) cannot run under mesos-image: LVM layouts are not written by the disk stage"
    );
    let yaml = dib_tree_plan(&trees, &["debian", "vm"], &[("DIB_BLOCK_DEVICE_CONFIG", "- local_loop: {name: image0}")]);
    let err = String::from_utf8_lossy(&yaml.stderr);
    assert!(!yaml.status.success());
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.starts_with("error: DIB_BLOCK_DEVICE_CONFIG: no `partitioning` node"), "{err}");
}
