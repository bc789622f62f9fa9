//! How each step runs, and what one step hands the next: the installed packages, the disk,
//! the published files. [`Run::step`] is the same for every step: stop if a stop signal came
//! and the step allows it, announce it, time it, record it.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::keys::StageKeys;
use super::step::{Scheduled, Stop, Work};
use crate::cache::{CachePoint, StageCache};
use crate::disk::DiskReport;
use crate::layout::OutputLayout;
use crate::manifest::{BootInfo, Manifest, OutputEntry, Package, Reproducibility, RunInfo, StageTiming};
use crate::recipe::{GlanceSpec, ImageFormat};
use crate::reproducible;
use crate::sbom;
use crate::stage::publish::{self, ImageFile};
use crate::stage::{self, BuildContext};
use crate::step_id::StepId;

/// The build's settings the steps read besides the plan.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    /// Store snapshots and outputs in the cache.
    pub use_cache: bool,
    /// `--checksum`: checksum files beside each image (`publish::checksum_paths`).
    pub checksum: bool,
    /// Where the tree listing step writes (`--check-reproducible`).
    pub tree_listing: Option<PathBuf>,
    /// Where the manifest, SBOM and checksums go.
    pub layout: OutputLayout,
}

/// One build in progress: its context, its cache and keys, and what its steps made so far.
pub struct Run<'a> {
    pub ctx: BuildContext<'a>,
    cache: &'a StageCache,
    keys: &'a StageKeys,
    settings: RunSettings,
    /// Recipe name or the element list, for `cache list`.
    label: String,
    started: Instant,
    /// Every step run so far, with its time.
    pub timings: Vec<StageTiming>,
    /// When the running step began (the manifest records its own time up to its writing).
    step_started: Instant,
    made: Made,
}

/// What steps hand on to later steps.
#[derive(Default)]
struct Made {
    /// The images, each converted in scratch under its published name.
    files: Vec<ImageFile>,
    packages: Vec<crate::dpkg_status::InstalledDeb>,
    disk: Option<(PathBuf, DiskReport)>,
    outputs: Vec<OutputEntry>,
    sbom: Option<PathBuf>,
    /// What outside scripts saved for `NAME.d/` (path under it, file in scratch).
    saved: Vec<(String, PathBuf)>,
    manifest: Option<Manifest>,
}

