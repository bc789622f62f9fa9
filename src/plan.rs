//! The immutable build plan every stage reads: the recipe (or DIB-mode command line) resolved
//! against the element graph. `build --dry-run` prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::element::Phase;
use crate::recipe::{BaseMethod, Check, GlanceSpec, ImageSpec};

/// One element of the resolved set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedElement {
    pub name: String,
    /// The element directory that won on `ELEMENTS_PATH`.
    pub path: PathBuf,
}

/// One hook script, in run order within its phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedScript {
    /// File name, e.g. `50-configure-mesos`.
    pub name: String,
    /// The element that ships it.
    pub element: String,
    /// Absolute path on the host.
    pub path: PathBuf,
}

/// Packages a phase installs and removes, after pkg-map, arch and `when` filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageSet {
    /// Sorted, de-duplicated.
    pub install: Vec<String>,
    /// Removed at the end of the phase (`uninstall: true`).
    pub uninstall: Vec<String>,
    /// Installed for the build, purged in cleanup (`build-only: true`).
    pub build_only: Vec<String>,
}

impl PackageSet {
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.uninstall.is_empty() && self.build_only.is_empty()
    }
}

/// Everything a build needs to know, decided before any work starts.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Recipe name, or `None` in DIB mode (elements on the command line).
    pub recipe: Option<String>,
    pub distro: String,
    pub release: String,
    pub arch: String,
    /// How the Rust root stage makes the base tree; `None` when an element's own `root.d`
    /// builds it (a user's DIB operating-system element). Our OS elements select one by
    /// exporting `MESOS_IMAGE_BASE` (mmdebstrap|debootstrap|cloud-image) in `environment.d`.
    pub base: Option<BaseMethod>,
    /// The mirror the base tree and apt use: `--mirror`, `DIB_DISTRIBUTION_MIRROR`, recipe,
    /// or the host's own apt sources for the host's distro.
    pub mirror: Option<String>,
    /// The resolved element set, sorted by name.
    pub elements: Vec<PlannedElement>,
    /// Hook scripts per phase, in run-parts order.
    pub scripts: BTreeMap<Phase, Vec<PlannedScript>>,
    /// `environment.d` files, sourced in this order before every script.
    pub environment_d: Vec<PlannedScript>,
    /// Packages per phase.
    pub packages: BTreeMap<Phase, PackageSet>,
    /// Variables passed to every script (sorted). Runtime paths (`TARGET_ROOT`,
    /// `TMP_MOUNT_PATH`, `TMP_HOOKS_PATH`) are added by the stage that runs the script.
    pub env: BTreeMap<String, String>,
    /// Each element's `pkg-map`, already resolved for this distro/family/release:
    /// element -> (generic name -> distro name). Elements without a pkg-map are absent.
    /// The in-chroot `pkg-map` helper reads this, so no Python is needed in the target.
    pub pkg_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub image: ImageSpec,
    pub glance: GlanceSpec,
    pub checks: Vec<Check>,
}
