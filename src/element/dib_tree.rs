//! diskimage-builder's own tree on `ELEMENTS_PATH`. Its disk-layer and OS elements run inside
//! disk-image-create's loop-mounted image (`block-device` YAML, `root.d` bootstraps against the
//! mounted disk, DIB's own package scripts); mesos-image writes the disk as a file and bootstraps
//! the tree in its base stage. So when one of these names would come from DIB's tree it is
//! replaced by rule: by our element of the same name, by one of our stages, or refused where
//! nothing of ours does its job. The rest of DIB's elements run unchanged.

use std::path::{Path, PathBuf};

/// What takes a DIB element's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// mesos-image's element of the same name (from our `elements/`).
    Ours,
    /// No element: the named stage does the job.
    Stage(&'static str),
    /// Nothing of ours does it: planning fails naming the element.
    Refused,
}

/// The replacement table: DIB element, rule, why.
const DIB_LAYERS: &[(&str, Rule, &str)] = &[
    ("vm", Rule::Ours, "the disk stage writes the bootable disk as a file, without loop devices"),
    ("bootloader", Rule::Stage("the disk stage (GRUB)"), "GRUB is installed by the disk stage, not in finalise.d"),
    ("block-device-mbr", Rule::Stage("the disk stage (MBR)"), "the disk stage writes an MBR table itself"),
    ("block-device-gpt", Rule::Stage("the disk stage (GPT)"), "the disk stage writes a GPT table itself"),
    ("block-device-efi", Rule::Stage("the disk stage (GPT with an ESP)"), "the disk stage writes GPT and the ESP itself"),
    ("block-device-efi-4k", Rule::Refused, "4096-byte-sector disks are not written by the disk stage"),
    ("block-device-efi-lvm", Rule::Refused, "LVM layouts are not written by the disk stage"),
    ("debian-minimal", Rule::Ours, "the base stage bootstraps the tree; DIB's root.d runs debootstrap against its loop-mounted image"),
    ("ubuntu", Rule::Ours, "the base stage unpacks the cloud image; DIB's root.d needs its own image cache and mounts"),
    ("ubuntu-minimal", Rule::Ours, "the base stage bootstraps the tree; DIB's root.d runs debootstrap against its loop-mounted image"),
    ("debootstrap", Rule::Stage("the base stage (mmdebstrap, or --base debootstrap)"), "the base stage bootstraps the tree"),
    ("dpkg", Rule::Ours, "the base stage configures apt and dpkg; DIB's root.d expects its own bootstrap"),
    (
        "package-installs",
        Rule::Ours,
        "mesos-image's package step installs every package-installs.yaml; DIB's scripts would install them a second time",
    ),
];

/// The name DIB's `block-device-*` elements provide and its `vm` depends on.
pub const BLOCK_DEVICE: &str = "block-device";

/// One DIB element replaced by rule (printed by `--dry-run`, logged by `build`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Substitution {
    pub name: String,
    /// DIB's element directory that was not used.
    pub dib_path: PathBuf,
    /// What runs instead: our element's directory, or a stage.
    pub by: String,
    pub why: &'static str,
}

impl Substitution {
    /// The one line `build` logs.
    pub fn note(&self) -> String {
        format!(
            "element {}: diskimage-builder's {} is replaced by {}: {}",
            self.name,
            self.dib_path.display(),
            self.by,
            self.why
        )
    }
}

/// What happens to one element found in DIB's tree.
pub enum Replacement {
    /// Load our element from this directory instead.
    Ours(PathBuf, &'static str),
    /// Drop it: the stage named does its job.
    Stage(&'static str, &'static str),
    Refused(String),
}

/// Whether a search-path entry is diskimage-builder's `elements/` (its `lib/disk-image-create`
/// sits beside it, in the sdist and in an installed package alike).
pub fn is_dib_tree(entry: &Path) -> bool {
    entry.file_name().is_some_and(|name| name == "elements")
        && entry.parent().is_some_and(|parent| parent.join("lib/disk-image-create").is_file())
}

/// The rule for `name` from DIB's tree; `None` when it runs unchanged. `ours` is our elements
/// directory when it is on the search path.
pub fn replacement(name: &str, ours: Option<&Path>) -> Option<Replacement> {
    let (_, rule, why) = DIB_LAYERS.iter().find(|(n, _, _)| *n == name)?;
    Some(match rule {
        Rule::Ours => match ours.map(|dir| dir.join(name)).filter(|dir| dir.is_dir()) {
            Some(dir) => Replacement::Ours(dir, why),
            None => Replacement::Refused(format!("{why}, and mesos-image's own `{name}` is not on the search path")),
        },
        Rule::Stage(stage) => Replacement::Stage(stage, why),
        Rule::Refused => Replacement::Refused((*why).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dib_tree_is_recognised_by_disk_image_create_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let elements = dir.path().join("elements");
        std::fs::create_dir_all(&elements).unwrap();
        assert!(!is_dib_tree(&elements));
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/disk-image-create"), "").unwrap();
        assert!(is_dib_tree(&elements));
        assert!(!is_dib_tree(dir.path()));
    }

    #[test]
    fn every_rule_has_a_reason_and_unlisted_elements_run_unchanged() {
        let ours = tempfile::tempdir().unwrap();
        std::fs::create_dir(ours.path().join("vm")).unwrap();
        assert!(matches!(replacement("vm", Some(ours.path())), Some(Replacement::Ours(_, _))));
        // Without our element of that name there is nothing to run instead.
        assert!(
            matches!(replacement("dpkg", Some(ours.path())), Some(Replacement::Refused(why)) if why.contains("`dpkg`"))
        );
        assert!(matches!(replacement("bootloader", None), Some(Replacement::Stage(_, _))));
        assert!(matches!(replacement("block-device-efi-lvm", None), Some(Replacement::Refused(_))));
        assert!(replacement("growroot", None).is_none());
        assert!(DIB_LAYERS.iter().all(|(_, _, why)| !why.is_empty()));
    }
}
