//! Preflight: everything the command line, the recipe and the environment can get wrong,
//! checked before any work starts (no bootstrap, no download, no file written), in well under
//! two seconds. Each command calls its check once, right after parsing (and, for `build`,
//! planning, which only reads files). One exception: a build with extra packages reads the
//! archive's package index once per archive state (then cached, see [`crate::archive_index`]).
//!
//! A failure is one line naming the culprit (option, value, file, element) and exits with the
//! usage status (2, see [`crate::failure`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::culprit::bad;
pub use super::culprit::PreflightError;
use crate::archive_index;
use crate::cli::args::build::BuildArgs;
use crate::cli::args::cache::CacheArgs;
use crate::cli::args::test::TestArgs;
use crate::element::dib_block_device;
use crate::element::runparts::{self, Selection};
use crate::element::Phase;
use crate::format;
use crate::plan::Plan;
use crate::recipe::ImageFormat;
use crate::settings;
use crate::stage::publish::output_names;
use crate::upload::record::RecordFlags;

/// Below this a guest kernel does not even unpack its initrd.
const MIN_GUEST_MEMORY_MIB: u32 = 128;

/// Releases the root stage can bootstrap (mmdebstrap/debootstrap suites, cloud images).
const DEBIAN_RELEASES: &[&str] =
    &["buster", "bullseye", "bookworm", "trixie", "forky", "sid", "oldstable", "stable", "testing", "unstable"];
const UBUNTU_RELEASES: &[&str] = &["trusty", "xenial", "bionic", "focal", "jammy", "noble", "oracular", "plucky"];

/// Image properties Glance owns or that have their own option: `--property` cannot set them.
const RESERVED_PROPERTIES: &[(&str, Option<&str>)] = &[
    ("disk_format", Some("--disk-format")),
    ("container_format", Some("--container-format")),
    ("visibility", Some("--visibility")),
    ("min_disk", Some("--min-disk")),
    ("min_ram", Some("--min-ram")),
    ("name", Some("--name")),
    ("tags", Some("--tag")),
    ("id", None),
    ("status", None),
    ("protected", None),
    ("os_hidden", None),
    ("checksum", None),
    ("os_hash_algo", None),
    ("os_hash_value", None),
    ("owner", None),
    ("size", None),
    ("virtual_size", None),
    ("created_at", None),
    ("updated_at", None),
    ("direct_url", None),
    ("locations", None),
    ("self", None),
    ("file", None),
    ("schema", None),
    ("stores", None),
];
const DISK_FORMATS: &[&str] = &["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"];
const CONTAINER_FORMATS: &[&str] = &["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"];

type Checked = Result<(), PreflightError>;

/// `mesos-image build`: outputs, sizes, qemu-img options, target, elements, files named by
/// options. Warns (once per file) about hook scripts dib-run-parts would skip.
pub fn build(args: &BuildArgs, plan: &Plan) -> Checked {
    element_names(plan)?;
    target(args, plan)?;
    if !args.dry_run {
        foreign_binaries(args, plan)?;
    }
    image_size(args, plan)?;
    if let Some(output) = &args.output {
        outputs(output, &plan.image.formats)?;
    }
    if let Some(log) = &args.log_file {
        writable_file("--log-file", log)?;
    }
    if let Some(work) = &args.work_dir {
        existing_dir_or_creatable("--work-dir", work)?;
    }
    if let Some(cache) = &args.cache_dir {
        existing_dir_or_creatable("--cache-dir", cache)?;
    }
    super::rootless::build(args)?;
    if let Some(options) = &plan.image.qemu_img_options {
        qemu_img_options(options, &plan.image.formats)?;
    }
    if let Some(options) = &plan.image.mkfs_options {
        // Options from DIB_BLOCK_DEVICE_CONFIG's root mkfs node are named as that node.
        let culprit = match plan.block_device_config.iter().find(|node| node.sets_mkfs_options) {
            Some(node) => format!("{}: node `{}` (mkfs): opts {options}", dib_block_device::CONFIG_VAR, node.node),
            None => format!("--mkfs-options {options}"),
        };
        mkfs_options(&culprit, options)?;
    }
    super::input_guard::build(args, plan)?;
    super::output_guard::build(args, plan)?;
    // Last: the only check that may read the network, so every local mistake is named first.
    archive_packages(args, plan)?;
    warn_skipped_scripts(plan);
    Ok(())
}

