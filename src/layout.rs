//! Where a build's files go besides its images. `mesos-image build` writes the manifest and the
//! SBOM beside the first image (`x.qcow2.manifest.json`). disk-image-create writes exactly DIB's
//! files beside the images (`NAME.<fmt>`, with `--checksum` `.md5` and `.sha256`) and keeps
//! everything else in `NAME.d/`, as DIB keeps its manifests there: nodepool-builder deletes a
//! build as those files and that directory, so nothing of it may lie anywhere else.

use std::path::{Path, PathBuf};

/// The two layouts of a build's outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputLayout {
    /// `mesos-image build`: manifest and SBOM beside the first image; `--checksum` writes
    /// `.sha256` naming the image's file.
    #[default]
    Beside,
    /// disk-image-create: manifest and SBOM in `NAME.d/`; `--checksum` writes DIB's `.md5` and
    /// `.sha256`, naming the image as the command line did.
    Dib,
}

impl OutputLayout {
    /// The file of the build whose first image is `first_image` named after that image plus
    /// `suffix` (`.manifest.json`): beside the image, or in its `NAME.d/`.
    pub fn sidecar(self, first_image: &Path, suffix: &str) -> PathBuf {
        let mut name = first_image.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(suffix);
        match self {
            OutputLayout::Beside => first_image.with_file_name(name),
            OutputLayout::Dib => dib_dir(first_image).join(name),
        }
    }

    /// The directory this layout creates for the build, if any (`NAME.d/`).
    pub fn own_dir(self, first_image: &Path) -> Option<PathBuf> {
        match self {
            OutputLayout::Beside => None,
            OutputLayout::Dib => Some(dib_dir(first_image)),
        }
    }
}

/// `NAME.d` for the image `NAME.<fmt>`: DIB's `${IMAGE_NAME}.d`, the name nodepool-builder
/// derives from an image file when it deletes a build (the name up to its last dot, plus `.d`).
pub fn dib_dir(image: &Path) -> PathBuf {
    let mut dir = image.with_extension("").into_os_string();
    dir.push(".d");
    PathBuf::from(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_keeps_the_manifest_next_to_the_image() {
        let path = OutputLayout::Beside.sidecar(Path::new("/o/img.qcow2"), ".manifest.json");
        assert_eq!(path, Path::new("/o/img.qcow2.manifest.json"));
        assert_eq!(OutputLayout::Beside.own_dir(Path::new("/o/img.qcow2")), None);
    }

    #[test]
    fn dib_keeps_it_in_name_d_as_nodepool_derives_it() {
        let path = OutputLayout::Dib.sidecar(Path::new("/o/ubuntu-0001.qcow2"), ".spdx.json");
        assert_eq!(path, Path::new("/o/ubuntu-0001.d/ubuntu-0001.qcow2.spdx.json"));
        assert_eq!(dib_dir(Path::new("rel/x.y.raw")), Path::new("rel/x.y.d"));
        assert_eq!(dib_dir(Path::new("img.squash")), Path::new("img.d"));
        assert_eq!(OutputLayout::Dib.own_dir(Path::new("a.qcow2")), Some(PathBuf::from("a.d")));
    }
}
