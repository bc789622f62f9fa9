//! The convert stage: the raw disk becomes the requested output formats with `qemu-img convert`.
//! Every output is written under a hidden temporary name, hashed, synced and only renamed into
//! place once all formats succeeded, so a failed build leaves no output behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::hashing::sha256_file;
use crate::progress::Reporter;
use crate::recipe::{ImageFormat, ImageSpec};

/// One image written by the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub format: ImageFormat,
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// `<path>.sha256` in `sha256sum` format, with `--checksum`.
    pub checksum_file: Option<PathBuf>,
}

/// Convert `raw` to every format of `spec.formats`: the first at `output`, the others beside it
/// with their own extension. With `checksum`, also write `<file>.sha256`.
pub fn run(
    raw: &Path,
    output: &Path,
    spec: &ImageSpec,
    checksum: bool,
    reporter: &Reporter,
) -> anyhow::Result<Vec<OutputFile>> {
    let _step = reporter.step("convert");
    let mut pending = PendingFiles::default();
    let mut outputs = Vec::new();
    for (format, path) in output_paths(output, &spec.formats) {
        let temporary = temporary_path(&path)?;
        pending.add(temporary.clone(), path.clone());
        {
            let _step = reporter.step(format!("qemu-img convert -O {} -> {}", format.qemu_name(), path.display()));
            reporter.run("qemu-img convert", &mut convert_command(raw, &temporary, format, spec))?;
        }
        sync_file(&temporary)?;
        let (sha256, size) = sha256_file(&temporary).with_context(|| format!("cannot hash {}", temporary.display()))?;
        let checksum_file = if checksum {
            let sum_path = checksum_path(&path);
            let sum_temporary = temporary_path(&sum_path)?;
            pending.add(sum_temporary.clone(), sum_path.clone());
            write_synced(&sum_temporary, &sha256sum_line(&sha256, &path))?;
            Some(sum_path)
        } else {
            None
        };
        outputs.push(OutputFile { path, format, size, sha256, checksum_file });
    }
    pending.commit()?;
    Ok(outputs)
}

/// Where each format lands. When `output`'s extension names one of the requested formats
/// (`-t raw,qcow2 -o x.qcow2`), every format gets its own extension (`x.raw`, `x.qcow2`), so no
/// file is written under another format's name; otherwise the first format goes to `output` as
/// given and each further one swaps the extension. Repeated formats are written once.
pub fn output_paths(output: &Path, formats: &[ImageFormat]) -> Vec<(ImageFormat, PathBuf)> {
    let named = output
        .extension()
        .and_then(|ext| ext.to_str())
        .and_then(|ext| ext.parse::<ImageFormat>().ok())
        .is_some_and(|ext| formats.contains(&ext));
    let mut paths: Vec<(ImageFormat, PathBuf)> = Vec::new();
    for (index, format) in formats.iter().enumerate() {
        if paths.iter().any(|(seen, _)| seen == format) {
            continue;
        }
        let path = if index == 0 && !named { output.to_owned() } else { output.with_extension(format.name()) };
        paths.push((*format, path));
    }
    paths
}

fn convert_command(raw: &Path, destination: &Path, format: ImageFormat, spec: &ImageSpec) -> Command {
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-f", "raw", "-O", format.qemu_name()]);
    // Only qcow2 compresses in a way every reader handles.
    if spec.compress && format == ImageFormat::Qcow2 {
        command.arg("-c");
    }
    // `-o` options are format-specific (compat=0.10 is qcow2's); raw takes none.
    if let Some(options) = spec.qemu_img_options.as_deref().filter(|_| format != ImageFormat::Raw) {
        command.args(["-o", options]);
    }
    command.arg(raw).arg(destination);
    command
}

