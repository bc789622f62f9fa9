//! The JSON manifest written beside every image (`<image>.manifest.json`, DESIGN.md section 3.5).
//!
//! `upload` and `test` read its `recipe` field to find Glance properties and checks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Errors reading the manifest beside an image.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: not a mesos-image manifest: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// One image file the build wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// File name (the manifest lies in the same directory).
    pub file: String,
    pub format: String,
    pub size: u64,
    pub sha256: String,
}

/// How long a stage took and whether it came from the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    pub cached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub tool_version: String,
    /// Recipe name; `None` for a DIB-mode build.
    pub recipe: Option<String>,
    pub distro: String,
    pub release: String,
    pub arch: String,
    pub elements: Vec<String>,
    pub packages: Vec<Package>,
    pub outputs: Vec<OutputEntry>,
    pub stages: Vec<StageTiming>,
    pub duration_seconds: f64,
    /// The stage-cache key of the finished image (equal keys, equal inputs).
    pub cache_key: String,
}

impl Manifest {
    /// Where the manifest of `image` lives.
    pub fn path_for(image: &Path) -> PathBuf {
        let mut name = image.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".manifest.json");
        image.with_file_name(name)
    }

    /// The recipe named by the manifest beside `image`: `None` when there is no manifest or it
    /// names none (a DIB-mode build). Only the `recipe` field is read, so manifests of other
    /// tool versions still work.
    pub fn recipe_beside(image: &Path) -> Result<Option<String>, ManifestError> {
        let path = Manifest::path_for(image);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(ManifestError::Read { path, cause }),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|err| ManifestError::Invalid { path: path.clone(), message: err.to_string() })?;
        Ok(value.get("recipe").and_then(serde_json::Value::as_str).map(str::to_owned))
    }

    pub fn to_json(&self) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_string_pretty(self).context("cannot serialise the manifest")?;
        let mut json = crate::redact::text(&json).into_bytes();
        json.push(b'\n');
        Ok(json)
    }

    /// Read the manifest beside `image`, if there is one.
    pub fn read_beside(image: &Path) -> anyhow::Result<Option<Manifest>> {
        let path = Manifest::path_for(image);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: not a mesos-image manifest", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_path_appends_suffix() {
        assert_eq!(
            Manifest::path_for(Path::new("/tmp/ubuntu-mesos.qcow2")),
            PathBuf::from("/tmp/ubuntu-mesos.qcow2.manifest.json")
        );
    }

    #[test]
    fn recipe_is_read_from_any_manifest_shape() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        assert_eq!(Manifest::recipe_beside(&image).unwrap(), None);
        std::fs::write(Manifest::path_for(&image), r#"{"recipe": "ubuntu-mesos", "other": [1]}"#).unwrap();
        assert_eq!(Manifest::recipe_beside(&image).unwrap().as_deref(), Some("ubuntu-mesos"));
        std::fs::write(Manifest::path_for(&image), r#"{"recipe": null}"#).unwrap();
        assert_eq!(Manifest::recipe_beside(&image).unwrap(), None);
        std::fs::write(Manifest::path_for(&image), "{oops").unwrap();
        let err = Manifest::recipe_beside(&image).unwrap_err().to_string();
        assert!(err.contains("x.qcow2.manifest.json: not a mesos-image manifest"), "{err}");
    }

    #[test]
    fn manifest_round_trips_beside_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        assert!(Manifest::read_beside(&image).unwrap().is_none());
        let manifest = Manifest {
            tool_version: "0".into(),
            recipe: Some("debian-mesos".into()),
            distro: "debian".into(),
            release: "bookworm".into(),
            arch: "amd64".into(),
            elements: vec!["vm".into()],
            packages: vec![Package { name: "jq".into(), version: "1.6".into() }],
            outputs: vec![],
            stages: vec![],
            duration_seconds: 1.5,
            cache_key: "k".into(),
        };
        std::fs::write(Manifest::path_for(&image), manifest.to_json().unwrap()).unwrap();
        assert_eq!(Manifest::read_beside(&image).unwrap(), Some(manifest));
    }
}
