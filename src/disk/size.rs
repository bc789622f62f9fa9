//! How big the root filesystem must be: measured from the tree, or given by `--image-size`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::layout::MIB;

const BLOCK: u64 = 4096;
/// Bytes of filesystem per inode in the host's mke2fs.conf (`inode_ratio = 16384`).
const BYTES_PER_INODE: u64 = 16384;
/// Journal, group descriptors, reserved GDT blocks and bitmaps of a few-GiB ext4.
const METADATA_BYTES: u64 = 160 * MIB;
/// Headroom on top of the tree: 20% + 256 MiB, so first boot has room before growpart runs.
const HEADROOM_PERCENT: u64 = 20;
const HEADROOM_BYTES: u64 = 256 * MIB;

/// What the tree holds, as mke2fs will lay it out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Data blocks of files, directories and long symlinks, hard links counted once.
    pub data_bytes: u64,
    pub inodes: u64,
}

/// Walk `tree` without following symlinks or crossing into other filesystems.
pub fn measure_tree(tree: &Path) -> Result<TreeUsage, walkdir::Error> {
    let mut usage = TreeUsage::default();
    let mut seen_links = HashSet::new();
    for entry in walkdir::WalkDir::new(tree).same_file_system(true).follow_links(false) {
        let metadata = entry?.metadata()?;
        if metadata.nlink() > 1 && !metadata.is_dir() && !seen_links.insert((metadata.dev(), metadata.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.data_bytes += data_bytes(&metadata);
    }
    Ok(usage)
}

fn data_bytes(metadata: &std::fs::Metadata) -> u64 {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        metadata.len().max(BLOCK).div_ceil(BLOCK) * BLOCK
    } else if file_type.is_file() {
        // Sparse files stay sparse through mke2fs -d, so allocated blocks are what counts;
        // filesystems that store small files inline report none, so trust the length there.
        let allocated = match metadata.blocks() {
            0 => metadata.len(),
            blocks => (blocks * 512).min(metadata.len()),
        };
        allocated.div_ceil(BLOCK) * BLOCK
    } else if file_type.is_symlink() && metadata.len() >= 60 {
        // Shorter targets live inside the inode ("fast symlinks").
        BLOCK
    } else {
        0
    }
}

/// The smallest filesystem that holds `usage` at all: data, inode tables sized by the inode
/// ratio, and fixed metadata. Anything smaller makes mke2fs fail half-way.
pub fn minimum_fs_bytes(usage: TreeUsage) -> u64 {
    let by_data = usage.data_bytes + METADATA_BYTES;
    // The inode count follows the size, so the size must give enough inodes.
    let by_inodes = usage.inodes * BYTES_PER_INODE;
    round_up_mib(by_data.max(by_inodes))
}

/// The filesystem size we choose when none is given: the minimum plus headroom.
pub fn default_fs_bytes(usage: TreeUsage) -> u64 {
    let minimum = minimum_fs_bytes(usage);
    round_up_mib(minimum + minimum * HEADROOM_PERCENT / 100 + HEADROOM_BYTES)
}

fn round_up_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB) * MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_twenty_percent_plus_256_mib() {
        let usage = TreeUsage { data_bytes: 1000 * MIB - METADATA_BYTES, inodes: 1000 };
        assert_eq!(minimum_fs_bytes(usage), 1000 * MIB);
        assert_eq!(default_fs_bytes(usage), (1000 + 200 + 256) * MIB);
    }

    #[test]
    fn many_small_files_need_room_for_inodes() {
        let usage = TreeUsage { data_bytes: 0, inodes: 100_000 };
        assert!(minimum_fs_bytes(usage) >= 100_000 * BYTES_PER_INODE);
    }

    #[test]
    fn sizes_are_whole_mib() {
        let usage = TreeUsage { data_bytes: 12345, inodes: 7 };
        assert_eq!(default_fs_bytes(usage) % MIB, 0);
    }

    #[test]
    fn measure_counts_hard_links_once_and_rounds_to_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 5000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("c"), b"x").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("short-link")).unwrap();
        let usage = measure_tree(dir.path()).unwrap();
        // Root dir, a (=b), c, short-link.
        assert_eq!(usage.inodes, 4);
        // Directory block + 2 blocks for a + 1 block for c; the fast symlink takes none.
        assert_eq!(usage.data_bytes, 4 * BLOCK);
    }
}
