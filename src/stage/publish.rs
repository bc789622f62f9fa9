//! The publish stage: converted images and their checksum files land beside `--output`, the
//! manifest and SBOM beside them or, as disk-image-create, in DIB's `NAME.d/`
//! ([`OutputLayout`]). Every file goes through [`crate::output`]'s atomic path and is hashed
//! once, while it is copied into place. Images restored from the stage cache take the same path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::io::Digests;
use crate::layout::OutputLayout;
use crate::manifest::{Manifest, OutputEntry};
use crate::output::{self, Staged};
use crate::recipe::ImageFormat;

/// Where each requested format lands, after checking that `output`'s directory exists.
pub fn output_paths(output: &Path, formats: &[ImageFormat]) -> anyhow::Result<Vec<(ImageFormat, PathBuf)>> {
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("--output: directory {} does not exist", dir.display());
    }
    if output.file_name().is_none() {
        bail!("--output: {} is not a file name", output.display());
    }
    Ok(output_names(output, formats))
}

/// The output-name rule. When `output`'s extension names one of the requested formats
/// (`-t raw,qcow2 -o x.qcow2`), every format gets its own extension (`x.raw`, `x.qcow2`), so no
/// file is written under another format's name; otherwise the first format goes to `output` as
/// given and each further one swaps the extension. Repeated formats are written once.
pub fn output_names(output: &Path, formats: &[ImageFormat]) -> Vec<(ImageFormat, PathBuf)> {
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
        let path = if index == 0 && !named { output.to_owned() } else { output.with_extension(format.extension()) };
        paths.push((*format, path));
    }
    paths
}

/// `<image>.sha256`.
pub fn checksum_path(image: &Path) -> PathBuf {
    with_suffix(image, ".sha256")
}

/// `<image>.md5` (disk-image-create's `--checksum`).
pub fn md5_path(image: &Path) -> PathBuf {
    with_suffix(image, ".md5")
}

