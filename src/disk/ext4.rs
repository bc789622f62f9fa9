//! The root filesystem: `mkfs.ext4 -d TREE` written straight into the root partition's byte range
//! of the disk file, with the feature set the TARGET's kernel, GRUB and e2fsck can handle (the
//! host's mke2fs defaults may be newer than all three).

use std::path::Path;
use std::process::Command;

use super::layout::Partition;
use super::uuid::Guid;

/// How old the target's ext4 tooling is, which decides the features we may enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext4Generation {
    /// e2fsprogs 1.42 (Ubuntu precise/trusty/xenial, Debian wheezy/jessie): its e2fsck rejects
    /// `metadata_csum`, and its mke2fs never made `64bit` filesystems; GRUB 2.02~beta2 and kernels
    /// 3.x-4.4 are happiest with what those releases made themselves.
    E2fsprogs142,
    /// e2fsprogs 1.43-1.46 (stretch..bullseye, bionic..jammy): `metadata_csum` and `64bit` are
    /// fine, but `orphan_file` (1.47, kernel 5.15) is unknown to their e2fsck.
    E2fsprogs143To146,
    /// e2fsprogs 1.47 and later (bookworm, noble and newer, and any release we do not know).
    Modern,
}

impl Ext4Generation {
    pub fn for_release(release: &str) -> Ext4Generation {
        match release {
            "precise" | "trusty" | "xenial" | "wheezy" | "jessie" => Ext4Generation::E2fsprogs142,
            "stretch" | "buster" | "bullseye" | "bionic" | "focal" | "jammy" => Ext4Generation::E2fsprogs143To146,
            _ => Ext4Generation::Modern,
        }
    }

    /// The `-O` argument for mke2fs. `metadata_csum_seed` is off everywhere: it is an incompat
    /// feature GRUB only reads since 2.12, and GRUB must read /boot.
    pub fn feature_flags(self) -> &'static str {
        match self {
            Ext4Generation::E2fsprogs142 => "^metadata_csum,^metadata_csum_seed,^64bit,^orphan_file",
            Ext4Generation::E2fsprogs143To146 => "^metadata_csum_seed,^orphan_file",
            Ext4Generation::Modern => "^metadata_csum_seed",
        }
    }
}

/// What goes into the root filesystem.
pub struct Ext4Spec<'a> {
    pub tree: &'a Path,
    pub label: &'a str,
    pub uuid: Guid,
    pub generation: Ext4Generation,
}

/// The mke2fs command that fills `partition` of `disk` with the tree.
pub fn mkfs_command(spec: &Ext4Spec<'_>, disk: &Path, partition: &Partition) -> Command {
    let mut command = Command::new("mkfs.ext4");
    command
        .arg("-F")
        .arg("-q")
        .args(["-t", "ext4", "-b", "4096"])
        .args(["-L", spec.label])
        .args(["-U", &spec.uuid.to_string()])
        .args(["-O", spec.generation.feature_flags()])
        // The disk file is fresh and sparse, so nothing needs discarding or zeroing: lazy init
        // is both safe and fast here.
        .args(["-E", &format!("offset={},nodiscard,lazy_itable_init=1,lazy_journal_init=1", partition.offset_bytes())])
        .arg("-d")
        .arg(spec.tree)
        .arg(disk)
        .arg(format!("{}k", partition.size_bytes() / 1024));
    command
}

/// Device spec that e2fsprogs tools (dumpe2fs, debugfs, e2fsck) accept for a filesystem at a
/// byte offset inside a file.
pub fn offset_device(disk: &Path, partition: &Partition) -> String {
    format!("{}?offset={}", disk.display(), partition.offset_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::Role;

    #[test]
    fn trusty_gets_the_features_of_its_own_mke2fs() {
        let flags = Ext4Generation::for_release("trusty").feature_flags();
        for feature in ["^metadata_csum", "^64bit", "^orphan_file", "^metadata_csum_seed"] {
            assert!(flags.split(',').any(|f| f == feature), "{feature} missing from {flags}");
        }
    }

    #[test]
    fn middle_releases_keep_checksums_but_drop_orphan_file() {
        for release in ["bionic", "focal", "jammy", "buster", "bullseye"] {
            assert_eq!(Ext4Generation::for_release(release).feature_flags(), "^metadata_csum_seed,^orphan_file");
        }
    }

    #[test]
    fn modern_and_unknown_releases_only_drop_the_seed() {
        for release in ["bookworm", "noble", "trixie", "some-future-release"] {
            assert_eq!(Ext4Generation::for_release(release), Ext4Generation::Modern);
        }
        assert_eq!(Ext4Generation::Modern.feature_flags(), "^metadata_csum_seed");
    }

    #[test]
    fn command_targets_the_partition_byte_range() {
        let spec = Ext4Spec {
            tree: Path::new("/t"),
            label: "cloudimg-rootfs",
            uuid: Guid::from_u128(1),
            generation: Ext4Generation::Modern,
        };
        let root = Partition { number: 1, role: Role::Root, first_lba: 2048, sectors: 4096 };
        let command = mkfs_command(&spec, Path::new("/d.raw"), &root);
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-E offset=1048576,"), "{joined}");
        assert!(joined.contains("-L cloudimg-rootfs"), "{joined}");
        assert!(joined.contains("-U 00000000-0000-0000-0000-000000000001"), "{joined}");
        assert!(joined.ends_with("-d /t /d.raw 2048k"), "{joined}");
    }
}
