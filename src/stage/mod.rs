//! Pipeline stages (docs/architecture.md). Each stage reads the immutable [`Plan`] and the tree the
//! previous stage left under [`BuildContext::target`].

pub mod cleanup;
pub mod deferred;
pub mod finalise;
pub mod hooks_dir;
pub mod native_unpack;
pub mod packages;
pub mod phases;
pub mod publish;
pub mod root;
pub mod target_config;

use std::path::PathBuf;

use crate::element::Phase;
use crate::plan::Plan;
use crate::progress::Reporter;
use crate::reproducible::Pins;

/// Where `--break` opens a shell in the chroot (DIB's `break=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakPoint {
    AfterError,
    Before(Phase),
    After(Phase),
}

impl std::str::FromStr for BreakPoint {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a break point (after-error, before-PHASE or after-PHASE)");
        if text == "after-error" {
            return Ok(BreakPoint::AfterError);
        }
        if let Some(phase) = text.strip_prefix("before-") {
            return Phase::parse(phase).map(BreakPoint::Before).ok_or_else(bad);
        }
        if let Some(phase) = text.strip_prefix("after-") {
            return Phase::parse(phase).map(BreakPoint::After).ok_or_else(bad);
        }
        Err(bad())
    }
}

/// Everything a stage needs besides the plan: paths on the host and how to report.
pub struct BuildContext<'a> {
    pub plan: &'a Plan,
    /// The image tree on the host (`TARGET_ROOT`, DIB's `TMP_MOUNT_PATH`).
    pub target: PathBuf,
    /// Host directory holding the merged hooks; bound read-only at `/tmp/in_target.d` inside.
    pub hooks_dir: PathBuf,
    /// Scratch space of this build (removed at the end).
    pub work_dir: PathBuf,
    /// Cache root (`--cache-dir`); never deleted through.
    pub cache_dir: PathBuf,
    /// Host apt archive cache, bound at `/var/cache/apt/archives` inside during apt runs.
    pub apt_cache: PathBuf,
    /// `-x`: run scripts with xtrace (`DIB_DEBUG_TRACE` at least 1).
    pub trace: bool,
    pub break_at: Option<BreakPoint>,
    pub reporter: &'a Reporter,
    /// The build's time and seed: nothing in the image may come from the clock or the random pool.
    pub pins: Pins,
}

impl BuildContext<'_> {
    /// Where outside scripts save what DIB keeps beside the image in `NAME.d/`
    /// (`DIB_MANIFEST_SAVE_DIR`, the manifests element's `dib-manifests/`): in scratch, so a
    /// failed build leaves nothing, and the publish step hands it on (`publish::saved_files`).
    pub fn saved_dir(&self) -> PathBuf {
        self.work_dir.join("image.d")
    }
}

pub mod convert;
pub mod disk;
