//! The real binary: `elements`, `recipes`, `build --dry-run`, help, version and completions.

mod common;

use assert_cmd::Command;
use clap::CommandFactory;
use mesos_image::cli::Cli;
use predicates::prelude::*;

fn fixture(path: &str) -> String {
    common::fixture(path).display().to_string()
}

/// The binary with a hermetic environment: no built-in elements or recipes, no host DIB_*.
fn bin() -> Command {
    let mut cmd = Command::cargo_bin("mesos-image").unwrap();
    cmd.env("MESOS_IMAGE_DATA_DIR", "/nonexistent/mesos-image-data")
        .env_remove("ELEMENTS_PATH")
        .env_remove("DIB_RELEASE")
        .env_remove("DIB_DISTRIBUTION_MIRROR")
        .env_remove("RUST_LOG");
    cmd
}

fn resolve(args: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = bin();
    cmd.args(["elements", "resolve", "--elements-path", &fixture("elements/deps")]).args(args);
    cmd.assert()
}

/// Exactly one error line on stderr, containing `needle`.
fn one_line_error(needle: &str) -> impl Predicate<str> {
    let needle = needle.to_owned();
    predicate::function(move |stderr: &str| {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        errors.len() == 1 && errors[0].contains(&needle)
    })
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_subcommand_has_help() {
    fn walk(command: &clap::Command, prefix: Vec<String>, all: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands() {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_owned());
            all.push(path.clone());
            walk(sub, path, all);
        }
    }
    let mut all = Vec::new();
    walk(&Cli::command(), Vec::new(), &mut all);
    assert!(all.len() >= 10, "{all:?}");
    for path in all {
        bin().args(&path).arg("--help").assert().success().stdout(predicate::str::contains("Usage:"));
    }
}

#[test]
fn version_and_completions() {
    bin().arg("--version").assert().success().stdout(predicate::str::starts_with("mesos-image "));
    for shell in ["bash", "zsh", "fish"] {
        bin().args(["completions", shell]).assert().success().stdout(predicate::str::contains("elements"));
    }
    let script = bin().args(["completions", "bash"]).assert().success().get_output().stdout.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesos-image.bash");
    std::fs::write(&file, script).unwrap();
    let status = std::process::Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(status.success(), "bash completion script has a syntax error");
}

#[test]
fn quiet_hides_warnings_and_verbose_shows_debug() {
    let path = format!("{}:{}", fixture("elements/override"), fixture("elements/deps"));
    let mut cmd = bin();
    cmd.env("ELEMENTS_PATH", &path).args(["-q", "elements", "resolve", "override_element", "foo"]);
    cmd.assert().success().stderr(predicate::str::is_empty());
    let mut cmd = bin();
    cmd.env("ELEMENTS_PATH", &path).args(["elements", "resolve", "override_element", "foo"]);
    cmd.assert().success().stderr(predicate::str::contains("overrides"));
    let mut cmd = bin();
    cmd.args(["-v", "elements", "resolve", "--elements-path", &fixture("elements/build"), "app"]);
    cmd.assert().success().stderr(predicate::str::contains("dib-run-parts skips"));
}

#[test]
fn resolve_prints_sorted_names() {
    resolve(&["requires-requires-foo"]).success().stdout("foo\nrequires-foo\nrequires-requires-foo\n");
    resolve(&["requires_virtual", "provides_virtual"]).success().stdout("provides_virtual\nrequires_virtual\n");
}

#[test]
fn resolve_errors_are_one_line_naming_the_culprit() {
    resolve(&["fake", "foo"]).failure().stderr(one_line_error("element `fake` not found"));
    resolve(&["virtual", "provides_virtual", "foo"])
        .failure()
        .stderr(one_line_error("`virtual` was requested but is already provided by `provides_virtual`"));
    resolve(&["provides_virtual", "also_provides_virtual", "foo"])
        .failure()
        .stderr(one_line_error("both provide `virtual`"));
    resolve(&["provides_virtual"]).failure().stderr(one_line_error("no element provides `operating-system`"));
    resolve(&["--elements-path", "/not/a/dir", "foo"])
        .failure()
        .stderr(one_line_error("`/not/a/dir` is not a directory"));
    resolve(&["--elements-path", &fixture("elements/broken"), "foo"])
        .failure()
        .stderr(one_line_error("unreadable/element-deps: cannot read"));
    resolve(&["--elements-path", &fixture("elements/malformed"), "foo", "bad-packages"])
        .failure()
        .stderr(one_line_error("bad-packages/package-installs.yaml:3: curl: unknown field `colour`"));
    resolve(&["--elements-path", &fixture("elements/malformed"), "foo", "bad-pkg-map"])
        .failure()
        .stderr(one_line_error("bad-pkg-map/pkg-map:2:"));
}

