//! The JSON manifest of every build (`<image>.manifest.json`, beside the image or in DIB's
//! `NAME.d/`, [`crate::layout`]): the typed handoff
//! from `build` to the later commands. `upload` takes the Glance record from it and `test` the
//! checks, so neither looks the recipe up again (a recipe from `--recipes-dir` need not be on
//! their search path). What differs between two runs of the same build (timings, host, where the
//! recipe file lay) is kept apart in [`RunInfo`], so two manifests of one build compare equal
//! without it ([`differing_fields`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::layout::OutputLayout;
use crate::plan::Plan;
use crate::recipe::{Check, GlanceSpec, RecipeSource};

/// The manifest's file name: the first image's file name plus this.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Errors reading the manifest of an image.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: not a mesos-image manifest: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One installed package: dpkg's plain name (never `name:arch`) and its architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `arm64`, `amd64`, `all`; empty in manifests written before it was recorded.
    #[serde(default)]
    pub arch: String,
}

impl Package {
    /// The name as dpkg qualifies it inside an image of `native` architecture: plain for the
    /// image's own architecture and `all`, `name:arch` for a foreign one (multiarch).
    pub fn qualified_name(&self, native: &str) -> String {
        if self.arch.is_empty() || self.arch == "all" || self.arch == native {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.arch)
        }
    }
}

/// One image file the build wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// File name (in the manifest's directory, or the one above it for a manifest in `NAME.d/`).
    pub file: String,
    pub format: String,
    pub size: u64,
    pub sha256: String,
    /// Hex md5 (Glance's `checksum`); absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Hex sha512 (Glance's `os_hash_value`); absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
}

impl OutputEntry {
    /// The entry of a file the build wrote, with the digests it computed while writing it.
    pub fn new(file: String, format: String, digests: &crate::io::Digests) -> OutputEntry {
        OutputEntry {
            file,
            format,
            size: digests.bytes,
            sha256: digests.sha256.clone(),
            md5: Some(digests.md5.clone()),
            sha512: Some(digests.sha512.clone()),
        }
    }

    /// All that Glance reports about the file, when this manifest records it (older ones
    /// recorded sha256 only).
    pub fn digests(&self) -> Option<crate::io::Digests> {
        Some(crate::io::Digests {
            bytes: self.size,
            sha512: self.sha512.clone()?,
            md5: self.md5.clone()?,
            sha256: self.sha256.clone(),
        })
    }
}

/// `x.qcow2 (N bytes, sha256 H)`: how the build's summary names a file it wrote.
impl std::fmt::Display for OutputEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} bytes, sha256 {})", self.file, self.size, self.sha256)
    }
}

/// How long a step of the pipeline took and whether it came from the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: crate::step_id::StepId,
    pub seconds: f64,
    pub cached: bool,
}

/// What belongs to this run rather than to the image: it differs between two builds of the
/// same inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub stages: Vec<StageTiming>,
    pub duration_seconds: f64,
    /// The build host's name.
    #[serde(default)]
    pub host: String,
    /// Where the recipe file lay (absolute): it depends on the checkout and work directory, not
    /// on the recipe, so it is the run's; `None` for a DIB-mode build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_path: Option<PathBuf>,
}

/// Top-level manifest fields that describe the run, not the image (`stages` and
/// `duration_seconds` are where manifests of older versions kept the timings).
pub const RUN_FIELDS: [&str; 3] = ["run", "stages", "duration_seconds"];

