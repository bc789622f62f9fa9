//! Bad input against the real binary: every case must fail at once (before any work, well
//! within 2 s), with one error line naming the culprit, the documented exit status, nothing
//! written (no output, no cache, no temp file), and nothing on stdout.
//!
//! The case list is also README's "Bad input" table: `readme_table_lists_every_case` fails when
//! they differ; `UPDATE_README=1 cargo test --test bad_input` rewrites README's table.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a case may take at most: it must be refused before any work starts.
const LIMIT: Duration = Duration::from_secs(2);

const USAGE: i32 = 2;

struct Case {
    /// Environment variables set for this case (besides the hermetic base).
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    /// What the input is, for the README table.
    what: &'static str,
    code: i32,
    /// Text the error line must contain: the culprit and what is wrong with it.
    culprit: &'static str,
}

const fn case(args: &'static [&'static str], what: &'static str, code: i32, culprit: &'static str) -> Case {
    Case { env: &[], args, what, code, culprit }
}

const fn env_case(
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    what: &'static str,
    code: i32,
    culprit: &'static str,
) -> Case {
    Case { env, args, what, code, culprit }
}

/// Build cases use `--recipe debian-base`, which our root stage bootstraps: a case that slipped
/// through preflight would start mmdebstrap and blow the time limit.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Outputs.
    case(&["build", "--recipe", "debian-base", "-o", "adir"], "`-o` an existing directory", USAGE, "-o adir: is a directory"),
    case(&["build", "--recipe", "debian-base", "-o", "adir/"], "`-o` a path ending in `/`", USAGE, "-o adir/: is a directory"),
    case(&["build", "--recipe", "debian-base", "-o", "missing/x.qcow2"], "`-o` in a missing directory", USAGE, "-o missing/x.qcow2: directory missing does not exist"),
    case(&["build", "--recipe", "debian-base", "-o", "afile/x.qcow2"], "`-o` below a regular file", USAGE, "-o afile/x.qcow2: afile is not a directory"),
    case(&["build", "--recipe", "debian-base", "-t", "raw", "-o", "x.qcow2"], "extension of another format", USAGE, "-o x.qcow2: the extension says qcow2 but the format is raw"),
    case(&["build", "--recipe", "debian-base", "-t", "vmdk,vhd", "-o", "x.raw"], "extension of a format not asked for", USAGE, "-o x.raw: the extension says raw but the format is vmdk,vhd"),
    case(&["build", "--recipe", "debian-base", "-t", "qcow2,vhd", "-o", "x.qcow2"], "second format's file is a directory (`x.vhd/`)", USAGE, "the vhd output x.vhd is a directory"),
    case(&["build", "--recipe", "debian-base", "-t", "qcow3", "-o", "x.qcow2"], "unknown format", USAGE, "unknown image format `qcow3`"),
    case(&["build", "--recipe", "debian-base"], "no `-o` (and no `--dry-run`)", USAGE, "--output <PATH>"),
    case(&["build", "--recipe", "debian-base", "-o"], "`-o` without a value", USAGE, "'--output <PATH>'"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "adir"], "`--log-file` a directory", USAGE, "--log-file adir: is a directory"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "missing/b.log"], "`--log-file` in a missing directory", USAGE, "--log-file missing/b.log: directory missing does not exist"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--work-dir", "afile"], "`--work-dir` a regular file", USAGE, "--work-dir afile: is not a directory"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--cache-dir", "afile"], "`--cache-dir` a regular file", USAGE, "--cache-dir afile: is not a directory"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--json"], "`--json` without `--dry-run`", USAGE, "--dry-run"),
    // Sizes.
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "0"], "size 0 (a bare number is GB, as in DIB)", USAGE, "`0` GB is less than 1 MiB"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "0M"], "size 0M", USAGE, "--image-size 0M: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "18446744073709551615"], "size u64::MAX (GB)", USAGE, "`18446744073709551615` GB: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "18446744073709551615B"], "size u64::MAX bytes", USAGE, "--image-size 18446744073709551615B: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "0.01"], "size 0.01 GB", USAGE, "`0.01` GB: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "99999999999G"], "size overflowing 64 bits", USAGE, "`99999999999G` is too large"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "1K"], "size below 64M", USAGE, "--image-size 1K: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "17T"], "size above 16T", USAGE, "--image-size 17T: out of range"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "4Q"], "unknown unit", USAGE, "`4Q` has an unknown unit"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size", "big"], "no number", USAGE, "`big` is not a size"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-size=-1G"], "negative size", USAGE, "`-1G` is not a size"),
    case(&["build", "--recipe", "./recipes/zero-size.yaml", "-o", "x.qcow2"], "recipe with `image.size: 0`", USAGE, "recipe zero-size: image.size 0: out of range"),
    // qemu-img options, judged by qemu-img.
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--qemu-img-options", "bogus=1"], "unknown qemu-img option", USAGE, "--qemu-img-options bogus=1: qemu-img rejects them for qcow2: Invalid parameter 'bogus'"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--qemu-img-options", "compat=9.9"], "bad qcow2 compat level", USAGE, "--qemu-img-options compat=9.9: qemu-img rejects them for qcow2"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--qemu-img-options", "cluster_size=3"], "impossible cluster size", USAGE, "--qemu-img-options cluster_size=3: qemu-img rejects them for qcow2"),
    case(&["build", "--recipe", "debian-base", "-t", "vmdk", "-o", "x.vmdk", "--qemu-img-options", "compat=0.10"], "qcow2 option for vmdk", USAGE, "--qemu-img-options compat=0.10: qemu-img rejects them for vmdk"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mkfs-options", "-O no_such_feature"], "mkfs.ext4 option it does not know", USAGE, "--mkfs-options -O no_such_feature: mkfs.ext4 rejects them"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--image-extra-size", "lots"], "`--image-extra-size` not a size", USAGE, "`lots` is not a size"),
    // Target.
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--release", "nosuch"], "unknown release", USAGE, "--release/DIB_RELEASE nosuch: not a known debian release (known: buster, bullseye, bookworm"),
    env_case(&[("DIB_RELEASE", "nosuch")], &["build", "--recipe", "debian-base", "-o", "x.qcow2"], "unknown release in `DIB_RELEASE`", USAGE, "--release/DIB_RELEASE nosuch: not a known debian release"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--release", "trusty"], "another distro's release", USAGE, "--release/DIB_RELEASE trusty: not a known debian release"),
    case(&["build", "--recipe", "./recipes/bad-release.yaml", "-o", "x.qcow2"], "recipe with an unknown release", USAGE, "recipe bad-release: release bookwarm: not a known debian release"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--arch", "sparc"], "unknown architecture", USAGE, "--arch sparc: not a known architecture"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--base", "cloud-image"], "Ubuntu cloud image for Debian", USAGE, "--base cloud-image: cloud-image bases exist for ubuntu only"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--base", "docker"], "unknown base method", USAGE, "`docker` is not mmdebstrap, debootstrap or cloud-image"),
    // Recipes.
    case(&["build", "--recipe", "nosuch", "-o", "x.qcow2"], "unknown recipe", USAGE, "recipe `nosuch` not found"),
    case(&["build", "--recipe", "./recipes/bad-key.yaml", "-o", "x.qcow2"], "recipe with an unknown key", USAGE, "recipes/bad-key.yaml:6: image: unknown field `flavour`"),
    case(&["build", "--recipe", "./recipes/syntax.yaml", "-o", "x.qcow2"], "recipe that is not YAML", USAGE, "recipes/syntax.yaml:"),
    case(&["build", "--recipe", "./recipes/gentoo.yaml", "-o", "x.qcow2"], "recipe for an unsupported distro", USAGE, "recipes/gentoo.yaml: distro `gentoo` is not supported"),
    case(&["build", "--recipe", "./recipes/no-elements.yaml", "-o", "x.qcow2"], "recipe without elements", USAGE, "recipes/no-elements.yaml: `elements` is empty"),
    case(&["build", "--recipe", "debian-base", "--elements-path", "elems", "-o", "x.qcow2", "app"], "elements and `--recipe` together", USAGE, "cannot be used with"),
    // Elements and variables.
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "nosuch-element"], "unknown element", USAGE, "nosuch-element"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "needs-spaced"], "element directory named `my elem`", USAGE, "element `my elem`"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "vm"], "no operating-system element", USAGE, "operating-system"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "dup-a", "dup-b"], "two elements ship one script", USAGE, "install.d/50-same is shipped by both `dup-a` and `dup-b`"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-e", "1BAD=x"], "`-e` with a bad variable name", USAGE, "`1BAD` is not a valid variable name"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-e", "NOEQUALS"], "`-e` without `=`", USAGE, "`NOEQUALS` is not KEY=VALUE"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mesos-repo-key", "missing.asc"], "missing `--mesos-repo-key`", USAGE, "--mesos-repo-key missing.asc: no such file"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--break", "sometimes"], "unknown `--break`", USAGE, "sometimes"),
    // Upload: the file, the record, the credentials.
    case(&["upload", "missing.qcow2"], "missing image", USAGE, "missing.qcow2: no such file"),
    case(&["upload", "adir"], "a directory", USAGE, "adir: is a directory, not an image file"),
    case(&["upload", "empty.img"], "a 0-byte file", USAGE, "empty.img: is empty (0 bytes)"),
    case(&["upload", "text.txt"], "a text file", USAGE, "text.txt: is a text file, not a disk image"),
    case(&["upload", "junk.bin"], "binary data with no image header or partition table", USAGE, "junk.bin: has no image header, partition table or file system"),
    case(&["upload", "/dev/null"], "a device", USAGE, "/dev/null: is not a regular file"),
    case(&["upload", "tree.tar"], "a tarball of the tree (`build -t tar`)", USAGE, "tree.tar: is a tar archive of a tree (build -t tar/tgz/squashfs), not a disk image"),
    case(&["upload", "q.qcow2", "--disk-format", "raw"], "`--disk-format` contradicting the header", USAGE, "q.qcow2 is qcow2 (detected from its header) but --disk-format says raw"),
    case(&["upload", "q.qcow2", "--disk-format", "floppy"], "unknown disk format", USAGE, "--disk-format floppy: expected one of"),
    case(&["upload", "q.qcow2", "--container-format", "box"], "unknown container format", USAGE, "--container-format box: expected one of"),
    case(&["upload", "q.qcow2", "--property", "disk_format=iso"], "`--property disk_format=...`", USAGE, "--property disk_format=iso: `disk_format` is set with --disk-format"),
    case(&["upload", "q.qcow2", "--property", "id=1234"], "`--property id=...`", USAGE, "--property id=1234: `id` is a reserved Glance property"),
    case(&["upload", "q.qcow2", "--property", "os_hash_value=0"], "`--property os_hash_value=...`", USAGE, "`os_hash_value` is a reserved Glance property"),
    case(&["upload", "q.qcow2", "--property", "novalue"], "`--property` without `=`", USAGE, "--property novalue: expected KEY=VALUE"),
    case(&["upload", "q.qcow2", "--visibility", "everyone"], "unknown visibility", USAGE, "--visibility everyone: expected public, private, shared or community"),
    case(&["upload", "q.qcow2", "--timeout", "0"], "`--timeout 0`", USAGE, "--timeout 0: must be at least 1 second"),
    case(&["upload", "q.qcow2", "--name", " "], "blank `--name`", USAGE, "--name: is empty"),
    case(&["upload", "q.qcow2", "--os-cacert", "missing.pem"], "missing CA bundle", USAGE, "missing.pem: no such file"),
    case(&["upload", "q.qcow2"], "no credentials at all", USAGE, "no auth URL: set OS_AUTH_URL"),
    env_case(&[("OS_CLOUD", "nosuch")], &["upload", "q.qcow2"], "`OS_CLOUD` without a clouds.yaml", USAGE, "cloud `nosuch` was asked for but no clouds.yaml was found"),
    env_case(&[("OS_AUTH_URL", "http://127.0.0.1:9/v3"), ("OS_AUTH_TYPE", "kerberos")], &["upload", "q.qcow2"], "unsupported auth type", USAGE, "unsupported auth type `kerberos`"),
    // Test.
    case(&["test", "missing.qcow2"], "missing image", USAGE, "image missing.qcow2: no such file"),
    case(&["test", "adir"], "a directory", USAGE, "image adir: is a directory"),
    case(&["test", "empty.img"], "a 0-byte image", USAGE, "image empty.img: is empty"),
    case(&["test", "tree.tar"], "a tarball of the tree (`build -t tar`)", USAGE, "image tree.tar: is a tar archive of a tree"),
    case(&["test", "text.txt"], "a text file", USAGE, "image text.txt: is a text file"),
    case(&["test", "q.qcow2", "--timeout", "0"], "`--timeout 0`", USAGE, "--timeout 0: must be at least 1 second"),
    case(&["test", "q.qcow2", "--memory", "0"], "`--memory 0`", USAGE, "--memory 0: a guest needs at least 128 MiB"),
    case(&["test", "q.qcow2", "--cpus", "0"], "`--cpus 0`", USAGE, "--cpus 0: a guest needs at least 1 vCPU"),
    case(&["test", "q.qcow2", "--kernel", "missing-vmlinuz"], "missing `--kernel`", USAGE, "--kernel missing-vmlinuz: no such file"),
    case(&["test", "q.qcow2", "--kernel", "afile", "--initrd", "missing.img"], "missing `--initrd`", USAGE, "--initrd missing.img: no such file"),
    case(&["test", "q.qcow2", "--keep-serial-log", "missing/serial.log"], "`--keep-serial-log` in a missing directory", USAGE, "--keep-serial-log missing/serial.log: directory missing does not exist"),
    case(&["test", "q.qcow2", "--keep-serial-log", "adir"], "`--keep-serial-log` a directory", USAGE, "--keep-serial-log adir: is a directory"),
    case(&["test", "q.qcow2", "--recipe", "nosuch"], "unknown recipe", USAGE, "recipe `nosuch` not found"),
    case(&["test", "q.qcow2", "--accel", "warp"], "unknown accelerator", USAGE, "warp"),
    case(&["test", "q.qcow2"], "no `--recipe` and no manifest beside the image", USAGE, "q.qcow2: no recipe to take checks from"),
    case(&["test", "m.qcow2"], "a manifest beside the image that is not JSON", USAGE, "m.qcow2.manifest.json: not a mesos-image manifest"),
    case(&["test", "q.qcow2", "--recipe", "./recipes/no-checks.yaml"], "a recipe without checks", USAGE, "recipe `no-checks` (./recipes/no-checks.yaml): has no checks"),
    // Cache and the rest.
    case(&["cache", "--cache-dir", "typo", "list"], "`cache list` with a mistyped directory", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["cache", "--cache-dir", "typo", "prune", "--all"], "`cache prune` with a mistyped directory", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["cache", "--cache-dir", "afile", "list"], "`cache list` on a regular file", USAGE, "--cache-dir afile: is not a directory"),
    env_case(&[("MESOS_IMAGE_CACHE_DIR", "typo")], &["cache", "list"], "`MESOS_IMAGE_CACHE_DIR` mistyped", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["recipes", "show", "nosuch"], "unknown recipe", USAGE, "recipe `nosuch` not found"),
    case(&["elements", "show", "nosuch-element"], "unknown element", USAGE, "nosuch-element"),
    case(&["frobnicate"], "unknown subcommand", USAGE, "unrecognized subcommand 'frobnicate'"),
];

