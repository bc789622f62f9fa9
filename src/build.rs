//! One build, start to finish: cache lookup, sandbox, stages in order, outputs, manifest.
//!
//! The stage cache is consulted at three points: the finished image (a warm rebuild copies it
//! out without even needing root), the tree after the install phase (a change to a late hook
//! resumes there), and the base tree (a change to an install hook resumes there).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cache::{GivenPins, StageCache, StageKeys};
use crate::element::Phase;
use crate::manifest::{Manifest, Package, Reproducibility, RunInfo, StageTiming};
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::recipe::{GlanceSpec, ImageFormat};
use crate::reproducible::{self, Pins, Seed};
use crate::sbom;
use crate::stage::publish;
use crate::stage::{self, BreakPoint, BuildContext};
use crate::workdir;

/// The umask every build runs under, whatever the caller's.
const BUILD_UMASK: u32 = 0o022;

/// Steps that belong to the orchestrator rather than to a stage module.
const ORCHESTRATOR_STEPS: [&str; 4] = ["restore ", "save ", "publish", "hooks"];

/// One output file: its format and path.
type Destination = (ImageFormat, PathBuf);

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
}

/// Run one build. Returns the manifest written beside the image.
pub fn execute(plan: &Plan, options: &BuildOptions) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    let destinations = publish::output_paths(&options.output, &plan.image.formats)?;
    let cache = StageCache::open(&options.cache_dir)?;
    let given = GivenPins { epoch: options.source_date_epoch, seed: options.seed.as_deref() };
    let keys = StageKeys::compute(plan, options.checksum, given)?;
    let reporter = Reporter::new(options.quiet, options.verbose, options.log_file.as_deref())?;

    if options.use_cache {
        if let Some(stored) = cache.outputs(&keys.outputs) {
            let _step =
                reporter.step(format!("outputs: unchanged inputs, restoring from cache ({})", keys.outputs.short()));
            let mut manifest = publish::from_cache(&stored, &destinations, options.checksum)?;
            // What later commands read comes from this plan: a recipe's glance: or checks: do
            // not change the image, so an entry stored before such an edit is still this image.
            manifest.hand_on(plan);
            let stages =
                vec![StageTiming { stage: "outputs".into(), seconds: started.elapsed().as_secs_f64(), cached: true }];
            manifest.run = RunInfo::new(stages, started);
            publish::manifest(&manifest, &destinations[0].1)?;
            return Ok(manifest);
        }
    }
    require_root()?;
    let pins = decide_pins(plan, &keys, options)?;
    // Files the build and element scripts create get their modes from the umask: the caller's
    // must not reach the image (measured: umask 077 made 15 paths differ).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(BUILD_UMASK));
    let work_root = options.work_dir.clone().unwrap_or_else(|| cache.root().join("work"));
    workdir::remove_stale(&work_root);
    let work = workdir::create(&work_root)?;

    // From here on every mount and process lives in namespaces that die with this tool.
    crate::sandbox::isolate()?;
    let build = Build {
        plan,
        options,
        cache: &cache,
        keys: &keys,
        reporter: &reporter,
        destinations: &destinations,
        started,
        pins: &pins,
    };
    let result = build.in_sandbox(&work).and_then(|manifest| {
        if let Some(keep) = &options.keep_tree {
            keep_tree(&work.join("root"), keep)?;
        }
        Ok(manifest)
    });
    workdir::release(&work);
    result
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
    options: &'a BuildOptions,
    cache: &'a StageCache,
    keys: &'a StageKeys,
    reporter: &'a Reporter,
    destinations: &'a [(ImageFormat, PathBuf)],
    started: Instant,
    pins: &'a Pins,
}

