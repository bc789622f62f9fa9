//! The convert stage: the raw disk becomes the requested disk formats with `qemu-img convert`
//! (or, for the default compressed qcow2, our own parallel writer in [`crate::qcow2`]), and the
//! finished tree becomes the tree formats (tar, tgz, squashfs) as disk-image-create
//! makes them, written in the build's scratch directory. The publish stage copies them into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::progress::Reporter;
use crate::recipe::{Compression, ImageFormat, ImageSpec};
use crate::reproducible::{formats, Pins};

/// Convert `raw` to each `(format, path)`, replacing the stamps qemu-img takes from the clock
/// and the random pool with values from `pins`; the paths are scratch files (see
/// [`super::publish::output_paths`] for where they are published).
pub fn run(
    raw: &Path,
    outputs: &[(ImageFormat, PathBuf)],
    spec: &ImageSpec,
    pins: &Pins,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    for (format, path) in outputs {
        if own_writer(*format, spec) {
            let threads = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
            let _step = reporter.step(format!("qcow2 compressed on {threads} threads -> {}", path.display()));
            let summary = crate::qcow2::write_compressed(raw, path, threads)?;
            reporter.log_line(&format!("{summary:?}"));
            continue;
        }
        let _step = reporter.step(format!("qemu-img convert -O {} -> {}", format.qemu_name(), path.display()));
        reporter.run("qemu-img convert", &mut convert_command(raw, path, *format, spec))?;
        // qemu-img stamps these two from the clock and the random pool.
        match format {
            ImageFormat::Vhd => formats::pin_vhd(path, pins)?,
            ImageFormat::Vmdk => formats::pin_vmdk(path, pins)?,
            ImageFormat::Qcow2 | ImageFormat::Raw => {}
            ImageFormat::Tar | ImageFormat::Tgz | ImageFormat::Squashfs => {
                anyhow::bail!("{format} is made from the tree, not converted from the disk")
            }
        }
    }
    Ok(())
}

/// Write each tree format of `outputs` from `tree` (the finished tree, after cleanup.d, which is
/// what disk-image-create archives). Entries are sorted, owners numeric, every time is `epoch`
/// at the latest, so the same tree gives the same bytes.
pub fn tree_outputs(
    tree: &Path,
    outputs: &[(ImageFormat, PathBuf)],
    epoch: i64,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    {
        // The archivers clamp their own copies; the tree is clamped too, as the disk stage does,
        // so a tree-only build leaves the same tree (--check-reproducible compares it).
        let _step = reporter.step(format!("clamp file times to SOURCE_DATE_EPOCH {epoch}"));
        crate::reproducible::clamp::clamp_tree(tree, epoch)?;
    }
    for (format, path) in outputs.iter().filter(|(format, _)| !format.is_disk()) {
        let _step = reporter.step(format!("{format} of the tree -> {}", path.display()));
        reporter.run(format.name(), &mut tree_command(tree, path, *format, epoch))?;
    }
    Ok(())
}

/// disk-image-create's commands (`tar -C TREE --exclude ./sys --exclude ./proc --xattrs
/// --xattrs-include=* -cf`, `mksquashfs TREE OUT -comp xz -noappend -wildcards -e proc/* -e sys/*
/// -no-recovery`) with what makes them reproducible added.
fn tree_command(tree: &Path, destination: &Path, format: ImageFormat, epoch: i64) -> Command {
    if format == ImageFormat::Squashfs {
        let mut command = Command::new("mksquashfs");
        command.arg(tree).arg(destination);
        command.args(["-comp", "xz", "-noappend", "-no-recovery", "-no-progress", "-quiet", "-reproducible"]);
        let epoch = epoch.to_string();
        command.args(["-mkfs-time", &epoch, "-all-time", &epoch]);
        // mksquashfs refuses -all-time/-mkfs-time when SOURCE_DATE_EPOCH is set too; the
        // flags say the same time.
        command.env_remove("SOURCE_DATE_EPOCH");
        // Last: mksquashfs reads every word after `-e` as an exclude.
        command.args(["-wildcards", "-e", "proc/*", "sys/*"]);
        return command;
    }
    let mut command = Command::new("tar");
    command.arg("-C").arg(tree);
    command.args(["--exclude", "./sys", "--exclude", "./proc", "--xattrs", "--xattrs-include=*"]);
    command.args(["--format=posix", "--sort=name", "--numeric-owner", "--clamp-mtime"]);
    command.arg(format!("--mtime=@{epoch}"));
    // The pax headers would carry the tar process's pid and each file's atime and ctime.
    command.arg("--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime");
    if format == ImageFormat::Tgz {
        // gzip -n: no name or time stamp in the gzip header.
        command.args(["--use-compress-program", "gzip -n"]);
    }
    command.arg("-cf").arg(destination).arg(".");
    command
}

