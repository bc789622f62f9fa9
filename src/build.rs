//! One build, start to finish: cache lookup, sandbox, stages in order, outputs, manifest.
//!
//! The stage cache is consulted at three points: the finished image (a warm rebuild copies it
//! out without even needing root), the tree after the install phase (a change to a late hook
//! resumes there), and the base tree (a change to an install hook resumes there).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cache::{StageCache, StageKeys};
use crate::element::Phase;
use crate::manifest::{Manifest, Package, RunInfo, StageTiming};
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::recipe::{GlanceSpec, ImageFormat};
use crate::stage::publish;
use crate::stage::{self, BreakPoint, BuildContext};
use crate::workdir;

/// Steps that belong to the orchestrator rather than to a stage module.
const ORCHESTRATOR_STEPS: [&str; 4] = ["restore ", "save ", "publish", "hooks"];

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
    pub quiet: bool,
    pub verbose: bool,
}

/// Run one build. Returns the manifest written beside the image.
pub fn execute(plan: &Plan, options: &BuildOptions) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    let destinations = publish::output_paths(&options.output, &plan.image.formats)?;
    let cache = StageCache::open(&options.cache_dir)?;
    let keys = StageKeys::compute(plan, options.checksum)?;
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
    let work_root = options.work_dir.clone().unwrap_or_else(|| cache.root().join("work"));
    remove_stale_work_dirs(&work_root);
    let work = work_root.join(format!("build-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("cannot create work directory {}", work.display()))?;

    // From here on every mount and process lives in namespaces that die with this tool.
    crate::sandbox::isolate()?;
    let build =
        Build { plan, options, cache: &cache, keys: &keys, reporter: &reporter, destinations: &destinations, started };
    let result = build.in_sandbox(&work);
    workdir::release(&work);
    result
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
}

impl Build<'_> {
    /// Everything that needs the sandbox.
    fn in_sandbox(&self, work: &Path) -> anyhow::Result<Manifest> {
        let Build { plan, options, cache, keys, reporter, destinations, started } = *self;
        // An explicit --work-dir is where the user wants the tree (and its space accounting):
        // only the default location is moved to tmpfs.
        if options.work_dir.is_none() {
            workdir::mount_tmpfs_if_memory_allows(work)?;
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

        let raw = work.join("disk.raw");
        let disk = timed(&mut timings, reporter, "disk", false, || stage::disk::run(&ctx, &raw))?;
        let scratch = work.join("out");
        fs::create_dir_all(&scratch).context("cannot create the conversion directory")?;
        let files = publish::image_files(destinations, &scratch);
        let converted: Vec<(ImageFormat, PathBuf)> = files.iter().map(|f| (f.format, f.source.clone())).collect();
        timed(&mut timings, reporter, "convert", false, || {
            stage::convert::run(&raw, &converted, &plan.image, reporter)
        })?;
        let outputs = timed(&mut timings, reporter, "publish", false, || publish::images(&files, options.checksum))?;

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
            root_uuid: disk.root_uuid,
            kernel_version: disk.kernel_version,
            glance: GlanceSpec::default(),
            checks: Vec::new(),
            cache_key: keys.outputs.to_string(),
            run: RunInfo::new(timings, started),
        };
        manifest.hand_on(plan);
        let manifest_path = publish::manifest(&manifest, &destinations[0].1)?;
        if options.use_cache {
            // The images are stored from scratch under their published names, with the manifest.
            let mut to_cache: Vec<(String, PathBuf)> =
                files.iter().map(|f| (publish::file_name(&f.destination), f.source.clone())).collect();
            to_cache.push((publish::file_name(&manifest_path), manifest_path.clone()));
            if let Err(err) = cache.save_outputs(&keys.outputs, &label, &to_cache) {
                // The image is built; a full cache disk must not fail the build.
                tracing::warn!("could not store the outputs in the cache: {err:#}");
            }
        }
        print_timings(reporter, &manifest, options.quiet);
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
    // (above all before publishing) instead of finishing the build.
    crate::sandbox::check_interrupted().with_context(|| format!("before stage {stage}"))?;
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

/// Work directories of builds that died (their process is gone) are removed at the next start.
/// Their mounts died with their namespaces, so nothing host-owned is reachable through them.
fn remove_stale_work_dirs(work_root: &Path) {
    let Ok(entries) = fs::read_dir(work_root) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("build-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            workdir::release(&entry.path());
        }
    }
}

fn print_timings(reporter: &Reporter, manifest: &Manifest, quiet: bool) {
    if quiet {
        return;
    }
    let mut steps = reporter.timings();
    steps.sort_by_key(|step| std::cmp::Reverse(step.1));
    eprintln!("\n{:<60} {:>9}", "step (slowest first)", "seconds");
    for (label, duration) in steps.iter().take(25) {
        eprintln!("{:<60} {:>9.1}", truncate(label, 60), duration.as_secs_f64());
    }
    eprintln!("{:<60} {:>9.1}", "total", manifest.run.duration_seconds);
    for output in &manifest.outputs {
        eprintln!("wrote {} ({} bytes, sha256 {})", output.file, output.size, output.sha256);
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(width - 1).collect();
        format!("{kept}…")
    }
}
