//! The build as data: [`Pipeline::for_plan`] is the one ordered list of a build's steps. The
//! build runs it (`build.rs`), `--dry-run` prints it, the manifest's timings and the progress
//! display name its steps, and the cache keys are chained along it, so none of them can
//! disagree about what a build does or in which order.
//!
//! Each [`Step`] says how it runs ([`Work`]), which inputs key it ([`KeyInput`]), whether it is a
//! cache point, what happens to it when a snapshot taken after it is restored ([`OnRestore`]) and
//! whether a stop signal may still end the build before it ([`Stop`]). A new mode adds or swaps
//! steps here ([`Pipeline::insert_before`], [`Pipeline::replace`]); it does not add branches to
//! the build.

mod keys;
mod run;

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

pub use keys::{GivenPins, KeyChain, KeyInput, StageKeys};
pub use run::{Run, RunSettings};

pub use crate::cache::CachePoint;
use crate::element::Phase;
use crate::plan::{PhaseStep, Plan};
use crate::stage::BuildContext;
pub use crate::step_id::StepId;

/// Whether a stop signal (SIGINT, SIGTERM) that arrived may still end the build before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// The build stops before the step and cleans up.
    Allowed,
    /// The images are published (the commit point): the build finishes, so no image is left
    /// without its SBOM and manifest.
    TooLate,
}

/// What happens to a step when a snapshot taken after it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRestore {
    /// The snapshot holds what it made.
    Skipped,
    /// It makes something outside the tree (the hooks directory, what extra-data stages into
    /// it) and runs in every build.
    Runs,
}

/// What a step added by its caller runs.
pub type AddedWork = Arc<dyn Fn(&BuildContext<'_>) -> anyhow::Result<()> + Send + Sync>;

/// How a step runs.
#[derive(Clone)]
pub enum Work {
    /// The step of this name the build knows (see `run.rs`).
    Builtin,
    /// Given by whoever added the step.
    Added(AddedWork),
}

/// One step of a build.
#[derive(Clone)]
pub struct Step {
    pub id: StepId,
    /// What keys it; none: it passes the previous step's key on.
    pub inputs: Vec<KeyInput>,
    /// The cache entry its result is stored as, if any.
    pub cache_point: Option<CachePoint>,
    pub on_restore: OnRestore,
    pub stop: Stop,
    pub work: Work,
}

impl Step {
    /// A step the build knows how to run, keyed by `inputs`.
    pub fn builtin(id: StepId, inputs: Vec<KeyInput>) -> Step {
        Step { id, inputs, cache_point: None, on_restore: OnRestore::Skipped, stop: Stop::Allowed, work: Work::Builtin }
    }

    /// A step its caller adds: `work` runs in the build's sandbox with the build's context.
    pub fn added(name: &str, inputs: Vec<KeyInput>, work: AddedWork) -> Step {
        Step { work: Work::Added(work), ..Step::builtin(StepId::Added(name.to_owned()), inputs) }
    }

    fn phase(phase: Phase, inputs: Vec<KeyInput>) -> Step {
        Step::builtin(StepId::Phase(phase), inputs)
    }

    fn cache_point(self, point: CachePoint) -> Step {
        Step { cache_point: Some(point), ..self }
    }

    fn runs_on_restore(self) -> Step {
        Step { on_restore: OnRestore::Runs, ..self }
    }

    fn too_late_to_stop(self) -> Step {
        Step { stop: Stop::TooLate, ..self }
    }
}

/// Why a step cannot go where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the pipeline has no step `{0}`")]
    NoSuchStep(StepId),
    #[error("the pipeline already has a step `{0}`")]
    Duplicate(StepId),
}

/// The ordered steps of one build.
#[derive(Clone)]
pub struct Pipeline {
    steps: Vec<Step>,
    /// Whether the build reads and stores the cache (`--no-cache` turns it off).
    use_cache: bool,
}

