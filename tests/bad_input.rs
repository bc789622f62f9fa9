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
use std::time::{Duration, Instant};

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
    case(&["build", "--recipe", "./recipes/zero-size.yaml", "-o", "x.qcow2"], "recipe with `image.size: 0M`", USAGE, "recipe zero-size: image.size 0M: out of range"),
    case(&["build", "--recipe", "./recipes/zero-gb.yaml", "-o", "x.qcow2"], "recipe with `image.size: 0` (a bare number is GB, as the flag's)", USAGE, "zero-gb.yaml:6: image: size: `0` GB is less than 1 MiB"),
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
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "url-number")], &["upload", "q.qcow2"], "clouds.yaml `auth_url: 5`", USAGE, "bad-clouds.yaml: cloud `url-number`: auth.auth_url: expected text, found a number"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "auth-text")], &["upload", "q.qcow2"], "clouds.yaml `auth: x` (not a mapping)", USAGE, "bad-clouds.yaml: cloud `auth-text`: auth: expected a mapping of auth settings, found text"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "regions-map")], &["upload", "q.qcow2"], "clouds.yaml `regions: {a: 1}`", USAGE, "bad-clouds.yaml: cloud `regions-map`: regions: expected a list of regions, found a mapping"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "region-item")], &["upload", "q.qcow2"], "clouds.yaml `regions: [[a]]`", USAGE, "bad-clouds.yaml: cloud `region-item`: regions: expected region names or {name: ...} mappings, found a list"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "verify-maybe")], &["upload", "q.qcow2"], "clouds.yaml `verify: maybe`", USAGE, "bad-clouds.yaml: cloud `verify-maybe`: verify: expected true or false, found text"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "interface-list")], &["upload", "q.qcow2"], "clouds.yaml `interface: [x]`", USAGE, "bad-clouds.yaml: cloud `interface-list`: interface: expected public, internal or admin, found a list"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "interface-sideways")], &["upload", "q.qcow2"], "clouds.yaml `interface: sideways`, before authenticating", USAGE, "bad-clouds.yaml: cloud `interface-sideways`: interface: `sideways`: expected public, internal or admin"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "entry-text")], &["upload", "q.qcow2"], "clouds.yaml cloud that is not a mapping", USAGE, "bad-clouds.yaml: cloud `entry-text`: expected a mapping of settings, found text"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLOUD", "cacert-list")], &["upload", "q.qcow2"], "clouds.yaml `cacert: [a, b]`", USAGE, "bad-clouds.yaml: cloud `cacert-list`: cacert: expected text, found a list"),
    env_case(&[("OS_CLIENT_CONFIG_FILE", "bad-clouds.yaml"), ("OS_CLIENT_SECURE_FILE", "bad-secure.yaml"), ("OS_CLOUD", "good")], &["upload", "q.qcow2"], "secure.yaml `password: [...]` (the secure file is named, the value is not printed)", USAGE, "bad-secure.yaml: cloud `good`: auth.password: expected text or a number, found a list"),
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
    case(&["test", "q.qcow2", "--recipe", "debian-base", "--arch", "mips"], "`--arch` no guest machine exists for", USAGE, "--arch mips: no guest machine for architecture `mips`"),
    case(&["test", "arm.qcow2", "--accel", "kvm"], "`--accel kvm` for an arm64 image on an amd64 host", USAGE, "--accel kvm: KVM runs only guests of the host's architecture (x86_64)"),
    case(&["test", "q.qcow2", "--recipe", "./recipes/no-checks.yaml"], "a recipe without checks", USAGE, "recipe `no-checks` (./recipes/no-checks.yaml): has no checks"),
    // Cache and the rest.
    case(&["cache", "--cache-dir", "typo", "list"], "`cache list` with a mistyped directory", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["cache", "--cache-dir", "typo", "prune", "--all"], "`cache prune` with a mistyped directory", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["cache", "--cache-dir", "afile", "list"], "`cache list` on a regular file", USAGE, "--cache-dir afile: is not a directory"),
    env_case(&[("MESOS_IMAGE_CACHE_DIR", "typo")], &["cache", "list"], "`MESOS_IMAGE_CACHE_DIR` mistyped", USAGE, "--cache-dir typo: no such cache directory"),
    case(&["recipes", "show", "nosuch"], "unknown recipe", USAGE, "recipe `nosuch` not found"),
    case(&["elements", "show", "nosuch-element"], "unknown element", USAGE, "nosuch-element"),
    case(&["frobnicate"], "unknown subcommand", USAGE, "unrecognized subcommand 'frobnicate'"),
    // Outputs are only ever regular files the tool creates (#19): FIFOs, sockets, inputs, each other.
    case(&["build", "--recipe", "debian-base", "-o", "fifo"], "`-o` a FIFO", USAGE, "-o fifo: is a FIFO, not a regular file"),
    case(&["build", "--recipe", "debian-base", "-o", "fifo-link.qcow2"], "`-o` a symlink to a FIFO", USAGE, "-o fifo-link.qcow2: is a FIFO"),
    case(&["build", "--recipe", "debian-base", "-o", "sock.qcow2"], "`-o` a socket", USAGE, "-o sock.qcow2: is a socket"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "fifo"], "`--log-file` a FIFO", USAGE, "--log-file fifo: is a FIFO"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--tree-listing", "fifo"], "`--tree-listing` a FIFO", USAGE, "--tree-listing fifo: is a FIFO"),
    case(&["build", "--recipe", "debian-base", "-o", "c.qcow2", "--checksum"], "the `--checksum` file beside `-o` a FIFO", USAGE, "-o c.qcow2: its checksum file c.qcow2.sha256: is a FIFO"),
    case(&["build", "--recipe", "debian-base", "-o", "m2.qcow2"], "the manifest beside `-o` a FIFO", USAGE, "-o m2.qcow2: its manifest m2.qcow2.manifest.json: is a FIFO"),
    case(&["build", "--recipe", "debian-base", "-o", "s.qcow2"], "the SBOM beside `-o` a directory", USAGE, "-o s.qcow2: its SBOM s.qcow2.spdx.json: is a directory"),
    case(&["build", "--recipe", "debian-base", "-t", "qcow2,raw", "-o", "f2.qcow2"], "the second format's file a FIFO", USAGE, "the raw output f2.raw: is a FIFO"),
    case(&["build", "--recipe", "./recipes/ok.yaml", "-o", "recipes/ok.yaml"], "`-o` the recipe being built", USAGE, "-o recipes/ok.yaml: is the recipe"),
    case(&["build", "--recipe", "./recipes/ok.yaml", "-o", "x.qcow2", "--log-file", "recipes/ok.yaml"], "`--log-file` the recipe being built", USAGE, "--log-file recipes/ok.yaml: is the recipe"),
    case(&["build", "--recipe", "debian-base", "-o", "key.asc", "--mesos-repo-key", "key.asc"], "`-o` the `--mesos-repo-key` file", USAGE, "-o key.asc: is --mesos-repo-key"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "key.asc", "--mesos-repo-key", "key.asc"], "`--log-file` the `--mesos-repo-key` file", USAGE, "--log-file key.asc: is --mesos-repo-key"),
    case(&["build", "--elements-path", "elems", "-o", "elems/app/x.qcow2", "debian-minimal", "app"], "`-o` inside an element of the build", USAGE, "lies inside element `app`"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "--log-file", "elems/app/b.log", "debian-minimal", "app"], "`--log-file` inside an element of the build", USAGE, "--log-file elems/app/b.log: lies inside element `app`"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "x.qcow2"], "`--log-file` the image", USAGE, "--log-file x.qcow2: is also written as -o x.qcow2"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "x.qcow2.manifest.json"], "`--log-file` the manifest", USAGE, "--log-file x.qcow2.manifest.json: is also written as -o x.qcow2: its manifest"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--checksum", "--log-file", "x.qcow2.sha256"], "`--log-file` the checksum file", USAGE, "--log-file x.qcow2.sha256: is also written as -o x.qcow2: its checksum file"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--tree-listing", "x.qcow2"], "`--tree-listing` the image", USAGE, "--tree-listing x.qcow2: is also written as -o x.qcow2"),
    // Secrets by name and value, whatever the value looks like, echoed by environment.d (#19).
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_REPO_PASSWD=hunter2-s3cret", "debian-minimal", "echoer"], "environment.d echoing a `*_PASSWD` from `-e`", USAGE, "10-echo: leaked: ***"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "FTP_PASS=hunter2-s3cret", "debian-minimal", "echoer"], "environment.d echoing a `*_PASS`", USAGE, "10-echo: leaked: ***"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_PASSWORD=/hunter2-s3cret", "debian-minimal", "echoer"], "environment.d echoing a password that starts with `/`", USAGE, "10-echo: leaked: ***"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "MY_SECRET=/hunter2-s3cret/x", "debian-minimal", "echoer"], "environment.d echoing a `*SECRET*` path-like value", USAGE, "10-echo: leaked: ***"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "OS_TOKEN=hunter2-s3cret", "debian-minimal", "echoer"], "environment.d echoing a `*TOKEN*`", USAGE, "10-echo: leaked: ***"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "API_KEY=hunter2-s3cret", "debian-minimal", "echoer"], "environment.d echoing a `*KEY*`", USAGE, "10-echo: leaked: ***"),
    env_case(&[("DIB_REPO_PASSWD", "/hunter2-s3cret")], &["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "echoer"], "environment.d echoing a secret of the caller's environment", USAGE, "10-echo: leaked:"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mirror", "ftp://user:hunter2-s3cret@mirror.invalid/debian"], "a bad `--mirror` with a password in it", USAGE, "--mirror ftp://user:***@mirror.invalid/debian: apt cannot fetch `ftp://` URLs"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-e", "DIB_REPO_PASSWORD=/hunter2-s3cret", "--image-size", "big"], "a slash-first secret beside a bad option", USAGE, "`big` is not a size"),
    // Element code on the host has a time limit and dies with the tool (#19).
    env_case(&[("MESOS_IMAGE_ENVIRONMENT_D_TIMEOUT", "0.5")], &["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "looper"], "environment.d that loops", USAGE, "10-loop: still running after 0.5 s, killed"),
    env_case(&[("MESOS_IMAGE_ENVIRONMENT_D_TIMEOUT", "0.5")], &["build", "--dry-run", "--elements-path", "elems", "debian-minimal", "looper"], "environment.d that loops, under `--dry-run`", USAGE, "10-loop: still running after 0.5 s, killed"),
    env_case(&[("MESOS_IMAGE_ENVIRONMENT_D_TIMEOUT", "0.5")], &["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "bg-looper"], "environment.d that loops with a child in the background", USAGE, "10-bg-loop: still running after 0.5 s, killed"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "bg-fail"], "environment.d that fails leaving a child in the background", USAGE, "10-bg-fail: exited with"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "debian-minimal", "reader"], "environment.d that reads the terminal", USAGE, "10-read: "),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_BLOCK_DEVICE_CONFIG=file:///dev/zero", "debian-minimal", "vm"], "`DIB_BLOCK_DEVICE_CONFIG` `file:///dev/zero`", USAGE, "DIB_BLOCK_DEVICE_CONFIG: cannot read file:///dev/zero: is not a regular file"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_BLOCK_DEVICE_CONFIG=file://fifo", "debian-minimal", "vm"], "`DIB_BLOCK_DEVICE_CONFIG` a FIFO", USAGE, "cannot read file://fifo: is not a regular file"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_BLOCK_DEVICE_CONFIG=file://adir", "debian-minimal", "vm"], "`DIB_BLOCK_DEVICE_CONFIG` a directory", USAGE, "cannot read file://adir: is a directory"),
    case(&["build", "--elements-path", "elems", "-o", "x.qcow2", "-e", "DIB_BLOCK_DEVICE_CONFIG=file://big.yaml", "debian-minimal", "vm"], "`DIB_BLOCK_DEVICE_CONFIG` a 2 MiB file", USAGE, "cannot read file://big.yaml: is larger than 1048576 bytes"),
    // `test` refuses what cannot boot, before starting a guest (#19).
    case(&["test", "zeros.img"], "a file of zeros", USAGE, "image zeros.img: the file starts with zeros: no partition table"),
    case(&["test", "elf.bin"], "an ELF binary", USAGE, "image elf.bin: is an ELF binary, not a disk image"),
    case(&["test", "junk.bin"], "binary data without a partition table", USAGE, "image junk.bin: the file has no partition table"),
    case(&["test", "cut.qcow2"], "a truncated qcow2", USAGE, "image cut.qcow2: truncated qcow2"),
    case(&["test", "cut-header.qcow2"], "a qcow2 cut inside its header", USAGE, "image cut-header.qcow2: truncated qcow2"),
    case(&["test", "blank.qcow2"], "a qcow2 of an empty disk", USAGE, "image blank.qcow2: its disk starts with zeros"),
    case(&["test", "backed.qcow2"], "a qcow2 backed by a host file (`/etc/hostname`)", USAGE, "image backed.qcow2: its backing file /etc/hostname lies outside the image's directory"),
    case(&["test", "dotdot.qcow2"], "a qcow2 backed by `../` a file", USAGE, "its backing file ../afile lies outside the image's directory"),
    case(&["test", "zero-disk.qcow2"], "a qcow2 of a 0-byte disk", USAGE, "image zero-disk.qcow2: qcow2 of a 0-byte disk"),
    case(&["test", "fifo"], "a FIFO", USAGE, "image fifo: is not a regular file"),
    case(&["test", "q.qcow2", "--keep-serial-log", "q.qcow2"], "`--keep-serial-log` the image under test", USAGE, "--keep-serial-log q.qcow2: is the image q.qcow2 of this run"),
    case(&["test", "q.qcow2", "--keep-serial-log", "fifo"], "`--keep-serial-log` a FIFO", USAGE, "--keep-serial-log fifo: is a FIFO"),
    // Arguments are bytes-safe: non-UTF-8 (`\xff` is the byte 0xff) refused or handled, never a panic (#19).
    case(&["build", "--recipe", "\\xff", "-o", "x.qcow2"], "a non-UTF-8 recipe name", USAGE, "invalid UTF-8"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-e", "A=\\xff"], "a non-UTF-8 `-e` value", USAGE, "invalid UTF-8"),
    case(&["build", "--recipe", "debian-base", "-o", "\\xff/x.qcow2"], "`-o` in a non-UTF-8 missing directory", USAGE, "directory \u{FFFD} does not exist"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "\\xff/b.log"], "`--log-file` in a non-UTF-8 missing directory", USAGE, "directory \u{FFFD} does not exist"),
    case(&["test", "\\xff.qcow2"], "`test` of a non-UTF-8 missing file", USAGE, "no such file"),
    case(&["upload", "\\xff.qcow2"], "`upload` of a non-UTF-8 missing file", USAGE, "no such file"),
    case(&["cache", "--cache-dir", "\\xff", "list"], "a non-UTF-8 `--cache-dir`", USAGE, "no such cache directory"),
    case(&["\\xff"], "a non-UTF-8 subcommand", USAGE, "error:"),
    // Cache pruning refuses what it cannot represent (#19).
    case(&["cache", "--cache-dir", "adir", "prune", "--older-than", "213503982334602"], "`--older-than` days beyond 64-bit seconds", USAGE, "213503982334602 is not in 0..=213503982334601"),
    case(&["cache", "--cache-dir", "adir", "prune", "--older-than=-1"], "negative `--older-than`", USAGE, "--older-than <DAYS>"),
    case(&["cache", "--cache-dir", "adir", "prune", "--older-than", "99999999999999999999999"], "`--older-than` beyond 64 bits", USAGE, "--older-than <DAYS>"),
    // Late or unclear before (#19): now refused first, naming the culprit.
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--packages=-oops"], "a package name starting with `-`", USAGE, "-p -oops: starts with `-`: apt would read it as an option"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--packages=vim,--allow-unauthenticated"], "an apt option among the packages", USAGE, "-p --allow-unauthenticated: starts with `-`"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-p", "Vim"], "a package name apt cannot have", USAGE, "-p Vim: not a Debian package name"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--check-reproducible", "--dry-run"], "`--check-reproducible --dry-run`", USAGE, "--check-reproducible: builds twice, --dry-run builds nothing"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "-e", "DIB_BLOCK_DEVICE_CONFIG=file://bd.yaml"], "`DIB_BLOCK_DEVICE_CONFIG` in recipe mode", USAGE, "DIB_BLOCK_DEVICE_CONFIG: is read in element mode"),
    case(&["build", "--recipe", "./recipes/deep.yaml", "-o", "x.qcow2"], "a recipe nested 100 000 deep", USAGE, "recipes/deep.yaml:2: nested deeper than 64 levels"),
    case(&["build", "--recipe", "./recipes/dup.yaml", "-o", "x.qcow2"], "a recipe with a key twice", USAGE, "recipes/dup.yaml:5: duplicate key `elements`"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mirror", "notaurl"], "`--mirror` not a URL", USAGE, "--mirror notaurl: not a URL"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mirror", "http:///debian"], "`--mirror` without a host", USAGE, "--mirror http:///debian: the URL names no host"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mirror", "file://relative"], "`--mirror` a relative `file://`", USAGE, "--mirror file://relative: a file:// mirror needs an absolute path"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mesos-repo-key", "adir"], "`--mesos-repo-key` a directory", USAGE, "--mesos-repo-key adir: is a directory, not a key file"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--mesos-repo-key", "fifo"], "`--mesos-repo-key` a FIFO", USAGE, "--mesos-repo-key fifo: is not a regular file"),
    case(&["upload", "q.qcow2", "--os-interface", "sideways"], "unknown `--os-interface`, before authenticating", USAGE, "--os-interface/OS_INTERFACE sideways: expected public, internal or admin"),
    env_case(&[("OS_INTERFACE", "sideways"), ("OS_AUTH_URL", "http://127.0.0.1:9/v3")], &["upload", "q.qcow2"], "unknown `OS_INTERFACE`, before authenticating", USAGE, "--os-interface/OS_INTERFACE sideways"),
];

