//! The Glance image record: flags win over the recipe's `glance:` section (as the build's
//! manifest carries it, or from `--recipe`), which wins over defaults (container `bare`, visibility `private`, like the glance client). disk_format comes
//! from the file header; a `--disk-format` that disagrees is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::format;
use crate::manifest::{Manifest, ManifestError};
use crate::recipe::{GlanceSpec, Recipe};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is {detected} (detected from its header) but --disk-format says {declared}")]
    FormatMismatch { path: PathBuf, detected: String, declared: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("recipe `{name}`: {message}")]
    Recipe { name: String, message: String },
    #[error("--visibility {0}: expected public, private, shared or community")]
    Visibility(String),
    #[error("--property {0}: expected KEY=VALUE")]
    Property(String),
}

/// What the command line says about the record (all optional but the image path).
#[derive(Debug, Clone, Default)]
pub struct RecordFlags {
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub visibility: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Vec<String>,
    /// `KEY=VALUE` as given.
    pub properties: Vec<String>,
    pub os_distro: Option<String>,
    pub os_version: Option<String>,
    pub recipe: Option<String>,
}

/// The record sent to `POST /v2/images`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: String,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Vec<String>,
    pub properties: BTreeMap<String, String>,
    /// Which recipe contributed, for the log.
    pub recipe: Option<String>,
}

impl ImageRecord {
    /// The create request body; extra properties are strings, as Glance requires.
    pub fn create_body(&self) -> Value {
        let mut body = json!({
            "name": self.name,
            "disk_format": self.disk_format,
            "container_format": self.container_format,
            "visibility": self.visibility,
            "tags": self.tags,
        });
        if let Some(min_disk) = self.min_disk {
            body["min_disk"] = json!(min_disk);
        }
        if let Some(min_ram) = self.min_ram {
            body["min_ram"] = json!(min_ram);
        }
        for (key, value) in &self.properties {
            body[key] = json!(value);
        }
        body
    }
}

/// Build the record for the image at `image` from flags, the recipe and the file header.
pub fn build_record(image: &Path, flags: &RecordFlags, recipe_dirs: &[PathBuf]) -> Result<ImageRecord, RecordError> {
    let located = Manifest::find(image)?;
    // The SBOM lies beside the manifest (in `NAME.d/` for a disk-image-create build).
    let sbom = located.as_ref().and_then(|l| l.sbom_path()).unwrap_or_else(|| crate::sbom::path_for(image));
    let platform = located.as_ref().map(|l| platform_properties(&l.manifest)).unwrap_or_default();
    let (recipe_name, glance) = match (&flags.recipe, located) {
        (Some(name), _) => (Some(name.clone()), load_glance_spec(name, recipe_dirs)?),
        (None, Some(located)) => (located.manifest.recipe, located.manifest.glance),
        (None, None) => (None, GlanceSpec::default()),
    };
    let disk_format = choose_disk_format(image, flags.disk_format.as_deref(), glance.disk_format.as_deref())?;
    let visibility = flags.visibility.clone().or(glance.visibility).unwrap_or_else(|| "private".to_owned());
    if !matches!(visibility.as_str(), "public" | "private" | "shared" | "community") {
        return Err(RecordError::Visibility(visibility));
    }
    let mut tags = glance.tags;
    for tag in &flags.tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    Ok(ImageRecord {
        name: flags.name.clone().unwrap_or_else(|| default_name(image)),
        disk_format,
        container_format: flags
            .container_format
            .clone()
            .or(glance.container_format)
            .unwrap_or_else(|| "bare".to_owned()),
        visibility,
        min_disk: flags.min_disk.or(glance.min_disk),
        min_ram: flags.min_ram.or(glance.min_ram),
        tags,
        properties: with_sbom_digest(&sbom, merge_properties(platform, glance.properties, flags)?)?,
        recipe: recipe_name,
    })
}

/// The Glance property holding the sha256 of the SPDX document beside the image, so an image
/// in the cloud can be matched with its bill of materials.
pub const SBOM_PROPERTY: &str = "sbom_sha256";