impl<'a> Run<'a> {
    /// A run writing `destinations` (format, path), started at `started`.
    pub fn new(
        ctx: BuildContext<'a>,
        cache: &'a StageCache,
        keys: &'a StageKeys,
        destinations: &[(ImageFormat, PathBuf)],
        settings: RunSettings,
        started: Instant,
    ) -> anyhow::Result<Run<'a>> {
        for dir in [&ctx.target, &ctx.hooks_dir] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let scratch = ctx.work_dir.join("out");
        fs::create_dir_all(&scratch).context("cannot create the conversion directory")?;
        let plan = ctx.plan;
        let label = plan
            .recipe
            .clone()
            .unwrap_or_else(|| plan.elements.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" "));
        let made = Made { files: publish::image_files(destinations, &scratch), ..Made::default() };
        Ok(Run { ctx, cache, keys, settings, label, started, timings: Vec::new(), step_started: started, made })
    }

    /// Run one scheduled step: stop before it if a stop signal came and it still may, announce
    /// it, time it and record it.
    pub fn step(&mut self, scheduled: &Scheduled<'_>) -> anyhow::Result<()> {
        let id = scheduled.id();
        // A stop signal that arrived between commands killed nothing: stop before the next step
        // (above all before publishing) instead of finishing the build.
        if scheduled.stop() == Stop::Allowed {
            crate::sandbox::check_interrupted().with_context(|| format!("before stage {id}"))?;
        }
        self.step_started = Instant::now();
        let reporter = self.ctx.reporter;
        let announced = reporter.step(id.label());
        let result = match scheduled {
            Scheduled::Run(step) => match &step.work {
                Work::Builtin => self.builtin(&step.id),
                Work::Added(work) => work(&self.ctx),
            },
            Scheduled::Restore(point) => self.restore(*point),
        };
        drop(announced);
        let cached = matches!(scheduled, Scheduled::Restore(_));
        self.timings.push(StageTiming {
            stage: id.clone(),
            seconds: self.step_started.elapsed().as_secs_f64(),
            cached,
        });
        result.with_context(|| format!("stage {id}"))
    }

    /// The manifest the last step wrote.
    pub fn into_manifest(self) -> anyhow::Result<Manifest> {
        self.made.manifest.context("the pipeline wrote no manifest")
    }

    fn restore(&mut self, point: CachePoint) -> anyhow::Result<()> {
        self.cache.restore_tree(self.keys.of(point), &self.ctx.target)
    }

    fn builtin(&mut self, id: &StepId) -> anyhow::Result<()> {
        let ctx = &self.ctx;
        match id {
            StepId::Hooks => stage::phases::prepare_hooks(ctx),
            StepId::Base => stage::root::run(ctx),
            StepId::Phase(phase) => stage::phases::run_phase(ctx, *phase),
            StepId::Save(point) => self.cache.save_tree(self.keys.of(*point), *point, &self.label, &ctx.target),
            StepId::Finalise => {
                self.made.packages = stage::finalise::run(ctx)?;
                Ok(())
            }
            StepId::Cleanup => stage::cleanup::run(ctx),
            StepId::TreeOutputs => {
                let tree_formats = self.outputs_where(|format| !format.is_disk());
                stage::convert::tree_outputs(&ctx.target, &tree_formats, ctx.pins.epoch.seconds, ctx.reporter)
            }
            StepId::Disk => {
                let raw = ctx.work_dir.join("disk.raw");
                self.made.disk = Some((raw.clone(), stage::disk::run(ctx, &raw)?));
                Ok(())
            }
            StepId::TreeListing => self.tree_listing(),
            StepId::Convert => self.convert(),
            StepId::Publish => {
                let layout = self.settings.layout;
                self.made.outputs = publish::images(&self.made.files, self.settings.checksum, layout)?;
                let first = &self.made.files.first().context("the build writes no image")?.destination;
                self.made.saved = publish::saved_files(&ctx.saved_dir(), first, layout)?;
                Ok(())
            }
            StepId::Sbom => self.sbom(),
            StepId::Manifest => self.manifest(),
            StepId::Restore(point) => self.restore(*point),
            StepId::Added(name) => anyhow::bail!("step `{name}` was added without its work"),
        }
    }

    /// The images of the formats `wanted` picks, as (format, scratch file).
    fn outputs_where(&self, wanted: impl Fn(ImageFormat) -> bool) -> Vec<(ImageFormat, PathBuf)> {
        self.made.files.iter().filter(|f| wanted(f.format)).map(|f| (f.format, f.source.clone())).collect()
    }

    fn tree_listing(&self) -> anyhow::Result<()> {
        let path = self.settings.tree_listing.as_ref().context("the tree listing step has no file to write")?;
        let listing = reproducible::listing::describe(&self.ctx.target)?;
        publish::tree_listing(&reproducible::listing::to_text(&listing), path)
    }

    fn convert(&self) -> anyhow::Result<()> {
        let (raw, _) = self.made.disk.as_ref().context("no disk to convert: the disk step comes first")?;
        let disk_formats = self.outputs_where(ImageFormat::is_disk);
        stage::convert::run(raw, &disk_formats, &self.ctx.plan.image, &self.ctx.pins, self.ctx.reporter)
    }

    fn sbom(&mut self) -> anyhow::Result<()> {
        let plan = self.ctx.plan;
        let debs = sbom::installed_debs(&self.ctx.target)?;
        let first = &self.made.files.first().context("the build writes no image")?.destination;
        let recipe_file = plan.recipe_source.as_ref().map(|source| source.path.as_path());
        let document =
            sbom::for_build(plan, recipe_file, &self.ctx.pins, &debs, &self.made.outputs, &publish::file_name(first))?;
        self.made.sbom = Some(publish::sbom(&sbom::to_json(&document)?, first, self.settings.layout)?);
        Ok(())
    }

    /// Write the manifest, its own step's time so far included, and (with the cache) store the
    /// outputs with it: the stored entry holds the manifest, so nothing can follow it.
    fn manifest(&mut self) -> anyhow::Result<()> {
        let plan = self.ctx.plan;
        let disk = self.made.disk.as_ref().map(|(_, report)| report);
        let mut timings = self.timings.clone();
        let own = self.step_started.elapsed().as_secs_f64();
        timings.push(StageTiming { stage: StepId::Manifest, seconds: own, cached: false });
        let mut manifest = Manifest {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            recipe: None,
            recipe_source: None,
            distro: plan.distro.clone(),
            release: plan.release.clone(),
            arch: plan.arch.clone(),
            boot: disk.map(|report| boot_info(plan, report)),
            elements: plan.elements.iter().map(|e| e.name.clone()).collect(),
            packages: self
                .made
                .packages
                .iter()
                .map(|deb| Package {
                    name: deb.name.clone(),
                    version: deb.version.clone(),
                    arch: deb.architecture.clone(),
                })
                .collect(),
            outputs: self.made.outputs.clone(),
            // A tree-only build has no root filesystem, hence no UUID.
            root_uuid: disk.map(|d| d.root_uuid.clone()).unwrap_or_default(),
            kernel_version: match disk {
                Some(d) => d.kernel_version.clone(),
                None => crate::disk::grub::find_kernel(&self.ctx.target).map(|k| k.version).unwrap_or_default(),
            },
            glance: GlanceSpec::default(),
            checks: Vec::new(),
            cache_key: self.keys.outputs.to_string(),
            run: RunInfo::new(timings, self.started),
            reproducible: Some(Reproducibility {
                source_date_epoch: self.ctx.pins.epoch.clone(),
                seed: self.ctx.pins.seed.to_hex(),
            }),
            sbom: self.made.sbom.as_deref().map(publish::file_name),
        };
        manifest.hand_on(plan);
        let first = &self.made.files.first().context("the build writes no image")?.destination;
        let manifest_path = publish::manifest(&manifest, first, self.settings.layout)?;
        if self.settings.use_cache {
            self.store_outputs(&manifest_path);
        }
        self.made.manifest = Some(manifest);
        Ok(())
    }

    /// The images are stored from scratch under their published names, with the manifest and
    /// the SBOM. The image is built: a full cache disk must not fail the build.
    fn store_outputs(&self, manifest_path: &std::path::Path) {
        let mut to_cache: Vec<(String, PathBuf)> =
            self.made.files.iter().map(|f| (publish::file_name(&f.destination), f.source.clone())).collect();
        for path in std::iter::once(manifest_path).chain(self.made.sbom.as_deref()) {
            to_cache.push((publish::file_name(path), path.to_owned()));
        }
        for (relative, file) in &self.made.saved {
            to_cache.push((publish::saved_cache_name(relative), file.clone()));
        }
        if let Err(err) = self.cache.save_outputs(&self.keys.outputs, &self.label, &to_cache) {
            tracing::warn!("could not store the outputs in the cache: {err:#}");
        }
    }
}

/// How the disk the build wrote boots, on which console.
fn boot_info(plan: &crate::plan::Plan, report: &DiskReport) -> BootInfo {
    let console = plan.env.get(crate::plan::SERIAL_CONSOLE_VAR).map(String::as_str).unwrap_or_default();
    BootInfo {
        bios: report.firmware.bios,
        uefi: report.firmware.uefi,
        serial_console: crate::arch::console_device(console).to_owned(),
    }
}