/// The recipe file an image was built from, as far as the image depends on it: its file name
/// and content digest (where it lay is the run's, [`RunInfo::recipe_path`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeDigest {
    #[serde(default)]
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub tool_version: String,
    /// Recipe name; `None` for a DIB-mode build.
    pub recipe: Option<String>,
    /// The recipe file's name and digest; `None` for a DIB-mode build.
    #[serde(default)]
    pub recipe_source: Option<RecipeDigest>,
    pub distro: String,
    pub release: String,
    /// The architecture, Debian's name (`amd64`, `arm64`); `crate::arch::kernel_name` gives
    /// the kernel's (`aarch64`).
    pub arch: String,
    /// How the disk boots; absent for tree-only builds and in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootInfo>,
    pub elements: Vec<String>,
    pub packages: Vec<Package>,
    pub outputs: Vec<OutputEntry>,
    /// The root filesystem's UUID (what `/etc/fstab` and GRUB name).
    #[serde(default)]
    pub root_uuid: String,
    /// The kernel the image boots.
    #[serde(default)]
    pub kernel_version: String,
    /// The Glance record `upload` creates (the recipe's `glance:`; empty in DIB mode).
    #[serde(default)]
    pub glance: GlanceSpec,
    /// The checks `test` runs (the recipe's `checks:`; none in DIB mode).
    #[serde(default)]
    pub checks: Vec<Check>,
    /// The stage-cache key of the finished image (equal keys, equal inputs).
    pub cache_key: String,
    /// What the build pinned (absent in manifests of older versions).
    #[serde(default)]
    pub reproducible: Option<Reproducibility>,
    /// The SPDX bill of materials (file name, beside the manifest).
    #[serde(default)]
    pub sbom: Option<String>,
    #[serde(default)]
    pub run: RunInfo,
}

/// How an image's disk boots, for the commands that start or register it (`test` picks the
/// firmware and the console to read, `upload` the properties Nova needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// BIOS boots it (GRUB i386-pc embedded).
    pub bios: bool,
    /// UEFI boots it (an ESP with GRUB at the removable path, `EFI/BOOT/BOOTX64.EFI` or
    /// `BOOTAA64.EFI`).
    pub uefi: bool,
    /// The kernel's serial console device (`ttyS0`, `ttyAMA0` on arm64).
    pub serial_console: String,
}

/// The time and seed a build pinned: with the same inputs and these, the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reproducibility {
    pub source_date_epoch: crate::reproducible::SourceDateEpoch,
    /// Hex of the seed identifiers were derived from.
    pub seed: String,
}

impl RunInfo {
    /// This run's stage timings, its duration so far and the host's name.
    pub fn new(stages: Vec<StageTiming>, started: std::time::Instant) -> RunInfo {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        RunInfo { stages, duration_seconds: started.elapsed().as_secs_f64(), host, recipe_path: None }
    }
}

/// Top-level fields of two manifests (as JSON) that differ, [`RUN_FIELDS`] aside: empty when
/// two builds made the same image.
pub fn differing_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["(whole manifest)".to_owned()] };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).filter(|k| !RUN_FIELDS.contains(&k.as_str())).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|key| a.get(*key) != b.get(*key)).cloned().collect()
}

impl Manifest {
    /// Copy what `upload` and `test` need from the plan: recipe name and source, the Glance
    /// record and the checks.
    pub fn hand_on(&mut self, plan: &Plan) {
        self.recipe = plan.recipe.clone();
        self.set_recipe_source(plan.recipe_source.as_ref());
        self.glance = plan.glance.clone();
        self.checks = plan.checks.clone();
    }

    /// Record the recipe file: its name and digest with the image, where it lay with the run.
    pub fn set_recipe_source(&mut self, source: Option<&RecipeSource>) {
        self.recipe_source = source.map(|source| RecipeDigest {
            file: source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            sha256: source.sha256.clone(),
        });
        self.run.recipe_path = source.map(|source| source.path.clone());
    }

    /// Where `mesos-image build` writes the manifest of `image` (beside it).
    pub fn path_for(image: &Path) -> PathBuf {
        Manifest::path_in(OutputLayout::Beside, image)
    }

    /// Where a build in `layout` whose first image is `first_image` writes its manifest.
    pub fn path_in(layout: OutputLayout, first_image: &Path) -> PathBuf {
        layout.sidecar(first_image, MANIFEST_SUFFIX)
    }

