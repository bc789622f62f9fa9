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