/// Destinations on a read-only mount (`ro/`, a read-only tmpfs): permission bits do not stop
/// root, so only a real read-only file system shows the check works for root too. Run by
/// `read_only_destinations_fail_at_once` (needs root to mount).
#[rustfmt::skip]
const READ_ONLY_CASES: &[Case] = &[
    case(&["build", "--recipe", "debian-base", "-o", "ro/x.qcow2"], "`-o` in a read-only directory", USAGE, "-o ro/x.qcow2: directory ro is not writable (Read-only file system)"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "ro/b.log"], "`--log-file` in a read-only directory", USAGE, "--log-file ro/b.log: directory ro is not writable (Read-only file system)"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--work-dir", "ro"], "`--work-dir` a read-only directory", USAGE, "--work-dir ro: is not writable (Read-only file system)"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--work-dir", "ro/work"], "`--work-dir` to be made in a read-only directory", USAGE, "--work-dir ro/work: directory ro is not writable (Read-only file system)"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--cache-dir", "ro"], "`--cache-dir` a read-only directory", USAGE, "--cache-dir ro: is not writable (Read-only file system)"),
    case(&["test", "q.qcow2", "--keep-serial-log", "ro/serial.log"], "`--keep-serial-log` in a read-only directory", USAGE, "--keep-serial-log ro/serial.log: directory ro is not writable (Read-only file system)"),
];