#[test]
fn elements_path_flag_comes_before_the_environment_variable() {
    let mut cmd = bin();
    cmd.env("ELEMENTS_PATH", format!("{}:{}", fixture("elements/deps"), fixture("elements/override")));
    cmd.args(["elements", "show", "override_element"]);
    cmd.assert().success().stdout(predicate::str::contains("The copy in deps/"));
    let mut cmd = bin();
    cmd.env("ELEMENTS_PATH", fixture("elements/deps"));
    cmd.args(["elements", "show", "--elements-path", &fixture("elements/override"), "override_element"]);
    cmd.assert()
        .success()
        .stdout(predicate::str::contains("The copy in override/"))
        .stderr(predicate::str::contains("overrides"));
}

#[test]
fn elements_list_shows_name_source_and_summary() {
    let mut cmd = bin();
    cmd.args(["elements", "list", "--elements-path", &fixture("elements/build")]);
    let output = cmd.assert().success().get_output().stdout.clone();
    let text = String::from_utf8(output).unwrap();
    let app = text.lines().find(|l| l.starts_with("app ")).unwrap();
    assert!(
        app.contains("elements/build") && app.contains("An application element with packages and a pkg-map."),
        "{app}"
    );
    let names: Vec<&str> = text.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn elements_show_lists_scripts_and_packages() {
    let mut cmd = bin();
    cmd.args(["elements", "show", "--elements-path", &fixture("elements/build"), "fake-os"]);
    cmd.assert().success().stdout(
        predicate::str::contains("provides: operating-system")
            .and(predicate::str::contains("install.d:\n  README (skipped: not executable)\n  05-early\n  50-configure\n  60-not-executable (skipped: not executable)\n  70-bad.sh"))
            .and(predicate::str::contains("70-bad.sh (skipped: name does not match"))
            .and(predicate::str::contains("linux-image-amd64  [arch=amd64]"))
            .and(predicate::str::contains("environment.d:\n  10-fake-os.bash")),
    );
    bin()
        .args(["elements", "show", "--elements-path", &fixture("elements/build"), "nope"])
        .assert()
        .failure()
        .stderr(one_line_error("element `nope`: not found"));
}

#[test]
fn recipes_list_and_show() {
    let dir = fixture("recipes");
    let mut cmd = bin();
    cmd.args(["recipes", "show", "--recipes-dir", &dir, "fake-recipe"]);
    cmd.assert()
        .success()
        .stdout(predicate::str::contains("os_distro: ubuntu").and(predicate::str::contains("port-closed: 2181")));
    let mut cmd = bin();
    cmd.args(["recipes", "list", "--recipes-dir", &dir]);
    cmd.assert().failure().stderr(one_line_error("bad-key.yaml:5: unknown field `flavour`"));
}

fn dry_run_json(args: &[&str]) -> serde_json::Value {
    let mut cmd = bin();
    cmd.args(["build", "--dry-run", "--json", "--elements-path", &fixture("elements/build")]).args(args);
    let output = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&output).unwrap()
}

