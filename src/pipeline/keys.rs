//! Step keys, osbuild-style: a step's key hashes its own inputs ([`KeyInput`]) and the key of
//! the step before it, so a change to one input changes the key of the step that reads it and of
//! every step after it, and nothing before. A step with no inputs passes the key on unchanged:
//! it adds nothing to the image that its predecessors' inputs do not already decide (saving a
//! snapshot, publishing), or its presence depends only on how the image is written out (the tree
//! formats, the conversion), which the outputs' own inputs key.

use std::fmt;
use std::path::Path;

use anyhow::Context;

use crate::cache::{CachePoint, Fingerprint, StageKey};
use crate::element::Phase;
use crate::plan::Plan;
use crate::recipe::ImageSpec;

use super::{Pipeline, StepId};

/// One thing a step reads that decides what it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyInput {
    /// Distro, release, architecture, base method, mirror, the scripts' environment (values that
    /// only locate or name things aside) and every `environment.d` file.
    Target,
    /// `SOURCE_DATE_EPOCH`, when the user gave it (a derived one follows from the keys).
    GivenEpoch,
    /// `--seed`, when the user gave it.
    GivenSeed,
    /// A phase's scripts: names, modes and bytes.
    Scripts(Phase),
    /// A phase's package set: what it installs, removes and purges.
    Packages(Phase),
    /// Every element file except the hook directories of the phases after install.
    ElementFiles,
    /// The hook directories of the phases after install, whole (scripts and what lies beside).
    LateHookDirs,
    /// The image settings that shape the disk, not how it is written out.
    DiskSettings,
    /// How the disk is written out: every image setting (formats, compression, qemu-img -o).
    OutputSettings,
    /// `--checksum` (the stored outputs differ by the `.sha256` files).
    Checksum,
    /// A value a step added to the pipeline reads (its name and its text).
    Value(String, String),
}

impl fmt::Display for KeyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyInput::Target => f.write_str("target (distro, release, arch, base, mirror, environment, environment.d)"),
            KeyInput::GivenEpoch => f.write_str("SOURCE_DATE_EPOCH if given"),
            KeyInput::GivenSeed => f.write_str("--seed if given"),
            KeyInput::Scripts(phase) => write!(f, "{} scripts", phase.dir_name()),
            KeyInput::Packages(phase) => write!(f, "{phase} packages"),
            KeyInput::ElementFiles => f.write_str("element files but the late phases' hooks"),
            KeyInput::LateHookDirs => f.write_str("the late phases' hook directories"),
            KeyInput::DiskSettings => f.write_str("disk settings"),
            KeyInput::OutputSettings => f.write_str("output settings (formats, compression, qemu-img options)"),
            KeyInput::Checksum => f.write_str("--checksum"),
            KeyInput::Value(name, _) => write!(f, "{name}"),
        }
    }
}

/// What the user pinned (`SOURCE_DATE_EPOCH`, `--seed`) rather than left to be derived: an
/// input of every step it reaches, so a warm cache never hands back an image made under other
/// pins. Derived pins follow from the keys themselves and are no input.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenPins<'a> {
    /// Every stage runs under it (maintainer scripts stamp files with it): keyed from the base on.
    pub epoch: Option<i64>,
    /// Only the disk's identifiers come from it: keyed from the disk on.
    pub seed: Option<&'a str>,
}

/// What the inputs are read from.
struct Sources<'a> {
    plan: &'a Plan,
    given: GivenPins<'a>,
    checksum: bool,
}

/// Variables that only locate inputs (whose content is hashed anyway), name the output, or
/// restate output settings the outputs' inputs already hold (`plan.image`, `--checksum`): they
/// must not change the tree keys, or building the same image under another name or format, with
/// `--checksum`, or from a moved checkout would start cold. `DIB_ENV` is derived from the
/// `DIB_*` variables, which are keyed one by one.
const KEY_NEUTRAL_ENV: [&str; 9] = [
    "ELEMENTS_PATH",
    "IMAGE_NAME",
    "DIB_ARGS",
    "DIB_CHECKSUM",
    "IMAGE_TYPE",
    "DIB_IMAGE_SIZE",
    "IMAGE_ELEMENT_YAML",
    crate::element::dib_env::GET_IMAGE_ELEMENT_ARRAY_VAR,
    "DIB_ENV",
];

