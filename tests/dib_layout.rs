//! disk-image-create as nodepool-builder and Zuul's build-diskimage role call it (DESIGN.md 9):
//! the files are exactly DIB's (`NAME.<fmt>`, `.md5` and `.sha256` as DIB's md5sum/sha256sum
//! write them, everything else in `NAME.d/`), nodepool's deletion leaves nothing, `-x` traces
//! every element script into the log, and `--logfile` is appended to with DIB's timestamps.
//! Real builds of the fault fixture's few-MiB tree (no mirror): the first runs every script,
//! the second resumes from its cached tree.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mesos_image::manifest::Manifest;

/// nodepool's image file name: `NAME-ID`.
const NAME: &str = "img-0000000001";

/// A script that does not check DIB_DEBUG_TRACE itself: `-x` must trace it all the same. In
/// cleanup.d, so every build that does not restore its outputs from the cache runs it.
const UNTRACED: &str = "#!/bin/bash\nset -eu\nuntraced_marker=\"level $DIB_DEBUG_TRACE\"\necho \"$untraced_marker\"\n";

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `2026-12-07 16:04:56.896 | ` on every line, as DIB's outfilter.py writes it.
fn assert_timestamped(what: &str, text: &str) {
    for line in text.lines() {
        let stamp = line.split_once(" | ").map(|(stamp, _)| stamp).unwrap_or_default();
        let shape: String = stamp.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
        assert_eq!(shape, "9999-99-99 99:99:99.999", "{what}: not timestamped as DIB does: {line:?}");
    }
}

struct World {
    dir: tempfile::TempDir,
    dib: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new().prefix("dib-layout-").tempdir_in("/var/tmp").unwrap();
        for sub in ["images", "logs", "cache", "elements/untraced/cleanup.d"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let script = dir.path().join("elements/untraced/cleanup.d/90-untraced");
        fs::write(&script, UNTRACED).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let dib = common::disk_image_create_in(dir.path());
        World { dir, dib }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// disk-image-create ARGS in the world's directory (outputs named relative to it).
    fn dib(&self, args: &[&str]) -> Output {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault-elements");
        let elements_path = format!("{}:{}", fixtures.display(), self.path("elements").display());
        let output = Command::new(&self.dib)
            .current_dir(self.dir.path())
            .args(args)
            .env("ELEMENTS_PATH", elements_path)
            .env("DIB_RELEASE", "bookworm")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("MESOS_IMAGE_CACHE_DIR", self.path("cache"))
            .env_remove("DIB_QUIET")
            .env_remove("DIB_NO_TIMESTAMP")
            .env_remove("DIB_DEBUG_TRACE")
            .output()
            .unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert!(output.status.success(), "{args:?}:\n{}\n{}", text(&output.stdout), text(&output.stderr));
        output
    }

    /// What `md5sum`/`sha256sum FILE` print run where the build ran, as DIB runs them.
    fn coreutils(&self, tool: &str, file: &str) -> String {
        common::run(Command::new(tool).arg(file).current_dir(self.dir.path()))
    }
}

#[test]
#[ignore = "needs root: real builds in the build's namespaces (the fault fixture, no mirror)"]
fn nodepools_and_zuuls_command_lines_get_dibs_files_and_log() {
    let _clock = common::TestClock::start();
    let world = World::new();
    let output = format!("images/{NAME}");
    let elements = ["fault-os", "manifests", "untraced"];

    // nodepool-builder's command line: the log is our stdout, traced.
    let mut nodepool = vec!["-x", "-t", "qcow2,raw", "--checksum", "--no-tmpfs", "--qemu-img-options", "compat=0.10"];
    nodepool.extend(["-n", "-o", &output]);
    nodepool.extend(elements);
    let built = world.dib(&nodepool);
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert_timestamped("stdout", &stdout);
    assert!(stdout.contains(" | + untraced_marker='level 1'"), "-x did not trace the script:\n{stdout}");
    assert!(stdout.contains(" | level 1\n"), "DIB_DEBUG_TRACE is not 1 with one -x:\n{stdout}");
    // fault-hooks' script (no DIB_DEBUG_TRACE check either) in every phase: chrooted ones too.
    for phase in ["root", "extra-data", "install", "post-install", "finalise", "cleanup"] {
        assert!(stdout.contains(&format!(" | + phase={phase}.d\n")), "{phase}.d not traced:\n{stdout}");
    }
    assert!(stdout.contains(&format!(" | wrote {NAME}.qcow2 (")), "{stdout}");

    // Exactly DIB's files beside the images, everything else in NAME.d/.
    let images = world.path("images");
    let suffixes = ["d", "qcow2", "qcow2.md5", "qcow2.sha256", "raw", "raw.md5", "raw.sha256"];
    assert_eq!(names(&images), suffixes.map(|s| format!("{NAME}.{s}")));
    let own = images.join(format!("{NAME}.d"));
    let sidecars =
        ["dib-manifests".to_owned(), format!("{NAME}.qcow2.manifest.json"), format!("{NAME}.qcow2.spdx.json")];
    assert_eq!(names(&own), sidecars);
    assert!(names(&own.join("dib-manifests")).contains(&"dib_arguments".to_owned()));
    // The raw disk is published sparse, as DIB's `mv` of its sparse file leaves it: its unwritten
    // space takes no room (488 MB raw of a few-MiB tree, measured fully allocated before).
    let raw = fs::metadata(images.join(format!("{NAME}.raw"))).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&raw) * 512;
    assert!(allocated * 4 < raw.len(), "raw image {} bytes, {allocated} allocated: not sparse", raw.len());
    // Byte for byte what `md5sum images/NAME.fmt > images/NAME.fmt.md5` writes under DIB.
    for format in ["qcow2", "raw"] {
        let image = format!("{output}.{format}");
        for (tool, suffix) in [("md5sum", "md5"), ("sha256sum", "sha256")] {
            let written = fs::read_to_string(world.path(&format!("{image}.{suffix}"))).unwrap();
            assert_eq!(written, world.coreutils(tool, &image), "{image}.{suffix}");
        }
        // `upload` and `test` find the manifest in NAME.d/ for either image.
        let located = Manifest::find(&world.path(&image)).unwrap().expect("the manifest in NAME.d/");
        assert_eq!(located.path, own.join(format!("{NAME}.qcow2.manifest.json")));
        let sha = fs::read_to_string(world.path(&format!("{image}.sha256"))).unwrap();
        assert!(located.manifest.outputs.iter().any(|o| sha.starts_with(&o.sha256)), "{sha}");
    }

