//! Recipes: a YAML file that names everything one image needs (README.md, "Elements and recipes").
//!
//! A recipe is found by name in the recipe search path (`--recipes-dir` entries, then our
//! `recipes/`) or by path. Unknown keys are an error with file and line; command-line flags
//! override recipe values through [`Overrides`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::settings::{self, ByteSize, FromSetting, Setting};

pub use crate::settings::check_root_label;

/// Errors at the recipe module's edge.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe `{name}` not found (searched: {searched})")]
    NotFound { name: String, searched: String },
    #[error("{path}: cannot read recipe: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How the base tree is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseMethod {
    /// mmdebstrap from a mirror (debootstrap when mmdebstrap is missing).
    #[default]
    Mmdebstrap,
    /// debootstrap from a mirror.
    Debootstrap,
    /// An Ubuntu cloud-image root tarball (DIB's `ubuntu` element), sha256-verified and cached.
    CloudImage,
}

impl std::str::FromStr for BaseMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mmdebstrap" => Ok(BaseMethod::Mmdebstrap),
            "debootstrap" => Ok(BaseMethod::Debootstrap),
            "cloud-image" => Ok(BaseMethod::CloudImage),
            other => Err(format!("`{other}` is not mmdebstrap, debootstrap or cloud-image")),
        }
    }
}

impl fmt::Display for BaseMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaseMethod::Mmdebstrap => "mmdebstrap",
            BaseMethod::Debootstrap => "debootstrap",
            BaseMethod::CloudImage => "cloud-image",
        })
    }
}

/// Output formats: disks `qemu-img` writes, and the finished tree as an archive or a squashfs
/// (disk-image-create's `tar`, `tgz` and `squashfs`), which need no disk at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhd,
    Tar,
    Tgz,
    Squashfs,
}

impl ImageFormat {
    /// The name qemu-img uses (`vhd` is `vpc` there).
    pub fn qemu_name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhd => "vpc",
            ImageFormat::Tar | ImageFormat::Tgz | ImageFormat::Squashfs => "raw",
        }
    }

    /// Whether this format is made from the disk (the others are made from the tree).
    pub fn is_disk(self) -> bool {
        matches!(self, ImageFormat::Qcow2 | ImageFormat::Raw | ImageFormat::Vmdk | ImageFormat::Vhd)
    }

    /// The file extension: the format's name, except squashfs, which disk-image-create writes
    /// as `NAME.squash`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Squashfs => "squash",
            other => other.name(),
        }
    }

    /// File extension and Glance `disk_format` name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhd => "vhd",
            ImageFormat::Tar => "tar",
            ImageFormat::Tgz => "tgz",
            ImageFormat::Squashfs => "squashfs",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qcow2" => Ok(ImageFormat::Qcow2),
            "raw" => Ok(ImageFormat::Raw),
            "vmdk" => Ok(ImageFormat::Vmdk),
            "vhd" | "vpc" => Ok(ImageFormat::Vhd),
            "tar" => Ok(ImageFormat::Tar),
            "tgz" => Ok(ImageFormat::Tgz),
            "squashfs" | "squash" => Ok(ImageFormat::Squashfs),
            other => {
                Err(format!("unknown image format `{other}` (expected qcow2, raw, vmdk, vhd, tar, tgz or squashfs)"))
            }
        }
    }
}

/// Partition table written by the disk stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    #[default]
    Mbr,
    Gpt,
}

/// Disk layout and output settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    /// Disk size such as `4G` or `2560M`; computed from the tree with headroom when absent.
    #[serde(default, deserialize_with = "image_size")]
    pub size: Option<ByteSize>,
    #[serde(default = "default_formats", deserialize_with = "image_formats")]
    pub formats: Vec<ImageFormat>,
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Also build a UEFI system partition (made without mounting).
    #[serde(default)]
    pub uefi: bool,
    /// Filesystem label of the root partition.
    #[serde(default = "default_root_label")]
    pub root_label: String,
    /// Extra `-o` options for `qemu-img convert`, e.g. `compat=0.10`.
    #[serde(default)]
    pub qemu_img_options: Option<String>,
    /// Added to the tree's measured size in place of the headroom when no size is given
    /// (disk-image-create's `--image-extra-size`), e.g. `1024M`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "image_extra_size")]
    pub extra_size: Option<ByteSize>,
    /// Extra `mkfs.ext4` options for the root filesystem (disk-image-create's `--mkfs-options`),
    /// split on whitespace and given after ours, so they win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mkfs_options: Option<String>,
    /// Compress qcow2 output (on by default, as disk-image-create does; `-u` turns it off).
    #[serde(default = "default_compress")]
    pub compress: bool,
    /// The qcow2 compression algorithm; see [`Compression`].
    #[serde(default, deserialize_with = "image_compression")]
    pub compression: Compression,
    /// Extra kernel command-line arguments.
    #[serde(default)]
    pub kernel_args: Vec<String>,
}

