//! Stage keys: each stage's key hashes everything it read (osbuild's idea): the previous
//! stage's key, the plan values it depends on and the bytes of the element files it runs
//! (`base` -> `install` -> `disk` -> `outputs`). Equal keys mean equal inputs, so the stored
//! result can stand in for running the stage, and the disk's key seeds its identifiers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::element::Phase;
use crate::plan::Plan;
use crate::recipe::ImageSpec;

/// Bump when the snapshot format or key derivation changes, so old entries stop matching.
const CACHE_SCHEMA: &str = "mesos-image-cache-v1";

/// A stage key: lowercase hex sha256. Only [`Fingerprint::finish`] and [`StageKey::parse`] make
/// one, so every key is a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StageKey(String);

impl TryFrom<String> for StageKey {
    type Error = String;

    fn try_from(text: String) -> Result<StageKey, String> {
        StageKey::parse(&text).ok_or_else(|| format!("not a cache key: {text:?}"))
    }
}

impl From<StageKey> for String {
    fn from(key: StageKey) -> String {
        key.0
    }
}

impl StageKey {
    /// A key from its text: exactly 64 lowercase hex digits, else `None`.
    pub fn parse(text: &str) -> Option<StageKey> {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| StageKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::fmt::Display for StageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accumulates everything a stage depends on. Every item is length-prefixed and labelled, so
/// two different input lists can never hash the same.
pub struct Fingerprint {
    hasher: Sha256,
}

impl Fingerprint {
    /// Start a fingerprint for `stage`, chained to the key of the stage before it.
    pub fn new(stage: &str, previous: Option<&StageKey>) -> Fingerprint {
        let mut fingerprint = Fingerprint { hasher: Sha256::new() };
        fingerprint.add_str("schema", CACHE_SCHEMA);
        fingerprint.add_str("tool", env!("CARGO_PKG_VERSION"));
        fingerprint.add_str("stage", stage);
        fingerprint.add_str("previous", previous.map(StageKey::as_str).unwrap_or(""));
        fingerprint
    }

    pub fn add_str(&mut self, label: &str, value: &str) {
        self.add_bytes(label, value.as_bytes());
    }

    pub fn add_bytes(&mut self, label: &str, value: &[u8]) {
        for part in [label.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
    }

    /// Hash a file's or directory's content, names, modes and symlink targets. A missing path
    /// hashes as "absent", so creating it later changes the key.
    pub fn add_path(&mut self, label: &str, path: &Path) -> io::Result<()> {
        if fs::symlink_metadata(path).is_err() {
            self.add_str(label, "<absent>");
            return Ok(());
        }
        let walker = walkdir::WalkDir::new(path).sort_by_file_name().follow_links(false);
        for entry in walker {
            let entry = entry.map_err(io::Error::other)?;
            let relative = entry.path().strip_prefix(path).unwrap_or(entry.path());
            self.add_entry(label, relative, entry.path())?;
        }
        Ok(())
    }

    fn add_entry(&mut self, label: &str, relative: &Path, full: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let metadata = fs::symlink_metadata(full)?;
        let name = format!("{label}:{}", relative.display());
        let mode = metadata.permissions().mode();
        if metadata.file_type().is_symlink() {
            let target = fs::read_link(full)?;
            self.add_str(&name, &format!("link {mode:o} {}", target.display()));
        } else if metadata.is_dir() {
            self.add_str(&name, &format!("dir {mode:o}"));
        } else {
            self.add_str(&name, &format!("file {mode:o}"));
            let mut file = fs::File::open(full)?;
            let mut content_hasher = Sha256::new();
            io::copy(&mut file, &mut content_hasher)?;
            self.add_bytes(&name, &content_hasher.finalize());
        }
        Ok(())
    }

    pub fn finish(self) -> StageKey {
        StageKey(hex::encode(self.hasher.finalize()))
    }
}

/// The directories of the phases after `install.d`: their hooks only matter after the install
/// snapshot, so changing them must not invalidate it.
fn late_phase_dirs() -> Vec<&'static str> {
    Phase::ALL.into_iter().filter(|phase| *phase > Phase::Install).map(Phase::dir_name).collect()
}

/// Variables that only locate inputs (whose content is hashed anyway), name the output, or
/// restate output settings the outputs key already holds (`plan.image`, `--checksum`): they must
/// not change the tree keys, or building the same image under another name or format, with
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

/// What the user pinned (`SOURCE_DATE_EPOCH`, `--seed`) rather than left to be derived: an
/// input of every stage it reaches, so a warm cache never hands back an image made under other
/// pins. Derived pins follow from the keys themselves and are no input.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenPins<'a> {
    /// Every stage runs under it (maintainer scripts stamp files with it): keyed from the base on.
    pub epoch: Option<i64>,
    /// Only the disk's identifiers come from it: keyed from the disk on.
    pub seed: Option<&'a str>,
}

/// The keys of the stages, derived from the plan and the given pins: the three cache points
/// (base, install, outputs) and the disk between the last two.
#[derive(Debug, Clone)]
pub struct StageKeys {
    /// The base tree (root stage).
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
    /// Every key of the plan, each chained to the one before it. `checksum` is `--checksum`
    /// (the stored outputs differ by the `.sha256` files).
    pub fn compute(plan: &Plan, checksum: bool, given: GivenPins<'_>) -> anyhow::Result<StageKeys> {
        let base = base_key(plan, given.epoch)?;
        let install = install_key(plan, &base)?;
        let disk = disk_key(plan, &install, given.seed)?;
        let outputs = outputs_key(plan, &disk, checksum)?;
        Ok(StageKeys { base, install, disk, outputs })
    }
}

/// The root stage reads the target, the environment, `root.d` and a given epoch.
fn base_key(plan: &Plan, epoch: Option<i64>) -> anyhow::Result<StageKey> {
    let mut base = Fingerprint::new("base", None);
    if let Some(epoch) = epoch {
        base.add_str("given source-date-epoch", &epoch.to_string());
    }
    add_common_inputs(&mut base, plan)?;
    add_phase_scripts(&mut base, plan, &[Phase::Root])?;
    Ok(base.finish())
}

/// The install snapshot reads the early phases' scripts and packages and every element file
/// except the late phases' hooks.
fn install_key(plan: &Plan, base: &StageKey) -> anyhow::Result<StageKey> {
    let mut install = Fingerprint::new("install", Some(base));
    add_phase_scripts(&mut install, plan, &[Phase::ExtraData, Phase::PreInstall, Phase::Install])?;
    add_packages(&mut install, plan, &[Phase::PreInstall, Phase::Install]);
    for element in &plan.elements {
        add_element_dir(&mut install, &element.name, &element.path, &late_phase_dirs())?;
    }
    Ok(install.finish())
}

/// The disk reads everything that makes the tree (every element file, every package) and the
/// image settings except those that only choose how the finished disk is written out
/// (formats, qcow2 compression, `qemu-img -o` options), which read as their defaults here;
/// and a given seed, which its identifiers come from.
fn disk_key(plan: &Plan, install: &StageKey, seed: Option<&str>) -> anyhow::Result<StageKey> {
    let mut disk = Fingerprint::new("disk", Some(install));
    if let Some(seed) = seed {
        disk.add_str("given seed", seed);
    }
    for element in &plan.elements {
        add_element_dir(&mut disk, &element.name, &element.path, &[])?;
    }
    add_packages(&mut disk, plan, &Phase::ALL);
    let defaults = ImageSpec::default();
    let disk_settings = ImageSpec {
        formats: defaults.formats,
        compress: defaults.compress,
        compression: defaults.compression,
        qemu_img_options: defaults.qemu_img_options,
        ..plan.image.clone()
    };
    disk.add_str("image", &serde_json::to_string(&disk_settings)?);
    Ok(disk.finish())
}

/// The outputs read the disk and how it is written out: every image setting and `--checksum`.
fn outputs_key(plan: &Plan, disk: &StageKey, checksum: bool) -> anyhow::Result<StageKey> {
    let mut outputs = Fingerprint::new("outputs", Some(disk));
    outputs.add_str("image", &serde_json::to_string(&plan.image)?);
    outputs.add_str("checksum", if checksum { "yes" } else { "no" });
    Ok(outputs.finish())
}

/// Inputs every stage depends on: target, mirror, environment, and `environment.d`.
fn add_common_inputs(fingerprint: &mut Fingerprint, plan: &Plan) -> anyhow::Result<()> {
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

fn add_phase_scripts(fingerprint: &mut Fingerprint, plan: &Plan, phases: &[Phase]) -> anyhow::Result<()> {
    for phase in phases {
        for script in plan.scripts.get(phase).into_iter().flatten() {
            let label = format!("{}:{}:{}", phase.dir_name(), script.element, script.name);
            fingerprint.add_path(&label, &script.path)?;
        }
    }
    Ok(())
}

fn add_packages(fingerprint: &mut Fingerprint, plan: &Plan, phases: &[Phase]) {
    for phase in phases {
        if let Some(set) = plan.packages.get(phase) {
            fingerprint.add_str(&format!("packages:{}", phase.name()), &format!("{set:?}"));
        }
    }
}

/// Hash an element directory except the subdirectories named in `skip`.
fn add_element_dir(fingerprint: &mut Fingerprint, name: &str, dir: &Path, skip: &[&str]) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("element {name}: cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let file_name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if skip.contains(&file_name.as_str()) || file_name.starts_with("README") {
            continue;
        }
        fingerprint
            .add_path(&format!("element:{name}/{file_name}"), &entry)
            .with_context(|| format!("element {name}: cannot read {}", entry.display()))?;
    }
    Ok(())
}