impl Build<'_> {
    /// Everything that needs the sandbox.
    fn in_sandbox(&self, work: &Path) -> anyhow::Result<Manifest> {
        let Build { plan, options, cache, keys, reporter, destinations, started, pins } = *self;
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
            trace: options.trace,
            break_at: options.break_at,
            reporter,
            pins: pins.clone(),
        };
        for dir in [&ctx.target, &ctx.hooks_dir] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let label = plan
            .recipe
            .clone()
            .unwrap_or_else(|| plan.elements.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" "));
        let mut timings = Vec::new();

        let resume = if !options.use_cache {
            Resume::Cold
        } else if cache.has_tree(&keys.install) {
            Resume::AfterInstall
        } else if cache.has_tree(&keys.base) {
            Resume::AfterBase
        } else {
            Resume::Cold
        };

        // root.d scripts run from the hooks dir too, so it is laid out first, in every build.
        timed(&mut timings, reporter, "hooks", false, || stage::phases::prepare_hooks(&ctx))?;
        match resume {
            Resume::AfterInstall => timed(&mut timings, reporter, "restore install snapshot", true, || {
                cache.restore_tree(&keys.install, &ctx.target)
            })?,
            Resume::AfterBase => timed(&mut timings, reporter, "restore base snapshot", true, || {
                cache.restore_tree(&keys.base, &ctx.target)
            })?,
            Resume::Cold => {
                timed(&mut timings, reporter, "root", false, || stage::root::run(&ctx))?;
                if options.use_cache {
                    timed(&mut timings, reporter, "save base snapshot", false, || {
                        cache.save_tree(&keys.base, "base", &label, &ctx.target)
                    })?;
                }
            }
        }

        timed(&mut timings, reporter, "extra-data", false, || stage::phases::run_phase(&ctx, Phase::ExtraData))?;
        if resume != Resume::AfterInstall {
            for phase in [Phase::PreInstall, Phase::Install] {
                timed(&mut timings, reporter, phase.name(), false, || stage::phases::run_phase(&ctx, phase))?;
            }
            if options.use_cache {
                timed(&mut timings, reporter, "save install snapshot", false, || {
                    cache.save_tree(&keys.install, "install", &label, &ctx.target)
                })?;
            }
        }
        for phase in [Phase::PostInstall, Phase::PostRoot] {
            timed(&mut timings, reporter, phase.name(), false, || stage::phases::run_phase(&ctx, phase))?;
        }
        let packages = timed(&mut timings, reporter, "finalise", false, || stage::finalise::run(&ctx))?;
        timed(&mut timings, reporter, "cleanup", false, || stage::cleanup::run(&ctx))?;

        let scratch = work.join("out");
        fs::create_dir_all(&scratch).context("cannot create the conversion directory")?;
        let files = publish::image_files(destinations, &scratch);
        let (disk_outputs, tree_outputs): (Vec<Destination>, Vec<Destination>) =
            files.iter().map(|f| (f.format, f.source.clone())).partition(|(format, _)| format.is_disk());
        // The tree formats are the tree disk-image-create archives: finished, before the disk
        // stage writes its boot files into it.
        if !tree_outputs.is_empty() {
            timed(&mut timings, reporter, "tree outputs", false, || {
                stage::convert::tree_outputs(&ctx.target, &tree_outputs, pins.epoch.seconds, reporter)
            })?;
        }
        // A build of tree formats only makes no disk at all.
        let disk = if disk_outputs.is_empty() {
            None
        } else {
            let raw = work.join("disk.raw");
            let disk = timed(&mut timings, reporter, "disk", false, || stage::disk::run(&ctx, &raw))?;
            Some((raw, disk))
        };
        if let Some(path) = &options.tree_listing {
            let listing = reproducible::listing::describe(&ctx.target)?;
            publish::tree_listing(&reproducible::listing::to_text(&listing), path)?;
        }
        // Read while the tree exists; the document is written once the image files are known.
        let debs = sbom::installed_debs(&ctx.target)?;
        if let Some((raw, _)) = &disk {
            timed(&mut timings, reporter, "convert", false, || {
                stage::convert::run(raw, &disk_outputs, &plan.image, pins, reporter)
            })?;
        }
        let outputs = timed(&mut timings, reporter, "publish", false, || publish::images(&files, options.checksum))?;

        let sbom_path = timed(&mut timings, reporter, "publish SBOM", false, || {
            let document = sbom::for_build(
                plan,
                plan.recipe_source.as_ref().map(|source| source.path.as_path()),
                pins,
                &debs,
                &outputs,
                &publish::file_name(&destinations[0].1),
            )?;
            publish::sbom(&sbom::to_json(&document)?, &destinations[0].1)
        })?;

        let mut manifest = Manifest {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            recipe: None,
            recipe_source: None,
            distro: plan.distro.clone(),
            release: plan.release.clone(),
            arch: plan.arch.clone(),
            elements: plan.elements.iter().map(|e| e.name.clone()).collect(),
            packages: packages.into_iter().map(|(name, version)| Package { name, version }).collect(),
            outputs,
            // A tree-only build has no root filesystem, hence no UUID.
            root_uuid: disk.as_ref().map(|(_, d)| d.root_uuid.clone()).unwrap_or_default(),
            kernel_version: match &disk {
                Some((_, d)) => d.kernel_version.clone(),
                None => crate::disk::grub::find_kernel(&ctx.target).map(|k| k.version).unwrap_or_default(),
            },
            glance: GlanceSpec::default(),
            checks: Vec::new(),
            cache_key: keys.outputs.to_string(),
            run: RunInfo::new(timings, started),
            reproducible: Some(Reproducibility { source_date_epoch: pins.epoch.clone(), seed: pins.seed.to_hex() }),
            sbom: Some(publish::file_name(&sbom_path)),
        };
        manifest.hand_on(plan);
        let manifest_path = publish::manifest(&manifest, &destinations[0].1)?;
        if options.use_cache {
            // The images are stored from scratch under their published names, with the manifest.
            let mut to_cache: Vec<(String, PathBuf)> =
                files.iter().map(|f| (publish::file_name(&f.destination), f.source.clone())).collect();
            to_cache.push((publish::file_name(&manifest_path), manifest_path.clone()));
            to_cache.push((publish::file_name(&sbom_path), sbom_path.clone()));
            if let Err(err) = cache.save_outputs(&keys.outputs, &label, &to_cache) {
                // The image is built; a full cache disk must not fail the build.
                tracing::warn!("could not store the outputs in the cache: {err:#}");
            }
        }
        if !options.quiet {
            reporter.print_summary(manifest.run.duration_seconds, &manifest.outputs);
        }
        Ok(manifest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Cold,
    AfterBase,
    AfterInstall,
}

/// Run a stage, recording its duration for the manifest. Stages announce their own steps; the
/// cache and publishing work announced here is the orchestrator's own.
fn timed<T>(
    timings: &mut Vec<StageTiming>,
    reporter: &Reporter,
    stage: &str,
    cached: bool,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    // A stop signal that arrived between commands killed nothing: stop before the next stage
    // (above all before publishing) instead of finishing the build. Once the images are
    // published (the commit point) it is too late: the SBOM and manifest follow them.
    if !stage.starts_with("publish ") {
        crate::sandbox::check_interrupted().with_context(|| format!("before stage {stage}"))?;
    }
    let started = Instant::now();
    let own_step = ORCHESTRATOR_STEPS.iter().any(|prefix| stage.starts_with(prefix)).then(|| reporter.step(stage));
    let result = work().with_context(|| format!("stage {stage}"));
    drop(own_step);
    timings.push(StageTiming { stage: stage.to_owned(), seconds: started.elapsed().as_secs_f64(), cached });
    result
}

fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("building needs root (mount namespaces, chroot); run it with sudo");
    }
    Ok(())
}