/// A scratch directory holding every file the cases name.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["adir", "x.vhd", "tmp", "home", "recipes", "elems", "ro"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("afile"), "x\n").unwrap();
        std::fs::write(root.join("empty.img"), "").unwrap();
        std::fs::write(root.join("text.txt"), "hello, I am not a disk\n").unwrap();
        let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("junk.bin"), junk).unwrap();
        let mut qcow2 = b"QFI\xfb\0\0\0\x03".to_vec();
        qcow2.resize(4096, 0);
        std::fs::write(root.join("q.qcow2"), &qcow2).unwrap();
        std::fs::write(root.join("m.qcow2"), qcow2).unwrap();
        std::fs::write(root.join("m.qcow2.manifest.json"), "{not json").unwrap();
        // A real tarball, as `build -t tar` writes one.
        let made =
            Command::new("tar").arg("-C").arg(root).args(["-cf", "tree.tar", "afile"]).current_dir(root).status();
        assert!(made.unwrap().success(), "tar");
        let head = "distro: debian\nrelease: bookworm\nelements: [debian-minimal, vm]\n";
        for (name, text) in [
            ("zero-size", format!("name: zero-size\n{head}image:\n  size: \"0\"\n")),
            (
                "bad-release",
                "name: bad-release\ndistro: debian\nrelease: bookwarm\nelements: [debian-minimal, vm]\n".into(),
            ),
            ("bad-key", format!("name: bad-key\n{head}image:\n  flavour: large\n")),
            ("syntax", "name: [unclosed\n".into()),
            ("gentoo", "name: gentoo\ndistro: gentoo\nrelease: x\nelements: [vm]\n".into()),
            ("no-elements", "name: no-elements\ndistro: debian\nrelease: bookworm\nelements: []\n".into()),
            ("no-checks", format!("name: no-checks\n{head}")),
        ] {
            std::fs::write(root.join(format!("recipes/{name}.yaml")), text).unwrap();
        }
        let elems = root.join("elems");
        std::fs::create_dir_all(elems.join("my elem")).unwrap();
        std::fs::create_dir_all(elems.join("needs-spaced")).unwrap();
        std::fs::write(elems.join("needs-spaced/element-deps"), "my elem\n").unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elements/build");
        for name in ["dup-a", "dup-b"] {
            copy_tree(&fixtures.join(name), &elems.join(name));
        }
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every path below the scratch dir, to see what a case left behind.
    fn listing(&self) -> BTreeSet<PathBuf> {
        walkdir::WalkDir::new(self.path())
            .into_iter()
            .filter_map(Result::ok)
            .map(|e| e.path().strip_prefix(self.path()).unwrap().to_owned())
            .collect()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Run the binary in `scratch` with a hermetic environment: no DIB_*, OS_* or ELEMENTS_PATH of
/// the host, HOME and TMPDIR inside the scratch dir, a cache dir that must never appear.
fn run(scratch: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let (output, elapsed) = common::run_hermetic(scratch.path(), env, args);
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    }
}