/// The default qcow2 (zlib-compressed, no user `-o` options) is written by [`crate::qcow2`]:
/// on every core and still byte for byte the same for the same disk. Anything else is qemu-img's.
fn own_writer(format: ImageFormat, spec: &ImageSpec) -> bool {
    format == ImageFormat::Qcow2
        && spec.compress
        && spec.compression == Compression::Zlib
        && spec.qemu_img_options.is_none()
}

fn convert_command(raw: &Path, destination: &Path, format: ImageFormat, spec: &ImageSpec) -> Command {
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-f", "raw", "-O", format.qemu_name()]);
    // Only qcow2 compresses in a way every reader handles. Writes stay in order (no `-W`): with
    // out-of-order writes, compressed clusters land in completion order and two builds of the
    // same tree would differ byte for byte.
    let compress = spec.compress && format == ImageFormat::Qcow2;
    if compress {
        command.arg("-c");
    }
    let options = format_options(format, spec, compress);
    if !options.is_empty() {
        command.args(["-o", &options.join(",")]);
    }
    command.arg(raw).arg(destination);
    command
}

/// `-o` options: the compression type, then the user's (format-specific: compat=0.10 is
/// qcow2's; raw takes none).
fn format_options(format: ImageFormat, spec: &ImageSpec, compress: bool) -> Vec<String> {
    let mut options = Vec::new();
    if compress && spec.compression == Compression::Zstd {
        options.push("compression_type=zstd".to_owned());
    }
    if let Some(user) = spec.qemu_img_options.as_deref().filter(|_| format != ImageFormat::Raw) {
        options.push(user.to_owned());
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_the_default_and_options_apply_where_they_mean_something() {
        let spec = ImageSpec { qemu_img_options: Some("compat=0.10".into()), ..ImageSpec::default() };
        let args = |spec: &ImageSpec, format| {
            convert_command(Path::new("r"), Path::new("o"), format, spec)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(args(&spec, ImageFormat::Qcow2), "convert -f raw -O qcow2 -c -o compat=0.10 r o");
        assert_eq!(args(&spec, ImageFormat::Raw), "convert -f raw -O raw r o");
        assert_eq!(args(&spec, ImageFormat::Vhd), "convert -f raw -O vpc -o compat=0.10 r o");
        let zstd = ImageSpec { compression: Compression::Zstd, ..ImageSpec::default() };
        assert_eq!(args(&zstd, ImageFormat::Qcow2), "convert -f raw -O qcow2 -c -o compression_type=zstd r o");
        let plain = ImageSpec { compress: false, compression: Compression::Zstd, ..ImageSpec::default() };
        assert_eq!(args(&plain, ImageFormat::Qcow2), "convert -f raw -O qcow2 r o");
    }

    /// A small tree with a file newer than the epoch, owned by a uid no host user has.
    fn sample_tree(dir: &Path) -> PathBuf {
        let tree = dir.join("tree");
        for sub in ["etc", "usr/bin", "proc/1", "sys/kernel"] {
            std::fs::create_dir_all(tree.join(sub)).unwrap();
        }
        std::fs::write(tree.join("etc/os-release"), "ID=debian\n").unwrap();
        std::fs::write(tree.join("usr/bin/dpkg"), "#!/bin/sh\n").unwrap();
        std::fs::write(tree.join("proc/1/status"), "x").unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(tree.join("usr/bin/dpkg"), Some(4242), Some(4343)).unwrap();
        }
        tree
    }

    #[test]
    fn tar_and_tgz_are_sorted_numeric_clamped_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let tree = sample_tree(dir.path());
        let outputs = [(ImageFormat::Tar, dir.path().join("a.tar")), (ImageFormat::Tgz, dir.path().join("a.tgz"))];
        tree_outputs(&tree, &outputs, 1_000_000_000, &Reporter::silent()).unwrap();
        let listing = |file: &Path| {
            let out = Command::new("tar").args(["--numeric-owner", "--full-time", "-tvf"]).arg(file).output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        let text = listing(&outputs[0].1);
        let names: Vec<&str> = text.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(names, ["./", "./etc/", "./etc/os-release", "./usr/", "./usr/bin/", "./usr/bin/dpkg"], "{text}");
        assert!(text.lines().all(|l| l.contains("2001-09-09 01:46:40")), "mtimes not clamped: {text}");
        if nix::unistd::geteuid().is_root() {
            assert!(text.contains("4242/4343"), "{text}");
        }
        assert_eq!(text, listing(&outputs[1].1));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(tree.join("etc/os-release")).unwrap().mtime(), 1_000_000_000, "tree not clamped");
        let gz = std::fs::read(&outputs[1].1).unwrap();
        assert_eq!(&gz[..2], b"\x1f\x8b");
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip header carries a time stamp");
        // Again, after touching the tree: the same bytes.
        let first = std::fs::read(&outputs[0].1).unwrap();
        std::fs::write(tree.join("etc/os-release"), "ID=debian\n").unwrap();
        tree_outputs(&tree, &outputs, 1_000_000_000, &Reporter::silent()).unwrap();
        assert_eq!(first, std::fs::read(&outputs[0].1).unwrap());
        assert_eq!(gz, std::fs::read(&outputs[1].1).unwrap());
    }

    #[test]
    fn squashfs_lists_the_tree_without_proc_contents_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let tree = sample_tree(dir.path());
        let out = dir.path().join("a.squash");
        let outputs = [(ImageFormat::Squashfs, out.clone())];
        tree_outputs(&tree, &outputs, 1_000_000_000, &Reporter::silent()).unwrap();
        let first = std::fs::read(&out).unwrap();
        assert_eq!(&first[..4], b"hsqs");
        let listed = Command::new("unsquashfs").args(["-n", "-lln", "-UTC"]).arg(&out).output().unwrap();
        let text = String::from_utf8(listed.stdout).unwrap();
        assert!(text.contains("/etc/os-release") && text.contains("/usr/bin/dpkg"), "{text}");
        assert!(!text.contains("proc/1"), "{text}");
        assert!(
            text.lines().filter(|l| l.contains("squashfs-root/")).all(|l| l.contains("2001-09-09 01:46")),
            "{text}"
        );
        std::fs::write(tree.join("etc/os-release"), "ID=debian\n").unwrap();
        tree_outputs(&tree, &outputs, 1_000_000_000, &Reporter::silent()).unwrap();
        assert_eq!(first, std::fs::read(&out).unwrap());
    }

    #[test]
    fn failed_conversion_names_the_converter_and_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = [(ImageFormat::Qcow2, dir.path().join("out.qcow2"))];
        let convert = |spec: &ImageSpec| {
            run(&dir.path().join("missing.raw"), &outputs, spec, &Pins::fixed(0, "t"), &Reporter::silent())
                .unwrap_err()
                .to_string()
        };
        let zstd = ImageSpec { compression: Compression::Zstd, ..ImageSpec::default() };
        let err = convert(&zstd);
        assert!(err.contains("qemu-img convert"), "{err}");
        let err = convert(&ImageSpec::default());
        assert!(err.contains("raw disk") && err.contains("missing.raw"), "{err}");
    }

    #[test]
    fn the_default_qcow2_is_compressed_and_reads_back_as_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let text: String = (0..400_000).map(|i| format!("{i} /etc/os-release\n")).collect();
        std::fs::write(&raw, &text.as_bytes()[..(8 << 20)]).unwrap();
        let image = dir.path().join("out.qcow2");
        run(
            &raw,
            &[(ImageFormat::Qcow2, image.clone())],
            &ImageSpec::default(),
            &Pins::fixed(0, "t"),
            &Reporter::silent(),
        )
        .unwrap();
        let size = std::fs::metadata(&image).unwrap().len();
        assert!(size < 2 << 20, "not compressed: {size} bytes");
        // qemu-img puts a feature name table after the header; our writer writes no extensions.
        let header = std::fs::read(&image).unwrap();
        assert_eq!(header[112..120], [0; 8], "written by qemu-img, not crate::qcow2");
        let out = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    #[test]
    fn only_the_default_qcow2_is_written_by_our_own_writer() {
        let default = ImageSpec::default();
        assert!(own_writer(ImageFormat::Qcow2, &default));
        assert!(!own_writer(ImageFormat::Vmdk, &default));
        let options = ImageSpec { qemu_img_options: Some("compat=0.10".into()), ..ImageSpec::default() };
        let zstd = ImageSpec { compression: Compression::Zstd, ..ImageSpec::default() };
        let plain = ImageSpec { compress: false, ..ImageSpec::default() };
        for spec in [options, zstd, plain] {
            assert!(!own_writer(ImageFormat::Qcow2, &spec), "{spec:?}");
        }
    }
}
