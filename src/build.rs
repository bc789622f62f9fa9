//! One build, start to finish: cache lookup, sandbox, then the steps of its pipeline
//! (`pipeline/`) in order.
//!
//! The stage cache is consulted at the pipeline's cache points: the finished image (a warm
//! rebuild copies it out without even needing a namespace), then the latest tree snapshot the cache
//! holds (after install: a change to a late hook resumes there; the base: a change to an install
//! hook resumes there).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::cache::{CachePoint, StageCache};
use crate::layout::OutputLayout;
use crate::manifest::{Manifest, RunInfo, StageTiming};
use crate::pipeline::{GivenPins, Pipeline, Run, RunSettings, StageKeys, StepId};
use crate::plan::Plan;
use crate::progress::{LogStyle, Reporter};
use crate::recipe::ImageFormat;
use crate::reproducible::{self, Pins, Seed};
use crate::stage::publish;
use crate::stage::{BreakPoint, BuildContext};
use crate::workdir;

/// The umask every build runs under, whatever the caller's.
const BUILD_UMASK: u32 = 0o022;

/// Options of one build that are not part of the plan.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The first output image; further formats get their extension swapped.
    pub output: PathBuf,
    pub cache_dir: PathBuf,
    pub use_cache: bool,
    pub log_file: Option<PathBuf>,
    pub break_at: Option<BreakPoint>,
    pub trace: bool,
    pub checksum: bool,
    /// Scratch directory; default `<cache-dir>/work`.
    pub work_dir: Option<PathBuf>,
    /// `--no-tmpfs`: the default work dir stays on disk.
    pub no_tmpfs: bool,
    /// `--min-tmpfs`: memory that must be available for the tmpfs (default: workdir's).
    pub min_tmpfs_bytes: Option<u64>,
    pub quiet: bool,
    pub verbose: bool,
    /// `--seed`: derive identifiers from this text instead of from the inputs.
    pub seed: Option<String>,
    /// `SOURCE_DATE_EPOCH` as given; `None` dates the build from the mirror.
    pub source_date_epoch: Option<i64>,
    /// Write a file-by-file description of the finished tree here (`--check-reproducible`).
    pub tree_listing: Option<PathBuf>,
    /// Move the finished tree here instead of removing it (`--check-reproducible` reads the
    /// files that differ); on the work directory's filesystem.
    pub keep_tree: Option<PathBuf>,
    /// Where the manifest, SBOM and checksums go: ours, or disk-image-create's.
    pub layout: OutputLayout,
    /// How the log is written: ours, or disk-image-create's.
    pub log_style: LogStyle,
}

/// The pipeline of one build: the plan's, without the cache under `--no-cache`, with the tree
/// listing when asked for. `--dry-run` shows the same.
pub fn pipeline(plan: &Plan, use_cache: bool, tree_listing: bool) -> Pipeline {
    let mut pipeline = Pipeline::for_plan(plan);
    if !use_cache {
        pipeline = pipeline.without_cache();
    }
    if tree_listing {
        pipeline = pipeline.with_tree_listing();
    }
    pipeline
}

/// Run one build. Returns the manifest written beside the image.
pub fn execute(plan: &Plan, options: &BuildOptions) -> anyhow::Result<Manifest> {
    let pipeline = pipeline(plan, options.use_cache, options.tree_listing.is_some());
    execute_pipeline(plan, &pipeline, options)
}

/// Run `pipeline`, a build of `plan`.
pub fn execute_pipeline(plan: &Plan, pipeline: &Pipeline, options: &BuildOptions) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    let destinations = publish::output_paths(&options.output, &plan.image.formats)?;
    let cache = StageCache::open(&options.cache_dir)?;
    let given = GivenPins { epoch: options.source_date_epoch, seed: options.seed.as_deref() };
    let keys = pipeline.stage_keys(plan, options.checksum, given)?;
    let reporter = Reporter::new(options.quiet, options.verbose, options.log_file.as_deref(), options.log_style)?;
    let result = build_with(plan, pipeline, options, (&cache, &keys, &destinations), &reporter, started);
    // The log says how the build ended, as DIB's does: a build log read alone (nodepool's,
    // Zuul's --logfile) must not end mid-step without the reason.
    if let Err(err) = &result {
        reporter.log_line(&format!("error: {err:#}"));
    }
    result
}

/// The build after its reporter exists: from the cache, or in the sandbox.
fn build_with(
    plan: &Plan,
    pipeline: &Pipeline,
    options: &BuildOptions,
    (cache, keys, destinations): (&StageCache, &StageKeys, &[(ImageFormat, PathBuf)]),
    reporter: &Reporter,
    started: Instant,
) -> anyhow::Result<Manifest> {
    if pipeline.uses_cache() {
        if let Some(stored) = cache.outputs(&keys.outputs) {
            return restore_outputs(plan, &stored, destinations, keys, options, reporter, started);
        }
    }
    // Root as it is; anyone else in a user namespace of their own (before the sweep below, which
    // may meet files owned by the namespace's other ids).
    crate::sandbox::ensure_privileges()?;
    let pins = decide_pins(plan, keys, options)?;
    // Files the build and element scripts create get their modes from the umask: the caller's
    // must not reach the image (measured: umask 077 made 15 paths differ).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(BUILD_UMASK));
    let work_root = options.work_dir.clone().unwrap_or_else(|| cache.root().join("work"));
    workdir::remove_stale(&work_root);
    let work = workdir::create(&work_root)?;

    // From here on every mount and process lives in namespaces that die with this tool.
    crate::sandbox::isolate()?;
    let build = Build { plan, pipeline, options, cache, keys, reporter, destinations, started, pins: &pins };
    let result = build.in_sandbox(work.path()).and_then(|manifest| {
        if let Some(keep) = &options.keep_tree {
            keep_tree(&work.path().join("root"), keep)?;
        }
        Ok(manifest)
    });
    workdir::release(work.path());
    result
}

