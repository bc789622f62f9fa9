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
//!
//! This file only names the folder's modules and the paths the rest of the crate uses: the
//! modules import each other as siblings (`input` <- `step` <- `order` <- `keys`, `describe`;
//! `run` reads `step` and `keys`), never this file, so none imports one that imports it back.

mod describe;
mod input;
mod keys;
mod order;
mod run;
mod step;

pub use describe::{phase_contents, PhaseLine, StepDescription};
pub use input::{GivenPins, KeyInput};
pub use keys::{KeyChain, StageKeys};
pub use order::{Pipeline, PipelineError};
pub use run::{Run, RunSettings};
pub use step::{AddedWork, OnRestore, Scheduled, Step, Stop, Work};

pub use crate::cache::CachePoint;
pub use crate::step_id::StepId;
