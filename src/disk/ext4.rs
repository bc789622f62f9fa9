//! The root filesystem: `mkfs.ext4 -d TREE` written straight into the root partition's byte range
//! of the disk file, with the feature set the TARGET's kernel, GRUB and e2fsck can handle (the
//! host's mke2fs defaults may be newer than all three).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::layout::Partition;
use uuid::Uuid;

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
    pub uuid: Uuid,
    /// Seeds the directory-index hash (mke2fs draws it at random otherwise).
    pub hash_seed: Uuid,
    /// The time mke2fs writes into the superblock, journal and new inodes.
    pub epoch: i64,
    pub generation: Ext4Generation,
    /// `--mkfs-options` (empty: none).
    pub extra_options: &'a str,
}

/// `--mkfs-options`, split: mke2fs keeps only the last `-E`, and ours places the filesystem in
/// its partition (`offset=`), so the user's extended options are appended to ours instead.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserOptions {
    /// The values of `-E X` / `-EX`, each a comma list.
    pub extended: Vec<String>,
    /// Every other word, in order.
    pub other: Vec<String>,
}

impl UserOptions {
    pub fn parse(text: &str) -> UserOptions {
        let mut options = UserOptions::default();
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            match word.strip_prefix("-E") {
                Some("") => options.extended.extend(words.next().map(str::to_owned)),
                Some(value) => options.extended.push(value.to_owned()),
                None => options.other.push(word.to_owned()),
            }
        }
        options
    }

    /// An extended option the disk stage must own: where the filesystem starts.
    pub fn forbidden(&self) -> Option<&str> {
        self.extended.iter().flat_map(|list| list.split(',')).find(|option| option.starts_with("offset"))
    }
}

/// The mke2fs command that fills `partition` of `disk` with the tree.
pub fn mkfs_command(spec: &Ext4Spec<'_>, disk: &Path, partition: &Partition) -> Command {
    let user = UserOptions::parse(spec.extra_options);
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
        .args([
            "-E",
            &format!(
                "offset={},hash_seed={},nodiscard,lazy_itable_init=1,lazy_journal_init=1{}",
                partition.offset_bytes(),
                spec.hash_seed,
                user.extended.iter().map(|e| format!(",{e}")).collect::<String>()
            ),
        ])
        // e2fsprogs' own switch for reproducible output: every "now" it writes is this time.
        .env("E2FSPROGS_FAKE_TIME", spec.epoch.to_string())
        // The user's `--mkfs-options` come after ours: mke2fs takes the last of a repeated option.
        .args(&user.other)
        .arg("-d")
        .arg(spec.tree)
        .arg(disk)
        .arg(format!("{}k", partition.size_bytes() / 1024));
    command
}

/// Rewrite the change time of every copied inode (`paths` relative to the filesystem root) to
/// `epoch`, through debugfs on the partition inside `disk`.
pub fn pin_ctimes(disk: &Path, partition: &Partition, paths: &[PathBuf], epoch: i64) -> anyhow::Result<()> {
    let commands = ctime_commands(paths, epoch).map_err(|reason| anyhow::anyhow!("tree: {reason}"))?;
    let mut child = pin_ctimes_command(disk, partition, epoch)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run debugfs")?;
    let mut stdin = child.stdin.take().context("debugfs has no stdin")?;
    // Written from a thread so a debugfs that fills its stderr pipe cannot deadlock us.
    let writer = std::thread::spawn(move || stdin.write_all(commands.as_bytes()));
    let output = child.wait_with_output().context("cannot wait for debugfs")?;
    writer.join().map_err(|_| anyhow::anyhow!("debugfs input writer panicked"))?.context("cannot feed debugfs")?;
    // debugfs exits 0 whatever its commands did; its errors are the stderr lines past the banner.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| !line.starts_with("debugfs ")).collect();
    if !output.status.success() || !errors.is_empty() {
        anyhow::bail!("debugfs could not set change times: {}", errors.first().unwrap_or(&"failed"));
    }
    Ok(())
}

/// `mkfs.ext4 -d` copies each file's change time from the host, where it is the moment the
/// build wrote the file and cannot be set. This debugfs command (fed [`ctime_commands`] on
/// stdin) rewrites them all to the epoch ([`pin_ctimes`]).
fn pin_ctimes_command(disk: &Path, partition: &Partition, epoch: i64) -> Command {
    let mut command = Command::new("debugfs");
    command.args(["-w", "-f", "-"]).arg(offset_device(disk, partition));
    command.env("E2FSPROGS_FAKE_TIME", epoch.to_string());
    command
}

/// One `set_inode_field` per path (relative to the filesystem root; empty is the root).
/// Fails on a name debugfs' parser cannot quote (a newline).
pub fn ctime_commands(paths: &[PathBuf], epoch: i64) -> Result<String, String> {
    let mut commands = String::new();
    for path in paths {
        let text = path.to_str().ok_or_else(|| format!("{}: name is not UTF-8", path.display()))?;
        if text.contains('\n') {
            return Err(format!("/{text}: a newline in a file name cannot be passed to debugfs"));
        }
        // debugfs' parser reads a doubled quote inside quotes as a literal one.
        let quoted = format!("/{text}").replace('"', "\"\"");
        commands.push_str(&format!("sif \"{quoted}\" ctime @{epoch}\n"));
    }
    Ok(commands)
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
            uuid: Uuid::from_u128(1),
            hash_seed: Uuid::from_u128(2),
            epoch: 1_700_000_000,
            generation: Ext4Generation::Modern,
            extra_options: " -m 0  -E stride=4 -N 4096 -Estripe_width=8",
        };
        let root = Partition { number: 1, role: Role::Root, first_lba: 2048, sectors: 4096 };
        let command = mkfs_command(&spec, Path::new("/d.raw"), &root);
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-E offset=1048576,hash_seed=00000000-0000-0000-0000-000000000002,"), "{joined}");
        assert!(joined.contains(",lazy_journal_init=1,stride=4,stripe_width=8 "), "{joined}");
        assert_eq!(args.iter().filter(|a| *a == "-E").count(), 1, "{joined}");
        let fake_time = command.get_envs().find(|(k, _)| *k == "E2FSPROGS_FAKE_TIME").and_then(|(_, v)| v);
        assert_eq!(fake_time, Some(std::ffi::OsStr::new("1700000000")));
        assert!(joined.contains("-L cloudimg-rootfs"), "{joined}");
        assert!(joined.contains("-U 00000000-0000-0000-0000-000000000001"), "{joined}");
        assert!(joined.ends_with("-m 0 -N 4096 -d /t /d.raw 2048k"), "{joined}");
        assert_eq!(UserOptions::parse("-E offset=0").forbidden(), Some("offset=0"));
        assert_eq!(UserOptions::parse("-Eoffset=0 -m 1").forbidden(), Some("offset=0"));
        assert_eq!(UserOptions::parse("-E stride=2 -m 1").forbidden(), None);
    }

    #[test]
    fn ctime_commands_quote_every_path() {
        let paths = ["", "etc", "a \"b\" c"].map(PathBuf::from);
        let commands = ctime_commands(&paths, 5).unwrap();
        assert_eq!(commands, "sif \"/\" ctime @5\nsif \"/etc\" ctime @5\nsif \"/a \"\"b\"\" c\" ctime @5\n");
        assert!(ctime_commands(&[PathBuf::from("x\ny")], 5).is_err());
    }
}