/// What is wrong with one case's outcome, if anything.
fn judge(case: &Case, outcome: &Outcome, before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<String> {
    let mut problems = Vec::new();
    if outcome.code != Some(case.code) {
        problems.push(format!("exit status {:?}, want {}", outcome.code, case.code));
    }
    if outcome.elapsed >= LIMIT {
        problems.push(format!("took {:.2}s (work started?)", outcome.elapsed.as_secs_f64()));
    }
    let lines: Vec<&str> = outcome.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    // clap adds its usage hint after the error line; our own errors are the only line.
    let from_clap = outcome.stderr.contains("For more information, try '--help'");
    if errors.len() != 1 || (!from_clap && lines.len() != 1) {
        problems.push(format!("want one error line, stderr has {} lines", lines.len()));
    }
    // clap may list the culprit on the lines after its error line.
    let named = if from_clap {
        outcome.stderr.contains(case.culprit)
    } else {
        errors.first().is_some_and(|line| line.contains(case.culprit))
    };
    if !named {
        problems.push(format!("error line does not contain `{}`", case.culprit));
    }
    if !outcome.stdout.is_empty() {
        problems.push("printed on stdout".to_owned());
    }
    let added: Vec<&PathBuf> = after.difference(before).collect();
    if !added.is_empty() {
        problems.push(format!("left behind: {added:?}"));
    }
    problems
}

fn describe(case: &Case) -> String {
    let env: Vec<String> = case.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| if a.contains(' ') || a.is_empty() { format!("'{a}'") } else { (*a).to_owned() })
        .collect();
    let mut command = env;
    command.push("mesos-image".to_owned());
    command.extend(args);
    command.join(" ")
}