/// The checksum files `--checksum` writes for `image`: `.sha256`, and in DIB's layout `.md5`
/// first, as DIB writes both.
pub fn checksum_paths(layout: OutputLayout, image: &Path) -> Vec<PathBuf> {
    match layout {
        OutputLayout::Beside => vec![checksum_path(image)],
        OutputLayout::Dib => vec![md5_path(image), checksum_path(image)],
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// One image to publish: the finished file in scratch (or the cache) and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub format: ImageFormat,
    pub source: PathBuf,
    pub destination: PathBuf,
}

/// The images of one build: each destination's file is converted under the same name in
/// `scratch`, then copied into place.
pub fn image_files(destinations: &[(ImageFormat, PathBuf)], scratch: &Path) -> Vec<ImageFile> {
    destinations
        .iter()
        .map(|(format, destination)| ImageFile {
            format: *format,
            source: scratch.join(file_name(destination)),
            destination: destination.clone(),
        })
        .collect()
}

/// Copy every image into place, hashing while copying (md5, sha256 and sha512 in that one pass:
/// the manifest records all three, so `upload` need not hash), with its checksum files beside
/// it when `checksum` is set ([`checksum_paths`]). All files are staged before any is named, so
/// a failure publishes nothing.
pub fn images(files: &[ImageFile], checksum: bool, layout: OutputLayout) -> anyhow::Result<Vec<OutputEntry>> {
    let mut staged: Vec<Staged> = Vec::new();
    let mut entries = Vec::new();
    for file in files {
        let (image, digests) = output::stage_image(&file.source, &file.destination)?;
        entries.push(OutputEntry::new(file_name(&file.destination), file.format.name().to_owned(), &digests));
        if checksum {
            for (path, line) in checksum_lines(layout, &file.destination, &digests) {
                staged.push(output::stage_reader(&mut line.as_bytes(), &path)?);
            }
        }
        staged.push(image);
    }
    for file in staged {
        file.commit()?;
    }
    Ok(entries)
}

/// Each checksum file of `image` with its one line. Ours names the file, for `sha256sum -c` in
/// its directory; DIB's are what `md5sum NAME.<fmt>` and `sha256sum NAME.<fmt>` print, the
/// image named as the command line gave it (`-o DIR/NAME`).
fn checksum_lines(layout: OutputLayout, image: &Path, digests: &Digests) -> Vec<(PathBuf, String)> {
    match layout {
        OutputLayout::Dib => {
            let named = image.to_string_lossy();
            vec![
                (md5_path(image), sum_line(&digests.md5, &named)),
                (checksum_path(image), sum_line(&digests.sha256, &named)),
            ]
        }
        OutputLayout::Beside => vec![(checksum_path(image), sum_line(&digests.sha256, &file_name(image)))],
    }
}

/// The directory the layout keeps the build's other files in (`NAME.d/`), made if missing.
fn own_dir(layout: OutputLayout, first_image: &Path) -> anyhow::Result<()> {
    if let Some(dir) = layout.own_dir(first_image) {
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(err) => return Err(err).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    Ok(())
}

/// Write `manifest` where `layout` keeps it for the first image.
pub fn manifest(manifest: &Manifest, first_image: &Path, layout: OutputLayout) -> anyhow::Result<PathBuf> {
    own_dir(layout, first_image)?;
    let path = Manifest::path_in(layout, first_image);
    output::publish_bytes(&manifest.to_json()?, &path)?;
    Ok(path)
}

/// Write the SPDX document (`<first image>.spdx.json`) where `layout` keeps it.
pub fn sbom(document: &[u8], first_image: &Path, layout: OutputLayout) -> anyhow::Result<PathBuf> {
    own_dir(layout, first_image)?;
    let path = crate::sbom::path_in(layout, first_image);
    output::publish_bytes(document, &path)?;
    Ok(path)
}

/// Write the finished tree's file-by-file description where `--check-reproducible` asked.
pub fn tree_listing(text: &str, path: &Path) -> anyhow::Result<()> {
    output::publish_bytes(text.as_bytes(), path)?;
    Ok(())
}

/// Cache names of [`saved_files`] start with this; the rest is the path under `NAME.d/` with
/// `%` and `/` escaped, as the cache holds plain file names only.
const SAVED_CACHE_PREFIX: &str = "image.d%2F";

/// The cache's name for the saved file at `relative` (under `NAME.d/`).
pub fn saved_cache_name(relative: &str) -> String {
    format!("{SAVED_CACHE_PREFIX}{}", relative.replace('%', "%25").replace('/', "%2F"))
}

/// The path under `NAME.d/` of a cache entry's file, if it is a saved file.
fn saved_relative(cache_name: &str) -> Option<String> {
    let escaped = cache_name.strip_prefix(SAVED_CACHE_PREFIX)?;
    Some(escaped.replace("%2F", "/").replace("%25", "%"))
}

/// The files outside scripts saved in `source` (`DIB_MANIFEST_SAVE_DIR`, e.g. `dib-manifests/`),
/// as (path under it, file): published into `NAME.d/` in DIB's layout; `mesos-image build` keeps
/// only the copy inside the image. Regular files only, sorted.
pub fn saved_files(source: &Path, first_image: &Path, layout: OutputLayout) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    collect_files(source, "", &mut files)?;
    files.sort();
    if let Some(dir) = layout.own_dir(first_image) {
        for (relative, file) in &files {
            publish_saved(file, &dir, relative)?;
        }
    }
    Ok(files)
}

fn publish_saved(file: &Path, dir: &Path, relative: &str) -> anyhow::Result<()> {
    let destination = dir.join(relative);
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    output::publish_file(file, &destination)?;
    Ok(())
}

fn collect_files(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().with_context(|| format!("cannot read {}", entry.path().display()))?;
        if kind.is_dir() {
            collect_files(&entry.path(), &format!("{name}/"), files)?;
        } else if kind.is_file() {
            files.push((name, entry.path()));
        }
    }
    Ok(())
}

/// Publish images stored in the cache under new names. `stored` are the cache entry's files
/// (name, path); the cached manifest names the images. Each image must still hash to what the
/// manifest recorded, so a damaged cache entry is an error, not a bad image.
pub fn from_cache(
    stored: &[(String, PathBuf)],
    destinations: &[(ImageFormat, PathBuf)],
    checksum: bool,
    layout: OutputLayout,
) -> anyhow::Result<Manifest> {
    let lookup = |name: &str| stored.iter().find(|(stored_name, _)| stored_name == name).map(|(_, path)| path);
    let manifest_source = stored
        .iter()
        .find(|(name, _)| name.ends_with(".manifest.json"))
        .map(|(_, path)| path)
        .context("cache entry has no manifest")?;
    let bytes = std::fs::read(manifest_source)
        .with_context(|| format!("cannot read the cached manifest {}", manifest_source.display()))?;
    let mut manifest: Manifest = serde_json::from_slice(&bytes).context("cached manifest is unreadable")?;
    let mut files = Vec::new();
    for (entry, (format, destination)) in manifest.outputs.iter().zip(destinations) {
        let source = lookup(&entry.file).with_context(|| format!("cache entry lacks {}", entry.file))?;
        files.push(ImageFile { format: *format, source: source.clone(), destination: destination.clone() });
    }
    let published = images(&files, checksum, layout)?;
    for (recorded, copied) in manifest.outputs.iter().zip(&published) {
        if recorded.sha256 != copied.sha256 {
            bail!(
                "cached image {} is damaged (sha256 {} instead of {})",
                recorded.file,
                copied.sha256,
                recorded.sha256
            );
        }
    }
    // The SBOM names the image files: under new names, it is rewritten to match.
    if let Some(sbom_source) = manifest.sbom.as_deref().and_then(lookup) {
        let mut text = std::fs::read_to_string(sbom_source)
            .with_context(|| format!("cannot read the cached SBOM {}", sbom_source.display()))?;
        for (recorded, copied) in manifest.outputs.iter().zip(&published) {
            text = text.replace(&format!("\"{}\"", recorded.file), &format!("\"{}\"", copied.file));
        }
        let first = destinations.first().map(|(_, path)| path.as_path()).context("no destination")?;
        let path = sbom(text.as_bytes(), first, layout)?;
        manifest.sbom = Some(file_name(&path));
    }
    manifest.outputs = published;
    // What outside scripts saved (dib-manifests/) goes back into NAME.d/ in DIB's layout.
    if let Some(dir) = destinations.first().and_then(|(_, first)| layout.own_dir(first)) {
        for (name, path) in stored {
            if let Some(relative) = saved_relative(name) {
                publish_saved(path, &dir, &relative)?;
            }
        }
    }
    Ok(manifest)
}