/// `<dir>/.<name>.tmp-<pid>`: hidden, in the same directory so the rename is atomic.
fn temporary_path(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("output path {} has no file name", path.display()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The line `sha256sum -c` reads: digest, two spaces, the file's name (relative to its dir).
fn sha256sum_line(digest: &str, path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{digest}  {name}\n")
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    File::open(path).and_then(|file| file.sync_all()).with_context(|| format!("cannot sync {}", path.display()))
}

fn write_synced(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    sync_file(path)
}

/// Temporary files and their final names; removed on drop unless committed.
#[derive(Default)]
struct PendingFiles {
    files: Vec<(PathBuf, PathBuf)>,
}

impl PendingFiles {
    fn add(&mut self, temporary: PathBuf, target: PathBuf) {
        self.files.push((temporary, target));
    }

    /// Rename every file into place, then sync the directories so the renames survive a crash.
    fn commit(mut self) -> anyhow::Result<()> {
        let files = std::mem::take(&mut self.files);
        for (index, (temporary, target)) in files.iter().enumerate() {
            if let Err(err) = std::fs::rename(temporary, target) {
                // Put the rest back under the guard so they are removed.
                self.files = files[index..].to_vec();
                return Err(err)
                    .with_context(|| format!("cannot rename {} to {}", temporary.display(), target.display()));
            }
        }
        for (_, target) in &files {
            if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for PendingFiles {
    fn drop(&mut self) {
        for (temporary, _) in &self.files {
            let _ = std::fs::remove_file(temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_naming_a_requested_format_gives_each_format_its_own() {
        let paths = output_paths(Path::new("x.qcow2"), &[ImageFormat::Raw, ImageFormat::Qcow2]);
        assert_eq!(
            paths,
            vec![(ImageFormat::Raw, PathBuf::from("x.raw")), (ImageFormat::Qcow2, PathBuf::from("x.qcow2"))]
        );
    }

    #[test]
    fn first_format_keeps_the_given_name() {
        let paths =
            output_paths(Path::new("/o/img.qcow2"), &[ImageFormat::Qcow2, ImageFormat::Vhd, ImageFormat::Qcow2]);
        assert_eq!(
            paths,
            vec![(ImageFormat::Qcow2, PathBuf::from("/o/img.qcow2")), (ImageFormat::Vhd, PathBuf::from("/o/img.vhd"))]
        );
    }

    #[test]
    fn temporary_is_hidden_beside_the_output() {
        let temporary = temporary_path(Path::new("/o/img.qcow2")).unwrap();
        assert_eq!(temporary, PathBuf::from(format!("/o/.img.qcow2.tmp-{}", std::process::id())));
        assert_eq!(temporary_path(Path::new("img")).unwrap().parent(), Some(Path::new(".")));
    }

    #[test]
    fn checksum_line_is_sha256sum_format() {
        assert_eq!(sha256sum_line("ab", Path::new("/o/img.qcow2")), "ab  img.qcow2\n");
        assert_eq!(checksum_path(Path::new("/o/img.qcow2")), PathBuf::from("/o/img.qcow2.sha256"));
    }

    #[test]
    fn compression_and_options_apply_where_they_mean_something() {
        let spec = ImageSpec { compress: true, qemu_img_options: Some("compat=0.10".into()), ..ImageSpec::default() };
        let args = |format| {
            convert_command(Path::new("r"), Path::new("o"), format, &spec)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(args(ImageFormat::Qcow2), "convert -f raw -O qcow2 -c -o compat=0.10 r o");
        assert_eq!(args(ImageFormat::Raw), "convert -f raw -O raw r o");
        assert_eq!(args(ImageFormat::Vhd), "convert -f raw -O vpc -o compat=0.10 r o");
    }

    #[test]
    fn failed_conversion_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.qcow2");
        let missing_raw = dir.path().join("missing.raw");
        let spec = ImageSpec::default();
        let err = run(&missing_raw, &output, &spec, true, &Reporter::silent()).unwrap_err();
        assert!(err.to_string().contains("qemu-img convert"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn second_format_failure_removes_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        File::create(&raw).unwrap().set_len(1 << 20).unwrap();
        let output = dir.path().join("out.qcow2");
        // vmdk rejects qcow2's compat option, after qcow2 itself succeeded.
        let spec = ImageSpec {
            formats: vec![ImageFormat::Qcow2, ImageFormat::Vmdk],
            qemu_img_options: Some("compat=0.10".into()),
            ..ImageSpec::default()
        };
        assert!(run(&raw, &output, &spec, true, &Reporter::silent()).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("disk.raw")]);
    }
}
