//! disk-image-create's tree image types: `-t tar,tgz,squashfs` of our debian-base recipe (DIB's
//! functional tests build `-t tar`). The archives list the tree with numeric owners and times
//! clamped to the build's SOURCE_DATE_EPOCH, and no disk is made.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use mesos_image::manifest::Manifest;

/// Paths every Debian tree has, as the archives name them (relative, no leading `./`).
const EXPECTED: &[&str] = &["etc/os-release", "usr/bin/dpkg", "var/lib/dpkg/status", "etc/passwd"];

/// `tar -tv --numeric-owner --full-time` of `file`: (path, owner, mtime as "YYYY-MM-DD HH:MM:SS").
fn tar_listing(file: &Path) -> Vec<(String, String, String)> {
    let text = common::run(
        Command::new("tar")
            .args(["--numeric-owner", "--full-time", "--utc", "--quoting-style=literal", "-tvf"])
            .arg(file),
    );
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // mode owner size date time name [-> target]
            let name = fields[5].trim_start_matches("./").trim_end_matches('/').to_owned();
            (name, fields[1].to_owned(), format!("{} {}", fields[3], fields[4]))
        })
        .collect()
}

#[test]
#[ignore = "needs root and the Debian mirror: builds debian-base as tar, tgz and squashfs"]
fn debian_base_as_tar_tgz_and_squashfs_lists_the_tree_with_numeric_owners_and_clamped_times() {
    let out = tempfile::Builder::new().prefix("dib-tree-formats-").tempdir_in("/var/tmp").unwrap();
    let first = out.path().join("deb.tar");
    let first_arg = first.display().to_string();
    common::mesos_image(&[
        "--quiet",
        "build",
        "--recipe",
        "debian-base",
        "-t",
        "tar,tgz,squashfs",
        "--checksum",
        "-o",
        &first_arg,
    ]);
    let mut files: Vec<String> =
        std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "deb.squash",
            "deb.squash.sha256",
            "deb.tar",
            "deb.tar.manifest.json",
            "deb.tar.sha256",
            "deb.tar.spdx.json",
            "deb.tgz",
            "deb.tgz.sha256"
        ]
    );
    let manifest = Manifest::read_beside(&first).unwrap().expect("manifest beside the tar");
    let formats: Vec<&str> = manifest.outputs.iter().map(|o| o.format.as_str()).collect();
    assert_eq!(formats, ["tar", "tgz", "squashfs"]);
    assert!(manifest.root_uuid.is_empty(), "a tree-only build has no root filesystem: {}", manifest.root_uuid);
    let stages: Vec<&str> = manifest.run.stages.iter().map(|s| s.stage.as_str()).collect();
    // A rerun restores every file from the outputs cache; a build makes the tree formats, no disk.
    let built = stages.contains(&"tree outputs") && !stages.contains(&"disk");
    assert!(built || stages == ["outputs"], "no disk is made: {stages:?}");
    let epoch = manifest.reproducible.as_ref().expect("reproducibility record").source_date_epoch.seconds;
    let clamp = chrono_utc(epoch);

    let tar = tar_listing(&first);
    let names: BTreeSet<&str> = tar.iter().map(|(name, _, _)| name.as_str()).collect();
    for path in EXPECTED {
        assert!(names.contains(path), "{path} not in the tar ({} entries)", tar.len());
    }
    assert!(!names.iter().any(|n| n.starts_with("proc/") || n.starts_with("sys/")), "proc/sys in the tar");
    for (name, owner, time) in &tar {
        assert!(owner.split('/').all(|id| id.chars().all(|c| c.is_ascii_digit())), "{name}: owner {owner}");
        assert!(time.as_str() <= clamp.as_str(), "{name}: mtime {time} after SOURCE_DATE_EPOCH {clamp}");
    }
    let dpkg = tar.iter().find(|(name, _, _)| name == "usr/bin/dpkg").unwrap();
    assert_eq!(dpkg.1, "0/0");
    assert_eq!(tar_listing(&out.path().join("deb.tgz")), tar, "the tgz holds the tar's entries");

    let squash =
        common::run(Command::new("unsquashfs").args(["-n", "-lln", "-UTC"]).arg(out.path().join("deb.squash")));
    let squashed: BTreeSet<String> = squash
        .lines()
        // Device lines have one more column (major, minor): the path is the word that starts it.
        .filter_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix("squashfs-root/")))
        .map(str::to_owned)
        .collect();
    for path in EXPECTED {
        assert!(squashed.contains(*path), "{path} not in the squashfs");
    }
    let outside: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty() && !squashed.contains(*n)).collect();
    assert!(outside.is_empty(), "in the tar, not in the squashfs: {:?}", &outside[..outside.len().min(5)]);
    let minute = &clamp[..16];
    assert!(
        squash.lines().filter(|l| l.contains("squashfs-root")).all(|l| l.contains(minute)),
        "squashfs times are not all {minute}"
    );

    // The same inputs again: restored from the stage cache, byte for byte.
    let again = out.path().join("again.tar");
    common::mesos_image(&[
        "--quiet",
        "build",
        "--recipe",
        "debian-base",
        "-t",
        "tar,tgz,squashfs",
        "-o",
        &again.display().to_string(),
    ]);
    let second = Manifest::read_beside(&again).unwrap().unwrap();
    let digests = |m: &Manifest| m.outputs.iter().map(|o| o.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&second), digests(&manifest));
}

