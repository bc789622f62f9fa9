//! One step of a build and one entry of its schedule: how a step runs ([`Work`]), what keys it
//! ([`KeyInput`]), whether it is a cache point, what a restore does to it ([`OnRestore`]) and
//! whether a stop signal may still end the build before it ([`Stop`]).

use std::sync::Arc;

use serde::Serialize;

use super::input::KeyInput;
use crate::cache::CachePoint;
use crate::element::Phase;
use crate::stage::BuildContext;
use crate::step_id::StepId;

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

    pub(super) fn phase(phase: Phase, inputs: Vec<KeyInput>) -> Step {
        Step::builtin(StepId::Phase(phase), inputs)
    }

    pub(super) fn cache_point(self, point: CachePoint) -> Step {
        Step { cache_point: Some(point), ..self }
    }

    pub(super) fn runs_on_restore(self) -> Step {
        Step { on_restore: OnRestore::Runs, ..self }
    }

    pub(super) fn too_late_to_stop(self) -> Step {
        Step { stop: Stop::TooLate, ..self }
    }
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