/// How compressed qcow2 clusters are encoded. zlib is the qcow2 default every qemu-img and
/// every cloud reads; zstd (qcow2 `compression_type=zstd`, qemu 5.1 and later) compresses a
/// few times faster and decompresses faster, but older readers cannot open the image at all
/// (it sets an incompatible-feature bit): only choose it when every consumer's qemu is 5.1+.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zlib,
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zlib" => Ok(Compression::Zlib),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression `{other}` (expected zlib or zstd)")),
        }
    }
}

// The recipe keys that are build settings, read by the settings table's parse (`settings::parse`).
fn base<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BaseMethod, D::Error> {
    settings::BASE.deserialize(deserializer)
}
fn image_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    settings::IMAGE_SIZE.deserialize(deserializer).map(Some)
}
fn image_extra_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    settings::IMAGE_EXTRA_SIZE.deserialize(deserializer).map(Some)
}
fn image_formats<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ImageFormat>, D::Error> {
    settings::FORMAT.deserialize_list(deserializer)
}
fn image_compression<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Compression, D::Error> {
    settings::COMPRESSION.deserialize(deserializer)
}

/// The choice types parse by their `FromStr`, which also takes the aliases (`vpc`, `squash`).
macro_rules! from_setting_by_name {
    ($($kind:ty),*) => {$(
        impl FromSetting for $kind {
            fn from_setting(_: &Setting, text: &str) -> Result<$kind, String> {
                text.trim().parse()
            }
        }
    )*};
}
from_setting_by_name!(BaseMethod, ImageFormat, Compression);

fn default_compress() -> bool {
    true
}

fn default_formats() -> Vec<ImageFormat> {
    vec![ImageFormat::Qcow2]
}

fn default_root_label() -> String {
    "cloudimg-rootfs".to_owned()
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            size: None,
            formats: default_formats(),
            partitioning: Partitioning::default(),
            uefi: false,
            root_label: default_root_label(),
            qemu_img_options: None,
            extra_size: None,
            mkfs_options: None,
            compress: default_compress(),
            compression: Compression::default(),
            kernel_args: Vec::new(),
        }
    }
}

/// The recipe file a plan came from, so a later reader can tell whether it changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeSource {
    pub path: PathBuf,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

impl RecipeSource {
    /// Hash the recipe file at `path` (made absolute).
    pub fn read(path: &Path) -> std::io::Result<RecipeSource> {
        let path = std::path::absolute(path)?;
        let (sha256, _) = crate::io::sha256_file(&path)?;
        Ok(RecipeSource { path, sha256 })
    }
}

/// What `mesos-image upload` sets on the Glance record for images of this recipe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GlanceSpec {
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub min_disk: Option<u64>,
    #[serde(default)]
    pub min_ram: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Extra properties, e.g. `os_distro: ubuntu` (Glance stores them as strings).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A check `mesos-image test` runs inside the booted guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A Debian package is installed (`dpkg-query` status `install ok installed`).
    Package(String),
    /// A regular file exists, optionally with a mode and containing a line.
    File(FileCheck),
    /// A directory exists.
    Dir(String),
    /// A service's boot-time state.
    Service(ServiceCheck),
    /// Nothing listens on this TCP port.
    PortClosed(u16),
    /// cloud-init finished: status `done`, no error in its status or result, and no WARNING or
    /// ERROR line in `/var/log/cloud-init.log`.
    CloudInitDone,
    /// The system locale (`LANG` in `/etc/default/locale`) exists: C.UTF-8 or a generated one,
    /// `locale` sets it without complaint, and Python can restore what `getlocale()` reads.
    LocaleValid,
    /// No systemd unit is in the `failed` state (upstart guests have none to check).
    NoFailedUnits,
    /// The os-collect-config chain applies local deployments of this group (e.g. `script`): one
    /// by the running service on its own, one by a one-shot `--one-time --force ... local` run.
    HeatDeployment(String),
    /// A shell command that must exit 0.
    Command(CommandCheck),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    pub path: String,
    /// Octal permission bits such as `"600"`.
    #[serde(default)]
    pub mode: Option<String>,
    /// A fixed string that must occur in the file.
    #[serde(default)]
    pub contains: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheck {
    pub name: String,
    /// Started at boot?
    pub enabled: bool,
    /// Running right now (after first boot)?
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    pub name: String,
    pub run: String,
}