/// Device nodes and links into the kernel trees, made by the test in its scratch dir (mknod
/// needs root; as another user `/dev` is not writable and an earlier check answers). Run by
/// `device_nodes_and_kernel_trees_are_refused` as root.
#[rustfmt::skip]
const ROOT_CASES: &[Case] = &[
    case(&["build", "--recipe", "debian-base", "-o", "fulldev"], "`-o` a character device (`/dev/full`'s numbers)", USAGE, "-o fulldev: is a character device, not a regular file"),
    case(&["build", "--recipe", "debian-base", "-o", "nulldev"], "`-o` a character device (`/dev/null`'s numbers)", USAGE, "-o nulldev: is a character device"),
    case(&["build", "--recipe", "debian-base", "-o", "blkdev"], "`-o` a block device (`loop0`'s numbers)", USAGE, "-o blkdev: is a block device"),
    case(&["build", "--recipe", "debian-base", "-o", "full-link.qcow2"], "`-o` a symlink to a character device", USAGE, "-o full-link.qcow2: is a character device"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "fulldev"], "`--log-file` a character device (`/dev/full`'s numbers)", USAGE, "--log-file fulldev: is a character device"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--checksum", "--log-file", "nulldev"], "`--log-file` a character device with `--checksum`", USAGE, "--log-file nulldev: is a character device"),
    case(&["build", "--recipe", "debian-base", "-o", "devlink/x.qcow2"], "`-o` through a symlink to `/dev`", USAGE, "-o devlink/x.qcow2: resolves into /dev"),
    case(&["build", "--recipe", "debian-base", "-o", "proclink/x.qcow2"], "`-o` through a symlink to `/proc`", USAGE, "proclink/x.qcow2"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--log-file", "devlink/b.log"], "`--log-file` through a symlink to `/dev`", USAGE, "--log-file devlink/b.log: resolves into /dev"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--work-dir", "devlink/work"], "`--work-dir` through a symlink to `/dev`", USAGE, "--work-dir devlink/work: resolves into /dev"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--cache-dir", "devlink"], "`--cache-dir` a symlink to `/dev`", USAGE, "--cache-dir devlink: resolves into /dev"),
    case(&["build", "--recipe", "debian-base", "-o", "x.qcow2", "--cache-dir", "syslink/kernel"], "`--cache-dir` through a symlink to `/sys`", USAGE, "--cache-dir syslink/kernel"),
    case(&["cache", "--cache-dir", "devlink", "list"], "`cache list` on a symlink to `/dev`", USAGE, "--cache-dir devlink: resolves into /dev"),
    case(&["cache", "--cache-dir", "devlink", "prune", "--all"], "`cache prune` on a symlink to `/dev`", USAGE, "--cache-dir devlink: resolves into /dev"),
    case(&["test", "fulldev"], "`test` of a character device", USAGE, "image fulldev: is not a regular file"),
    case(&["test", "q.qcow2", "--keep-serial-log", "devlink/serial.log"], "`--keep-serial-log` through a symlink to `/dev`", USAGE, "--keep-serial-log devlink/serial.log: resolves into /dev"),
    case(&["upload", "blkdev"], "`upload` of a block device", USAGE, "blkdev: is not a regular file"),
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
        make_images(root);
        std::fs::write(root.join("m.qcow2.manifest.json"), "{not json").unwrap();
        std::fs::copy(root.join("q.qcow2"), root.join("arm.qcow2")).unwrap();
        let arm64 = r#"{"tool_version": "0", "recipe": "debian-base", "distro": "debian", "release": "bookworm",
            "arch": "arm64", "elements": [], "packages": [], "outputs": [], "cache_key": "k",
            "checks": ["cloud-init-done"]}"#;
        std::fs::write(root.join("arm.qcow2.manifest.json"), arm64).unwrap();
        // A real tarball, as `build -t tar` writes one.
        let made =
            Command::new("tar").arg("-C").arg(root).args(["-cf", "tree.tar", "afile"]).current_dir(root).status();
        assert!(made.unwrap().success(), "tar");
        let head = "distro: debian\nrelease: bookworm\nelements: [debian-minimal, vm]\n";
        for (name, text) in [
            ("zero-size", format!("name: zero-size\n{head}image:\n  size: \"0M\"\n")),
            ("zero-gb", format!("name: zero-gb\n{head}image:\n  size: 0\n")),
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
        for (name, text) in [
            ("ok", format!("name: ok\n{head}")),
            ("deep", format!("name: deep\nelements: {}\n", "[".repeat(100_000))),
            ("dup", format!("name: dup\n{head}elements: [vm]\n")),
        ] {
            std::fs::write(root.join(format!("recipes/{name}.yaml")), text).unwrap();
        }
        std::fs::write(root.join("bad-clouds.yaml"), BAD_CLOUDS).unwrap();
        std::fs::write(
            root.join("bad-secure.yaml"),
            format!("clouds:\n  good:\n    auth:\n      password: [{SECRET}]\n"),
        )
        .unwrap();
        make_special_files(root);
        let elems = root.join("elems");
        make_hostile_elements(&elems);
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

/// Images for `test` and `upload`: a bootable-looking qcow2 (`q`, `m`: a disk with a boot
/// signature), and the ones `test` must refuse at once.
fn make_images(root: &Path) {
    let qemu_img = |args: &[&str]| {
        let status = Command::new("qemu-img").args(args).current_dir(root).status().unwrap();
        assert!(status.success(), "qemu-img {args:?}");
    };
    let mut disk = vec![0u8; 1 << 20];
    disk[510..512].copy_from_slice(&[0x55, 0xaa]);
    std::fs::write(root.join("disk.raw"), &disk).unwrap();
    qemu_img(&["convert", "-q", "-O", "qcow2", "disk.raw", "q.qcow2"]);
    std::fs::copy(root.join("q.qcow2"), root.join("m.qcow2")).unwrap();
    std::fs::remove_file(root.join("disk.raw")).unwrap();
    let q = std::fs::read(root.join("q.qcow2")).unwrap();
    std::fs::write(root.join("cut.qcow2"), &q[..q.len() / 2]).unwrap();
    std::fs::write(root.join("cut-header.qcow2"), &q[..40]).unwrap();
    let mut zero_disk = q.clone();
    zero_disk[24..32].copy_from_slice(&0u64.to_be_bytes());
    std::fs::write(root.join("zero-disk.qcow2"), zero_disk).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", "blank.qcow2", "1M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", "backed.qcow2", "1M"]);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", "-F", "raw", "-b", "../afile", "-u", "sub/dotdot.qcow2", "1M"]);
    std::fs::rename(root.join("sub/dotdot.qcow2"), root.join("dotdot.qcow2")).unwrap();
    std::fs::remove_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("zeros.img"), vec![0u8; 1 << 16]).unwrap();
    std::fs::copy("/bin/true", root.join("elf.bin")).unwrap();
}

