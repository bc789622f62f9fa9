//! The ordered steps of one build: [`Pipeline::for_plan`] makes them, a mode adds or swaps
//! steps ([`Pipeline::insert_before`], [`Pipeline::replace`]), and [`Pipeline::schedule`] says
//! which run and which a restored snapshot stands for.

use super::input::KeyInput;
use super::step::{OnRestore, Scheduled, Step};
use crate::cache::CachePoint;
use crate::element::Phase;
use crate::plan::Plan;
use crate::step_id::StepId;

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
