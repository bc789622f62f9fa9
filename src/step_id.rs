//! The typed names of a build's steps: what the pipeline (`pipeline/`) lists, the manifest's
//! timings record and `--dry-run` prints. Below the manifest and the pipeline, so both name
//! steps alike without importing each other.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cache::CachePoint;
use crate::element::Phase;

/// One step of a build.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum StepId {
    /// The hooks directory: every element's files merged, our helpers.
    Hooks,
    /// The base tree: bootstrap or cloud image (nothing when an element's root.d makes it).
    Base,
    /// One element phase: its scripts in run-parts order, its packages at their slot.
    Phase(Phase),
    /// A tree snapshot stored in the cache.
    Save(CachePoint),
    /// A cache entry standing in for the steps before it.
    Restore(CachePoint),
    /// Build-only packages purged, the manifests DIB leaves in the image.
    Finalise,
    /// Build leftovers taken out of the tree.
    Cleanup,
    /// The tree formats (tar, tgz, squashfs).
    TreeOutputs,
    /// The raw disk.
    Disk,
    /// The finished tree described file by file (`--check-reproducible`).
    TreeListing,
    /// The raw disk converted to the disk formats.
    Convert,
    /// The images copied into place (the commit point).
    Publish,
    /// The SPDX document beside the image.
    Sbom,
    /// The JSON manifest beside the image.
    Manifest,
    /// A step added to the pipeline by its caller (a test, an extension), by name.
    Added(String),
}

impl StepId {
    /// Every step this version knows (without the added ones).
    pub fn known() -> Vec<StepId> {
        let mut known = vec![StepId::Hooks, StepId::Base];
        known.extend(Phase::ALL.into_iter().map(StepId::Phase));
        for point in [CachePoint::Base, CachePoint::Install, CachePoint::Outputs] {
            known.extend([StepId::Save(point), StepId::Restore(point)]);
        }
        known.extend([
            StepId::Finalise,
            StepId::Cleanup,
            StepId::TreeOutputs,
            StepId::Disk,
            StepId::TreeListing,
            StepId::Convert,
            StepId::Publish,
            StepId::Sbom,
            StepId::Manifest,
        ]);
        known
    }

    /// The name manifests and `--dry-run` use.
    pub fn name(&self) -> &str {
        match self {
            StepId::Hooks => "hooks",
            StepId::Base => "base",
            StepId::Phase(phase) => phase.dir_name(),
            StepId::Save(CachePoint::Base) => "save base snapshot",
            StepId::Save(CachePoint::Install) => "save install snapshot",
            StepId::Save(CachePoint::Outputs) => "save outputs",
            StepId::Restore(CachePoint::Base) => "restore base snapshot",
            StepId::Restore(CachePoint::Install) => "restore install snapshot",
            // The name warm rebuilds' manifests have always carried.
            StepId::Restore(CachePoint::Outputs) => "outputs",
            StepId::Finalise => "finalise",
            StepId::Cleanup => "cleanup",
            StepId::TreeOutputs => "tree outputs",
            StepId::Disk => "disk",
            StepId::TreeListing => "tree listing",
            StepId::Convert => "convert",
            StepId::Publish => "publish",
            StepId::Sbom => "publish SBOM",
            StepId::Manifest => "manifest",
            StepId::Added(name) => name,
        }
    }

    /// Same as [`Self::name`].
    pub fn as_str(&self) -> &str {
        self.name()
    }

    /// The module that does the step's work, where it runs and what it leaves, for the stage
    /// table of docs/architecture.md.
    pub fn doc(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            StepId::Hooks => (
                "`stage/phases.rs`, `stage/hooks_dir.rs`",
                "host",
                "the hooks directory: every element's directory merged, our `bin/` helpers",
            ),
            StepId::Base => (
                "`stage/root.rs`",
                "host",
                "the base tree (mmdebstrap, debootstrap or a cloud image; nothing when root.d makes it)",
            ),
            StepId::Phase(Phase::PreInstall) => (
                "`stage/phases.rs`",
                "inside the chroot",
                "every element's `bin/` in `/usr/local/bin`, the phase's scripts, its packages at their slot",
            ),
            StepId::Phase(Phase::Install) => (
                "`stage/phases.rs`",
                "inside the chroot",
                "the phase's scripts, its packages at their slot, then every element's `static/`",
            ),
            StepId::Phase(phase) if phase.runs_inside() => {
                ("`stage/phases.rs`", "inside the chroot", "the phase's scripts (and packages at their slot)")
            }
            StepId::Phase(_) => ("`stage/phases.rs`", "outside", "the phase's scripts with `TARGET_ROOT` set"),
            StepId::Save(_) => ("`cache/`", "host", "the tree stored as a snapshot"),
            StepId::Restore(CachePoint::Outputs) => {
                ("`stage/publish.rs`", "host", "the stored outputs published under the new names")
            }
            StepId::Restore(_) => ("`cache/`", "host", "the snapshot in place of the steps it stands for"),
            StepId::Finalise => (
                "`stage/finalise.rs`",
                "inside the chroot",
                "build-only packages purged; `/etc/dib-manifests`; the installed package list",
            ),
            StepId::Cleanup => (
                "`stage/cleanup.rs`",
                "host",
                "the tree without build-time state (resolv.conf, logs, apt lists, random state)",
            ),
            StepId::TreeOutputs => {
                ("`stage/convert.rs`", "host", "tar, tgz, squashfs of the finished tree, before the disk's boot files")
            }
            StepId::Disk => {
                ("`stage/disk.rs` -> `disk/`", "host", "`disk.raw` and a `DiskReport` (root UUID, partitions)")
            }
            StepId::TreeListing => {
                ("`reproducible/listing.rs`", "host", "the tree described file by file (`--check-reproducible`)")
            }
            StepId::Convert => ("`stage/convert.rs`", "host", "one scratch file per disk format"),
            StepId::Publish => {
                ("`stage/publish.rs`", "host", "the images (and checksum files) in place, each named only when complete; disk-image-create: the saved `dib-manifests/` in `NAME.d/`")
            }
            StepId::Sbom => ("`sbom.rs`, `stage/publish.rs`", "host", "`IMAGE.spdx.json` (in `NAME.d/` for disk-image-create)"),
            StepId::Manifest => (
                "`pipeline/run.rs`, `stage/publish.rs`",
                "host",
                "`IMAGE.manifest.json` (in `NAME.d/` for disk-image-create); the outputs stored in the cache",
            ),
            StepId::Added(_) => ("its caller's", "host", "what its caller says"),
        }
    }

    /// The progress line announcing the step (`==> LABEL` without a terminal).
    pub fn label(&self) -> String {
        match self {
            StepId::Phase(phase) => format!("{phase} phase"),
            other => other.name().to_owned(),
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<StepId> for String {
    fn from(id: StepId) -> String {
        id.name().to_owned()
    }
}

/// A name this version does not know (a manifest of another version, an added step) reads as
/// an added step of that name.
impl From<String> for StepId {
    fn from(name: String) -> StepId {
        StepId::known().into_iter().find(|id| id.name() == name).unwrap_or(StepId::Added(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_step_has_its_own_name_and_reads_back() {
        let known = StepId::known();
        for id in &known {
            assert_eq!(StepId::from(id.name().to_owned()), *id, "{id}");
        }
        let mut names: Vec<&str> = known.iter().map(StepId::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), known.len(), "two steps share a name");
        assert_eq!(StepId::from("probe".to_owned()), StepId::Added("probe".into()));
    }
}
