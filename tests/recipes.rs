//! Every shipped recipe loads with the real recipe loader and says what its image needs.

mod common;

use mesos_image::recipe::{BaseMethod, Check, FileCheck, ImageFormat, Recipe, ServiceCheck};

use common::recipes_dir;

fn load(name: &str) -> Recipe {
    Recipe::load_file(&recipes_dir().join(format!("{name}.yaml"))).unwrap()
}

use common::elements_dir;

#[test]
fn every_recipe_file_loads_and_is_named_after_its_file() {
    let mut count = 0;
    for entry in std::fs::read_dir(recipes_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let recipe = Recipe::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(recipe.name, stem, "{}", path.display());
        for element in &recipe.elements {
            assert!(
                elements_dir().join(element).is_dir(),
                "{}: element `{element}` is not in elements/",
                path.display()
            );
        }
        count += 1;
    }
    assert!(count >= 3, "expected ubuntu-mesos, debian-mesos and debian-base, found {count}");
}

/// Issue 11: every shipped image must boot clean, so every recipe's checks say so.
#[test]
fn every_recipe_checks_a_clean_first_boot() {
    for name in ["debian-base", "debian-mesos", "ubuntu-mesos"] {
        let recipe = load(name);
        for check in [Check::CloudInitDone, Check::LocaleValid, Check::NoFailedUnits] {
            assert!(recipe.checks.contains(&check), "{name} lacks {check:?}");
        }
    }
}

/// Debian cloud recipes boot the cloud kernel (no hardware drivers); DIB mode keeps DIB's
/// generic kernel; trusty keeps the virtual one.
#[test]
fn debian_recipes_choose_the_cloud_kernel() {
    use mesos_image::element::Phase;
    use mesos_image::plan::{HostContext, Plan, PlanOptions};

    let root = common::repo_root();
    let host = HostContext { env: Default::default(), distro: mesos_image::mirror::HostDistro::default() };
    let options = PlanOptions {
        elements_path: vec![root.join("elements")],
        host,
        overrides: mesos_image::recipe::Overrides {
            mirror: Some("http://127.0.0.1:9/debian".into()),
            ..Default::default()
        },
        ..PlanOptions::default()
    };
    let installed = |plan: &Plan| plan.packages[&Phase::Install].install.clone();
    let base = installed(&Plan::from_recipe(&load("debian-base"), &options).unwrap());
    assert!(base.iter().any(|p| p == "linux-image-cloud-amd64"), "{base:?}");
    assert!(!base.iter().any(|p| p == "linux-image-amd64"), "{base:?}");
    let elements = ["debian-minimal".to_owned(), "vm".to_owned()];
    let dib = installed(&Plan::from_elements(&elements, &options).unwrap());
    assert!(dib.iter().any(|p| p == "linux-image-amd64"), "DIB mode keeps DIB's kernel: {dib:?}");
    assert!(!dib.iter().any(|p| p == "linux-image-cloud-amd64"), "{dib:?}");
    assert_eq!(load("ubuntu-mesos").environment.get("DIB_KERNEL_FLAVOUR"), None);
}

#[test]
fn ubuntu_mesos_is_the_heat_templates_image() {
    let recipe = load("ubuntu-mesos");
    assert_eq!(recipe.distro, "ubuntu");
    assert_eq!(recipe.release, "trusty");
    assert_eq!(recipe.base, BaseMethod::CloudImage);
    assert_eq!(recipe.elements[0], "ubuntu");
    assert_eq!(recipe.elements[1..], *common::HEAT_AGENT_ELEMENTS);
    assert_eq!(recipe.image.formats, vec![ImageFormat::Qcow2]);
    assert_eq!(recipe.glance.disk_format.as_deref(), Some("qcow2"));
    assert_eq!(recipe.glance.container_format.as_deref(), Some("bare"));
    assert_eq!(recipe.glance.visibility.as_deref(), Some("public"));
    assert_eq!(recipe.glance.properties.get("os_distro").map(String::as_str), Some("ubuntu"));
}

/// The section 6 checklist, shared by both Mesos recipes.
fn assert_mesos_checks(recipe: &Recipe) {
    let checks = &recipe.checks;
    for package in ["zookeeperd", "mesos", "marathon", "docker.io", "jq", "curl"] {
        assert!(checks.contains(&Check::Package(package.into())), "{}: package {package}", recipe.name);
    }
    assert!(checks.contains(&Check::File(FileCheck {
        path: "/etc/os-collect-config.conf".into(),
        mode: Some("600".into()),
        contains: Some("command = os-refresh-config".into()),
    })));
    for dir in ["/etc/mesos-master", "/etc/mesos-slave", "/etc/marathon/conf"] {
        assert!(checks.contains(&Check::Dir(dir.into())), "{}: dir {dir}", recipe.name);
    }
    for service in ["docker", "zookeeper", "mesos-master", "mesos-slave", "marathon"] {
        let disabled = Check::Service(ServiceCheck { name: service.into(), enabled: false, active: None });
        assert!(checks.contains(&disabled), "{}: {service} must not start at boot", recipe.name);
    }
    let collector = Check::Service(ServiceCheck { name: "os-collect-config".into(), enabled: true, active: None });
    assert!(checks.contains(&collector));
    for port in [2181, 5050, 5051, 8080] {
        assert!(checks.contains(&Check::PortClosed(port)), "{}: port {port}", recipe.name);
    }
    assert!(checks.contains(&Check::CloudInitDone));
    assert!(checks.contains(&Check::HeatDeployment("script".into())));
}