    // Zuul's build-diskimage line: --logfile is appended to (a retried job adds to it), every
    // line timestamped; stdout only says where the log goes. Without -x, nothing is traced.
    fs::write(world.path("logs/zuul.log"), "earlier attempt\n").unwrap();
    let mut zuul = vec!["-o", "images/zuul", "-t", "qcow2,raw", "--logfile", "logs/zuul.log", "-n"];
    zuul.extend(elements);
    let again = world.dib(&zuul);
    assert_eq!(String::from_utf8_lossy(&again.stdout), "Output logs going to: logs/zuul.log\n");
    let log = fs::read_to_string(world.path("logs/zuul.log")).unwrap();
    let (first, rest) = log.split_once('\n').unwrap();
    assert_eq!(first, "earlier attempt");
    assert_timestamped("--logfile", rest);
    assert!(rest.contains(" | level 0\n") && !rest.contains("+ untraced_marker"), "{rest}");
    assert!(rest.contains(" | wrote zuul.qcow2 ("), "{rest}");
    // `diff` reads both builds' manifests from their NAME.d/.
    let diff = common::run(
        Command::new(common::binary())
            .args(["diff", &format!("{output}.qcow2"), "images/zuul.qcow2"])
            .current_dir(world.dir.path()),
    );
    assert!(!diff.trim().is_empty());

    // nodepool deletes a build as NAME.<fmt>, .md5, .sha256 and NAME.d/: nothing of it is left.
    for format in ["qcow2", "raw"] {
        for suffix in ["", ".md5", ".sha256"] {
            fs::remove_file(images.join(format!("{NAME}.{format}{suffix}"))).unwrap();
        }
    }
    fs::remove_dir_all(&own).unwrap();
    assert_eq!(names(&images), ["zuul.d", "zuul.qcow2", "zuul.raw"]);
}
