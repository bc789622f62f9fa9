//! The digests an image's build recorded in its manifest: with them, upload sends the file
//! without hashing it (the build hashed it once, while writing it), decides whether a target
//! already holds it before reading it, and checks what Glance stored against them.
//!
//! They count only for the file the manifest describes: its entry names the file and the
//! file has the recorded size. A manifest recording another size is refused, before any work:
//! the file changed since the build, so neither its digests nor the rest (packages, SBOM) are
//! the image's. A change that keeps the size shows when Glance's digests disagree with the
//! recorded ones ([`super::job::UploadError::NotAsManifest`]). Manifests of older versions
//! record sha256 only: their images are hashed while read, as an image without a manifest.

use std::path::{Path, PathBuf};

use crate::io::Digests;
use crate::manifest::{Manifest, ManifestError};

/// Digests from the manifest at `manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub digests: Digests,
    pub manifest: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} does not match its manifest ({manifest} records {recorded} bytes, the file has {actual}): \
         rebuild it, or move the manifest away to upload the file as it is"
    )]
    Size { path: PathBuf, manifest: PathBuf, recorded: u64, actual: u64 },
}

/// The digests `image`'s manifest records for it, if it has a manifest that records them all.
pub fn recorded_digests(image: &Path) -> Result<Option<Recorded>, RecordedError> {
    let Some(located) = Manifest::find(image)? else { return Ok(None) };
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(entry) = located.manifest.outputs.iter().find(|o| o.file == name) else { return Ok(None) };
    let actual =
        std::fs::metadata(image).map_err(|source| RecordedError::Read { path: image.to_owned(), source })?.len();
    if entry.size != actual {
        return Err(RecordedError::Size {
            path: image.to_owned(),
            manifest: located.path,
            recorded: entry.size,
            actual,
        });
    }
    let Some(digests) = entry.digests() else {
        tracing::info!("{}: records no md5 and sha512 (an older version): hashing the image", located.path.display());
        return Ok(None);
    };
    Ok(Some(Recorded { digests, manifest: located.path }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OutputEntry;

    fn image_with_manifest(outputs: Vec<OutputEntry>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        std::fs::write(&image, b"abc").unwrap();
        let manifest = Manifest { outputs, ..Manifest::default() };
        std::fs::write(Manifest::path_for(&image), manifest.to_json().unwrap()).unwrap();
        (dir, image)
    }

    fn entry(file: &str, size: u64) -> OutputEntry {
        let digests = Digests { bytes: size, sha512: "s512".into(), md5: "m".into(), sha256: "s256".into() };
        OutputEntry::new(file.into(), "qcow2".into(), &digests)
    }

    #[test]
    fn the_entry_of_the_file_with_its_size_gives_the_digests() {
        let (_dir, image) = image_with_manifest(vec![entry("other.raw", 9), entry("x.qcow2", 3)]);
        let recorded = recorded_digests(&image).unwrap().unwrap();
        assert_eq!(recorded.digests.sha512, "s512");
        assert_eq!((recorded.digests.bytes, recorded.digests.md5.as_str()), (3, "m"));
        assert_eq!(recorded.manifest, Manifest::path_for(&image));
    }

    #[test]
    fn another_size_is_refused_naming_file_and_manifest() {
        let (_dir, image) = image_with_manifest(vec![entry("x.qcow2", 4)]);
        let err = recorded_digests(&image).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} does not match its manifest (", image.display())), "{err}");
        assert!(err.contains("records 4 bytes, the file has 3"), "{err}");
    }

    #[test]
    fn no_manifest_no_entry_or_an_older_manifest_means_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("bare.raw");
        std::fs::write(&bare, b"abc").unwrap();
        assert_eq!(recorded_digests(&bare).unwrap(), None);
        let (_dir, image) = image_with_manifest(vec![entry("other.raw", 3)]);
        assert_eq!(recorded_digests(&image).unwrap(), None);
        let older = OutputEntry { md5: None, sha512: None, ..entry("x.qcow2", 3) };
        let (_dir, image) = image_with_manifest(vec![older]);
        assert_eq!(recorded_digests(&image).unwrap(), None);
    }
}
