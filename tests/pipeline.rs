//! The pipeline is the one list of a build's steps: `--dry-run --json` lists the steps a real
//! build records in its manifest (recipe mode and DIB mode), docs/architecture.md's stage table
//! is generated from it, and a step added to a pipeline shows up in the dry-run, the build's
//! timings and the cache keys without build.rs knowing it.
//!
//! The builds use the fault fixture elements (tests/fixtures/fault-elements): a tree of a few
//! MiB from host programs, a couple of seconds per build.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use mesos_image::build::BuildOptions;
use mesos_image::pipeline::{GivenPins, KeyInput, Pipeline, Step, StepId};
use mesos_image::plan::{HostContext, Plan, PlanOptions};
use mesos_image::recipe::{ImageFormat, Overrides};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fault_elements() -> PathBuf {
    repo().join("tests/fixtures/fault-elements")
}

/// A scratch directory under /var/tmp (the builds' tmpfs and work dirs want a real disk).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/var/tmp/mi-pipeline-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("tmp")).unwrap();
    dir
}

/// The DIB-mode plan of `fault-os` (`-n`), as the command line makes it.
fn fault_plan(formats: Vec<ImageFormat>) -> Plan {
    let host =
        HostContext { env: BTreeMap::from([("DIB_RELEASE".into(), "bookworm".into())]), ..HostContext::default() };
    let options = PlanOptions {
        elements_path: vec![fault_elements(), repo().join("elements")],
        overrides: Overrides { formats: Some(formats), ..Overrides::default() },
        image_name: Some("probe".into()),
        skip_base: true,
        host,
        ..PlanOptions::default()
    };
    Plan::from_elements(&["fault-os".to_owned()], &options).unwrap()
}

fn step_names(ids: impl IntoIterator<Item = StepId>) -> Vec<String> {
    ids.into_iter().map(|id| id.name().to_owned()).collect()
}

/// `mesos-image` with the fault elements and a private cache and TMPDIR; DIB mode's release
/// is bookworm (recipe mode's, the recipe's).
fn mesos_image(scratch: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesos-image"));
    command.env_remove("DIB_RELEASE");
    if !args.contains(&"--recipe") {
        command.env("DIB_RELEASE", "bookworm");
    }
    command
        .env("ELEMENTS_PATH", fault_elements())
        .env("MESOS_IMAGE_CACHE_DIR", scratch.join("cache"))
        .env("TMPDIR", scratch.join("tmp"));
    command
}

/// The step names `--dry-run --json` lists for `args` (the build's own arguments).
fn dry_run_steps(scratch: &Path, args: &[&str]) -> Vec<String> {
    let output = mesos_image(scratch, args).args(["build", "--dry-run", "--json"]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    json["pipeline"].as_array().unwrap().iter().map(|step| step["step"].as_str().unwrap().to_owned()).collect()
}

/// Build with `args` and return the steps its manifest records.
fn built_steps(scratch: &Path, args: &[&str], manifest: &Path) -> Vec<String> {
    let output = mesos_image(scratch, args).args(["build", "-q"]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: mesos_image::manifest::Manifest = serde_json::from_slice(&fs::read(manifest).unwrap()).unwrap();
    step_names(manifest.run.stages.into_iter().map(|timing| timing.stage))
}

#[test]
#[ignore = "needs root: a DIB-mode build of the fault fixture elements (~3 s)"]
fn dry_run_lists_the_steps_a_dib_mode_build_records() {
    let scratch = scratch("dib");
    let output = scratch.join("dib.qcow2");
    let args = ["-n", "-o", output.to_str().unwrap(), "fault-os"];
    let planned = dry_run_steps(&scratch, &args);
    for step in ["hooks", "save base snapshot", "install.d", "finalise", "cleanup", "disk", "convert", "publish"] {
        assert!(planned.contains(&step.to_owned()), "{step} missing from the dry run: {planned:?}");
    }
    assert_eq!(built_steps(&scratch, &args, &scratch.join("dib.qcow2.manifest.json")), planned);
    // --no-cache: neither the dry run nor the build has the cache's steps.
    let no_cache = ["--no-cache", "-n", "-o", output.to_str().unwrap(), "fault-os"];
    let planned = dry_run_steps(&scratch, &no_cache);
    assert!(!planned.iter().any(|step| step.starts_with("save ")), "{planned:?}");
    assert_eq!(built_steps(&scratch, &no_cache, &scratch.join("dib.qcow2.manifest.json")), planned);
    fs::remove_dir_all(&scratch).unwrap();
}

/// A recipe of the fault elements whose base is a cloud image read from a file: a base step
/// that does real work, without a mirror.
fn fault_recipe(scratch: &Path) -> PathBuf {
    let images = scratch.join("images");
    fs::create_dir_all(&images).unwrap();
    let tarball = images.join("fixture-root.tar.gz");
    let fixture = repo().join("tests/fixtures/cloud-image/root");
    let status = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&fixture).arg(".").status().unwrap();
    assert!(status.success());
    let sum = mesos_image::io::sha256_file(&tarball).unwrap().0;
    fs::write(images.join("SHA256SUMS"), format!("{sum} *fixture-root.tar.gz\n")).unwrap();
    let recipes = scratch.join("recipes");
    fs::create_dir_all(&recipes).unwrap();
    let recipe = format!(
        "name: fault\ndistro: ubuntu\nrelease: noble\nbase: cloud-image\nelements: [fault-os]\nimage:\n  formats: [qcow2, tar]\n\
         environment:\n  DIB_CLOUD_IMAGES: file://{}\n  BASE_IMAGE_FILE: fixture-root.tar.gz\n",
        images.display()
    );
    fs::write(recipes.join("fault.yaml"), recipe).unwrap();
    recipes
}

#[test]
#[ignore = "needs root: a recipe-mode build of the fault fixture elements from a cloud-image file (~4 s)"]
fn dry_run_lists_the_steps_a_recipe_mode_build_records() {
    let scratch = scratch("recipe");
    let recipes = fault_recipe(&scratch);
    let output = scratch.join("recipe.qcow2");
    let args = ["--recipes-dir", recipes.to_str().unwrap(), "--recipe", "fault", "-o", output.to_str().unwrap()];
    let planned = dry_run_steps(&scratch, &args);
    assert!(planned.contains(&"tree outputs".to_owned()) && planned.contains(&"base".to_owned()), "{planned:?}");
    assert_eq!(built_steps(&scratch, &args, &scratch.join("recipe.qcow2.manifest.json")), planned);
    fs::remove_dir_all(&scratch).unwrap();
}

/// The step the tests add: it writes `etc/probe` into the tree, keyed by its text.
fn probe_step(text: &'static str) -> Step {
    let work = Arc::new(move |ctx: &mesos_image::stage::BuildContext<'_>| -> anyhow::Result<()> {
        fs::write(ctx.target.join("etc/probe"), text)?;
        Ok(())
    });
    Step::added("probe", vec![KeyInput::Value("probe text".into(), text.into())], work)
}