/// One recipe file, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Recipe {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `ubuntu` or `debian`.
    pub distro: String,
    /// Release codename: `trusty`, `noble`, `bookworm`, ...
    pub release: String,
    #[serde(default = "default_arch")]
    pub arch: String,
    #[serde(default, deserialize_with = "base")]
    pub base: BaseMethod,
    /// Default mirror; `--mirror` and `DIB_DISTRIBUTION_MIRROR` win over it.
    #[serde(default)]
    pub mirror: Option<String>,
    pub elements: Vec<String>,
    /// Extra packages installed with the install phase (like `-p`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Variables exported to every element script (`DIB_*` and friends).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub image: ImageSpec,
    #[serde(default)]
    pub glance: GlanceSpec,
    /// `{package: jq}` style maps, not YAML tags, so the adapter is needed.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub checks: Vec<Check>,
}

fn default_arch() -> String {
    "amd64".to_owned()
}

/// Command-line values that win over the recipe's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub release: Option<String>,
    pub arch: Option<String>,
    pub mirror: Option<String>,
    pub base: Option<BaseMethod>,
    pub image_size: Option<ByteSize>,
    pub formats: Option<Vec<ImageFormat>>,
    pub qemu_img_options: Option<String>,
    /// `--image-extra-size`.
    pub extra_size: Option<ByteSize>,
    /// `--mkfs-options`.
    pub mkfs_options: Option<String>,
    /// `Some(false)` with `-u`/`--no-compress`, `Some(true)` with `--compress`.
    pub compress: Option<bool>,
    pub compression: Option<Compression>,
    /// `--root-label`.
    pub root_label: Option<String>,
    /// `--no-tmpfs`; `DIB_NO_TMPFS=1` among the user's variables says the same.
    pub no_tmpfs: bool,
    /// Appended to the recipe's packages.
    pub packages: Vec<String>,
    /// Appended to the recipe's environment (flag values win).
    pub environment: BTreeMap<String, String>,
}

impl Overrides {
    /// Put the image flags over `image`: the one place both recipe and DIB mode apply them.
    pub fn apply_to_image(&self, image: &mut ImageSpec) {
        if let Some(size) = &self.image_size {
            image.size = Some(size.clone());
        }
        if let Some(formats) = &self.formats {
            image.formats = formats.clone();
        }
        if let Some(options) = &self.qemu_img_options {
            image.qemu_img_options = Some(options.clone());
        }
        if let Some(extra) = &self.extra_size {
            image.extra_size = Some(extra.clone());
        }
        if let Some(options) = &self.mkfs_options {
            image.mkfs_options = Some(options.clone());
        }
        if let Some(compress) = self.compress {
            image.compress = compress;
        }
        if let Some(compression) = self.compression {
            image.compression = compression;
        }
        if let Some(label) = &self.root_label {
            image.root_label = label.clone();
        }
    }
}