impl Pipeline {
    /// The steps a build of `plan` runs, in order, with the cache in use.
    pub fn for_plan(plan: &Plan) -> Pipeline {
        use KeyInput::*;
        let mut steps = vec![
            // root.d scripts run from the hooks dir too, so it is laid out first, in every build.
            Step::builtin(StepId::Hooks, vec![]).runs_on_restore(),
            Step::builtin(StepId::Base, vec![Target, GivenEpoch]),
            Step::phase(Phase::Root, vec![Scripts(Phase::Root)]).cache_point(CachePoint::Base),
            save(CachePoint::Base),
            // extra-data.d stages files into the hooks dir, which no snapshot holds.
            Step::phase(Phase::ExtraData, vec![Scripts(Phase::ExtraData)]).runs_on_restore(),
            Step::phase(Phase::PreInstall, vec![Scripts(Phase::PreInstall), Packages(Phase::PreInstall)]),
            Step::phase(Phase::Install, vec![Scripts(Phase::Install), Packages(Phase::Install), ElementFiles])
                .cache_point(CachePoint::Install),
            save(CachePoint::Install),
            Step::phase(
                Phase::PostInstall,
                vec![Scripts(Phase::PostInstall), Packages(Phase::PostInstall), LateHookDirs],
            ),
            Step::phase(Phase::PostRoot, vec![Scripts(Phase::PostRoot)]),
            // No block-device.d: the planner refuses such hooks (the disk has no block device).
            Step::phase(Phase::PreFinalise, vec![Scripts(Phase::PreFinalise)]),
            Step::phase(Phase::Finalise, vec![Scripts(Phase::Finalise)]),
            Step::builtin(StepId::Finalise, vec![]),
            Step::phase(Phase::Cleanup, vec![Scripts(Phase::Cleanup)]),
            Step::builtin(StepId::Cleanup, vec![]),
        ];
        let formats = &plan.image.formats;
        // The tree formats are the tree disk-image-create archives: finished, before the disk
        // stage writes its boot files into it. A build of tree formats only makes no disk.
        if formats.iter().any(|format| !format.is_disk()) {
            steps.push(Step::builtin(StepId::TreeOutputs, vec![]));
        }
        if formats.iter().any(|format| format.is_disk()) {
            steps.push(Step::builtin(StepId::Disk, vec![DiskSettings, GivenSeed]));
            steps.push(Step::builtin(StepId::Convert, vec![]));
        }
        steps.extend([
            Step::builtin(StepId::Publish, vec![OutputSettings, Checksum]),
            Step::builtin(StepId::Sbom, vec![]).too_late_to_stop(),
            // The last step: it records every step before it, and stores the outputs (the
            // manifest among them) when the cache is in use.
            Step::builtin(StepId::Manifest, vec![]).too_late_to_stop().cache_point(CachePoint::Outputs),
        ]);
        Pipeline { steps, use_cache: true }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn uses_cache(&self) -> bool {
        self.use_cache
    }

    /// The same build without the cache (`--no-cache`): nothing restored, nothing stored.
    pub fn without_cache(mut self) -> Pipeline {
        self.steps.retain(|step| !matches!(step.id, StepId::Save(_)));
        self.use_cache = false;
        self
    }

    /// Describe the finished tree to `--tree-listing`'s file, before the disk is converted.
    pub fn with_tree_listing(mut self) -> Pipeline {
        let anchor = if self.position(&StepId::Convert).is_some() { StepId::Convert } else { StepId::Publish };
        // Publish is in every pipeline for_plan makes.
        let _ = self.insert_before(&anchor, Step::builtin(StepId::TreeListing, vec![]));
        self
    }

    fn position(&self, id: &StepId) -> Option<usize> {
        self.steps.iter().position(|step| step.id == *id)
    }

    fn insert_at(&mut self, index: Option<usize>, anchor: &StepId, step: Step) -> Result<(), PipelineError> {
        if self.position(&step.id).is_some() {
            return Err(PipelineError::Duplicate(step.id));
        }
        let index = index.ok_or_else(|| PipelineError::NoSuchStep(anchor.clone()))?;
        self.steps.insert(index, step);
        Ok(())
    }

    /// Add `step` right before `anchor`.
    pub fn insert_before(&mut self, anchor: &StepId, step: Step) -> Result<(), PipelineError> {
        self.insert_at(self.position(anchor), anchor, step)
    }

    /// Add `step` right after `anchor`.
    pub fn insert_after(&mut self, anchor: &StepId, step: Step) -> Result<(), PipelineError> {
        self.insert_at(self.position(anchor).map(|index| index + 1), anchor, step)
    }

    /// Put `step` in the place of `id` (a mode that does a step its own way).
    pub fn replace(&mut self, id: &StepId, step: Step) -> Result<(), PipelineError> {
        let index = self.position(id).ok_or_else(|| PipelineError::NoSuchStep(id.clone()))?;
        self.steps[index] = step;
        Ok(())
    }

    /// The step whose result is stored as `point`.
    pub fn cache_point_step(&self, point: CachePoint) -> Option<&Step> {
        self.steps.iter().find(|step| step.cache_point == Some(point))
    }

    /// The latest tree snapshot `stored` says the cache holds (none without the cache).
    pub fn resume_point(&self, stored: impl Fn(CachePoint) -> bool) -> Option<CachePoint> {
        if !self.use_cache {
            return None;
        }
        self.steps.iter().rev().filter_map(|step| step.cache_point).find(|point| point.is_tree() && stored(*point))
    }

    /// The steps a build runs when it resumes from `resume` (a tree snapshot): the snapshot is
    /// restored where the first step it stands for was, those steps are skipped, the rest run.
    pub fn schedule(&self, resume: Option<CachePoint>) -> Vec<Scheduled<'_>> {
        let covered = resume.and_then(|point| {
            let own_save = self.position(&StepId::Save(point));
            let producer = self.steps.iter().position(|step| step.cache_point == Some(point));
            own_save.or(producer).map(|until| (point, until))
        });
        let mut scheduled = Vec::new();
        let mut restored = false;
        for (index, step) in self.steps.iter().enumerate() {
            match covered {
                Some((point, until)) if index <= until && step.on_restore == OnRestore::Skipped => {
                    if !restored {
                        scheduled.push(Scheduled::Restore(point));
                        restored = true;
                    }
                }
                _ => scheduled.push(Scheduled::Run(step)),
            }
        }
        scheduled
    }
}

