//! Every build setting, declared once (as mkosi's `SETTINGS` table does): its flag, the variable
//! it is read from and the one it hands to element scripts, its recipe key, how its value is
//! parsed, its default and its help. `build`'s clap arguments take their names, help and value
//! parser from here (so the variables clap reads parse alike), the recipe reader parses its keys
//! with the same parser ([`Setting::parse`], `parse.rs`), the `DIB_*` variables the flags set are
//! named here, and docs/settings.md is rendered from this table (a test keeps it current).
//!
//! The OpenStack connection settings of `upload` are not here (`upload/`).

mod parse;
mod setting;
pub mod size;

use std::fmt::Write as _;

pub use parse::FromSetting;
pub use setting::{Check, Range, Setting, Value};
pub use size::{parse_size, ByteSize};

const FORMATS: &[&str] = &["qcow2", "raw", "vmdk", "vhd", "tar", "tgz", "squashfs"];

pub const OUTPUT: Setting = Setting::new(
    "output",
    Value::Path,
    "The image to write (e.g. out/ubuntu-mesos.qcow2); extra formats get their extension swapped",
)
.short('o');
pub const RECIPE: Setting = Setting::new(
    "recipe",
    Value::Text,
    "Recipe name (looked up in --recipes-dir and the built-in recipes) or path to a recipe file",
);
pub const RECIPES_DIR: Setting = Setting::new(
    "recipes-dir",
    Value::Path,
    "Search this directory for recipes before the built-in recipes (repeatable)",
);
pub const ELEMENTS_PATH: Setting = Setting::new(
    "elements-path",
    Value::Path,
    "Search this directory for elements before $ELEMENTS_PATH and the built-in elements (repeatable; earlier entries win)",
);
pub const RELEASE: Setting =
    Setting::new("release", Value::Text, "Distribution release codename (trusty, noble, bookworm, ...)")
        .reads("DIB_RELEASE")
        .exports("DIB_RELEASE")
        .recipe("release");
pub const ARCH: Setting =
    Setting::new("arch", Value::Text, "Target architecture (amd64, arm64; x86_64 and aarch64 are accepted); a list such as amd64,arm64 builds one image per architecture, NAME-ARCH.EXT")
        .short('a')
        .recipe("arch");
pub const MIRROR: Setting = Setting::new(
    "mirror",
    Value::Text,
    "Distribution mirror (wins over DIB_DISTRIBUTION_MIRROR, the recipe and the host's apt sources)",
)
.exports("DIB_DISTRIBUTION_MIRROR")
.recipe("mirror");
pub const BASE: Setting =
    Setting::new("base", Value::Choice(&["mmdebstrap", "debootstrap", "cloud-image"]), "How the base tree is made")
        .recipe("base");
pub const PACKAGES: Setting = Setting::new(
    "packages",
    Value::List,
    "Extra packages installed in the install phase (comma-separated, repeatable)",
)
.short('p')
.recipe("packages");
pub const IMAGE_SIZE: Setting = Setting::new(
    "image-size",
    Value::Size(ByteSize::check_disk),
    "Disk size: a bare number is GB as disk-image-create reads it (4, 1.5); or with a unit, 4G or 2560M (default: the tree's size plus headroom)",
)
.exports("DIB_IMAGE_SIZE")
.recipe("image.size");
pub const IMAGE_EXTRA_SIZE: Setting = Setting::new(
    "image-extra-size",
    Value::Size(ByteSize::check_extra),
    "Added to the tree's measured size, in GB as disk-image-create reads it (1, 0.5), in place of the headroom; --image-size wins",
)
.exports("DIB_IMAGE_EXTRA_SIZE")
.recipe("image.extra-size");
pub const MKFS_OPTIONS: Setting = Setting::new(
    "mkfs-options",
    Value::Text,
    "Extra mkfs.ext4 options for the root filesystem, e.g. \"-N 200000 -m 0\"; given after ours",
)
.recipe("image.mkfs-options");
pub const FORMAT: Setting = Setting::new(
    "format",
    Value::Choice(FORMATS),
    "Output formats, comma-separated: qcow2, raw, vmdk, vhd; tar, tgz, squashfs (the tree, no disk)",
)
.short('t')
.recipe("image.formats");
pub const QEMU_IMG_OPTIONS: Setting =
    Setting::new("qemu-img-options", Value::Text, "Extra `qemu-img convert -o` options, e.g. compat=0.10")
        .recipe("image.qemu-img-options");