/// The line `md5sum`/`sha256sum` print and `-c` reads: digest, two spaces, the name. A name
/// with a backslash, newline or carriage return is escaped and the line starts with a
/// backslash, as coreutils (9.1) writes it.
fn sum_line(digest: &str, name: &str) -> String {
    if !name.contains(['\\', '\n', '\r']) {
        return format!("{digest}  {name}\n");
    }
    let escaped = name.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r");
    format!("\\{digest}  {escaped}\n")
}

pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_formats_follow_the_same_rule_and_squashfs_is_named_as_dib_names_it() {
        let paths = output_names(Path::new("x.qcow2"), &[ImageFormat::Qcow2, ImageFormat::Tar, ImageFormat::Squashfs]);
        let names: Vec<_> = paths.iter().map(|(_, p)| p.display().to_string()).collect();
        assert_eq!(names, ["x.qcow2", "x.tar", "x.squash"]);
        let paths = output_names(Path::new("x.tgz"), &[ImageFormat::Tar, ImageFormat::Tgz]);
        let names: Vec<_> = paths.iter().map(|(_, p)| p.display().to_string()).collect();
        assert_eq!(names, ["x.tar", "x.tgz"]);
    }

    #[test]
    fn first_format_keeps_the_given_name_and_duplicates_go() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("img.qcow2");
        let paths = output_paths(&output, &[ImageFormat::Qcow2, ImageFormat::Vhd, ImageFormat::Qcow2]).unwrap();
        assert_eq!(paths, vec![(ImageFormat::Qcow2, output.clone()), (ImageFormat::Vhd, dir.path().join("img.vhd"))]);
    }

    #[test]
    fn an_extension_naming_a_requested_format_gives_each_format_its_own() {
        let paths = output_names(Path::new("x.qcow2"), &[ImageFormat::Raw, ImageFormat::Qcow2]);
        assert_eq!(
            paths,
            vec![(ImageFormat::Raw, PathBuf::from("x.raw")), (ImageFormat::Qcow2, PathBuf::from("x.qcow2"))]
        );
    }

    #[test]
    fn missing_output_directory_is_refused() {
        let err = output_paths(Path::new("/nonexistent-dir-xyz/img.qcow2"), &[ImageFormat::Qcow2]).unwrap_err();
        assert_eq!(err.to_string(), "--output: directory /nonexistent-dir-xyz does not exist");
    }

    #[test]
    fn checksum_line_is_sha256sum_format() {
        assert_eq!(sum_line("ab", "img.qcow2"), "ab  img.qcow2\n");
        assert_eq!(checksum_path(Path::new("/o/img.qcow2")), PathBuf::from("/o/img.qcow2.sha256"));
        // coreutils' escapes, checked against md5sum 9.1.
        assert_eq!(sum_line("ab", "a\\b"), "\\ab  a\\\\b\n");
        assert_eq!(sum_line("ab", "a\rb\nc"), "\\ab  a\\rb\\nc\n");
    }

    #[test]
    fn dib_checksums_are_md5_and_sha256_naming_the_image_as_given() {
        let digests = Digests { sha256: "s".into(), md5: "m".into(), ..Digests::default() };
        let lines = checksum_lines(OutputLayout::Dib, Path::new("out/img.qcow2"), &digests);
        assert_eq!(
            lines,
            vec![
                (PathBuf::from("out/img.qcow2.md5"), "m  out/img.qcow2\n".to_owned()),
                (PathBuf::from("out/img.qcow2.sha256"), "s  out/img.qcow2\n".to_owned()),
            ]
        );
        assert_eq!(
            checksum_paths(OutputLayout::Dib, Path::new("/o/x.raw")),
            [PathBuf::from("/o/x.raw.md5"), PathBuf::from("/o/x.raw.sha256")]
        );
        assert_eq!(checksum_paths(OutputLayout::Beside, Path::new("/o/x.raw")), [PathBuf::from("/o/x.raw.sha256")]);
    }

    #[test]
    fn images_are_hashed_once_and_checksummed_beside() {
        let scratch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let source = scratch.path().join("disk");
        std::fs::write(&source, b"abc").unwrap();
        let destination = out.path().join("img.raw");
        let files = [ImageFile { format: ImageFormat::Raw, source, destination: destination.clone() }];
        let entries = images(&files, true, OutputLayout::Beside).unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(entries[0].sha256, abc);
        // All three digests from the one copy: upload takes them from the manifest.
        assert_eq!(entries[0].md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert!(entries[0].sha512.as_deref().is_some_and(|s| s.starts_with("ddaf35a193617aba")), "{:?}", entries[0]);
        assert_eq!(entries[0].digests().map(|d| d.bytes), Some(3));
        assert_eq!(entries[0].file, "img.raw");
        assert_eq!(std::fs::read_to_string(checksum_path(&destination)).unwrap(), format!("{abc}  img.raw\n"));
    }

    #[test]
    fn disk_image_create_gets_dibs_files_beside_and_the_rest_in_name_d() {
        let scratch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let source = scratch.path().join("disk");
        std::fs::write(&source, b"abc").unwrap();
        let destination = out.path().join("img.qcow2");
        let files = [ImageFile { format: ImageFormat::Qcow2, source, destination: destination.clone() }];
        images(&files, true, OutputLayout::Dib).unwrap();
        manifest(&Manifest::default(), &destination, OutputLayout::Dib).unwrap();
        sbom(b"{}", &destination, OutputLayout::Dib).unwrap();
        let named = destination.display();
        let md5 = std::fs::read_to_string(md5_path(&destination)).unwrap();
        assert_eq!(md5, format!("900150983cd24fb0d6963f7d28e17f72  {named}\n"));
        let sha = std::fs::read_to_string(checksum_path(&destination)).unwrap();
        assert!(sha.starts_with("ba7816bf") && sha.ends_with(&format!("  {named}\n")), "{sha}");
        let listing = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(listing(out.path()), ["img.d", "img.qcow2", "img.qcow2.md5", "img.qcow2.sha256"]);
        assert_eq!(listing(&out.path().join("img.d")), ["img.qcow2.manifest.json", "img.qcow2.spdx.json"]);
    }

    #[test]
    fn saved_files_go_into_name_d_and_round_trip_through_cache_names() {
        let scratch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let saved = scratch.path().join("image.d");
        std::fs::create_dir_all(saved.join("dib-manifests")).unwrap();
        std::fs::write(saved.join("dib-manifests/dib_arguments"), "-x\n").unwrap();
        let first = out.path().join("img.qcow2");
        let files = saved_files(&saved, &first, OutputLayout::Dib).unwrap();
        assert_eq!(files, [("dib-manifests/dib_arguments".to_owned(), saved.join("dib-manifests/dib_arguments"))]);
        assert_eq!(std::fs::read_to_string(out.path().join("img.d/dib-manifests/dib_arguments")).unwrap(), "-x\n");
        let name = saved_cache_name("dib-manifests/100%");
        assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        assert_eq!(saved_relative(&name).as_deref(), Some("dib-manifests/100%"));
        assert_eq!(saved_relative("img.qcow2"), None);
        // Ours keeps them only inside the image; a build without them has none.
        let beside = tempfile::tempdir().unwrap();
        saved_files(&saved, &beside.path().join("x.qcow2"), OutputLayout::Beside).unwrap();
        assert_eq!(std::fs::read_dir(beside.path()).unwrap().count(), 0);
        assert!(saved_files(&scratch.path().join("none"), &first, OutputLayout::Dib).unwrap().is_empty());
    }

    #[test]
    fn a_missing_second_image_publishes_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let first = scratch.path().join("one");
        std::fs::write(&first, b"1").unwrap();
        let files = [
            ImageFile { format: ImageFormat::Qcow2, source: first, destination: out.path().join("img.qcow2") },
            ImageFile {
                format: ImageFormat::Vhd,
                source: scratch.path().join("missing"),
                destination: out.path().join("img.vhd"),
            },
        ];
        assert!(images(&files, true, OutputLayout::Dib).is_err());
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }
}