/// A snapshot of the tree as it is after the step before.
fn save(point: CachePoint) -> Step {
    Step::builtin(StepId::Save(point), vec![])
}

/// One entry of a build's schedule.
#[derive(Clone, Copy)]
pub enum Scheduled<'p> {
    Run(&'p Step),
    Restore(CachePoint),
}

impl Scheduled<'_> {
    pub fn id(&self) -> StepId {
        match self {
            Scheduled::Run(step) => step.id.clone(),
            Scheduled::Restore(point) => StepId::Restore(*point),
        }
    }

    pub fn stop(&self) -> Stop {
        match self {
            Scheduled::Run(step) => step.stop,
            Scheduled::Restore(_) => Stop::Allowed,
        }
    }
}

/// A step as `--dry-run --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StepDescription {
    pub step: StepId,
    /// The progress line that announces it.
    pub label: String,
    /// What keys it (none: the key of the step before).
    pub inputs: Vec<String>,
    pub cache_point: Option<CachePoint>,
    pub on_restore: OnRestore,
    pub stop: Stop,
    /// A phase's own steps in order: scripts, the package transaction, element files copied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub does: Vec<String>,
}

impl Pipeline {
    /// Every step, as `--dry-run` shows it.
    pub fn describe(&self, plan: &Plan) -> Vec<StepDescription> {
        self.steps
            .iter()
            .map(|step| StepDescription {
                step: step.id.clone(),
                label: step.id.label(),
                inputs: step.inputs.iter().map(ToString::to_string).collect(),
                cache_point: step.cache_point,
                on_restore: step.on_restore,
                stop: step.stop,
                does: match step.id {
                    StepId::Phase(phase) => phase_contents(plan, phase)
                        .into_iter()
                        .map(|line| format!("{} {}", line.what, line.whose))
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    /// The plan with its steps, as `--dry-run --json` prints them: the plan's fields and
    /// `pipeline`, this list.
    pub fn dry_run_json(&self, plan: &Plan) -> anyhow::Result<String> {
        let mut json = serde_json::to_value(plan)?;
        if let Some(fields) = json.as_object_mut() {
            fields.insert("pipeline".to_owned(), serde_json::to_value(self.describe(plan))?);
        }
        Ok(serde_json::to_string_pretty(&json)? + "\n")
    }

    /// The steps as people read them (`--dry-run`).
    pub fn render(&self, plan: &Plan) -> String {
        let mut out = String::from("\npipeline:\n");
        for step in self.describe(plan) {
            let mut notes = step.properties();
            if !step.inputs.is_empty() {
                notes.push(format!("keyed by {}", step.inputs.join(", ")));
            }
            if let StepId::Phase(phase) = step.step {
                notes.extend(file_copies(plan, phase));
            }
            let line = format!("  {:22} {}", step.step.name(), notes.join("; "));
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

impl StepDescription {
    /// Its cache point, and where it differs from most steps.
    fn properties(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(point) = self.cache_point {
            notes.push(format!("cache point: {point}"));
        }
        if self.on_restore == OnRestore::Runs {
            notes.push("runs after a restore too".to_owned());
        }
        if self.stop == Stop::TooLate {
            notes.push("too late for a stop signal".to_owned());
        }
        notes
    }
}

impl Pipeline {
    /// The stage table of docs/architecture.md: one row per step, in order.
    pub fn docs_table(&self, plan: &Plan) -> String {
        let mut out =
            String::from("| step | module | where | leaves | keyed by | notes |\n|---|---|---|---|---|---|\n");
        for step in self.describe(plan) {
            let (module, place, leaves) = step.step.doc();
            let inputs =
                if step.inputs.is_empty() { "(the step before's key)".to_owned() } else { step.inputs.join(", ") };
            let notes = step.properties().join("; ");
            let _ = writeln!(out, "| {} | {module} | {place} | {leaves} | {inputs} | {notes} |", step.step.label());
        }
        out
    }
}

/// One of a phase's own steps, as `--dry-run` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseLine {
    /// The script, the package slot, or `DIR/ -> /INTO`.
    pub what: String,
    /// The script's element, `(the phase's packages)`, or the elements that have `DIR/`.
    pub whose: String,
    /// Whether it copies element files (rather than running a script or apt).
    pub copies_files: bool,
}

/// A phase's own steps in order. Element files appear when some element has the directory.
pub fn phase_contents(plan: &Plan, phase: Phase) -> Vec<PhaseLine> {
    let line = |what: String, whose: String, copies_files| PhaseLine { what, whose, copies_files };
    plan.phase_steps(phase)
        .into_iter()
        .filter_map(|step| match step {
            PhaseStep::Script(script) => Some(line(script.name.clone(), script.element.clone(), false)),
            PhaseStep::Packages { slot } => plan
                .packages
                .contains_key(&phase)
                .then(|| line(slot.to_owned(), "(the phase's packages)".to_owned(), false)),
            PhaseStep::ElementFiles { dir, into } => {
                let having: Vec<&str> =
                    plan.elements.iter().filter(|e| e.path.join(dir).is_dir()).map(|e| e.name.as_str()).collect();
                (!having.is_empty()).then(|| line(format!("{dir}/ -> /{into}"), having.join(" "), true))
            }
        })
        .collect()
}

/// Where a phase copies element files, for the text the phase listing does not show: each
/// copy and the step it follows.
fn file_copies(plan: &Plan, phase: Phase) -> Vec<String> {
    let lines = phase_contents(plan, phase);
    let mut copies = Vec::new();
    for (index, line) in lines.iter().enumerate().filter(|(_, line)| line.copies_files) {
        let after = match index.checked_sub(1).map(|before| &lines[before].what) {
            Some(before) => format!("after {before}"),
            None => "first".to_owned(),
        };
        copies.push(format!("{} ({}), {after}", line.what, line.whose));
    }
    copies
}
