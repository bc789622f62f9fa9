//! Plan construction on the fixture elements: packages after pkg-map and arch/when/installtype
//! filtering, environment, distro/release/base from environment.d, recipe precedence, mirrors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use mesos_image::element::Phase;
use mesos_image::mirror::HostDistro;
use mesos_image::plan::{HostContext, Plan, PlanError, PlanOptions};
use mesos_image::recipe::{BaseMethod, Overrides, Recipe};
use mesos_image::settings::ByteSize;

use common::fixture;

fn host(env: &[(&str, &str)]) -> HostContext {
    HostContext {
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        distro: HostDistro { id: Some("debian".into()), archive: Some("http://host-archive.example/debian".into()) },
    }
}

fn options(host: HostContext) -> PlanOptions {
    PlanOptions { elements_path: vec![fixture("elements/build")], host, ..PlanOptions::default() }
}

fn dib(names: &[&str], options: &PlanOptions) -> Result<Plan, PlanError> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    Plan::from_elements(&names, options)
}

fn names(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

#[test]
fn dib_mode_reads_distro_release_and_base_from_environment_d() {
    let plan = dib(&["app"], &options(host(&[]))).unwrap();
    assert_eq!(plan.recipe, None);
    assert_eq!((plan.distro.as_str(), plan.release.as_str(), plan.arch.as_str()), ("debian", "bookworm", "amd64"));
    assert_eq!(plan.base, Some(BaseMethod::Mmdebstrap));
    let elements: Vec<&str> = plan.elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(elements, ["app", "fake-os"]);
}

#[test]
fn packages_are_filtered_mapped_and_sorted_per_phase() {
    let plan = dib(&["app"], &options(host(&[]))).unwrap();
    let install = &plan.packages[&Phase::Install];
    assert_eq!(
        names(&install.install),
        [
            "amd-only",
            "base-tool",
            "both-when",
            "build-dep",
            "curl",
            "default-jre-headless",
            "feature-on",
            "jq",
            "json-listed",
            "linux-image-amd64",
            "multi",
            // DIB's default install type is `source`.
            "src-only"
        ]
    );
    assert_eq!(names(&install.uninstall), ["old-thing"]);
    assert_eq!(names(&install.build_only), ["build-dep"]);
    assert_eq!(names(&plan.packages[&Phase::PreInstall].install), ["json-pre", "repo-tool"]);
    assert_eq!(names(&plan.packages[&Phase::PostInstall].install), ["late-tool"]);
    assert_eq!(plan.pkg_maps["app"]["app-java"], "default-jre-headless");
    assert_eq!(plan.pkg_maps["app"]["dropped-on-debian"], "");
}

#[test]
fn arch_when_and_installtype_follow_the_environment() {
    let options = PlanOptions {
        overrides: Overrides { arch: Some("aarch64".into()), ..Overrides::default() },
        ..options(host(&[("DIB_FAKE_FLAG", "0"), ("DIB_INSTALLTYPE_app", "source")]))
    };
    let plan = dib(&["app"], &options).unwrap();
    assert_eq!(plan.arch, "arm64");
    let install = names(&plan.packages[&Phase::Install].install);
    assert!(install.contains(&"arm-kernel") && install.contains(&"not-amd"), "{install:?}");
    assert!(!install.contains(&"amd-only") && !install.contains(&"linux-image-amd64"), "{install:?}");
    assert!(install.contains(&"feature-off") && !install.contains(&"feature-on"), "{install:?}");
    assert!(!install.contains(&"both-when"), "{install:?}");
    assert!(install.contains(&"src-only") && !install.contains(&"pkg-only"), "{install:?}");
    // The arm64 entry of `multi` goes to pre-install.d, the amd64 one is dropped.
    assert!(!install.contains(&"multi"));
    assert!(names(&plan.packages[&Phase::PreInstall].install).contains(&"multi"));
}

#[test]
fn unset_when_variable_is_an_error_naming_element_file_and_package() {
    // DIB_FAKE_FLAG is defaulted by fake-os's environment.d, so use a library without it.
    let dir = tempfile::tempdir().unwrap();
    let os = dir.path().join("os");
    std::fs::create_dir_all(os.join("environment.d")).unwrap();
    std::fs::write(os.join("element-provides"), "operating-system\n").unwrap();
    std::fs::write(os.join("environment.d/10-os"), "export DISTRO_NAME=debian DIB_RELEASE=bookworm\n").unwrap();
    std::fs::write(os.join("package-installs.yaml"), "gated:\n  when: DIB_NEVER_SET = 1\n").unwrap();
    let options = PlanOptions { elements_path: vec![dir.path().to_owned()], ..options(host(&[])) };
    let err = dib(&["os"], &options).unwrap_err().to_string();
    assert!(
        err.contains("os/package-installs.yaml") && err.contains("`gated`") && err.contains("DIB_NEVER_SET"),
        "{err}"
    );
}

#[test]
fn environment_holds_every_documented_variable() {
    let options = PlanOptions {
        overrides: Overrides {
            packages: vec!["vim".into()],
            environment: BTreeMap::from([("DIB_MESOS_REPO".to_string(), "deb file:/repo ./".to_string())]),
            ..Overrides::default()
        },
        image_name: Some("out-image".into()),
        trace: 1,
        ..options(host(&[("DIB_HOST_THING", "yes"), ("NOT_DIB", "no")]))
    };
    let plan = dib(&["app"], &options).unwrap();
    let env = &plan.env;
    assert_eq!(env["DIB_RELEASE"], "bookworm");
    assert_eq!(env["DISTRO_NAME"], "debian");
    assert_eq!(env["ARCH"], "amd64");
    assert_eq!(env["DIB_INIT_SYSTEM"], "systemd");
    assert_eq!(env["IMAGE_ELEMENT"], "app fake-os");
    assert_eq!(env["ELEMENTS_PATH"], fixture("elements/build").canonicalize().unwrap().display().to_string());
    assert_eq!(env["IMAGE_NAME"], "out-image");
    assert_eq!(env["DIB_DEBUG_TRACE"], "1");
    assert_eq!(env["DIB_HOST_THING"], "yes");
    assert_eq!(env["DIB_MESOS_REPO"], "deb file:/repo ./");
    assert!(!env.contains_key("NOT_DIB"));
    // -p packages go to the install phase, never into the environment.
    assert!(plan.packages[&Phase::Install].install.contains(&"vim".to_string()));
    assert!(!env.values().any(|v| v == "vim"));
}

#[test]
fn release_flag_wins_over_element_default() {
    let options = PlanOptions {
        overrides: Overrides { release: Some("trixie".into()), ..Overrides::default() },
        ..options(host(&[]))
    };
    assert_eq!(dib(&["app"], &options).unwrap().release, "trixie");
}

#[test]
fn os_element_without_base_leaves_base_to_its_root_d_and_needs_a_release() {
    let err = dib(&["user-os"], &options(host(&[]))).unwrap_err();
    assert!(matches!(err, PlanError::NoRelease { .. }), "{err}");
    let plan = dib(&["user-os"], &options(host(&[("DIB_RELEASE", "trusty")]))).unwrap();
    assert_eq!(plan.base, None);
    assert_eq!(plan.distro, "ubuntu");
    assert_eq!(plan.env["DIB_INIT_SYSTEM"], "upstart");
    // Host sources are Debian's: never used for an Ubuntu target.
    assert_eq!(plan.mirror, None);
    assert!(!plan.env.contains_key("DIB_DISTRIBUTION_MIRROR"));
}

#[test]
fn no_distro_name_is_an_error() {
    let err = dib(&["no-distro-os"], &options(host(&[]))).unwrap_err();
    assert!(matches!(err, PlanError::NoDistro { .. }), "{err}");
}

#[test]
fn a_block_device_d_hook_is_refused_naming_element_and_script() {
    let extra = tempfile::tempdir().unwrap();
    let element = extra.path().join("disk-tweak");
    std::fs::create_dir_all(element.join("block-device.d")).unwrap();
    std::fs::write(element.join("element-deps"), "fake-os\n").unwrap();
    let script = element.join("block-device.d/50-partprobe");
    std::fs::write(&script, "#!/bin/sh\npartprobe \"$IMAGE_BLOCK_DEVICE\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut options = options(host(&[]));
    options.elements_path.insert(0, extra.path().to_owned());
    let err = dib(&["disk-tweak"], &options).unwrap_err();
    assert!(matches!(err, PlanError::BlockDeviceHook { .. }), "{err}");
    let message = err.to_string();
    assert!(message.starts_with("element `disk-tweak`: block-device.d/50-partprobe cannot run"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    // Without the hook the same element plans: the refusal is about the script alone.
    std::fs::remove_file(&script).unwrap();
    assert!(dib(&["disk-tweak"], &options).is_ok());
}

#[test]
fn failing_environment_d_is_named() {
    let err = dib(&["bad-env", "fake-os"], &options(host(&[]))).unwrap_err().to_string();
    assert!(err.contains("bad-env/environment.d/20-bad-env"), "{err}");
}

#[test]
fn mirror_precedence_flag_env_then_host_for_same_distro() {
    let plan = dib(&["app"], &options(host(&[]))).unwrap();
    assert_eq!(plan.mirror.as_deref(), Some("http://host-archive.example/debian"));
    assert_eq!(plan.env["DIB_DISTRIBUTION_MIRROR"], "http://host-archive.example/debian");
    let plan = dib(&["app"], &options(host(&[("DIB_DISTRIBUTION_MIRROR", "http://env.example/debian")]))).unwrap();
    assert_eq!(plan.mirror.as_deref(), Some("http://env.example/debian"));
    let with_flag = PlanOptions {
        overrides: Overrides { mirror: Some("http://flag.example/debian".into()), ..Overrides::default() },
        ..options(host(&[("DIB_DISTRIBUTION_MIRROR", "http://env.example/debian")]))
    };
    assert_eq!(dib(&["app"], &with_flag).unwrap().mirror.as_deref(), Some("http://flag.example/debian"));
}

fn fake_recipe() -> Recipe {
    Recipe::load_file(&fixture("recipes/fake-recipe.yaml")).unwrap()
}

#[test]
fn recipe_distro_release_and_base_win_over_elements() {
    let plan = Plan::from_recipe(&fake_recipe(), &options(host(&[]))).unwrap();
    assert_eq!(plan.recipe.as_deref(), Some("fake-recipe"));
    assert_eq!((plan.distro.as_str(), plan.release.as_str()), ("ubuntu", "trusty"));
    assert_eq!(plan.base, Some(BaseMethod::CloudImage));
    assert_eq!(plan.env["IMAGE_NAME"], "fake-recipe");
    assert_eq!(plan.env["DIB_INIT_SYSTEM"], "upstart");
    assert_eq!(plan.glance.properties["os_distro"], "ubuntu");
    assert_eq!(plan.checks.len(), 2);
    assert_eq!(plan.image.size.as_ref().map(ByteSize::as_str), Some("4G"));
    // pkg-map resolves for ubuntu trusty; the recipe's DIB_FAKE_FLAG=0 flips the `when`s.
    let install = names(&plan.packages[&Phase::Install].install);
    // ubuntu is in the debian family, so the family's empty mapping drops the package.
    assert!(install.contains(&"openjdk-7-jre-headless") && !install.contains(&"dropped-on-debian"), "{install:?}");
    assert!(install.contains(&"feature-off") && !install.contains(&"feature-on"), "{install:?}");
    assert!(install.contains(&"vim"), "{install:?}");
    assert_eq!(install.iter().filter(|p| **p == "curl").count(), 1);
}

#[test]
fn flags_override_the_recipe() {
    let options = PlanOptions {
        overrides: Overrides {
            release: Some("noble".into()),
            base: Some(BaseMethod::Mmdebstrap),
            mirror: Some("http://flag.example/ubuntu".into()),
            packages: vec!["htop".into()],
            environment: BTreeMap::from([("DIB_FAKE_FLAG".to_string(), "1".to_string())]),
            ..Overrides::default()
        },
        ..options(host(&[]))
    };
    let plan = Plan::from_recipe(&fake_recipe(), &options).unwrap();
    assert_eq!(plan.release, "noble");
    assert_eq!(plan.base, Some(BaseMethod::Mmdebstrap));
    assert_eq!(plan.mirror.as_deref(), Some("http://flag.example/ubuntu"));
    assert_eq!(plan.env["DIB_INIT_SYSTEM"], "systemd");
    let install = names(&plan.packages[&Phase::Install].install);
    assert!(
        install.contains(&"openjdk-8-jre-headless") && install.contains(&"htop") && install.contains(&"feature-on")
    );
}

#[test]
fn plans_are_deterministic() {
    let a = serde_json::to_string(&dib(&["app"], &options(host(&[]))).unwrap()).unwrap();
    let b = serde_json::to_string(&dib(&["app"], &options(host(&[]))).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn script_paths_are_absolute() {
    let plan = dib(&["app"], &options(host(&[]))).unwrap();
    assert!(plan.scripts.values().flatten().all(|s| Path::new(&s.path).is_absolute() && s.path.is_file()));
}

#[test]
fn vm_without_block_device_gets_dibs_default_partitioning_element() {
    let plan = dib(&["fake-os", "vm"], &options(host(&[]))).unwrap();
    let elements: Vec<&str> = plan.elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(elements, ["block-device-mbr", "fake-os", "vm"]);
    let arm = PlanOptions {
        overrides: Overrides { arch: Some("arm64".into()), ..Overrides::default() },
        ..options(host(&[]))
    };
    let plan = dib(&["fake-os", "vm"], &arm).unwrap();
    assert!(plan.elements.iter().any(|e| e.name == "block-device-efi"));
    // An explicit block-device-* element is kept as the only one.
    let plan = dib(&["fake-os", "vm", "block-device-efi"], &options(host(&[]))).unwrap();
    assert!(!plan.elements.iter().any(|e| e.name == "block-device-mbr"));
}

#[test]
fn planned_elements_point_at_the_directories_holding_bin_and_static() {
    let plan = dib(&["app"], &options(host(&[]))).unwrap();
    let app = plan.elements.iter().find(|e| e.name == "app").unwrap();
    assert!(app.path.join("bin/app-helper").is_file());
    assert!(app.path.join("static/etc/app.conf").is_file());
    let os = plan.elements.iter().find(|e| e.name == "fake-os").unwrap();
    assert!(!os.path.join("bin").exists());
    assert_eq!(plan.scripts_for(Phase::Finalise).len(), 1);
    assert!(plan.scripts_for(Phase::Cleanup).is_empty());
}