    pub fn to_json(&self) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_string_pretty(self).context("cannot serialise the manifest")?;
        let mut json = crate::redact::text(&json).into_bytes();
        json.push(b'\n');
        Ok(json)
    }

    /// Read the manifest beside `image`, if there is one. Fields added since a manifest was
    /// written read as empty, so older manifests still work.
    pub fn read_beside(image: &Path) -> Result<Option<Manifest>, ManifestError> {
        Manifest::read_at(&Manifest::path_for(image))
    }

    /// The manifest of `image` in either layout: beside it (`mesos-image build`), else in its
    /// `NAME.d/` (disk-image-create), where only a manifest listing this image's file counts.
    pub fn find(image: &Path) -> Result<Option<Located>, ManifestError> {
        let beside = Manifest::path_for(image);
        if let Some(manifest) = Manifest::read_at(&beside)? {
            return Ok(Some(Located { path: beside, manifest }));
        }
        let Some(file) = image.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Ok(None) };
        let dir = crate::layout::dib_dir(image);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
        let mut candidates: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.to_string_lossy().ends_with(MANIFEST_SUFFIX))
            .collect();
        candidates.sort();
        for path in candidates {
            if let Some(manifest) = Manifest::read_at(&path)? {
                if manifest.outputs.iter().any(|output| output.file == file) {
                    return Ok(Some(Located { path, manifest }));
                }
            }
        }
        Ok(None)
    }

    fn read_at(path: &Path) -> Result<Option<Manifest>, ManifestError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(ManifestError::Read { path: path.to_owned(), cause }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| ManifestError::Invalid { path: path.to_owned(), message: err.to_string() })
    }
}

/// A manifest and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub path: PathBuf,
    pub manifest: Manifest,
}

impl Located {
    /// The SPDX document the manifest names: it lies beside the manifest in both layouts.
    pub fn sbom_path(&self) -> Option<PathBuf> {
        let name = self.manifest.sbom.as_deref()?;
        Some(self.path.with_file_name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_qualified_only_for_a_foreign_architecture() {
        let package = |arch: &str| Package { name: "libc6".into(), version: "2.36".into(), arch: arch.into() };
        assert_eq!(package("arm64").qualified_name("arm64"), "libc6");
        assert_eq!(package("all").qualified_name("arm64"), "libc6");
        assert_eq!(package("").qualified_name("arm64"), "libc6");
        assert_eq!(package("armhf").qualified_name("arm64"), "libc6:armhf");
        // A manifest from before the architecture was recorded still reads.
        let old: Package = serde_json::from_str(r#"{"name": "jq", "version": "1.6"}"#).unwrap();
        assert_eq!(old.arch, "");
    }

    #[test]
    fn manifest_path_appends_suffix() {
        assert_eq!(
            Manifest::path_for(Path::new("/tmp/ubuntu-mesos.qcow2")),
            PathBuf::from("/tmp/ubuntu-mesos.qcow2.manifest.json")
        );
    }

    #[test]
    fn the_summary_names_an_output_with_its_size_and_digest() {
        let entry = OutputEntry { file: "x.qcow2".into(), size: 3, sha256: "ab".into(), ..OutputEntry::default() };
        assert_eq!(entry.to_string(), "x.qcow2 (3 bytes, sha256 ab)");
    }

    #[test]
    fn a_manifest_without_the_handoff_fields_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        let old = r#"{"tool_version": "0.1.0", "recipe": "debian-base", "distro": "debian", "release": "bookworm",
            "arch": "amd64", "elements": [], "packages": [], "outputs": [], "stages": [], "duration_seconds": 1.0,
            "cache_key": "k"}"#;
        std::fs::write(Manifest::path_for(&image), old).unwrap();
        let manifest = Manifest::read_beside(&image).unwrap().unwrap();
        assert_eq!(manifest.recipe.as_deref(), Some("debian-base"));
        assert!(manifest.checks.is_empty() && manifest.glance == GlanceSpec::default());
        std::fs::write(Manifest::path_for(&image), "{oops").unwrap();
        let err = format!("{:#}", Manifest::read_beside(&image).unwrap_err());
        assert!(err.contains("x.qcow2.manifest.json: not a mesos-image manifest"), "{err}");
    }

    #[test]
    fn a_disk_image_create_manifest_is_found_in_name_d_for_each_of_its_images() {
        let dir = tempfile::tempdir().unwrap();
        let (qcow2, raw) = (dir.path().join("img.qcow2"), dir.path().join("img.raw"));
        let entry =
            |file: &str| OutputEntry { file: file.into(), format: "x".into(), size: 1, ..OutputEntry::default() };
        let manifest = Manifest {
            outputs: vec![entry("img.qcow2"), entry("img.raw")],
            sbom: Some("img.qcow2.spdx.json".into()),
            ..Manifest::default()
        };
        let path = Manifest::path_in(OutputLayout::Dib, &qcow2);
        assert_eq!(path, dir.path().join("img.d/img.qcow2.manifest.json"));
        std::fs::create_dir(dir.path().join("img.d")).unwrap();
        std::fs::write(&path, manifest.to_json().unwrap()).unwrap();
        for image in [&qcow2, &raw] {
            let located = Manifest::find(image).unwrap().expect("found in img.d/");
            assert_eq!(located.path, path);
            assert_eq!(located.sbom_path(), Some(dir.path().join("img.d/img.qcow2.spdx.json")));
        }
        // Only a manifest listing the image counts; one beside the image comes first.
        assert_eq!(Manifest::find(&dir.path().join("img.vmdk")).unwrap(), None);
        let beside = Manifest { recipe: Some("beside".into()), ..Manifest::default() };
        std::fs::write(Manifest::path_for(&raw), beside.to_json().unwrap()).unwrap();
        assert_eq!(Manifest::find(&raw).unwrap().unwrap().manifest.recipe.as_deref(), Some("beside"));
    }

    #[test]
    fn run_fields_do_not_count_as_differences() {
        let a = serde_json::json!({"recipe": "x", "duration_seconds": 1.0, "stages": [1], "run": {"host": "a"}});
        let b = serde_json::json!({"recipe": "x", "duration_seconds": 2.0, "stages": [2], "run": {"host": "b"}});
        assert!(differing_fields(&a, &b).is_empty());
        let c = serde_json::json!({"recipe": "y", "duration_seconds": 1.0});
        assert_eq!(differing_fields(&a, &c), vec!["recipe".to_owned()]);
    }

    /// The same recipe read from two checkouts makes manifests that differ only in `run`; a
    /// changed recipe still shows outside it.
    #[test]
    fn where_the_recipe_lay_is_the_runs() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let manifest_for = |dir: &Path, text: &str| {
            let path = dir.join("debian-base.yaml");
            std::fs::write(&path, text).unwrap();
            let mut manifest = Manifest { recipe: Some("debian-base".into()), ..Manifest::default() };
            manifest.set_recipe_source(Some(&RecipeSource::read(&path).unwrap()));
            (serde_json::to_value(&manifest).unwrap(), manifest)
        };
        let (a, first) = manifest_for(one.path(), "name: debian-base\n");
        let (b, second) = manifest_for(two.path(), "name: debian-base\n");
        assert_eq!(differing_fields(&a, &b), Vec::<String>::new());
        assert_ne!(first.run, second.run);
        assert_eq!(first.run.recipe_path, Some(one.path().join("debian-base.yaml")));
        let digest = first.recipe_source.clone().unwrap();
        assert_eq!(digest.file, "debian-base.yaml");
        assert_eq!(digest.sha256.len(), 64);
        assert!(!a["recipe_source"].to_string().contains(&one.path().display().to_string()), "{a}");
        let (c, _) = manifest_for(two.path(), "name: debian-base\nrelease: trixie\n");
        assert_eq!(differing_fields(&a, &c), vec!["recipe_source".to_owned()]);
    }