/// Extra packages (`-p`, the recipe's `packages`) the target's archive does not have, refused
/// here rather than by apt after the base stage. Only for a real build with extra packages
/// and a mirror; a mirror that cannot be read leaves the build as it was (its own error, if
/// any, comes when the build dates itself from the same mirror). When an element adds apt
/// sources (the mesos or java repository, a user's), a package may come from there: no check.
fn archive_packages(args: &BuildArgs, plan: &Plan) -> Checked {
    let Some(mirror) = plan.mirror.as_deref().filter(|_| !args.dry_run) else { return Ok(()) };
    if adds_apt_sources(plan) {
        return Ok(());
    }
    let mut extras: Vec<(String, String)> = args
        .packages
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(|name| (format!("-p {name}"), name.to_owned()))
        .collect();
    if let Some(source) = &plan.recipe_source {
        let recipe = crate::recipe::Recipe::load_file(&source.path).map(|r| r.packages).unwrap_or_default();
        let label = plan.recipe.as_deref().unwrap_or("?");
        extras.extend(recipe.into_iter().map(|name| (format!("recipe {label}: packages: {name}"), name)));
    }
    if extras.is_empty() {
        return Ok(());
    }
    let components: Vec<&str> = crate::stage::root::components(&plan.distro).split(',').collect();
    let archive = archive_index::Archive { mirror, release: &plan.release, components: &components, arch: &plan.arch };
    let cache = args.cache_dir.clone().unwrap_or_else(crate::paths::default_cache_dir);
    let names = match archive_index::load(&archive, &cache) {
        Ok(names) => names,
        Err(err) => {
            tracing::debug!("extra packages not checked against the archive: {err}");
            return Ok(());
        }
    };
    match extras.into_iter().find(|(_, name)| !names.has(name)) {
        Some((culprit, _)) => Err(bad(culprit, format!("no such package (or Provides) in {archive}"))),
        None => Ok(()),
    }
}

/// Whether a hook script of the plan writes apt sources (or may: unreadable counts as yes).
fn adds_apt_sources(plan: &Plan) -> bool {
    plan.scripts.values().flatten().chain(&plan.environment_d).any(|script| {
        std::fs::read(&script.path).map_or(true, |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            ["sources.list", "add-apt-repository", ".sources"].iter().any(|word| text.contains(word))
        })
    })
}

/// DIB passes element names through space-separated lists (`IMAGE_ELEMENT`), so a name with
/// white space or shell metacharacters breaks every element that reads it.
fn element_names(plan: &Plan) -> Checked {
    for element in &plan.elements {
        let valid = !element.name.is_empty()
            && element.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
        if !valid {
            return Err(bad(
                format!("element `{}` ({})", element.name, element.path.display()),
                "an element name may only hold letters, digits, `-`, `_`, `.` and `+`: rename the directory",
            ));
        }
    }
    Ok(())
}

/// Release and architecture, when our root stage makes the base tree (a DIB operating-system
/// element of the user's own builds it in `root.d` and may know other releases).
fn target(args: &BuildArgs, plan: &Plan) -> Checked {
    let Some(base) = plan.base else { return Ok(()) };
    // Name where the value came from: the option (or its variable), else the recipe.
    let culprit = |flag: &str, given: &Option<String>, field: &str, value: &str| match (given, &plan.recipe) {
        (Some(_), _) | (None, None) => format!("{flag} {value}"),
        (None, Some(recipe)) => format!("recipe {recipe}: {field} {value}"),
    };
    let known = match plan.distro.as_str() {
        "debian" => DEBIAN_RELEASES,
        "ubuntu" => UBUNTU_RELEASES,
        _ => return Ok(()),
    };
    if base == crate::recipe::BaseMethod::CloudImage && plan.distro != "ubuntu" {
        return Err(bad(
            culprit("--base", &args.base.map(|b| b.to_string()), "base", "cloud-image"),
            format!("cloud-image bases exist for ubuntu only, not {}", plan.distro),
        ));
    }
    if !known.contains(&plan.release.as_str()) {
        return Err(bad(
            culprit("--release/DIB_RELEASE", &args.release, "release", &plan.release),
            format!("not a known {} release (known: {})", plan.distro, known.join(", ")),
        ));
    }
    if !crate::arch::KNOWN.contains(&plan.arch.as_str()) {
        return Err(bad(
            culprit("--arch", &args.arch, "arch", &plan.arch),
            format!("not a known architecture (known: {}, x86_64, aarch64)", crate::arch::KNOWN.join(", ")),
        ));
    }
    Ok(())
}

