//! The hook phases of a DIB element, in the order a build runs them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A phase directory of an element (`<phase>.d`). `environment.d` is not a phase: its files are
/// sourced before every script of every phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    #[serde(rename = "root.d")]
    Root,
    #[serde(rename = "extra-data.d")]
    ExtraData,
    #[serde(rename = "pre-install.d")]
    PreInstall,
    #[serde(rename = "install.d")]
    Install,
    #[serde(rename = "post-install.d")]
    PostInstall,
    #[serde(rename = "post-root.d")]
    PostRoot,
    #[serde(rename = "block-device.d")]
    BlockDevice,
    #[serde(rename = "pre-finalise.d")]
    PreFinalise,
    #[serde(rename = "finalise.d")]
    Finalise,
    #[serde(rename = "cleanup.d")]
    Cleanup,
}

impl Phase {
    /// Every phase, in build order.
    pub const ALL: [Phase; 10] = [
        Phase::Root,
        Phase::ExtraData,
        Phase::PreInstall,
        Phase::Install,
        Phase::PostInstall,
        Phase::PostRoot,
        Phase::BlockDevice,
        Phase::PreFinalise,
        Phase::Finalise,
        Phase::Cleanup,
    ];

    /// The phase's directory name inside an element, e.g. `install.d`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Phase::Root => "root.d",
            Phase::ExtraData => "extra-data.d",
            Phase::PreInstall => "pre-install.d",
            Phase::Install => "install.d",
            Phase::PostInstall => "post-install.d",
            Phase::PostRoot => "post-root.d",
            Phase::BlockDevice => "block-device.d",
            Phase::PreFinalise => "pre-finalise.d",
            Phase::Finalise => "finalise.d",
            Phase::Cleanup => "cleanup.d",
        }
    }

    /// The name without `.d`, as `package-installs.yaml` and `--break` spell it.
    pub fn name(self) -> &'static str {
        self.dir_name().trim_end_matches(".d")
    }

    /// Parse `install`, `install.d`, `post-install`, ...
    pub fn parse(text: &str) -> Option<Phase> {
        let bare = text.trim_end_matches(".d");
        Phase::ALL.into_iter().find(|p| p.name() == bare)
    }

    /// Chrooted phases run inside the target; the rest run on the host with `TARGET_ROOT` set.
    pub fn runs_inside(self) -> bool {
        matches!(self, Phase::PreInstall | Phase::Install | Phase::PostInstall | Phase::PreFinalise | Phase::Finalise)
    }

    /// Where in the phase's run-parts order the phase's packages are installed, as DIB's
    /// `package-installs` element places its own script: the packages go in right after the
    /// scripts whose names sort before this one, so repository scripts numbered earlier apply.
    pub fn package_slot(self) -> Option<&'static str> {
        match self {
            Phase::PreInstall => Some("10-package-installs"),
            Phase::Install => Some("01-package-installs"),
            Phase::PostInstall => Some("00-package-installs"),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_both_spellings() {
        assert_eq!(Phase::parse("install"), Some(Phase::Install));
        assert_eq!(Phase::parse("post-install.d"), Some(Phase::PostInstall));
        assert_eq!(Phase::parse("environment"), None);
    }

    #[test]
    fn only_chroot_phases_run_inside() {
        assert!(Phase::Install.runs_inside());
        assert!(!Phase::Root.runs_inside());
        assert!(!Phase::Cleanup.runs_inside());
    }
}
