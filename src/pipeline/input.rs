//! What a step reads that decides what it makes ([`KeyInput`]), and how each input is added to
//! the step's key (`keys.rs` chains the keys along the pipeline).

use std::fmt;
use std::path::Path;

use crate::cache::Fingerprint;
use crate::element::Phase;
use crate::plan::Plan;
use crate::recipe::ImageSpec;

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
pub(super) struct Sources<'a> {
    pub(super) plan: &'a Plan,
    pub(super) given: GivenPins<'a>,
    pub(super) checksum: bool,
}

/// Variables that only locate inputs (whose content is hashed anyway), name the output, or
/// restate output settings the outputs' inputs already hold (`plan.image`, `--checksum`): they
/// must not change the tree keys, or building the same image under another name or format, with
/// `--checksum`, or from a moved checkout would start cold. `DIB_ENV` is derived from the
/// `DIB_*` variables, which are keyed one by one. nodepool-builder sets `DIB_IMAGE_FILENAME` to
/// each build's own output path (`IMAGES_DIR/NAME-ID`): keyed, no nodepool build would ever
/// reuse a stage.
const KEY_NEUTRAL_ENV: [&str; 11] = [
    "ELEMENTS_PATH",
    // `-x` traces the scripts into the log: the same tree, traced or not.
    "DIB_DEBUG_TRACE",
    "IMAGE_NAME",
    "DIB_IMAGE_FILENAME",
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
    pub(super) fn add_to(&self, fingerprint: &mut Fingerprint, sources: &Sources<'_>) -> anyhow::Result<()> {
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