/// Can this host run the target's binaries (maintainer scripts, element scripts in the chroot)?
/// Natively, or through binfmt_misc with the F flag; never changed here (`crate::emulation`).
fn foreign_binaries(args: &BuildArgs, plan: &Plan) -> Checked {
    match crate::emulation::check_host(&plan.arch) {
        Ok(execution) => {
            tracing::debug!("{} binaries: {execution:?}", plan.arch);
            Ok(())
        }
        Err(err) => {
            let culprit = match (&args.arch, &plan.recipe) {
                (Some(_), _) => format!("--arch {}", plan.arch),
                (None, Some(recipe)) => format!("recipe {recipe}: arch {}", plan.arch),
                (None, None) => format!("ARCH={}", plan.arch),
            };
            Err(bad(culprit, err.to_string()))
        }
    }
}

fn image_size(args: &BuildArgs, plan: &Plan) -> Checked {
    let Some(size) = &plan.image.size else { return Ok(()) };
    let setting = &settings::IMAGE_SIZE;
    let culprit = match (&args.image_size, &plan.recipe, setting.recipe_key) {
        (None, Some(recipe), Some(key)) => format!("recipe {recipe}: {key} {size}"),
        _ => format!("{} {size}", setting.option()),
    };
    setting.check_size(size).map_err(|problem| bad(culprit, problem))
}

/// `-o`: a file name in an existing, writable directory; one extension per format.
fn outputs(output: &Path, formats: &[ImageFormat]) -> Checked {
    let culprit = format!("-o {}", output.display());
    if output.as_os_str().to_string_lossy().ends_with('/') || output.file_name().is_none() || output.is_dir() {
        return Err(bad(culprit, "is a directory; name the image file (e.g. DIR/image.qcow2)"));
    }
    if let Some(ext) = output.extension().and_then(|e| e.to_str()) {
        if let Ok(named) = ext.parse::<ImageFormat>() {
            if !formats.contains(&named) {
                let asked: Vec<&str> = formats.iter().map(|f| f.name()).collect();
                return Err(bad(
                    culprit,
                    format!("the extension says {} but the format is {}", named.name(), asked.join(",")),
                ));
            }
        }
    }
    writable_parent(&culprit, output)?;
    for (format, path) in output_names(output, formats) {
        if path.is_dir() {
            return Err(bad(culprit, format!("the {} output {} is a directory", format.name(), path.display())));
        }
    }
    Ok(())
}

/// A file the tool will create: its directory exists and is writable, and it is no directory.
fn writable_file(option: &str, path: &Path) -> Checked {
    let culprit = format!("{option} {}", path.display());
    if path.is_dir() {
        return Err(bad(culprit, "is a directory"));
    }
    writable_parent(&culprit, path)
}

fn writable_parent(culprit: &str, path: &Path) -> Checked {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        return Err(bad(culprit, format!("directory {} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(bad(culprit, format!("{} is not a directory", dir.display())));
    }
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|errno| bad(culprit, format!("directory {} is not writable ({})", dir.display(), errno.desc())))
}

/// A directory the tool writes in or creates: a writable directory already, or its parent is
/// one. `access(2)` answers for root too: a read-only mount is EROFS whatever the mode bits.
fn existing_dir_or_creatable(option: &str, path: &Path) -> Checked {
    let culprit = format!("{option} {}", path.display());
    if path.exists() {
        if !path.is_dir() {
            return Err(bad(culprit, "is not a directory"));
        }
        return nix::unistd::access(path, nix::unistd::AccessFlags::W_OK)
            .map_err(|errno| bad(culprit, format!("is not writable ({})", errno.desc())));
    }
    writable_parent(&culprit, path)
}

/// Let mkfs.ext4 itself judge `--mkfs-options`: make a small filesystem in a scratch file with
/// them (the disk stage gives them after its own options, as here).
fn mkfs_options(culprit: &str, options: &str) -> Checked {
    let scratch = tempfile::tempdir().map_err(|err| bad(culprit, format!("cannot make a scratch directory: {err}")))?;
    let user = crate::disk::ext4::UserOptions::parse(options);
    if let Some(option) = user.forbidden() {
        return Err(bad(culprit, format!("`-E {option}`: the disk stage places the root filesystem itself")));
    }
    // Sparse and large enough for the inode counts and sizes real images ask for; lazy init
    // writes next to nothing.
    let file = scratch.path().join("probe.ext4");
    File::create(&file)
        .and_then(|f| f.set_len(16 << 30))
        .map_err(|err| bad(culprit, format!("cannot make a scratch file: {err}")))?;
    let mut extended = vec!["nodiscard,lazy_itable_init=1,lazy_journal_init=1".to_owned()];
    extended.extend(user.extended);
    let output = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-t", "ext4", "-b", "4096", "-E", &extended.join(",")])
        .args(&user.other)
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| bad(culprit, format!("cannot run mkfs.ext4 to check them: {err}")))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let reason =
            text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("mke2fs ")).unwrap_or("rejected");
        return Err(bad(culprit, format!("mkfs.ext4 rejects them: {reason}")));
    }
    Ok(())
}