impl Recipe {
    /// Parse a recipe from YAML text; `path` is used in error messages only.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        crate::yaml_guard::check(text).map_err(|(line, message)| RecipeError::Parse {
            path: path.to_owned(),
            line,
            message,
        })?;
        let recipe: Recipe = serde_yaml_ng::from_str(text).map_err(|err| RecipeError::Parse {
            path: path.to_owned(),
            line: err.location().map(|loc| loc.line()).unwrap_or(1),
            message: strip_location(&err.to_string()),
        })?;
        recipe.validate(path)?;
        Ok(recipe)
    }

    /// Read and parse one recipe file.
    pub fn load_file(path: &Path) -> Result<Recipe, RecipeError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RecipeError::Read { path: path.to_owned(), source })?;
        Recipe::from_yaml(&text, path)
    }

    /// Find a recipe by name (`<dir>/<name>.yaml` in each search dir, in order) or by path.
    pub fn find(name_or_path: &str, search: &[PathBuf]) -> Result<(Recipe, PathBuf), RecipeError> {
        let as_path = Path::new(name_or_path);
        if (name_or_path.contains('/') || name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml"))
            && as_path.is_file()
        {
            return Ok((Recipe::load_file(as_path)?, as_path.to_owned()));
        }
        for dir in search {
            for ext in ["yaml", "yml"] {
                let candidate = dir.join(format!("{name_or_path}.{ext}"));
                if candidate.is_file() {
                    return Ok((Recipe::load_file(&candidate)?, candidate));
                }
            }
        }
        Err(RecipeError::NotFound {
            name: name_or_path.to_owned(),
            searched: search.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Every recipe in the search dirs, by name; earlier dirs win.
    pub fn list(search: &[PathBuf]) -> Result<Vec<(Recipe, PathBuf)>, RecipeError> {
        let mut found: BTreeMap<String, (Recipe, PathBuf)> = BTreeMap::new();
        for dir in search {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
                if !is_yaml || found.contains_key(&stem) {
                    continue;
                }
                let recipe = Recipe::load_file(&path)?;
                found.insert(stem, (recipe, path));
            }
        }
        Ok(found.into_values().collect())
    }

    /// Apply command-line overrides.
    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(release) = &overrides.release {
            self.release = release.clone();
        }
        if let Some(arch) = &overrides.arch {
            self.arch = arch.clone();
        }
        if let Some(mirror) = &overrides.mirror {
            self.mirror = Some(mirror.clone());
        }
        if let Some(base) = overrides.base {
            self.base = base;
        }
        overrides.apply_to_image(&mut self.image);
        self.packages.extend(overrides.packages.iter().cloned());
        for (key, value) in &overrides.environment {
            self.environment.insert(key.clone(), value.clone());
        }
    }

    fn validate(&self, path: &Path) -> Result<(), RecipeError> {
        let invalid = |message: String| RecipeError::Invalid { path: path.to_owned(), message };
        if !matches!(self.distro.as_str(), "ubuntu" | "debian") {
            return Err(invalid(format!("distro `{}` is not supported (ubuntu or debian)", self.distro)));
        }
        if self.elements.is_empty() {
            return Err(invalid("`elements` is empty".to_owned()));
        }
        if self.image.formats.is_empty() {
            return Err(invalid("`image.formats` is empty".to_owned()));
        }
        let label = &self.image.root_label;
        settings::ROOT_LABEL.parse::<String>(label).map_err(|e| invalid(format!("image.root-label: {e}")))?;
        Ok(())
    }
}

/// serde's YAML/JSON messages append " at line N column M"; we print the file and line
/// ourselves. Every YAML/JSON input reads its errors through this: recipes here, element files
/// (`package-installs`, `pkg-map`) in `element/`.
pub fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\ndistro: debian\nrelease: bookworm\nelements: [debian-minimal, vm]\n";

    #[test]
    fn strip_location_keeps_the_message_only() {
        let message = "unknown field `x`, expected one of `a` at line 3 column 5";
        assert_eq!(strip_location(message), "unknown field `x`, expected one of `a`");
        assert_eq!(strip_location("no location"), "no location");
    }

    #[test]
    fn minimal_recipe_gets_defaults() {
        let recipe = Recipe::from_yaml(MINIMAL, Path::new("t.yaml")).unwrap();
        assert_eq!(recipe.arch, "amd64");
        assert_eq!(recipe.image.formats, vec![ImageFormat::Qcow2]);
        assert_eq!(recipe.image.root_label, "cloudimg-rootfs");
        assert_eq!(recipe.base, BaseMethod::Mmdebstrap);
    }

    #[test]
    fn a_root_label_mkfs_would_truncate_is_refused_naming_the_key() {
        let text = format!("{MINIMAL}image:\n  root-label: seventeen-bytes-x\n");
        let err = Recipe::from_yaml(&text, Path::new("r/x.yaml")).unwrap_err().to_string();
        assert_eq!(err, "r/x.yaml: image.root-label: `seventeen-bytes-x` is not an ext4 label (1 to 16 bytes)");
        assert!(check_root_label("sixteen-bytes-xx").is_ok());
        assert!(check_root_label("").is_err());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = format!("{MINIMAL}image:\n  size: 4G\n  colour: blue\n");
        let err = Recipe::from_yaml(&text, Path::new("r/x.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("r/x.yaml:7: "), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn checks_parse_in_every_shape() {
        let text = format!(
            "{MINIMAL}checks:\n  - package: jq\n  - file: {{path: /etc/x, mode: \"600\"}}\n  - port-closed: 2181\n  - cloud-init-done\n  - heat-deployment: script\n  - service: {{name: docker, enabled: false}}\n"
        );
        let recipe = Recipe::from_yaml(&text, Path::new("t.yaml")).unwrap();
        assert_eq!(recipe.checks.len(), 6);
        assert_eq!(recipe.checks[2], Check::PortClosed(2181));
        assert_eq!(recipe.checks[3], Check::CloudInitDone);
    }

    #[test]
    fn overrides_win_and_packages_append() {
        let mut recipe = Recipe::from_yaml(MINIMAL, Path::new("t.yaml")).unwrap();
        recipe.packages.push("vim".into());
        recipe.apply(&Overrides {
            release: Some("trixie".into()),
            formats: Some(vec![ImageFormat::Raw]),
            packages: vec!["jq".into()],
            ..Overrides::default()
        });
        assert_eq!(recipe.release, "trixie");
        assert_eq!(recipe.image.formats, vec![ImageFormat::Raw]);
        assert_eq!(recipe.packages, vec!["vim".to_owned(), "jq".to_owned()]);
    }

    /// A recipe key reads its value by its flag's parse (the settings table's): a bare size is
    /// GB in both, and a bad value is refused with the same words, after file, line and key.
    #[test]
    fn recipe_keys_parse_as_their_flags_do() {
        use crate::settings::{BASE, COMPRESSION, FORMAT, IMAGE_SIZE};
        let read = |yaml: &str| Recipe::from_yaml(&format!("{MINIMAL}{yaml}\n"), Path::new("t.yaml"));
        let size = read("image:\n  size: 2").unwrap().image.size.unwrap();
        assert_eq!(size, IMAGE_SIZE.parse::<ByteSize>("2").unwrap());
        assert_eq!(read("image:\n  formats: [vpc]").unwrap().image.formats, vec![ImageFormat::Vhd]);
        let refused = [
            ("image:\n  size: big", "image.size", IMAGE_SIZE.parse::<ByteSize>("big").unwrap_err()),
            ("image:\n  formats: [qcow3]", "image.formats", FORMAT.parse::<ImageFormat>("qcow3").unwrap_err()),
            ("base: docker", "base", BASE.parse::<BaseMethod>("docker").unwrap_err()),
            ("image:\n  compression: lz4", "image.compression", COMPRESSION.parse::<Compression>("lz4").unwrap_err()),
        ];
        for (yaml, key, problem) in refused {
            let err = read(yaml).unwrap_err().to_string();
            let (section, field) = key.rsplit_once('.').map_or(("", key), |(s, f)| (s, f));
            assert!(err.starts_with("t.yaml:") && err.ends_with(&format!("{field}: {problem}")), "{err}");
            assert!(err.contains(section), "{err}");
        }
    }

    /// Each recipe key the settings table names is one the recipe reader accepts, with a value
    /// of the setting's kind.
    #[test]
    fn the_settings_recipe_keys_are_recipe_fields() {
        use crate::settings::{Value, BUILD};
        use serde_yaml_ng::{Mapping, Value as Yaml};
        for setting in BUILD {
            let Some(key) = setting.recipe_key else { continue };
            let sample = match (key, setting.value) {
                ("environment", _) => serde_yaml_ng::from_str("{A: b}").unwrap(),
                (_, Value::Switch) => Yaml::Bool(true),
                (_, Value::List) => Yaml::Sequence(vec![Yaml::from("jq")]),
                (_, Value::Size(_)) => Yaml::from("4G"),
                (_, Value::Choice(names)) if key == "image.formats" => Yaml::Sequence(vec![Yaml::from(names[0])]),
                (_, Value::Choice(names)) => Yaml::from(names[0]),
                _ => Yaml::from("x"),
            };
            let mut recipe: Mapping = serde_yaml_ng::from_str(MINIMAL).unwrap();
            match key.split_once('.') {
                Some((section, field)) => {
                    let mut inner = Mapping::new();
                    inner.insert(Yaml::from(field), sample);
                    recipe.insert(Yaml::from(section), Yaml::Mapping(inner));
                }
                None => {
                    recipe.insert(Yaml::from(key), sample);
                }
            }
            let text = serde_yaml_ng::to_string(&recipe).unwrap();
            Recipe::from_yaml(&text, Path::new("t.yaml"))
                .unwrap_or_else(|err| panic!("{}: {key}: {err}", setting.flag));
        }
    }
}
