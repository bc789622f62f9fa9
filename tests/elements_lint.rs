//! Fast checks of our DIB-format elements (no root, no network): script hygiene, element
//! metadata, and the logic of the scripts that can run on the build host.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mesos_image::element::Phase;

const OS_ELEMENTS: &[&str] = &["debian-minimal", "ubuntu", "ubuntu-minimal"];

use common::elements_dir;

fn element_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(elements_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Every phase script and `bin/` program of every element.
fn all_scripts() -> Vec<PathBuf> {
    let mut scripts = Vec::new();
    for name in element_names() {
        let element = elements_dir().join(&name);
        let phases = Phase::ALL.iter().map(|phase| phase.dir_name());
        for dir in phases.chain(["bin"]) {
            scripts.extend(files_in(&element.join(dir)));
        }
    }
    scripts
}

fn is_bash(path: &Path) -> bool {
    fs::read_to_string(path).map(|t| t.starts_with("#!/bin/bash\n")).unwrap_or(false)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[test]
fn every_element_has_a_readme_and_known_deps() {
    let names: BTreeSet<String> = element_names().into_iter().collect();
    assert!(names.len() >= 15, "only {} elements", names.len());
    for name in &names {
        let element = elements_dir().join(name);
        assert!(element.join("README.rst").is_file(), "{name}: README.rst missing");
        if let Ok(deps) = fs::read_to_string(element.join("element-deps")) {
            for dep in deps.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                assert!(names.contains(dep), "{name}/element-deps: unknown element `{dep}`");
            }
        }
    }
}

#[test]
fn only_the_os_elements_provide_operating_system() {
    for name in element_names() {
        let provides = fs::read_to_string(elements_dir().join(&name).join("element-provides")).unwrap_or_default();
        let is_os = provides.lines().any(|l| l.trim() == "operating-system");
        assert_eq!(is_os, OS_ELEMENTS.contains(&name.as_str()), "{name}: operating-system provider?");
    }
}

#[test]
fn scripts_are_executable_well_named_and_parse() {
    let scripts = all_scripts();
    assert!(scripts.len() > 30, "found only {} scripts", scripts.len());
    for script in &scripts {
        let name = script.file_name().unwrap().to_str().unwrap();
        assert!(valid_name(name), "{}: name does not match ^[0-9A-Za-z_-]+$", script.display());
        let mode = fs::metadata(script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{}: not executable", script.display());
        let text = fs::read_to_string(script).unwrap();
        if script.parent().unwrap().ends_with("bin") && !is_bash(script) {
            continue; // Python programs, checked below
        }
        assert!(text.starts_with("#!/bin/bash\n"), "{}: must start with #!/bin/bash", script.display());
        for needle in ["set -eu", "set -o pipefail", "if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi"] {
            assert!(text.contains(needle), "{}: lacks `{needle}`", script.display());
        }
        let status = Command::new("bash").arg("-n").arg(script).status().unwrap();
        assert!(status.success(), "{}: bash -n failed", script.display());
    }
}

#[test]
fn environment_files_parse_and_python_programs_compile() {
    for name in element_names() {
        for file in files_in(&elements_dir().join(&name).join("environment.d")) {
            let status = Command::new("bash").arg("-n").arg(&file).status().unwrap();
            assert!(status.success(), "{}: bash -n failed", file.display());
        }
    }
    let python: Vec<PathBuf> = walk(&elements_dir())
        .into_iter()
        .filter(|p| fs::read_to_string(p).map(|t| t.starts_with("#!/usr/bin/env python3")).unwrap_or(false))
        .collect();
    assert!(python.len() >= 3, "expected 55-heat-config, the script hook and heat-config-notify");
    for file in python {
        let out = Command::new("python3")
            .args(["-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn package_installs_and_pkg_maps_use_dib_formats() {
    let allowed = ["phase", "uninstall", "build-only", "arch", "not-arch", "when", "installtype"];
    for name in element_names() {
        let element = elements_dir().join(&name);
        if let Ok(text) = fs::read_to_string(element.join("package-installs.yaml")) {
            let doc: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&text).unwrap();
            for (package, options) in doc {
                let package = package.as_str().unwrap().to_owned();
                if let Some(options) = options.as_mapping() {
                    for key in options.keys() {
                        let key = key.as_str().unwrap();
                        assert!(allowed.contains(&key), "{name}: {package}: unknown key `{key}`");
                    }
                }
            }
        }
        if let Ok(text) = fs::read_to_string(element.join("pkg-map")) {
            let map: serde_json::Value = serde_json::from_str(&text).unwrap();
            for key in map.as_object().unwrap().keys() {
                assert!(["family", "distro", "release", "default"].contains(&key.as_str()), "{name}/pkg-map: `{key}`");
            }
        }
    }
}

/// `names` and everything they depend on (breadth-first, like the element resolver).
fn with_deps(names: &[&str]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut queue: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    while let Some(name) = (!queue.is_empty()).then(|| queue.remove(0)) {
        if seen.contains(&name) {
            continue;
        }
        let deps = fs::read_to_string(elements_dir().join(&name).join("element-deps")).unwrap_or_default();
        queue.extend(deps.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
        seen.push(name);
    }
    seen
}

/// Source the environment.d files of `elements` (and their deps) in run-parts order with
/// `vars` set, as before every script; print `names`.
fn environment(elements: &[&str], vars: &[(&str, &str)], names: &[&str]) -> Vec<String> {
    let mut files: Vec<PathBuf> =
        with_deps(elements).iter().flat_map(|n| files_in(&elements_dir().join(n).join("environment.d"))).collect();
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    let mut script = String::from("set -eu\n");
    for file in &files {
        script.push_str(&format!(". '{}'\n", file.display()));
    }
    for name in names {
        script.push_str(&format!("printf '%s\\n' \"${{{name}}}\"\n"));
    }
    let mut command = Command::new("bash");
    command.arg("-c").arg(script).env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in vars {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// `ubuntu` and the Heat guide's agent elements (the `ubuntu-mesos` recipe).
fn ubuntu_mesos() -> Vec<&'static str> {
    ["ubuntu"].iter().chain(common::HEAT_AGENT_ELEMENTS).copied().collect()
}
const DEBIAN_MESOS: &[&str] = &["debian-minimal", "vm", "cloud-init-datasources", "mesos", "heat-config-script"];

#[test]
fn trusty_defaults_to_the_mesosphere_repo_and_source_installs() {
    // DIB mode: nothing set, the ubuntu element's defaults decide.
    let values = environment(
        &ubuntu_mesos(),
        &[],
        &["DIB_RELEASE", "MESOS_IMAGE_BASE", "DIB_MESOS_REPO", "DIB_INSTALLTYPE_os_collect_config", "DIB_JAVA_REPO"],
    );
    assert_eq!(values[0], "trusty");
    assert_eq!(values[1], "cloud-image");
    assert_eq!(values[2], "http://repos.mesosphere.io/ubuntu trusty main");
    assert_eq!(values[3], "source");
    assert!(values[4].contains("openjdk-r"), "{}", values[4]);
}

#[test]
fn debian_has_no_default_mesos_repo_and_uses_packages() {
    let values = environment(
        DEBIAN_MESOS,
        &[],
        &[
            "DIB_MESOS_REPO",
            "DIB_INSTALLTYPE_os_collect_config",
            "DIB_CLOUD_INIT_DATASOURCES",
            "DIB_RELEASE",
            "MESOS_IMAGE_BASE",
        ],
    );
    assert_eq!(values[0], "");
    assert_eq!(values[3..], ["bookworm", "mmdebstrap"]);
    assert_eq!(values[1], "package");
    assert!(values[2].starts_with("Ec2") && values[2].contains("NoCloud"), "{}", values[2]);
}

#[test]
fn recipe_values_win_over_element_defaults() {
    let values = environment(
        &ubuntu_mesos(),
        &[("DISTRO_NAME", "ubuntu"), ("DIB_RELEASE", "noble"), ("DIB_MESOS_REPO", "http://127.0.0.1:1 noble main")],
        &["DIB_RELEASE", "DIB_MESOS_REPO", "BASE_IMAGE_FILE"],
    );
    assert_eq!(values, ["noble", "http://127.0.0.1:1 noble main", "noble-server-cloudimg-amd64-root.tar.xz"]);
}

fn run_script(script: &str, vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(elements_dir().join(script));
    command.env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in vars {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn mesos_repo_without_a_repository_fails_with_one_clear_line() {
    let hooks = tempfile::tempdir().unwrap();
    let hooks_path = hooks.path().to_str().unwrap();
    let out = run_script(
        "mesos-repo/extra-data.d/50-mesos-repo-key",
        &[
            ("TMP_HOOKS_PATH", hooks_path),
            ("DISTRO_NAME", "debian"),
            ("DIB_RELEASE", "bookworm"),
            ("DIB_MESOS_REPO", ""),
            ("DIB_MESOS_REPO_KEY", ""),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DIB_MESOS_REPO") && stderr.contains("--mesos-repo"), "{stderr}");

    let out = run_script(
        "mesos-repo/extra-data.d/50-mesos-repo-key",
        &[
            ("TMP_HOOKS_PATH", hooks_path),
            ("DIB_MESOS_REPO", "http://repos.mesosphere.io/ubuntu trusty main"),
            ("DIB_MESOS_REPO_KEY", ""),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--mesos-repo-key") && stderr.contains("E56151BF"), "{stderr}");
}

#[test]
fn mesos_repo_stages_a_binary_key() {
    let hooks = tempfile::tempdir().unwrap();
    let key = hooks.path().join("key.gpg");
    fs::write(&key, b"\x99binary-key").unwrap();
    let out = run_script(
        "mesos-repo/extra-data.d/50-mesos-repo-key",
        &[
            ("TMP_HOOKS_PATH", hooks.path().to_str().unwrap()),
            ("DIB_MESOS_REPO", "http://127.0.0.1:1 bookworm main"),
            ("DIB_MESOS_REPO_KEY", key.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(hooks.path().join("mesos-repo/keyring.gpg")).unwrap(), b"\x99binary-key");
}

#[test]
fn upstart_services_get_manual_overrides() {
    let root = tempfile::tempdir().unwrap();
    let out = run_script_args(
        "boot-services/bin/boot-service-disable",
        &["--root", root.path().to_str().unwrap(), "docker.service", "docker.socket", "mesos-master"],
        &[("DIB_INIT_SYSTEM", "upstart")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for job in ["docker", "mesos-master"] {
        let text = fs::read_to_string(root.path().join(format!("etc/init/{job}.override"))).unwrap();
        assert_eq!(text, "manual\n");
    }
    assert!(!root.path().join("etc/init/docker.socket.override").exists());
}

fn run_script_args(script: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(elements_dir().join(script));
    command.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in vars {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// 55-heat-config + the script hook + heat-config-notify, wired through env overrides in a
/// temporary directory: the same chain os-refresh-config runs in the image.
#[test]
fn heat_config_applies_a_script_deployment_and_writes_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hooks = d.join("hooks");
    fs::create_dir(&hooks).unwrap();
    fs::copy(elements_dir().join("heat-config-script/static/var/lib/heat-config/hooks/script"), hooks.join("script"))
        .unwrap();
    let marker = d.join("ran");
    let deployments = serde_json::json!([{
        "id": "dep-1", "name": "dep-1", "group": "script", "options": {},
        "inputs": [{"name": "greeting", "value": "hello"}, {"name": "count", "type": "String", "value": 3}],
        "outputs": [{"name": "answer"}],
        "config": format!("#!/bin/sh\necho \"$greeting $count\" > {}\necho 42 > $heat_outputs_path.answer\necho out\n", marker.display()),
    }, {
        "id": "dep-2", "group": "no-such-group", "inputs": [], "config": "",
    }]);
    let config = d.join("heat-config");
    fs::write(&config, deployments.to_string()).unwrap();
    let deployed = d.join("deployed");
    let chain = elements_dir().join("heat-config/static/usr/libexec/os-refresh-config/configure.d/55-heat-config");
    let run = || {
        Command::new(&chain)
            .env("HEAT_SHELL_CONFIG", &config)
            .env("HEAT_CONFIG_DEPLOYED", &deployed)
            .env("HEAT_CONFIG_HOOKS", &hooks)
            .env("HEAT_CONFIG_NOTIFY", elements_dir().join("heat-config/bin/heat-config-notify"))
            .env("HEAT_SCRIPT_WORKING", d.join("work"))
            .env("HEAT_SCRIPT_OUTPUTS", d.join("outputs"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(fs::read_to_string(&marker).unwrap(), "hello 3\n");
    let notify: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(deployed.join("dep-1.notify.json")).unwrap()).unwrap();
    assert_eq!(notify["deploy_status_code"], 0);
    assert_eq!(notify["deploy_stdout"], "out\n");
    assert_eq!(notify["answer"], "42\n");
    assert_eq!(fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(stderr.contains("no signal transport"), "{stderr}");
    assert!(stderr.contains("Skipping group no-such-group"), "{stderr}");

    // A second run leaves an applied deployment alone.
    fs::remove_file(&marker).unwrap();
    let again = run();
    assert!(again.status.success());
    assert!(!marker.exists());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already deployed"));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// source-repositories against local repositories (the only kind reachable here): a git
/// directory pinned by DIB_REPOREF_*, a relocated tarball (DIB_REPOLOCATION_*), a file, and a
/// `package` line that is skipped; the second run reuses the cache with DIB_OFFLINE.
#[test]
fn source_repositories_fetch_local_git_tar_and_file_with_overrides() {
    let d = tempfile::tempdir().unwrap();
    let (hooks, mount, cache, src) =
        (d.path().join("hooks"), d.path().join("mnt"), d.path().join("cache"), d.path().join("src"));
    for dir in [&hooks, &mount.join("etc"), &src] {
        fs::create_dir_all(dir).unwrap();
    }
    let repo = src.join("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    fs::write(repo.join("VERSION"), "one\n").unwrap();
    git(&repo, &["add", "VERSION"]);
    git(&repo, &["commit", "-qm", "one"]);
    git(&repo, &["tag", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    fs::write(repo.join("VERSION"), "two\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    fs::create_dir_all(src.join("tree/app-1.0")).unwrap();
    fs::write(src.join("tree/app-1.0/README"), "app\n").unwrap();
    let tar = Command::new("tar")
        .arg("-C")
        .arg(src.join("tree"))
        .arg("-czf")
        .arg(src.join("app.tar.gz"))
        .arg("app-1.0")
        .status();
    assert!(tar.unwrap().success());
    fs::write(src.join("get.py"), "print('hi')\n").unwrap();
    fs::write(
        hooks.join("source-repository-demo"),
        format!(
            "# comment\n\ndemo-git git /opt/demo {} master\napp tar /opt/app http://127.0.0.1:9/gone.tar.gz app-1.0\n\
             getpy file /tmp/get.py {}\npkgonly package /opt/nothing http://127.0.0.1:9/x\n",
            repo.display(),
            src.join("get.py").display()
        ),
    )
    .unwrap();
    let run = |extra: &[(&str, &str)]| {
        let path = format!("{}:/usr/bin:/bin", elements_dir().join("cache-url/bin").display());
        let mut vars = vec![
            ("PATH", path.as_str()),
            ("TMP_HOOKS_PATH", hooks.to_str().unwrap()),
            ("TMP_MOUNT_PATH", mount.to_str().unwrap()),
            ("DIB_IMAGE_CACHE", cache.to_str().unwrap()),
            ("IMAGE_NAME", "demo-image"),
            ("DIB_REPOREF_demo_git", "v1"),
            ("DIB_REPOLOCATION_app", src.join("app.tar.gz").to_str().unwrap().to_owned().leak()),
        ];
        vars.extend_from_slice(extra);
        run_script("source-repositories/extra-data.d/98-source-repositories", &vars)
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(mount.join("opt/demo/VERSION")).unwrap(), "one\n");
    assert_eq!(fs::read_to_string(mount.join("opt/app/README")).unwrap(), "app\n");
    assert_eq!(fs::read_to_string(mount.join("tmp/get.py")).unwrap(), "print('hi')\n");
    assert!(!mount.join("opt/nothing").exists());
    let manifest = fs::read_to_string(mount.join("etc/dib-manifests/dib-manifest-git-demo-image")).unwrap();
    assert_eq!(manifest, format!("demo-git git /opt/demo {} {v1}\n", repo.display()));
    assert_eq!(
        fs::read_to_string(mount.join("etc/dib-source-repositories")).unwrap(),
        "/opt/demo\n/opt/app\n/tmp/get.py\n"
    );

    // Offline, from the cache alone: the sources may be gone.
    fs::remove_dir_all(&mount).unwrap();
    fs::create_dir_all(mount.join("etc")).unwrap();
    fs::remove_dir_all(&repo).unwrap();
    fs::remove_file(src.join("app.tar.gz")).unwrap();
    let out = run(&[("DIB_OFFLINE", "1")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(mount.join("opt/demo/VERSION")).unwrap(), "one\n");
    assert_eq!(fs::read_to_string(mount.join("opt/app/README")).unwrap(), "app\n");
}

#[test]
fn source_repositories_name_the_bad_line() {
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    fs::write(hooks.join("source-repository-bad"), "ok git /opt/ok /nowhere\nbroken svn /opt/x /y\n").unwrap();
    let out = run_script(
        "source-repositories/extra-data.d/98-source-repositories",
        &[
            ("TMP_HOOKS_PATH", hooks.to_str().unwrap()),
            ("TMP_MOUNT_PATH", d.path().to_str().unwrap()),
            ("DIB_IMAGE_CACHE", d.path().join("cache").to_str().unwrap()),
            ("DIB_INSTALLTYPE_ok", "package"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("source-repository-bad:2:"), "{stderr}");
}

/// svc-map: the files of two elements merge per distro, family and default, and the helper
/// maps names through the result; a service mapped twice names both elements.
#[test]
fn svc_map_merges_per_distro_and_maps_names() {
    let d = tempfile::tempdir().unwrap();
    let (one, two, mount) = (d.path().join("one"), d.path().join("two"), d.path().join("mnt"));
    for dir in [&one, &two, &mount] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(one.join("svc-map"), "apache2:\n  default: apache2\n  redhat: httpd\nmysql:\n  debian: mariadb\n")
        .unwrap();
    fs::write(two.join("svc-map"), "web:\n  ubuntu: nginx\n  default: lighttpd\n").unwrap();
    let yaml = format!("one: {}\ntwo: {}\n", one.display(), two.display());
    let merge = |yaml: &str| {
        run_script(
            "svc-map/extra-data.d/10-svc-map-merge",
            &[("TMP_MOUNT_PATH", mount.to_str().unwrap()), ("DISTRO_NAME", "debian"), ("IMAGE_ELEMENT_YAML", yaml)],
        )
    };
    let out = merge(&yaml);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let services = mount.join("usr/share/svc-map/services");
    assert_eq!(fs::read_to_string(&services).unwrap(), "apache2: apache2\nmysql: mariadb\nweb: lighttpd\n");
    let mapped = run_script_args(
        "svc-map/bin/svc-map",
        &["mysql", "web", "unmapped"],
        &[("SVC_MAP_FILE", services.to_str().unwrap())],
    );
    assert_eq!(String::from_utf8_lossy(&mapped.stdout), "mariadb\nlighttpd\nunmapped\n");

    fs::write(two.join("svc-map"), "mysql:\n  default: mysqld\n").unwrap();
    let out = merge(&yaml);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mysql") && stderr.contains("one") && stderr.contains("two"), "{stderr}");
}