/// Add the SBOM's digest (when the image has one at `sbom`) unless `--property` set it.
fn with_sbom_digest(
    sbom: &Path,
    mut properties: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, RecordError> {
    let digest = crate::sbom::digest_at(sbom).map_err(|source| RecordError::Read { path: sbom.to_owned(), source })?;
    if let Some(digest) = digest {
        properties.entry(SBOM_PROPERTY.to_owned()).or_insert(digest);
    }
    Ok(properties)
}

fn load_glance_spec(name: &str, recipe_dirs: &[PathBuf]) -> Result<GlanceSpec, RecordError> {
    Recipe::find(name, recipe_dirs)
        .map(|(recipe, _)| recipe.glance)
        .map_err(|e| RecordError::Recipe { name: name.to_owned(), message: e.to_string() })
}

/// The detected format, unless `--disk-format` disagrees (an error: Nova would misread the disk).
/// A recipe's format is only a build-time default, so the file on disk wins over it.
fn choose_disk_format(image: &Path, flag: Option<&str>, recipe: Option<&str>) -> Result<String, RecordError> {
    let detected = format::detect_file(image).map_err(|source| RecordError::Read { path: image.to_owned(), source })?;
    if let Some(declared) = flag {
        if !format::compatible(detected, declared) {
            return Err(RecordError::FormatMismatch {
                path: image.to_owned(),
                detected: detected.to_owned(),
                declared: declared.to_owned(),
            });
        }
        return Ok(declared.to_owned());
    }
    if let Some(recipe) = recipe.filter(|r| *r != detected) {
        tracing::warn!(
            "the recipe says disk format {recipe}, {} is {detected}: uploading as {detected}",
            image.display()
        );
    }
    Ok(detected.to_owned())
}

/// `ubuntu-mesos.qcow2` -> `ubuntu-mesos`.
fn default_name(image: &Path) -> String {
    image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".to_owned())
}

/// What Nova needs to schedule and boot the image, from what the build recorded: the
/// architecture (the kernel's name, as Nova spells it: `x86_64`, `aarch64`), UEFI firmware when
/// the image boots through it (every arm64 image), and the `virt` board for arm64 (the only one
/// an arm64 guest boots on). A manifest without an architecture adds nothing.
fn platform_properties(manifest: &Manifest) -> BTreeMap<String, String> {
    let mut properties = BTreeMap::new();
    if manifest.arch.is_empty() {
        return properties;
    }
    let arch = crate::arch::normalize(&manifest.arch);
    properties.insert("architecture".to_owned(), crate::arch::kernel_name(&arch).to_owned());
    let arm64 = arch == "arm64";
    // Only firmware the image cannot do without: a hybrid BIOS+UEFI disk boots under Nova's
    // default BIOS, so it is left to the cloud. Manifests from before `boot` was recorded: arm64
    // is UEFI-only.
    let uefi_only = manifest.boot.as_ref().map_or(arm64, |boot| boot.uefi && !boot.bios);
    if uefi_only {
        properties.insert("hw_firmware_type".to_owned(), "uefi".to_owned());
    }
    if arm64 {
        properties.insert("hw_machine_type".to_owned(), "virt".to_owned());
    }
    properties
}

/// Platform properties, then the recipe's, then the `--os-distro`/`--os-version` shortcuts,
/// then `--property`.
fn merge_properties(
    platform: BTreeMap<String, String>,
    recipe: BTreeMap<String, String>,
    flags: &RecordFlags,
) -> Result<BTreeMap<String, String>, RecordError> {
    let mut properties = platform;
    properties.extend(recipe);
    if let Some(distro) = &flags.os_distro {
        properties.insert("os_distro".to_owned(), distro.clone());
    }
    if let Some(version) = &flags.os_version {
        properties.insert("os_version".to_owned(), version.clone());
    }
    for pair in &flags.properties {
        let (key, value) =
            pair.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| RecordError::Property(pair.clone()))?;
        properties.insert(key.to_owned(), value.to_owned());
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = "name: ubuntu-mesos\ndistro: ubuntu\nrelease: noble\nelements: [ubuntu]\nglance:\n  disk-format: qcow2\n  visibility: public\n  min-disk: 5\n  tags: [mesos]\n  properties:\n    os_distro: ubuntu\n    hw_rng_model: virtio\n";

    struct Fixture {
        dir: tempfile::TempDir,
        image: PathBuf,
    }

    fn fixture(header: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("recipes")).unwrap();
        std::fs::write(dir.path().join("recipes/ubuntu-mesos.yaml"), RECIPE).unwrap();
        let image = dir.path().join("ubuntu-mesos.qcow2");
        let mut data = header.to_vec();
        data.resize(4096, 0);
        std::fs::write(&image, data).unwrap();
        Fixture { dir, image }
    }

    impl Fixture {
        fn dirs(&self) -> Vec<PathBuf> {
            vec![self.dir.path().join("recipes")]
        }
    }

    #[test]
    fn sbom_beside_the_image_sets_its_digest_property() {
        let f = fixture(b"QFI\xfb");
        let sbom = crate::sbom::path_for(&f.image);
        std::fs::write(&sbom, "{\"spdxVersion\": \"SPDX-2.3\"}\n").unwrap();
        let record = build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap();
        let expected = crate::io::sha256_file(&sbom).unwrap().0;
        assert_eq!(record.properties.get(SBOM_PROPERTY), Some(&expected));
        assert!(record.create_body().to_string().contains(&expected));
    }

    #[test]
    fn defaults_without_a_recipe_are_like_glance() {
        let f = fixture(b"QFI\xfb");
        let record = build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap();
        assert_eq!(record.name, "ubuntu-mesos");
        assert_eq!(record.disk_format, "qcow2");
        assert_eq!(record.container_format, "bare");
        assert_eq!(record.visibility, "private");
        assert!(record.properties.is_empty());
        assert_eq!(record.recipe, None);
    }

    /// The manifest a build of the fixture's recipe writes beside the image.
    fn write_manifest(f: &Fixture, recipe: Option<&str>) {
        let glance = match recipe {
            Some(_) => serde_yaml_ng::from_str::<Recipe>(RECIPE).unwrap().glance,
            None => GlanceSpec::default(),
        };
        let manifest = Manifest { recipe: recipe.map(str::to_owned), glance, ..Manifest::default() };
        std::fs::write(Manifest::path_for(&f.image), manifest.to_json().unwrap()).unwrap();
    }

    #[test]
    fn the_manifest_beside_the_image_brings_the_record_and_flags_win() {
        let f = fixture(b"QFI\xfb");
        write_manifest(&f, Some("ubuntu-mesos"));
        // The recipe is on no search path (built with --recipes-dir): the manifest is enough.
        std::fs::remove_dir_all(f.dir.path().join("recipes")).unwrap();
        let flags = RecordFlags {
            visibility: Some("shared".into()),
            tags: vec!["extra".into(), "mesos".into()],
            properties: vec!["hw_rng_model=none".into(), "note=a=b".into()],
            os_version: Some("24.04".into()),
            ..Default::default()
        };
        let record = build_record(&f.image, &flags, &f.dirs()).unwrap();
        assert_eq!(record.recipe.as_deref(), Some("ubuntu-mesos"));
        assert_eq!(record.visibility, "shared");
        assert_eq!(record.min_disk, Some(5));
        assert_eq!(record.tags, vec!["mesos", "extra"]);
        assert_eq!(record.properties["os_distro"], "ubuntu");
        assert_eq!(record.properties["hw_rng_model"], "none");
        assert_eq!(record.properties["note"], "a=b");
        assert_eq!(record.properties["os_version"], "24.04");
        let body = record.create_body();
        assert_eq!(body["os_distro"], json!("ubuntu"));
        assert_eq!(body["min_disk"], json!(5));
    }

    /// disk-image-create keeps the manifest and SBOM in `NAME.d/`: upload finds both there.
    #[test]
    fn a_disk_image_create_build_brings_its_record_and_sbom_from_name_d() {
        let f = fixture(b"QFI\xfb");
        let glance = serde_yaml_ng::from_str::<Recipe>(RECIPE).unwrap().glance;
        let output = |file: &str| crate::manifest::OutputEntry {
            file: file.into(),
            format: "qcow2".into(),
            size: 4096,
            sha256: "s".into(),
            ..crate::manifest::OutputEntry::default()
        };
        let manifest = Manifest {
            recipe: Some("ubuntu-mesos".into()),
            glance,
            outputs: vec![output("ubuntu-mesos.qcow2")],
            sbom: Some("ubuntu-mesos.qcow2.spdx.json".into()),
            ..Manifest::default()
        };
        let layout = crate::layout::OutputLayout::Dib;
        std::fs::create_dir(f.dir.path().join("ubuntu-mesos.d")).unwrap();
        std::fs::write(Manifest::path_in(layout, &f.image), manifest.to_json().unwrap()).unwrap();
        let sbom = crate::sbom::path_in(layout, &f.image);
        std::fs::write(&sbom, "{\"spdxVersion\": \"SPDX-2.3\"}\n").unwrap();
        std::fs::remove_dir_all(f.dir.path().join("recipes")).unwrap();
        let record = build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap();
        assert_eq!(record.recipe.as_deref(), Some("ubuntu-mesos"));
        assert_eq!(record.properties["os_distro"], "ubuntu");
        assert_eq!(record.properties.get(SBOM_PROPERTY), Some(&crate::io::sha256_file(&sbom).unwrap().0));
    }

    #[test]
    fn the_manifests_architecture_sets_what_nova_needs_and_property_flags_win() {
        let f = fixture(b"QFI\xfb");
        let write = |arch: &str| {
            let manifest = Manifest { arch: arch.into(), ..Manifest::default() };
            std::fs::write(Manifest::path_for(&f.image), manifest.to_json().unwrap()).unwrap();
        };
        let properties = |flags: &RecordFlags| build_record(&f.image, flags, &f.dirs()).unwrap().properties;
        write("arm64");
        let arm64 = properties(&RecordFlags::default());
        assert_eq!(arm64["architecture"], "aarch64");
        assert_eq!(arm64["hw_firmware_type"], "uefi");
        assert_eq!(arm64["hw_machine_type"], "virt");
        // The recipe's record (from --recipe) comes on top; the platform stays.
        let with_recipe = RecordFlags { recipe: Some("ubuntu-mesos".into()), ..Default::default() };
        let both = properties(&with_recipe);
        assert_eq!((both["architecture"].as_str(), both["os_distro"].as_str()), ("aarch64", "ubuntu"));
        let flags = RecordFlags {
            properties: vec!["hw_machine_type=virt-8.2".into(), "architecture=arm64".into()],
            ..Default::default()
        };
        let overridden = properties(&flags);
        assert_eq!(
            (overridden["hw_machine_type"].as_str(), overridden["architecture"].as_str()),
            ("virt-8.2", "arm64")
        );
        write("amd64");
        let amd64 = properties(&RecordFlags::default());
        assert_eq!(amd64.get("architecture").map(String::as_str), Some("x86_64"));
        assert!(!amd64.contains_key("hw_firmware_type") && !amd64.contains_key("hw_machine_type"), "{amd64:?}");
        write("");
        assert!(properties(&RecordFlags::default()).is_empty());
    }

    #[test]
    fn uefi_firmware_is_asked_for_only_where_the_disk_cannot_boot_bios() {
        let f = fixture(b"QFI\xfb");
        let firmware = |bios: bool, uefi: bool| {
            let boot = crate::manifest::BootInfo { bios, uefi, serial_console: "ttyS0".into() };
            let manifest = Manifest { arch: "amd64".into(), boot: Some(boot), ..Manifest::default() };
            std::fs::write(Manifest::path_for(&f.image), manifest.to_json().unwrap()).unwrap();
            let record = build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap();
            record.properties.get("hw_firmware_type").cloned()
        };
        assert_eq!(firmware(false, true).as_deref(), Some("uefi"), "UEFI-only amd64");
        assert_eq!(firmware(true, true), None, "hybrid: Nova's default BIOS boots it");
        assert_eq!(firmware(true, false), None, "BIOS only");
    }

    #[test]
    fn a_manifest_without_a_recipe_adds_nothing() {
        let f = fixture(b"QFI\xfb");
        write_manifest(&f, None);
        assert_eq!(build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap().recipe, None);
        std::fs::write(Manifest::path_for(&f.image), "{oops").unwrap();
        let err = build_record(&f.image, &RecordFlags::default(), &f.dirs()).unwrap_err().to_string();
        assert!(err.contains("ubuntu-mesos.qcow2.manifest.json"), "{err}");
    }

    #[test]
    fn a_disk_format_flag_that_contradicts_the_header_is_refused() {
        let f = fixture(b"QFI\xfb");
        let flags = RecordFlags { disk_format: Some("raw".into()), ..Default::default() };
        let err = build_record(&f.image, &flags, &f.dirs()).unwrap_err().to_string();
        assert!(err.contains("is qcow2") && err.contains("--disk-format says raw"), "{err}");
    }

    #[test]
    fn the_header_beats_the_recipe_format() {
        let f = fixture(b"\0\0\0\0");
        let flags = RecordFlags { recipe: Some("ubuntu-mesos".into()), ..Default::default() };
        assert_eq!(build_record(&f.image, &flags, &f.dirs()).unwrap().disk_format, "raw");
    }

    #[test]
    fn bad_values_name_the_option() {
        let f = fixture(b"QFI\xfb");
        let flags = RecordFlags { properties: vec!["novalue".into()], ..Default::default() };
        assert!(build_record(&f.image, &flags, &f.dirs()).unwrap_err().to_string().contains("--property novalue"));
        let flags = RecordFlags { visibility: Some("everyone".into()), ..Default::default() };
        assert!(build_record(&f.image, &flags, &f.dirs()).unwrap_err().to_string().contains("--visibility everyone"));
        let flags = RecordFlags { recipe: Some("nope".into()), ..Default::default() };
        assert!(build_record(&f.image, &flags, &f.dirs()).unwrap_err().to_string().contains("recipe `nope`"));
    }
}