#[test]
fn mesos_recipes_carry_the_image_checklist() {
    assert_mesos_checks(&load("ubuntu-mesos"));
    assert_mesos_checks(&load("debian-mesos"));
}

#[test]
fn debian_mesos_is_the_same_image_on_bookworm() {
    let ubuntu = load("ubuntu-mesos");
    let debian = load("debian-mesos");
    assert_eq!((debian.distro.as_str(), debian.release.as_str()), ("debian", "bookworm"));
    assert_eq!(debian.base, BaseMethod::Mmdebstrap);
    assert_eq!(debian.elements[0], "debian-minimal");
    for element in ubuntu.elements.iter().filter(|e| *e != "ubuntu") {
        assert!(debian.elements.contains(element), "debian-mesos lacks `{element}`");
    }
    assert_eq!(debian.checks, ubuntu.checks);
}

#[test]
fn debian_base_needs_only_a_debian_mirror() {
    let recipe = load("debian-base");
    assert_eq!(recipe.elements, ["debian-minimal", "vm", "cloud-init-datasources"]);
    assert!(recipe.environment.keys().all(|k| !k.starts_with("DIB_MESOS")));
    assert!(recipe.checks.contains(&Check::CloudInitDone));
}

/// The plan of the real ubuntu-mesos recipe against our real elements: what a trusty build would
/// run, checked without the Ubuntu archive.
#[test]
fn ubuntu_mesos_plan_is_a_trusty_upstart_cloud_image_build() {
    use mesos_image::element::Phase;
    use mesos_image::plan::{HostContext, Plan, PlanOptions};
    use mesos_image::recipe::BaseMethod;

    let root = common::repo_root();
    let recipe = Recipe::load_file(&root.join("recipes/ubuntu-mesos.yaml")).unwrap();
    let host = HostContext { env: Default::default(), distro: mesos_image::mirror::HostDistro::default() };
    let options = PlanOptions { elements_path: vec![root.join("elements")], host, ..PlanOptions::default() };
    let plan = Plan::from_recipe(&recipe, &options).unwrap();

    assert_eq!((plan.distro.as_str(), plan.release.as_str()), ("ubuntu", "trusty"));
    assert_eq!(plan.base, Some(BaseMethod::CloudImage));
    assert_eq!(plan.env["DIB_INIT_SYSTEM"], "upstart");
    let elements: Vec<&str> = plan.elements.iter().map(|e| e.name.as_str()).collect();
    for expected in
        ["ubuntu", "vm", "docker", "zookeeper", "mesos", "marathon", "java", "os-collect-config", "heat-config-script"]
    {
        assert!(elements.contains(&expected), "{expected} in {elements:?}");
    }
    // The historical Mesosphere repository is the default source of mesos and marathon.
    assert!(
        plan.env.get("DIB_MESOS_REPO").is_none_or(|repo| repo.contains("trusty")),
        "{:?}",
        plan.env.get("DIB_MESOS_REPO")
    );
    let install = &plan.packages[&Phase::Install].install;
    for expected in ["mesos", "marathon", "zookeeperd", "linux-image-virtual", "openjdk-8-jre-headless"] {
        assert!(install.iter().any(|p| p == expected), "{expected} installed on trusty: {install:?}");
    }
    // The repository is configured in pre-install, before the install phase's one transaction.
    let pre_install: Vec<&str> = plan.scripts[&Phase::PreInstall].iter().map(|s| s.name.as_str()).collect();
    assert!(pre_install.contains(&"05-mesos-repo"), "{pre_install:?}");
}

/// As the build runs a phase script: source `environment_d` in order, then run `script`, with
/// `env`, in a private user and mount namespace whose /etc is an empty tmpfs (the host's /etc is
/// never touched) and with `stub_bin` first on PATH. What the script left in /etc is copied to
/// `out`.
fn run_locale_script(
    environment_d: &[&str],
    script: &str,
    env: &[(&str, &str)],
    stub_bin: &std::path::Path,
    out: &std::path::Path,
) {
    let wrapper = r#"mount -t tmpfs tmpfs /etc && mkdir -p /etc/default /etc/cloud/cloud.cfg.d || exit 99
out=$1 script=$2; shift 2
for file in "$@"; do . "$file" || exit 98; done
"$script"; rc=$?; cp -r /etc "$out" && exit $rc"#;
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "bash", "-c", wrapper, "bash"])
        .arg(out)
        .arg(script)
        .args(environment_d)
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stub_bin.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} {env:?}: {}: {stderr}", output.status);
}