/// Runs each case on `scratch` and judges it; returns the failures (described) and the slowest run.
fn run_cases(scratch: &Scratch, cases: &[Case]) -> (Vec<String>, Duration) {
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for case in cases {
        let before = scratch.listing();
        let outcome = run(scratch, case.env, case.args);
        let after = scratch.listing();
        slowest = slowest.max(outcome.elapsed);
        let problems = judge(case, &outcome, &before, &after);
        if !problems.is_empty() {
            failures.push(format!(
                "{}\n    {}\n    stderr: {}",
                describe(case),
                problems.join("; "),
                outcome.stderr.trim()
            ));
        }
    }
    (failures, slowest)
}

#[test]
fn every_bad_input_fails_at_once_with_one_line_naming_the_culprit() {
    assert!(CASES.len() >= 60, "issue #10 asks for at least 60 cases, have {}", CASES.len());
    let scratch = Scratch::new();
    let (failures, slowest) = run_cases(&scratch, CASES);
    eprintln!("{} cases, slowest {:.3}s", CASES.len(), slowest.as_secs_f64());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// The read-only cases, as root: `ro/` becomes a read-only tmpfs for the run.
#[test]
#[ignore = "needs root: mounts a read-only tmpfs"]
fn read_only_destinations_fail_at_once() {
    let scratch = Scratch::new();
    let ro = scratch.path().join("ro");
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&ro).status().unwrap();
    assert!(mounted.success(), "cannot mount a read-only tmpfs on {}", ro.display());
    let (failures, slowest) = run_cases(&scratch, READ_ONLY_CASES);
    let unmounted = Command::new("umount").arg(&ro).status().unwrap();
    assert!(unmounted.success());
    eprintln!("{} read-only cases, slowest {:.3}s", READ_ONLY_CASES.len(), slowest.as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        READ_ONLY_CASES.len(),
        failures.join("\n")
    );
}