fn with_probe(plan: &Plan, text: &'static str) -> Pipeline {
    let mut pipeline = Pipeline::for_plan(plan);
    pipeline.insert_after(&StepId::Phase(mesos_image::element::Phase::PostRoot), probe_step(text)).unwrap();
    pipeline
}

#[test]
fn an_added_step_is_in_the_dry_run_and_keys_what_follows_it() {
    let plan = fault_plan(vec![ImageFormat::Qcow2]);
    let plain = Pipeline::for_plan(&plan);
    let probed = with_probe(&plan, "one");
    let json: serde_json::Value = serde_json::from_str(&probed.dry_run_json(&plan).unwrap()).unwrap();
    let listed: Vec<&str> = json["pipeline"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    let at = listed.iter().position(|step| *step == "probe").expect("the added step is in the dry run");
    assert_eq!((listed[at - 1], listed[at + 1]), ("post-root.d", "pre-finalise.d"));
    assert_eq!(json["pipeline"][at]["inputs"][0], "probe text");
    assert!(probed.render(&plan).contains("\n  probe "), "{}", probed.render(&plan));

    let keys = |pipeline: &Pipeline| pipeline.stage_keys(&plan, false, GivenPins::default()).unwrap();
    let (before, after) = (keys(&plain), keys(&probed));
    assert_eq!((&after.base, &after.install), (&before.base, &before.install), "a late step keeps the snapshots");
    assert_ne!(after.disk, before.disk, "the disk reads the tree the step changed");
    assert_ne!(after.outputs, before.outputs);
    assert_ne!(keys(&with_probe(&plan, "two")).outputs, after.outputs, "the step's own input keys it");
    assert!(Pipeline::for_plan(&plan).insert_after(&StepId::Added("none".into()), probe_step("x")).is_err());
}

/// The child side of `an_added_step_runs_in_a_build_and_is_timed`: the build forks into its
/// namespaces, so it runs in a process of its own (this test binary, run again).
const CHILD: &str = "MESOS_IMAGE_PIPELINE_TEST_CHILD";

#[test]
#[ignore = "needs root: a build of the fault fixture elements with a step added (~3 s)"]
fn an_added_step_runs_in_a_build_and_is_timed() {
    if let Some(dir) = std::env::var_os(CHILD) {
        build_with_probe(Path::new(&dir));
        std::process::exit(0);
    }
    let scratch = scratch("added");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "an_added_step_runs_in_a_build_and_is_timed", "--include-ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, &scratch)
        .env("TMPDIR", scratch.join("tmp"))
        .status()
        .unwrap();
    assert!(status.success(), "the build with the added step failed: {status}");
    let manifest: mesos_image::manifest::Manifest =
        serde_json::from_slice(&fs::read(scratch.join("probe.qcow2.manifest.json")).unwrap()).unwrap();
    let plan = fault_plan(vec![ImageFormat::Qcow2]);
    let pipeline = with_probe(&plan, "one").with_tree_listing();
    let recorded = step_names(manifest.run.stages.iter().map(|timing| timing.stage.clone()));
    assert_eq!(recorded, step_names(pipeline.steps().iter().map(|step| step.id.clone())), "timings");
    let keys = pipeline.stage_keys(&plan, false, GivenPins::default()).unwrap();
    assert_eq!(manifest.cache_key, keys.outputs.to_string(), "the build keyed its outputs with the added step");
    let listing = fs::read_to_string(scratch.join("listing")).unwrap();
    assert!(listing.lines().any(|line| line.contains("etc/probe")), "the step's file is not in the tree:\n{listing}");
    fs::remove_dir_all(&scratch).unwrap();
}

fn build_with_probe(scratch: &Path) {
    let plan = fault_plan(vec![ImageFormat::Qcow2]);
    let pipeline = with_probe(&plan, "one").with_tree_listing();
    let options = BuildOptions {
        output: scratch.join("probe.qcow2"),
        cache_dir: scratch.join("cache"),
        use_cache: true,
        log_file: None,
        break_at: None,
        trace: false,
        checksum: false,
        work_dir: None,
        no_tmpfs: false,
        min_tmpfs_bytes: None,
        quiet: true,
        verbose: false,
        seed: None,
        source_date_epoch: None,
        tree_listing: Some(scratch.join("listing")),
        keep_tree: None,
        layout: Default::default(),
        log_style: Default::default(),
    };
    if let Err(err) = mesos_image::build::execute_pipeline(&plan, &pipeline, &options) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

const DOCS_BEGIN: &str = "<!-- pipeline table: tests/pipeline.rs -->\n";
const DOCS_END: &str = "<!-- end of pipeline table -->";

#[test]
fn docs_stage_table_is_the_pipeline() {
    // Every step a pipeline can hold: disk and tree formats, the tree listing.
    let plan = fault_plan(vec![ImageFormat::Qcow2, ImageFormat::Tar]);
    let expected = Pipeline::for_plan(&plan).with_tree_listing().docs_table(&plan);
    let path = repo().join("docs/architecture.md");
    let docs = fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (docs.find(DOCS_BEGIN), docs.find(DOCS_END)) else {
        panic!("docs/architecture.md lacks the pipeline table markers")
    };
    if std::env::var_os("MESOS_IMAGE_WRITE_DOCS").is_some() {
        fs::write(&path, format!("{}{DOCS_BEGIN}{expected}{}", &docs[..start], &docs[end..])).unwrap();
        return;
    }
    assert_eq!(
        &docs[start + DOCS_BEGIN.len()..end],
        expected,
        "docs/architecture.md's stage table is stale: rerun with MESOS_IMAGE_WRITE_DOCS=1"
    );
}

#[test]
fn a_restored_snapshot_stands_for_the_steps_before_it_and_the_rest_run() {
    use mesos_image::pipeline::{CachePoint, Scheduled};
    let plan = fault_plan(vec![ImageFormat::Qcow2]);
    let pipeline = Pipeline::for_plan(&plan);
    let names = |resume| -> Vec<String> { step_names(pipeline.schedule(resume).iter().map(Scheduled::id)) };
    let cold = names(None);
    assert_eq!(cold, step_names(pipeline.steps().iter().map(|step| step.id.clone())));
    // The hooks dir and extra-data.d's files are no part of any snapshot: they run anyway.
    let after_install = names(Some(CachePoint::Install));
    assert_eq!(after_install[..4], ["hooks", "restore install snapshot", "extra-data.d", "post-install.d"]);
    let after_base = names(Some(CachePoint::Base));
    assert_eq!(after_base[..4], ["hooks", "restore base snapshot", "extra-data.d", "pre-install.d"]);
    assert!(after_base.contains(&"save install snapshot".to_owned()), "{after_base:?}");
    assert_eq!(cold[cold.len() - 4..], after_install[after_install.len() - 4..], "the same end");
    // The latest snapshot stored wins; without the cache there is none.
    assert_eq!(pipeline.resume_point(|_| true), Some(CachePoint::Install));
    assert_eq!(pipeline.resume_point(|point| point == CachePoint::Base), Some(CachePoint::Base));
    assert_eq!(pipeline.clone().without_cache().resume_point(|_| true), None);
}