pub const COMPRESS: Setting = Setting::new(
    "compress",
    Value::Switch,
    "Compress qcow2 output (the default; overrides a recipe's `compress: false`)",
)
.recipe("image.compress");
pub const NO_COMPRESS: Setting =
    Setting::new("no-compress", Value::Switch, "Do not compress qcow2 output: larger, but faster to write (DIB's -u)")
        .short('u')
        .recipe("image.compress");
pub const COMPRESSION: Setting = Setting::new(
    "compression",
    Value::Choice(&["zlib", "zstd"]),
    "qcow2 compression: zlib (every qemu reads it) or zstd (faster; needs qemu 5.1+ to read)",
)
.recipe("image.compression");
pub const CHECKSUM: Setting = Setting::new(
    "checksum",
    Value::Switch,
    "Write a .sha256 file beside each image (disk-image-create: .md5 and .sha256, as DIB)",
)
.exports("DIB_CHECKSUM");
pub const MESOS_REPO: Setting =
    Setting::new("mesos-repo", Value::Text, "Apt repository line or URI for mesos and marathon (sets DIB_MESOS_REPO)")
        .exports("DIB_MESOS_REPO");
pub const MESOS_REPO_KEY: Setting = Setting::new(
    "mesos-repo-key",
    Value::Path,
    "Signing key of --mesos-repo (sets DIB_MESOS_REPO_KEY to its absolute path)",
)
.exports("DIB_MESOS_REPO_KEY");
pub const ENV: Setting = Setting::new("env", Value::Assignment, "Variable passed to every element script (repeatable)")
    .short('e')
    .recipe("environment");
pub const CACHE_DIR: Setting =
    Setting::new("cache-dir", Value::Path, "Cache root for packages, base trees and stage outputs")
        .reads("MESOS_IMAGE_CACHE_DIR")
        .default("~/.cache/mesos-image");
pub const NO_CACHE: Setting = Setting::new("no-cache", Value::Switch, "Neither read nor write the stage cache");
pub const LOG_FILE: Setting = Setting::new(
    "log-file",
    Value::Path,
    "Write the full build log here (disk-image-create's --logfile appends, timestamped, as DIB)",
);
pub const BREAK: Setting = Setting::new(
    "break",
    Value::Text,
    "Open a shell in the chroot: after-error, before-PHASE or after-PHASE (DIB's break=)",
);
pub const TRACE: Setting = Setting::new(
    "trace",
    Value::Count,
    "Trace every element script into the log (xtrace; DIB_DEBUG_TRACE counts the -x); repeatable, as disk-image-create's",
)
.short('x')
.short_only()
.exports("DIB_DEBUG_TRACE");
pub const IMAGE_CACHE: Setting =
    Setting::new("image-cache", Value::Path, "Where elements cache their downloads (DIB_IMAGE_CACHE)")
        .exports("DIB_IMAGE_CACHE")
        .default("<cache-dir>");
pub const ROOT_LABEL: Setting = Setting::new("root-label", Value::Text, "Root filesystem label (DIB_ROOT_LABEL)")
    .check(check_root_label)
    .exports("DIB_ROOT_LABEL")
    .recipe("image.root-label")
    .default("the recipe's, or cloudimg-rootfs");
pub const INSTALL_TYPE: Setting = Setting::new(
    "install-type",
    Value::Text,
    "Default install type of elements with install-type directories (DIB_DEFAULT_INSTALLTYPE)",
)
.exports("DIB_DEFAULT_INSTALLTYPE")
.default("source, as disk-image-create");
pub const SKIP_BASE: Setting =
    Setting::new("skip-base", Value::Switch, "DIB mode: do not add the `base` element (disk-image-create -n)")
        .short('n')
        .short_only();
pub const OFFLINE: Setting =
    Setting::new("offline", Value::Switch, "Elements must not refresh their cached downloads (DIB_OFFLINE=1)")
        .exports("DIB_OFFLINE");
pub const WORK_DIR: Setting = Setting::new("work-dir", Value::Path, "Scratch directory for the build")
    .default("<cache-dir>/work, in a tmpfs when memory allows; a directory given here is used as it is");
pub const NO_TMPFS: Setting =
    Setting::new("no-tmpfs", Value::Switch, "Build on disk, never in a tmpfs (DIB_NO_TMPFS=1)").exports("DIB_NO_TMPFS");
pub const MIN_TMPFS: Setting = Setting::new(
    "min-tmpfs",
    Value::Number,
    "Build in a tmpfs only when at least this many GB of memory are available (DIB_MIN_TMPFS)",
)
.exports("DIB_MIN_TMPFS")
.default("6; the tree, raw disk and conversions sit side by side");
pub const SEED: Setting = Setting::new(
    "seed",
    Value::Text,
    "Derive filesystem UUIDs, partition GUIDs and the other identifiers from this text instead of from the build's inputs",
);
pub const SOURCE_DATE_EPOCH: Setting =
    Setting::new("source-date-epoch", Value::Number, "The time written into the image (seconds since 1970)")
        .reads("SOURCE_DATE_EPOCH")
        .exports("SOURCE_DATE_EPOCH")
        .default("the mirror's Release date");
