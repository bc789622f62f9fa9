//! Step keys, osbuild-style: a step's key hashes its own inputs ([`KeyInput`](super::KeyInput)) and the key of
//! the step before it, so a change to one input changes the key of the step that reads it and of
//! every step after it, and nothing before. A step with no inputs passes the key on unchanged:
//! it adds nothing to the image that its predecessors' inputs do not already decide (saving a
//! snapshot, publishing), or its presence depends only on how the image is written out (the tree
//! formats, the conversion), which the outputs' own inputs key.

use anyhow::Context;

use super::input::{GivenPins, Sources};
use super::order::Pipeline;
use crate::cache::{CachePoint, Fingerprint, StageKey};
use crate::plan::Plan;
use crate::step_id::StepId;

/// The key after every step of a pipeline, in order.
#[derive(Debug, Clone)]
pub struct KeyChain {
    keys: Vec<(StepId, StageKey)>,
}

impl KeyChain {
    /// The key after `step`, if the pipeline has it.
    pub fn after(&self, step: &StepId) -> Option<&StageKey> {
        self.keys.iter().find(|(id, _)| id == step).map(|(_, key)| key)
    }

    /// The key after the last step (the finished outputs).
    pub fn last(&self) -> Option<&StageKey> {
        self.keys.last().map(|(_, key)| key)
    }

    /// Every step's key, in order.
    pub fn all(&self) -> &[(StepId, StageKey)] {
        &self.keys
    }
}

impl Pipeline {
    /// Every step's key, each chained to the one before it. `checksum` is `--checksum`.
    pub fn keys(&self, plan: &Plan, checksum: bool, given: GivenPins<'_>) -> anyhow::Result<KeyChain> {
        let sources = Sources { plan, given, checksum };
        let mut keys: Vec<(StepId, StageKey)> = Vec::new();
        for step in self.steps() {
            let previous = keys.last().map(|(_, key)| key.clone());
            let key = if step.inputs.is_empty() {
                previous.unwrap_or_else(|| Fingerprint::new("start", None).finish())
            } else {
                let mut fingerprint = Fingerprint::new(step.id.name(), previous.as_ref());
                for input in &step.inputs {
                    input.add_to(&mut fingerprint, &sources)?;
                }
                fingerprint.finish()
            };
            keys.push((step.id.clone(), key));
        }
        Ok(KeyChain { keys })
    }
}

/// The keys a build uses: the cache points' and the disk's.
#[derive(Debug, Clone)]
pub struct StageKeys {
    /// The base tree (root.d included).
    pub base: StageKey,
    /// The tree after the install phase.
    pub install: StageKey,
    /// The raw disk: the finished tree and the disk settings, not how it is written out. Not a
    /// cache point; the build's seed is derived from it, so `-t raw` and `-t qcow2,vhd -u` of
    /// the same inputs hold the same disk, identifiers included.
    pub disk: StageKey,
    /// The finished images and their manifest.
    pub outputs: StageKey,
}

impl StageKeys {
    /// The keys of the plan's own pipeline.
    pub fn compute(plan: &Plan, checksum: bool, given: GivenPins<'_>) -> anyhow::Result<StageKeys> {
        Pipeline::for_plan(plan).stage_keys(plan, checksum, given)
    }

    /// The key of `point`.
    pub fn of(&self, point: CachePoint) -> &StageKey {
        match point {
            CachePoint::Base => &self.base,
            CachePoint::Install => &self.install,
            CachePoint::Outputs => &self.outputs,
        }
    }
}

impl Pipeline {
    /// The keys of this pipeline's cache points and of its disk (without a disk step, as tree
    /// formats only build: the finished tree's, the key just before the outputs are written).
    pub fn stage_keys(&self, plan: &Plan, checksum: bool, given: GivenPins<'_>) -> anyhow::Result<StageKeys> {
        let chain = self.keys(plan, checksum, given)?;
        let at_point = |point: CachePoint| -> anyhow::Result<StageKey> {
            let step =
                self.cache_point_step(point).with_context(|| format!("the pipeline has no {point} cache point"))?;
            chain.after(&step.id).cloned().with_context(|| format!("no key for step {}", step.id))
        };
        let disk = match chain.after(&StepId::Disk) {
            Some(key) => key.clone(),
            None => {
                let publish =
                    chain.all().iter().position(|(id, _)| *id == StepId::Publish).unwrap_or(chain.all().len());
                chain.all()[..publish].last().map(|(_, key)| key.clone()).context("the pipeline is empty")?
            }
        };
        Ok(StageKeys {
            base: at_point(CachePoint::Base)?,
            install: at_point(CachePoint::Install)?,
            disk,
            outputs: at_point(CachePoint::Outputs)?,
        })
    }
}