/// A warm rebuild: the finished outputs copied out of the cache, without even needing root.
fn restore_outputs(
    plan: &Plan,
    stored: &[(String, PathBuf)],
    destinations: &[(ImageFormat, PathBuf)],
    keys: &StageKeys,
    options: &BuildOptions,
    reporter: &Reporter,
    started: Instant,
) -> anyhow::Result<Manifest> {
    let restore = StepId::Restore(CachePoint::Outputs);
    let _step = reporter.step(format!("{restore}: unchanged inputs, restoring from cache ({})", keys.outputs.short()));
    let mut manifest = publish::from_cache(stored, destinations, options.checksum, options.layout)?;
    // What later commands read comes from this plan: a recipe's glance: or checks: do
    // not change the image, so an entry stored before such an edit is still this image.
    manifest.hand_on(plan);
    let stages = vec![StageTiming { stage: restore, seconds: started.elapsed().as_secs_f64(), cached: true }];
    manifest.run = RunInfo::new(stages, started);
    publish::manifest(&manifest, &destinations[0].1, options.layout)?;
    Ok(manifest)
}

/// Move the finished tree `root` to `keep`, nothing mounted below it any more.
fn keep_tree(root: &Path, keep: &Path) -> anyhow::Result<()> {
    crate::sandbox::unmount_below(root)?;
    fs::rename(root, keep).with_context(|| format!("cannot move the tree {} to {}", root.display(), keep.display()))
}

/// The build's time and seed (from the disk's key: the inputs that make the disk, not how it
/// is written out). `SOURCE_DATE_EPOCH` also goes into this process's environment (still
/// single-threaded here), so every tool the build runs, on the host and in the chroot, sees the
/// same time.
fn decide_pins(plan: &Plan, keys: &StageKeys, options: &BuildOptions) -> anyhow::Result<Pins> {
    let epoch = reproducible::epoch::decide(options.source_date_epoch, plan.mirror.as_deref(), &plan.release)?;
    if epoch.origin == reproducible::EpochOrigin::Clock {
        tracing::warn!(
            "no mirror dates this build: using the clock, so the image is not reproducible (set SOURCE_DATE_EPOCH)"
        );
    }
    std::env::set_var("SOURCE_DATE_EPOCH", epoch.seconds.to_string());
    let seed = match &options.seed {
        Some(text) => Seed::from_text(text),
        None => Seed::from_inputs(keys.disk.as_str(), epoch.seconds),
    };
    Ok(Pins { epoch, seed })
}

/// One build's fixed inputs, decided before the sandbox is entered.
struct Build<'a> {
    plan: &'a Plan,
    pipeline: &'a Pipeline,
    options: &'a BuildOptions,
    cache: &'a StageCache,
    keys: &'a StageKeys,
    reporter: &'a Reporter,
    destinations: &'a [(ImageFormat, PathBuf)],
    started: Instant,
    pins: &'a Pins,
}

impl Build<'_> {
    /// Everything that needs the sandbox: the pipeline's steps, from the latest snapshot the
    /// cache holds on.
    fn in_sandbox(&self, work: &Path) -> anyhow::Result<Manifest> {
        let Build { plan, pipeline, options, cache, keys, reporter, destinations, started, pins } = *self;
        // An explicit --work-dir is where the user wants the tree (and its space accounting):
        // only the default location is moved to tmpfs.
        if options.work_dir.is_none() && !options.no_tmpfs {
            workdir::mount_tmpfs_if_memory_allows(work, options.min_tmpfs_bytes)?;
        }
        let ctx = BuildContext {
            plan,
            target: work.join("root"),
            hooks_dir: work.join("hooks"),
            work_dir: work.to_owned(),
            cache_dir: cache.root().to_owned(),
            apt_cache: cache.apt_archives(),
            // `-x`, or a DIB_DEBUG_TRACE above 0 from the caller, as DIB reads it.
            trace: options.trace
                || plan.env.get("DIB_DEBUG_TRACE").is_some_and(|v| v.trim().parse().is_ok_and(|n: u32| n > 0)),
            break_at: options.break_at,
            reporter,
            pins: pins.clone(),
        };
        let settings = RunSettings {
            use_cache: pipeline.uses_cache(),
            checksum: options.checksum,
            tree_listing: options.tree_listing.clone(),
            layout: options.layout,
        };
        let mut run = Run::new(ctx, cache, keys, destinations, settings, started)?;
        let resume = pipeline.resume_point(|point| cache.has_tree(keys.of(point)));
        for step in pipeline.schedule(resume) {
            run.step(&step)?;
        }
        let manifest = run.into_manifest()?;
        if !options.quiet {
            reporter.print_summary(manifest.run.duration_seconds, &manifest.outputs);
        }
        Ok(manifest)
    }
}
