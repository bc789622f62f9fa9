//! The convert stage: the raw disk becomes the requested output formats with `qemu-img convert`,
//! written in the build's scratch directory. The publish stage copies them into place.

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
    let _step = reporter.step("convert");
    for (format, path) in outputs {
        let _step = reporter.step(format!("qemu-img convert -O {} -> {}", format.qemu_name(), path.display()));
        reporter.run("qemu-img convert", &mut convert_command(raw, path, *format, spec))?;
        // qemu-img stamps these two from the clock and the random pool.
        match format {
            ImageFormat::Vhd => formats::pin_vhd(path, pins)?,
            ImageFormat::Vmdk => formats::pin_vmdk(path, pins)?,
            ImageFormat::Qcow2 | ImageFormat::Raw => {}
        }
    }
    Ok(())
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

    #[test]
    fn failed_conversion_names_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = [(ImageFormat::Qcow2, dir.path().join("out.qcow2"))];
        let err = run(
            &dir.path().join("missing.raw"),
            &outputs,
            &ImageSpec::default(),
            &Pins::fixed(0, "t"),
            &Reporter::silent(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("qemu-img convert"), "{err}");
    }
}