/// `epoch` as "YYYY-MM-DD HH:MM:SS" in UTC, as tar --utc --full-time prints it.
fn chrono_utc(epoch: i64) -> String {
    common::run(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d %H:%M:%S"])).trim().to_owned()
}

#[test]
#[ignore = "needs root and the Debian mirror: builds debian-base as raw with --image-extra-size and --mkfs-options"]
fn image_extra_size_and_mkfs_options_shape_the_root_filesystem() {
    let out = tempfile::Builder::new().prefix("dib-mkfs-options-").tempdir_in("/var/tmp").unwrap();
    let image = out.path().join("deb.raw");
    let image_arg = image.display().to_string();
    let build = |extra: &[&str]| {
        let mut args = vec!["--quiet", "build", "--recipe", "debian-base", "-t", "raw", "-o", &image_arg];
        args.extend_from_slice(extra);
        common::mesos_image(&args);
        let manifest = Manifest::read_beside(&image).unwrap().unwrap();
        (std::fs::metadata(&image).unwrap().len(), manifest)
    };
    let (plain, _) = build(&[]);
    let (bigger, manifest) = build(&["--image-extra-size", "2", "--mkfs-options", "-N 250000 -m 0"]);
    // The extra size replaces the headroom (about a fifth of the tree plus 256 MiB): 2 GB more
    // than the tree is more than the default.
    assert!(bigger > plain + (1 << 30), "{plain} bytes without, {bigger} with --image-extra-size 2");
    assert!(!manifest.root_uuid.is_empty());
    // The root partition's superblock, read through the partition table.
    let table = common::run(Command::new("sfdisk").args(["--json"]).arg(&image));
    let json: serde_json::Value = serde_json::from_str(&table).unwrap();
    // The root partition is the largest (a GPT layout also has a BIOS boot partition).
    let partitions = json["partitiontable"]["partitions"].as_array().unwrap();
    let root = partitions.iter().max_by_key(|p| p["size"].as_u64().unwrap()).unwrap();
    let start = root["start"].as_u64().unwrap() * 512;
    let superblock = common::run(
        Command::new("dumpe2fs").arg("-h").arg(format!("{}?offset={start}", image.display())).env("LC_ALL", "C"),
    );
    let field = |name: &str| {
        superblock.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
    };
    let inodes: u64 = field("Inode count:").parse().unwrap();
    assert!((250_000..260_000).contains(&inodes), "-N 250000 gave {inodes} inodes");
    assert_eq!(field("Reserved block count:"), "0", "-m 0");
}