/// The hook directories of the phases after install: their hooks only matter after the install
/// snapshot, so changing them must not invalidate it.
fn late_phase_dirs() -> Vec<&'static str> {
    Phase::ALL.into_iter().filter(|phase| *phase > Phase::Install).map(Phase::dir_name).collect()
}

impl KeyInput {
    fn add_to(&self, fingerprint: &mut Fingerprint, sources: &Sources<'_>) -> anyhow::Result<()> {
        let plan = sources.plan;
        match self {
            KeyInput::Target => add_target(fingerprint, plan)?,
            KeyInput::GivenEpoch => {
                if let Some(epoch) = sources.given.epoch {
                    fingerprint.add_str("given source-date-epoch", &epoch.to_string());
                }
            }
            KeyInput::GivenSeed => {
                if let Some(seed) = sources.given.seed {
                    fingerprint.add_str("given seed", seed);
                }
            }
            KeyInput::Scripts(phase) => {
                for script in plan.scripts_for(*phase) {
                    let label = format!("{}:{}:{}", phase.dir_name(), script.element, script.name);
                    fingerprint.add_path(&label, &script.path)?;
                }
            }
            KeyInput::Packages(phase) => add_packages(fingerprint, plan, *phase),
            KeyInput::ElementFiles => {
                for element in &plan.elements {
                    fingerprint.add_element_dir(&element.name, &element.path, &late_phase_dirs())?;
                }
            }
            KeyInput::LateHookDirs => {
                for element in &plan.elements {
                    for dir in late_phase_dirs() {
                        fingerprint.add_path(&format!("element:{}/{dir}", element.name), &element.path.join(dir))?;
                    }
                }
            }
            KeyInput::DiskSettings => {
                fingerprint.add_str("disk settings", &serde_json::to_string(&disk_settings(plan))?)
            }
            KeyInput::OutputSettings => fingerprint.add_str("image", &serde_json::to_string(&plan.image)?),
            KeyInput::Checksum => fingerprint.add_str("checksum", if sources.checksum { "yes" } else { "no" }),
            KeyInput::Value(name, value) => fingerprint.add_str(&format!("value:{name}"), value),
        }
        Ok(())
    }
}

/// The image settings with those that only choose how the finished disk is written out
/// (formats, qcow2 compression, `qemu-img -o` options) read as their defaults.
fn disk_settings(plan: &Plan) -> ImageSpec {
    let defaults = ImageSpec::default();
    ImageSpec {
        formats: defaults.formats,
        compress: defaults.compress,
        compression: defaults.compression,
        qemu_img_options: defaults.qemu_img_options,
        ..plan.image.clone()
    }
}

fn add_target(fingerprint: &mut Fingerprint, plan: &Plan) -> anyhow::Result<()> {
    fingerprint.add_str("distro", &plan.distro);
    fingerprint.add_str("release", &plan.release);
    fingerprint.add_str("arch", &plan.arch);
    fingerprint.add_str("base", &plan.base.map(|b| b.to_string()).unwrap_or_default());
    fingerprint.add_str("mirror", plan.mirror.as_deref().unwrap_or(""));
    for (key, value) in plan.env.iter().filter(|(key, _)| !KEY_NEUTRAL_ENV.contains(&key.as_str())) {
        fingerprint.add_str(&format!("env:{key}"), value);
        // Variables naming host files (signing keys, local repositories' keys) change the
        // build when the file changes, not only when the name does.
        let path = Path::new(value);
        if value.starts_with('/') && path.is_file() {
            fingerprint.add_path(&format!("env-file:{key}"), path)?;
        }
    }
    for script in &plan.environment_d {
        fingerprint.add_path(&format!("environment.d:{}:{}", script.element, script.name), &script.path)?;
    }
    Ok(())
}

/// Each list of the phase's set, one name per labelled item, so no two sets hash alike.
fn add_packages(fingerprint: &mut Fingerprint, plan: &Plan, phase: Phase) {
    let Some(set) = plan.packages.get(&phase) else { return };
    for (kind, names) in [("install", &set.install), ("uninstall", &set.uninstall), ("build-only", &set.build_only)] {
        fingerprint.add_str(&format!("packages:{phase}:{kind}"), &names.len().to_string());
        for name in names {
            fingerprint.add_str(&format!("packages:{phase}:{kind}"), name);
        }
    }
}

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