#[test]
fn dry_run_json_holds_the_whole_plan() {
    // The output directory must exist (preflight checks it even in a dry run); nothing is written.
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("x.qcow2");
    let plan = dry_run_json(&[
        "-x",
        "-p",
        "vim,htop",
        "-p",
        "tree",
        "-e",
        "DIB_EXTRA=1",
        "-t",
        "qcow2,raw",
        "--mirror",
        "http://flag.example/debian",
        "--mesos-repo",
        "deb file:/srv/repo ./",
        "-o",
        output.to_str().unwrap(),
        "app",
    ]);
    assert_eq!(plan["distro"], "debian");
    assert_eq!(plan["release"], "bookworm");
    assert_eq!(plan["base"], "mmdebstrap");
    assert_eq!(plan["mirror"], "http://flag.example/debian");
    assert_eq!(plan["env"]["DIB_DEBUG_TRACE"], "1");
    assert_eq!(plan["env"]["DIB_EXTRA"], "1");
    assert!(plan["env"]["DIB_ARGS"].as_str().unwrap().starts_with("build --dry-run --json"));
    assert_eq!(plan["env"]["IMAGE_NAME"], "x");
    assert_eq!(plan["env"]["DIB_MESOS_REPO"], "deb file:/srv/repo ./");
    assert_eq!(plan["image"]["formats"], serde_json::json!(["qcow2", "raw"]));
    let install: Vec<&str> =
        plan["packages"]["install.d"]["install"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(install.contains(&"vim") && install.contains(&"htop") && install.contains(&"tree"), "{install:?}");
    let scripts: Vec<&str> =
        plan["scripts"]["install.d"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(scripts, ["05-early", "9-app-first", "10-app", "50-configure", "100-late"]);
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0, "a dry run wrote into the output directory");
}

#[test]
fn dry_run_text_shows_scripts_with_elements_and_package_slots() {
    let mut cmd = bin();
    cmd.args(["build", "--dry-run", "--elements-path", &fixture("elements/build"), "--release", "trixie", "app"]);
    cmd.assert().success().stdout(
        predicate::str::contains("target:   debian trixie amd64")
            .and(predicate::str::contains(
                "01-package-installs              (the phase's packages)\n  05-early                         fake-os",
            ))
            .and(predicate::str::contains("IMAGE_ELEMENT=app fake-os")),
    );
}

#[test]
fn dry_run_with_a_recipe() {
    let mut cmd = bin();
    cmd.args(["build", "--dry-run", "--json", "--recipes-dir", &fixture("recipes"), "--recipe", "fake-recipe"])
        .args(["--elements-path", &fixture("elements/build")]);
    let output = cmd.assert().success().get_output().stdout.clone();
    let plan: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(plan["recipe"], "fake-recipe");
    assert_eq!(plan["release"], "trusty");
    assert_eq!(plan["glance"]["properties"]["os_distro"], "ubuntu");
}

#[test]
fn build_argument_errors() {
    let build_path = fixture("elements/build");
    // Elements and --recipe together.
    bin()
        .args(["build", "--dry-run", "--recipe", "x", "app"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--recipe"));
    // -o is required without --dry-run.
    bin().args(["build", "app"]).assert().failure().stderr(predicate::str::contains("--output"));
    // The default recipe is ubuntu-mesos.
    bin().args(["build", "--dry-run"]).assert().failure().stderr(one_line_error("recipe `ubuntu-mesos` not found"));
    bin()
        .args(["build", "--dry-run", "--break", "sideways", "app"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a break point"));
    bin()
        .args(["build", "--dry-run", "--image-size", "4Q", "app"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown unit"));
    bin()
        .args(["build", "--dry-run", "-e", "1BAD=x", "app"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a valid variable name"));
    bin()
        .args(["build", "--dry-run", "--elements-path", &build_path, "--mesos-repo-key", "/nonexistent/key.gpg", "app"])
        .assert()
        .failure()
        .stderr(one_line_error("--mesos-repo-key /nonexistent/key.gpg: no such file"));
    bin()
        .args([
            "build",
            "--elements-path",
            &build_path,
            "-o",
            "/tmp/engine-never/x.qcow2",
            "--break",
            "after-error",
            "app",
        ])
        .assert()
        .failure()
        .stderr(one_line_error("-o /tmp/engine-never/x.qcow2: directory /tmp/engine-never does not exist"));
    bin()
        .args(["build", "--dry-run", "--elements-path", &build_path, "dup-a", "dup-b", "fake-os"])
        .assert()
        .failure()
        .stderr(one_line_error("install.d/50-same is shipped by both `dup-a` and `dup-b`"));
}

/// `diff A.manifest.json B.manifest.json`: the packages added, removed and changed between two
/// images, each on its own line, then the counts; an image path stands for the manifest beside it.
#[test]
fn diff_lists_packages_added_removed_and_changed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |name: &str, packages: &str, sha: &str| {
        let text = format!(
            r#"{{"tool_version": "0", "recipe": null, "distro": "debian", "release": "bookworm", "arch": "amd64",
            "elements": ["vm"], "packages": [{packages}], "cache_key": "k",
            "outputs": [{{"file": "{name}", "format": "qcow2", "size": 1, "sha256": "{sha}"}}]}}"#
        );
        std::fs::write(dir.path().join(format!("{name}.manifest.json")), text).unwrap();
        dir.path().join(name).display().to_string()
    };
    let old = manifest(
        "old.qcow2",
        r#"{"name": "bash", "version": "5.2-1"}, {"name": "curl", "version": "7.88"}, {"name": "jq", "version": "1.6"}"#,
        "aa",
    );
    let new = manifest(
        "new.qcow2",
        r#"{"name": "bash", "version": "5.2-2"}, {"name": "jq", "version": "1.6"}, {"name": "zsh", "version": "5.9"}"#,
        "bb",
    );
    bin().args(["diff", &format!("{old}.manifest.json"), &new]).assert().success().stdout(
        "~ bash 5.2-1 -> 5.2-2\n- curl 7.88\n+ zsh 5.9\npackages: 1 added, 1 removed, 1 changed\nimages: differ\n",
    );
}
