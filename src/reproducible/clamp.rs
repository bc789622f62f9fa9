//! File times in the tree, clamped to `SOURCE_DATE_EPOCH` before the filesystem is made: what
//! packages shipped keeps its (older) time, what the build wrote gets the epoch, and the access
//! time equals the modification time so reading the tree changes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Clamp every entry below `tree` (and `tree` itself) and return their paths relative to
/// `tree`, parents before children (the root as the empty path).
pub fn clamp_tree(tree: &Path, epoch: i64) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    // Sorted so the returned list (and anything derived from it) is the same in every build.
    let walk = walkdir::WalkDir::new(tree).follow_links(false).same_file_system(true).sort_by_file_name();
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        let metadata = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let time = TimeSpec::new(metadata.mtime().min(epoch), 0);
        utimensat(nix::fcntl::AT_FDCWD, entry.path(), &time, &time, UtimensatFlags::NoFollowSymlink)
            .with_context(|| format!("cannot set the times of {}", entry.path().display()))?;
        paths.push(entry.path().strip_prefix(tree).unwrap_or(Path::new("")).to_owned());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn newer_times_are_clamped_older_ones_kept_symlinks_themselves() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/new"), "written by the build").unwrap();
        fs::write(root.join("old"), "shipped by a package").unwrap();
        let old = TimeSpec::new(1_000, 0);
        utimensat(nix::fcntl::AT_FDCWD, &root.join("old"), &old, &old, UtimensatFlags::NoFollowSymlink).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.join("link")).unwrap();

        let paths = clamp_tree(root, 1_700_000_000).unwrap();

        let times = |p: &str| {
            let m = fs::symlink_metadata(root.join(p)).unwrap();
            (m.mtime(), m.atime())
        };
        assert_eq!(times("etc/new"), (1_700_000_000, 1_700_000_000));
        assert_eq!(times("etc"), (1_700_000_000, 1_700_000_000));
        assert_eq!(times("old"), (1_000, 1_000));
        assert_eq!(times("link"), (1_700_000_000, 1_700_000_000));
        let names: Vec<_> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["", "etc", "etc/new", "link", "old"]);
    }
}