/// FIFOs, a socket, links to them, and the other files the output cases collide with.
fn make_special_files(root: &Path) {
    for fifo in ["fifo", "c.qcow2.sha256", "m2.qcow2.manifest.json", "f2.raw"] {
        nix::unistd::mkfifo(&root.join(fifo), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    std::os::unix::fs::symlink("fifo", root.join("fifo-link.qcow2")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(root.join("sock.qcow2")).unwrap());
    std::fs::create_dir(root.join("s.qcow2.spdx.json")).unwrap();
    std::fs::write(root.join("key.asc"), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n").unwrap();
    std::fs::write(root.join("bd.yaml"), "- local_loop:\n    name: image0\n").unwrap();
    std::fs::write(root.join("big.yaml"), vec![b'#'; 2 << 20]).unwrap();
}

/// One cloud per clouds.yaml mistake of type; `good` is right, its secure.yaml is not.
const BAD_CLOUDS: &str = "clouds:
  url-number: {auth: {auth_url: 5}}
  auth-text: {auth: x}
  regions-map: {regions: {a: 1}}
  region-item: {regions: [[a]]}
  verify-maybe: {verify: maybe}
  interface-list: {interface: [x]}
  interface-sideways: {interface: sideways}
  entry-text: text
  cacert-list: {cacert: [a, b]}
  good: {auth: {auth_url: 'http://127.0.0.1:9/v3', username: u}}
";

/// The secret the secret cases pass; it must never appear in any output.
const SECRET: &str = "hunter2-s3cret";

/// Elements whose environment.d misbehaves: echoes secrets, loops, leaves children, reads stdin.
fn make_hostile_elements(elems: &Path) {
    let vars = ["DIB_REPO_PASSWD", "FTP_PASS", "DIB_PASSWORD", "MY_SECRET", "OS_TOKEN", "API_KEY"];
    let echoed: String = vars.iter().map(|v| format!("${{{v}:-}}")).collect();
    for (element, file, text) in [
        ("echoer", "10-echo", format!("echo \"leaked: {echoed}\" >&2\nexit 1\n")),
        ("looper", "10-loop", "while :; do :; done\n".to_owned()),
        ("bg-looper", "10-bg-loop", "sleep 1000 &\nwhile :; do :; done\n".to_owned()),
        ("bg-fail", "10-bg-fail", "sleep 1000 &\nexit 3\n".to_owned()),
        ("reader", "10-read", "read -r answer\n".to_owned()),
    ] {
        let dir = elems.join(element).join("environment.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }
    std::fs::create_dir_all(elems.join("app")).unwrap();
    std::fs::write(elems.join("app/README.rst"), "an element with nothing to run\n").unwrap();
}

/// Device nodes (the numbers of /dev/full, /dev/null and loop0) and links into the kernel
/// trees, made in the scratch dir: never the host's own /dev.
fn make_device_nodes(root: &Path) {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let mode = Mode::from_bits_truncate(0o600);
    for (name, kind, major, minor) in
        [("fulldev", SFlag::S_IFCHR, 1, 7), ("nulldev", SFlag::S_IFCHR, 1, 3), ("blkdev", SFlag::S_IFBLK, 7, 0)]
    {
        mknod(&root.join(name), kind, mode, makedev(major, minor)).unwrap();
    }
    std::os::unix::fs::symlink("fulldev", root.join("full-link.qcow2")).unwrap();
    for (link, target) in [("devlink", "/dev"), ("proclink", "/proc"), ("syslink", "/sys")] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
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
    /// Processes of the run's session still there after it exited (killed by the runner).
    leftovers: Vec<String>,
}

/// `\xff` in a case's argument stands for the byte 0xff (a non-UTF-8 argument).
fn os_arg(arg: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = Vec::new();
    for (index, part) in arg.split("\\xff").enumerate() {
        if index > 0 {
            bytes.push(0xff);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    std::ffi::OsString::from_vec(bytes)
}

/// Run the binary in `scratch` with a hermetic environment (no DIB_*, OS_* or ELEMENTS_PATH of
/// the host, HOME and TMPDIR inside the scratch dir, a cache dir that must never appear), in a
/// session of its own: whatever is left in that session after it exits was left by the case.
fn run(scratch: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let dir = scratch.path();
    let mut command = common::hermetic_command(dir, env, args.iter().map(|a| os_arg(a)));
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > common::KILL_AFTER {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let leftovers = kill_session(child.id() as i32);
    Outcome {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed,
        leftovers,
    }
}

/// Kill and describe every process of session `sid` (the run's, see [`run`]).
fn kill_session(sid: i32) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // state, ppid, pgrp, session: a zombie is already dead, waiting for its parent.
        if fields.get(3) == Some(&sid.to_string().as_str()) && fields.first() != Some(&"Z") {
            left.push(format!("{pid} {}", &stat[..=close]));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    left
}

/// What of the host a case could leave behind outside its scratch dir: entries of /tmp and
/// /var/tmp and mount points naming the tool or the scratch dir. (Other engineers' tests run
/// on this host at the same time, so unrelated names are not ours to judge.)
fn host_snapshot(scratch: &Scratch) -> BTreeSet<String> {
    let scratch_path = scratch.path().display().to_string();
    let ours = |name: &str| name.contains("mesos") || name.contains(&scratch_path);
    let mut seen = BTreeSet::new();
    for dir in ["/tmp", "/var/tmp"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
            let path = entry.path().display().to_string();
            if ours(&path)
                && !scratch_path.starts_with(&path)
                && !path.contains("mesos-image-test-cache")
                && !path.contains("mi-faults")
            {
                seen.insert(path);
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        if let Some(point) = line.split_whitespace().nth(4) {
            if ours(point) && !point.ends_with("/ro") {
                seen.insert(format!("mount {point}"));
            }
        }
    }
    seen
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
    if outcome.stdout.contains(SECRET) || outcome.stderr.contains(SECRET) {
        problems.push("printed the secret".to_owned());
    }
    if !outcome.leftovers.is_empty() {
        problems.push(format!("processes left running: {:?}", outcome.leftovers));
    }
    if outcome.stderr.contains("panicked") {
        problems.push("panicked".to_owned());
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
        let host_before = host_snapshot(scratch);
        let outcome = run(scratch, case.env, case.args);
        let after = scratch.listing();
        slowest = slowest.max(outcome.elapsed);
        let mut problems = judge(case, &outcome, &before, &after);
        let host_added: Vec<String> = host_snapshot(scratch).difference(&host_before).cloned().collect();
        if !host_added.is_empty() {
            problems.push(format!("left on the host: {host_added:?}"));
        }
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
    let total = CASES.len() + READ_ONLY_CASES.len() + ROOT_CASES.len();
    assert!(total >= 150, "issue #19 asks for at least 150 cases, have {total}");
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

/// Device nodes, a block device and links into /dev, /proc and /sys, made by the test in its
/// scratch dir, as root (mknod).
#[test]
#[ignore = "needs root: mknod of device nodes in the scratch dir"]
fn device_nodes_and_kernel_trees_are_refused() {
    let scratch = Scratch::new();
    make_device_nodes(scratch.path());
    let (failures, slowest) = run_cases(&scratch, ROOT_CASES);
    eprintln!("{} root cases, slowest {:.3}s", ROOT_CASES.len(), slowest.as_secs_f64());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), ROOT_CASES.len(), failures.join("\n"));
}

/// `HOME=''` (and a relative XDG_CACHE_HOME) must not put the cache in the current directory.
#[test]
fn an_empty_home_puts_no_cache_in_the_current_directory() {
    let scratch = Scratch::new();
    let before = scratch.listing();
    let mut command = Command::new(common::binary());
    command.args(["cache", "list"]).current_dir(scratch.path()).env_clear();
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("HOME", "").env("XDG_CACHE_HOME", "rel");
    let _ = command.output().unwrap();
    let added: Vec<PathBuf> = scratch.listing().difference(&before).cloned().collect();
    assert!(added.is_empty(), "HOME='' created {added:?} in the current directory");
}

/// `disk-image-create` with no elements used to plan the default recipe silently.
#[test]
fn disk_image_create_without_elements_is_refused() {
    let scratch = Scratch::new();
    let link = scratch.path().join("tmp/disk-image-create");
    std::os::unix::fs::symlink(common::binary(), &link).unwrap();
    let output = Command::new(&link).args(["-o", "x"]).current_dir(scratch.path()).output().unwrap();
    std::fs::remove_file(&link).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("disk-image-create: no elements given"), "{stderr}");
}

/// No two cases alike: each adds a different input to the table.
#[test]
fn cases_are_distinct() {
    let mut seen = BTreeSet::new();
    for case in CASES.iter().chain(READ_ONLY_CASES).chain(ROOT_CASES) {
        assert!(seen.insert((case.env, case.args)), "duplicate case: {}", describe(case));
    }
}

const TABLE_START: &str = "<!-- bad-input table: generated from tests/bad_input.rs -->";
const TABLE_END: &str = "<!-- end of bad-input table -->";

fn table() -> String {
    let mut out =
        format!("{TABLE_START}\n| input | what it is | exit | the error line contains |\n|---|---|---|---|\n");
    for case in CASES.iter().chain(READ_ONLY_CASES).chain(ROOT_CASES) {
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