/// Let qemu-img itself judge the options: create a tiny image of each format with them.
fn qemu_img_options(options: &str, formats: &[ImageFormat]) -> Checked {
    let culprit = format!("--qemu-img-options {options}");
    let scratch =
        tempfile::tempdir().map_err(|err| bad(&culprit, format!("cannot make a scratch directory: {err}")))?;
    // The convert stage passes no -o for raw (it takes none), so raw is not asked here either.
    for format in formats.iter().filter(|f| **f != ImageFormat::Raw) {
        let file = scratch.path().join(format!("probe.{}", format.name()));
        let output = Command::new("qemu-img")
            .args(["create", "-q", "-f", format.qemu_name(), "-o", options])
            .arg(&file)
            .arg("1M")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| bad(&culprit, format!("cannot run qemu-img to check them: {err}")))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr);
            let reason = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("rejected");
            let reason = reason.trim_start_matches("qemu-img: ").trim_start_matches(&*file.to_string_lossy());
            return Err(bad(
                culprit,
                format!("qemu-img rejects them for {}: {}", format.name(), reason.trim_start_matches(": ")),
            ));
        }
    }
    Ok(())
}

/// dib-run-parts skips non-executable files and names outside `[0-9A-Za-z_-]`, silently; a
/// forgotten `chmod +x` or a `.sh` suffix then looks like a script that did nothing. Data files
/// (not executable and not script-named, e.g. README.rst, hook-script.py) are left alone.
fn warn_skipped_scripts(plan: &Plan) {
    for element in &plan.elements {
        for phase in Phase::ALL {
            let dir = element.path.join(phase.dir_name());
            let Ok(candidates) = runparts::list_dir(&dir, Selection::Scripts) else { continue };
            for candidate in candidates {
                let executable = is_executable(&candidate.path);
                let script_name = Selection::Scripts.accepts_name(&candidate.name);
                match candidate.skipped {
                    Some(reason) if executable || script_name => {
                        tracing::warn!("{}: skipped, like dib-run-parts does: {reason}", candidate.path.display())
                    }
                    _ => {}
                }
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `mesos-image upload`: the file is an image of the stated format; the record's options, the
/// wait for the image and the CA file of the connection.
pub fn upload(image: &Path, record: &RecordFlags, timeout: u64, cacert: Option<&Path>) -> Checked {
    if let Some(format) = &record.disk_format {
        one_of("--disk-format", format, DISK_FORMATS)?;
    }
    if let Some(format) = &record.container_format {
        one_of("--container-format", format, CONTAINER_FORMATS)?;
    }
    for pair in &record.properties {
        let key = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
        if let Some((_, option)) = RESERVED_PROPERTIES.iter().find(|(name, _)| *name == key) {
            let problem = match option {
                Some(option) => format!("`{key}` is set with {option}, not --property"),
                None => format!("`{key}` is a reserved Glance property"),
            };
            return Err(bad(format!("--property {pair}"), problem));
        }
    }
    if timeout == 0 {
        return Err(bad("--timeout 0", "must be at least 1 second"));
    }
    if let Some(name) = &record.name {
        if name.trim().is_empty() {
            return Err(bad("--name", "is empty"));
        }
    }
    if let Some(cacert) = cacert {
        if !cacert.as_os_str().is_empty() && !cacert.is_file() {
            return Err(bad(format!("--os-cacert/OS_CACERT {}", cacert.display()), "no such file"));
        }
    }
    image_file(image, record.disk_format.as_deref())
}

fn one_of(option: &str, value: &str, known: &[&str]) -> Checked {
    if known.contains(&value) {
        Ok(())
    } else {
        Err(bad(format!("{option} {value}"), format!("expected one of {}", known.join(", "))))
    }
}

/// An image file: exists, is a regular non-empty file, and is no text. A file with no known
/// header is raw only if it holds a partition table or file system, or `--disk-format raw`
/// says so.
fn image_file(path: &Path, declared: Option<&str>) -> Checked {
    let culprit = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|err| bad(&culprit, io_reason(&err)))?;
    if meta.is_dir() {
        return Err(bad(culprit, "is a directory, not an image file"));
    }
    if !meta.is_file() {
        return Err(bad(culprit, "is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(bad(culprit, "is empty (0 bytes), not an image"));
    }
    let head = format::read_head(path).map_err(|err| bad(&culprit, io_reason(&err)))?;
    if let Some(kind) = format::tree_archive(&head) {
        return Err(bad(culprit, format!("is a {kind} of a tree (build -t tar/tgz/squashfs), not a disk image")));
    }
    let detected = format::detect(&head, None);
    if detected == "raw" && format::looks_like_text(&head) {
        return Err(bad(culprit, "is a text file, not a disk image"));
    }
    if detected == "raw" && declared.is_none() && !format::has_disk_signature(&head) {
        return Err(bad(
            culprit,
            "has no image header, partition table or file system; pass --disk-format raw if it is a raw disk",
        ));
    }
    Ok(())
}

fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => err.to_string(),
    }
}

/// `mesos-image test`: the image, the options that shape the VM, the files it reads and writes.
pub fn test(args: &TestArgs) -> Checked {
    image_file(&args.image, Some("raw")).map_err(|err| bad(format!("image {}", err.culprit), err.problem))?;
    crate::bootable::check(&args.image, args.kernel.is_some())
        .map_err(|problem| bad(format!("image {}", args.image.display()), problem))?;
    if args.timeout == Some(0) {
        return Err(bad("--timeout 0", "must be at least 1 second"));
    }
    if args.memory < MIN_GUEST_MEMORY_MIB {
        return Err(bad(
            format!("--memory {}", args.memory),
            format!("a guest needs at least {MIN_GUEST_MEMORY_MIB} MiB"),
        ));
    }
    if args.cpus == 0 {
        return Err(bad("--cpus 0", "a guest needs at least 1 vCPU"));
    }
    for (option, file) in [("--kernel", &args.kernel), ("--initrd", &args.initrd)] {
        if let Some(file) = file {
            if !file.is_file() {
                return Err(bad(format!("{option} {}", file.display()), "no such file"));
            }
        }
    }
    if let Some(log) = &args.keep_serial_log {
        writable_file("--keep-serial-log", log)?;
        let mut inputs = crate::guard::Inputs::default();
        inputs.file("the image", &args.image);
        crate::guard::output_file(log, &inputs)
            .map_err(|problem| bad(format!("--keep-serial-log {}", log.display()), problem))?;
    }
    Ok(())
}

/// `mesos-image cache`: an explicit cache directory must exist (a typo must not create one;
/// `build` creates the cache).
pub fn cache(args: &CacheArgs) -> Checked {
    if let Some(dir) = &args.cache_dir {
        if !dir.is_dir() {
            let problem = if dir.exists() { "is not a directory" } else { "no such cache directory" };
            return Err(bad(format!("--cache-dir {}", dir.display()), problem));
        }
        crate::guard::output_dir(dir).map_err(|problem| bad(format!("--cache-dir {}", dir.display()), problem))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_options_are_judged_by_mkfs_itself() {
        mkfs_options("--mkfs-options -N 250000 -m 0 -E stride=4", "-N 250000 -m 0 -E stride=4").unwrap();
        let err = mkfs_options("--mkfs-options -E offset=4096", "-E offset=4096").unwrap_err().to_string();
        assert!(err.starts_with("--mkfs-options -E offset=4096: `-E offset=4096`: "), "{err}");
        let err = mkfs_options("--mkfs-options -O no_such_feature", "-O no_such_feature").unwrap_err().to_string();
        assert!(err.starts_with("--mkfs-options -O no_such_feature: mkfs.ext4 rejects them: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn tree_outputs_are_refused_as_disks() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = vec![0u8; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        for (name, bytes, kind) in [
            ("a.tar", tar, "tar archive"),
            ("a.squash", b"hsqs\0\0\0\0".to_vec(), "squashfs"),
            ("a.tgz", vec![0x1f, 0x8b, 8, 0], "gzip file"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = image_file(&path, Some("raw")).unwrap_err().to_string();
            assert!(
                err.ends_with(&format!("{name}: is a {kind} of a tree (build -t tar/tgz/squashfs), not a disk image")),
                "{err}"
            );
        }
    }
}
