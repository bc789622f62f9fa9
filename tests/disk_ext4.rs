//! mke2fs on this host accepts each release's feature string and the result has exactly the
//! features the target can read. Runs mkfs on small files: fast, no root.

mod common;

use std::path::Path;
use std::process::Command;

use mesos_image::disk::ext4::{mkfs_command, offset_device, pin_ctimes, Ext4Generation, Ext4Spec};
use mesos_image::disk::layout::{Layout, MIB};
use mesos_image::recipe::Partitioning;
use mesos_image::reproducible::clamp::clamp_tree;
use uuid::Uuid;

fn features_after_mkfs(release: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "probe\n").unwrap();
    std::fs::hard_link(tree.join("etc/hostname"), tree.join("etc/hostname.link")).unwrap();
    let raw = dir.path().join("disk.raw");
    let layout = Layout::for_disk(Partitioning::Mbr, false, 64 * MIB).unwrap();
    std::fs::File::create(&raw).unwrap().set_len(layout.disk_bytes).unwrap();
    // Bytes before the partition must survive mkfs (the MBR and core.img live there).
    let spec = Ext4Spec {
        tree: &tree,
        label: "cloudimg-rootfs",
        uuid: Uuid::new_v4(),
        hash_seed: Uuid::new_v4(),
        epoch: 1_700_000_000,
        generation: Ext4Generation::for_release(release),
        extra_options: "",
    };
    let output = mkfs_command(&spec, &raw, &layout.root()).output().unwrap();
    assert!(output.status.success(), "{release}: {}", String::from_utf8_lossy(&output.stderr));
    let device = offset_device(&raw, &layout.root());
    let fsck = Command::new("e2fsck").args(["-fn", &device]).output().unwrap();
    assert!(fsck.status.success(), "{release}: {}", String::from_utf8_lossy(&fsck.stdout));
    let links = run(Command::new("debugfs").args(["-R", "stat /etc/hostname", &device]));
    assert!(links.contains("Links: 2"), "{release}: hard link not kept: {links}");
    let head = std::fs::read(&raw).unwrap();
    assert!(head[..MIB as usize].iter().all(|b| *b == 0), "{release}: mkfs wrote before the partition");
    let header = run(Command::new("dumpe2fs").args(["-h", &device]));
    header.lines().find(|l| l.starts_with("Filesystem features:")).unwrap().to_owned()
}

use common::run;

fn has(features: &str, name: &str) -> bool {
    features.split_whitespace().any(|f| f == name)
}

#[test]
fn trusty_filesystem_has_only_what_e2fsprogs_1_42_knows() {
    let features = features_after_mkfs("trusty");
    for absent in ["metadata_csum", "metadata_csum_seed", "64bit", "orphan_file"] {
        assert!(!has(&features, absent), "{absent} in {features}");
    }
    for present in ["has_journal", "extent", "flex_bg", "huge_file", "dir_nlink", "extra_isize"] {
        assert!(has(&features, present), "{present} missing from {features}");
    }
}

#[test]
fn focal_keeps_checksums_without_orphan_file() {
    let features = features_after_mkfs("focal");
    assert!(has(&features, "metadata_csum") && has(&features, "64bit"), "{features}");
    assert!(!has(&features, "orphan_file") && !has(&features, "metadata_csum_seed"), "{features}");
}

#[test]
fn bookworm_has_no_checksum_seed() {
    let features = features_after_mkfs("bookworm");
    assert!(has(&features, "metadata_csum"), "{features}");
    assert!(!has(&features, "metadata_csum_seed"), "{features}");
}

#[test]
fn offset_device_names_the_partition() {
    let layout = Layout::for_disk(Partitioning::Mbr, false, 64 * MIB).unwrap();
    assert_eq!(offset_device(Path::new("/d.raw"), &layout.root()), "/d.raw?offset=1048576");
}

/// The same tree written at two different moments (so every change time differs, as in two
/// builds) becomes the same filesystem bytes once times are clamped, mke2fs runs with the
/// seeded UUID and hash seed under E2FSPROGS_FAKE_TIME, and the change times are pinned.
/// Without the ctime pinning the two differ (checked too, so the test proves the step matters).
#[test]
fn same_tree_written_twice_gives_the_same_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::for_disk(Partitioning::Mbr, false, 64 * MIB).unwrap();
    let make = |name: &str, pin: bool| -> Vec<u8> {
        let tree = dir.path().join(name);
        // Written in a different order each time: the filesystem must not depend on it.
        let mut files: Vec<String> = (0..40).map(|i| format!("etc/dir{}/file{i}", i % 4)).collect();
        if name.ends_with('b') {
            files.reverse();
        }
        for file in &files {
            std::fs::create_dir_all(tree.join(file).parent().unwrap()).unwrap();
            std::fs::write(tree.join(file), file.as_bytes()).unwrap();
        }
        let paths = clamp_tree(&tree, 1_700_000_000).unwrap();
        let raw = dir.path().join(format!("{name}.raw"));
        std::fs::File::create(&raw).unwrap().set_len(layout.disk_bytes).unwrap();
        let spec = Ext4Spec {
            tree: &tree,
            label: "cloudimg-rootfs",
            uuid: Uuid::from_u128(0x1111_2222_4333_8444_5555_6666_7777_8888),
            hash_seed: Uuid::from_u128(0x9999_aaaa_4bbb_8ccc_dddd_eeee_ffff_0000),
            epoch: 1_700_000_000,
            generation: Ext4Generation::Modern,
            extra_options: "",
        };
        let output = mkfs_command(&spec, &raw, &layout.root()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        if pin {
            pin_ctimes(&raw, &layout.root(), &paths, 1_700_000_000).unwrap();
        }
        std::fs::read(&raw).unwrap()
    };
    let first = make("pinned-a", true);
    // A second apart, so the host's change times of the two trees certainly differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = make("pinned-b", true);
    assert!(first == second, "two filesystems of the same tree and pins differ");
    let unpinned = make("unpinned-b", false);
    assert!(first != unpinned, "change times did not matter: the pinning test proves nothing");
    let device = offset_device(&dir.path().join("pinned-a.raw"), &layout.root());
    let fsck = Command::new("e2fsck").args(["-fn", &device]).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}