    #[test]
    fn manifest_round_trips_beside_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        assert!(Manifest::read_beside(&image).unwrap().is_none());
        let manifest = Manifest {
            tool_version: "0".into(),
            recipe: Some("debian-mesos".into()),
            recipe_source: Some(RecipeDigest { file: "debian-mesos.yaml".into(), sha256: "ab".into() }),
            distro: "debian".into(),
            release: "bookworm".into(),
            arch: "amd64".into(),
            boot: Some(BootInfo { bios: false, uefi: true, serial_console: "ttyAMA0".into() }),
            elements: vec!["vm".into()],
            packages: vec![Package { name: "jq".into(), version: "1.6".into(), arch: "amd64".into() }],
            outputs: vec![],
            root_uuid: "0b5e".into(),
            kernel_version: "6.1.0-26-cloud-amd64".into(),
            glance: GlanceSpec { properties: [("os_distro".into(), "debian".into())].into(), ..GlanceSpec::default() },
            checks: vec![],
            cache_key: "k".into(),
            reproducible: None,
            sbom: None,
            run: RunInfo {
                stages: vec![],
                duration_seconds: 1.5,
                host: "h".into(),
                recipe_path: Some("/r/debian-mesos.yaml".into()),
            },
        };
        std::fs::write(Manifest::path_for(&image), manifest.to_json().unwrap()).unwrap();
        assert_eq!(Manifest::read_beside(&image).unwrap(), Some(manifest));
    }
}