/// Issue 23 on trusty, by plan (no Ubuntu archive here): the real binary's dry-run plan of the
/// ubuntu-mesos recipe runs debian-common's locale script in post-install and, with the plan's
/// environment and environment.d, it generates en_US.UTF-8 (the LANG it sets) the Ubuntu way:
/// `locale-gen NAME...`, no /etc/locale.gen, LANG in /etc/default/locale and cloud-init's
/// `locale`. `locale-gen` is a stub fixture recording its arguments (Ubuntu's cannot run here).
/// Another LANG is generated beside en_US.UTF-8; the Debian branch still uses /etc/locale.gen.
#[test]
fn ubuntu_mesos_plan_generates_en_us_utf8_the_ubuntu_way() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.asc");
    std::fs::write(&key, "fixture key\n").unwrap();
    let (output, _) = common::run_hermetic(
        dir.path(),
        &[],
        &[
            "build",
            "--dry-run",
            "--json",
            "--recipe",
            "ubuntu-mesos",
            "-o",
            "x.qcow2",
            "--mesos-repo",
            "http://127.0.0.1:1 trusty main",
            "--mesos-repo-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((plan["distro"].as_str(), plan["release"].as_str()), (Some("ubuntu"), Some("trusty")));
    let scripts = plan["scripts"]["post-install.d"].as_array().unwrap();
    let locale_script = scripts
        .iter()
        .find(|s| s["name"] == "05-debian-common-locale")
        .unwrap_or_else(|| panic!("no locale script in post-install.d: {scripts:?}"));
    assert_eq!(locale_script["element"], "debian-common");
    let script = locale_script["path"].as_str().unwrap();
    let environment_d: Vec<&str> =
        plan["environment_d"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    let plan_env: Vec<(&str, &str)> =
        plan["env"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();

    // Fixture: a `locale-gen` that records each call's arguments, one call a line.
    let stub_bin = dir.path().join("bin");
    std::fs::create_dir(&stub_bin).unwrap();
    let stub = stub_bin.join("locale-gen");
    std::fs::write(&stub, "#!/bin/sh\necho \"[$*]\" >> \"$LOCALE_GEN_CALLS\"\n").unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let record = dir.path().join("locale-gen.calls");
    let record_var = ("LOCALE_GEN_CALLS", record.to_str().unwrap());

    // (environment.d sourced, environment, LANG expected, locale-gen calls expected)
    let mut planned = plan_env.clone();
    planned.push(record_var);
    let cases: [(&[&str], Vec<(&str, &str)>, &str, &str); 4] = [
        (&environment_d, planned, "en_US.UTF-8", "[en_US.UTF-8]\n"),
        (
            &[],
            vec![("DISTRO_NAME", "ubuntu"), ("DIB_DEBIAN_LOCALE", "C.UTF-8"), record_var],
            "C.UTF-8",
            "[en_US.UTF-8]\n",
        ),
        (
            &[],
            vec![("DISTRO_NAME", "ubuntu"), ("DIB_DEBIAN_LOCALE", "de_DE.UTF-8"), record_var],
            "de_DE.UTF-8",
            "[en_US.UTF-8 de_DE.UTF-8]\n",
        ),
        (&[], vec![("DISTRO_NAME", "debian"), ("DIB_DEBIAN_LOCALE", "C.UTF-8"), record_var], "C.UTF-8", "[]\n"),
    ];
    for (index, (environment_d, env, lang, calls)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("etc-{index}"));
        let _ = std::fs::remove_file(&record);
        run_locale_script(environment_d, script, &env, &stub_bin, &out);
        let ubuntu = index < 3;
        let case = format!("case {index}, LANG={lang}");
        assert_eq!(std::fs::read_to_string(&record).unwrap(), calls, "{case}: locale-gen calls");
        assert_eq!(std::fs::read_to_string(out.join("default/locale")).unwrap(), format!("LANG={lang}\n"), "{case}");
        let cloud = std::fs::read_to_string(out.join("cloud/cloud.cfg.d/05-mesos-image-locale.cfg")).unwrap();
        assert!(cloud.ends_with(&format!("\nlocale: {lang}\n")), "{case}: {cloud}");
        let locale_gen = std::fs::read_to_string(out.join("locale.gen")).ok();
        if ubuntu {
            assert_eq!(locale_gen, None, "{case}: Ubuntu's locale-gen never reads /etc/locale.gen");
        } else {
            assert_eq!(locale_gen.as_deref(), Some("en_US.UTF-8 UTF-8\n"), "{case}");
        }
    }
}