/// No two cases alike: each adds a different input to the table.
#[test]
fn cases_are_distinct() {
    let mut seen = BTreeSet::new();
    for case in CASES.iter().chain(READ_ONLY_CASES) {
        assert!(seen.insert((case.env, case.args)), "duplicate case: {}", describe(case));
    }
}

const TABLE_START: &str = "<!-- bad-input table: generated from tests/bad_input.rs -->";
const TABLE_END: &str = "<!-- end of bad-input table -->";

fn table() -> String {
    let mut out =
        format!("{TABLE_START}\n| input | what it is | exit | the error line contains |\n|---|---|---|---|\n");
    for case in CASES.iter().chain(READ_ONLY_CASES) {
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` |\n",
            describe(case).replace('|', "\\|"),
            case.what,
            case.code,
            case.culprit.replace('|', "\\|").replace('`', "'")
        ));
    }
    out.push_str(TABLE_END);
    out
}

#[test]
fn readme_table_lists_every_case() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end) = match (readme.find(TABLE_START), readme.find(TABLE_END)) {
        (Some(start), Some(end)) => (start, end + TABLE_END.len()),
        _ => panic!("README.md lacks the bad-input table markers"),
    };
    let wanted = table();
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..start], wanted, &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == wanted,
        "README's bad-input table differs from tests/bad_input.rs: run UPDATE_README=1 cargo test --test bad_input"
    );
}