pub const CHECK_REPRODUCIBLE: Setting = Setting::new(
    "check-reproducible",
    Value::Switch,
    "Build twice (the second time with another work dir, TZ, umask and host name) and report whether the outputs are identical, or which files differ. Implies --no-cache",
);
pub const TREE_LISTING: Setting = Setting::new(
    "tree-listing",
    Value::Path,
    "Write a file-by-file description of the finished tree here (used by --check-reproducible)",
);
pub const DRY_RUN: Setting = Setting::new(
    "dry-run",
    Value::Switch,
    "Print the plan (elements, scripts, packages, environment) and exit; nothing is written",
);
pub const JSON: Setting = Setting::new("json", Value::Switch, "With --dry-run: print the plan as JSON");

/// ext4 labels are at most 16 bytes; mkfs.ext4 would only warn and truncate. `--root-label`,
/// the recipe's `image.root-label` and a DIB block-device config's label are all checked here.
pub fn check_root_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 16 {
        return Err(format!("`{label}` is not an ext4 label (1 to 16 bytes)"));
    }
    Ok(())
}

/// Every setting of `mesos-image build` (and `disk-image-create`), in `--help` order.
pub const BUILD: [&Setting; 40] = [
    &OUTPUT,
    &RECIPE,
    &RECIPES_DIR,
    &ELEMENTS_PATH,
    &RELEASE,
    &ARCH,
    &MIRROR,
    &BASE,
    &PACKAGES,
    &IMAGE_SIZE,
    &IMAGE_EXTRA_SIZE,
    &MKFS_OPTIONS,
    &FORMAT,
    &QEMU_IMG_OPTIONS,
    &COMPRESS,
    &NO_COMPRESS,
    &COMPRESSION,
    &CHECKSUM,
    &MESOS_REPO,
    &MESOS_REPO_KEY,
    &ENV,
    &CACHE_DIR,
    &NO_CACHE,
    &LOG_FILE,
    &BREAK,
    &TRACE,
    &IMAGE_CACHE,
    &ROOT_LABEL,
    &INSTALL_TYPE,
    &SKIP_BASE,
    &OFFLINE,
    &WORK_DIR,
    &NO_TMPFS,
    &MIN_TMPFS,
    &SEED,
    &SOURCE_DATE_EPOCH,
    &CHECK_REPRODUCIBLE,
    &TREE_LISTING,
    &DRY_RUN,
    &JSON,
];

/// The table as docs/settings.md holds it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Build settings\n\nGenerated from `src/settings/mod.rs` (the one declaration of each setting); \
         `cargo test settings` fails when this file is out of date.\n\n\
         | flag | reads | exports to elements | recipe key | value | default | help |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let code = |text: Option<String>| text.map(|t| format!("`{t}`")).unwrap_or_default();
    for setting in BUILD {
        let flag = match (setting.short, setting.long) {
            (Some(short), true) => format!("`-{short}`, `--{}`", setting.flag),
            (Some(short), false) => format!("`-{short}`"),
            (None, _) => format!("`--{}`", setting.flag),
        };
        let _ = writeln!(
            out,
            "| {flag} | {} | {} | {} | {} | {} | {} |",
            code(setting.reads.map(str::to_owned)),
            code(setting.exports.map(str::to_owned)),
            code(setting.recipe_key.map(str::to_owned)),
            setting.value.describe(),
            setting.default.unwrap_or_default(),
            setting.help.replace('|', "\\|"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_is_declared_once() {
        let mut flags: Vec<&str> = BUILD.iter().map(|s| s.flag).collect();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), BUILD.len());
        let mut shorts: Vec<char> = BUILD.iter().filter_map(|s| s.short).collect();
        shorts.sort_unstable();
        shorts.dedup();
        assert_eq!(shorts.len(), BUILD.iter().filter(|s| s.short.is_some()).count());
    }

    #[test]
    fn docs_settings_md_is_rendered_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
        if std::env::var_os("MESOS_IMAGE_WRITE_DOCS").is_some() {
            std::fs::write(path, markdown()).unwrap();
        }
        let docs = std::fs::read_to_string(path).unwrap();
        assert!(docs == markdown(), "docs/settings.md is out of date: rerun with MESOS_IMAGE_WRITE_DOCS=1");
    }
}