/// `--release ''` and an empty DIB_RELEASE mean unset (as in DIB): the recipe's release stays.
#[test]
fn an_empty_release_means_unset() {
    let scratch = Scratch::new();
    for (env, args) in [
        (&[][..], &["build", "--dry-run", "--json", "--recipe", "debian-base", "--release", ""][..]),
        (&[("DIB_RELEASE", "")][..], &["build", "--dry-run", "--json", "--recipe", "debian-base"][..]),
    ] {
        let outcome = run(&scratch, env, args);
        assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
        let plan: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
        assert_eq!(plan["release"], "bookworm");
        assert_eq!(plan["env"]["DIB_RELEASE"], "bookworm");
    }
}

/// `-t raw,qcow2 -o x.qcow2`: the extension names a requested format, so each format gets its
/// own file (no raw data under a .qcow2 name, no collision).
#[test]
fn an_extension_naming_one_of_several_formats_is_accepted() {
    let scratch = Scratch::new();
    let outcome =
        run(&scratch, &[], &["build", "--dry-run", "--recipe", "debian-base", "-t", "raw,qcow2", "-o", "x.qcow2"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(outcome.stdout.contains("formats raw,qcow2"), "{}", outcome.stdout);
}

/// A hook script dib-run-parts would skip is named in a warning (DIB skips it silently).
#[test]
fn skipped_scripts_are_named_in_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let element = scratch.path().join("elems/noisy/install.d");
    std::fs::create_dir_all(&element).unwrap();
    std::fs::write(element.join("10-forgot-chmod"), "#!/bin/sh\n").unwrap();
    std::fs::write(element.join("20-dotted.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(element.join("20-dotted.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(element.join("README.rst"), "data, not a script\n").unwrap();
    let outcome = run(
        &scratch,
        &[],
        &["build", "--dry-run", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "noisy"],
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    let warnings: Vec<&str> = outcome.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{}", outcome.stderr);
    assert!(warnings.iter().any(|w| w.contains("10-forgot-chmod") && w.contains("not executable")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("20-dotted.sh") && w.contains("name does not match")), "{warnings:?}");
}
