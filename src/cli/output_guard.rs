//! `build`'s outputs judged by [`crate::guard`] before any work: every file it will write
//! (images, their checksum files, manifest, SBOM, `--log-file`, `--tree-listing`) and every
//! directory it writes in (`--work-dir`, the cache), against the run's inputs and each other.

use std::path::{Path, PathBuf};

use crate::cli::args::build::{BuildArgs, DEFAULT_RECIPE};
use crate::cli::culprit::{bad, PreflightError};
use crate::element::dib_block_device::CONFIG_VAR;
use crate::guard::{self, Inputs};
use crate::plan::Plan;
use crate::recipe::Recipe;
use crate::stage::publish::{checksum_paths, output_names};

/// Every path `build` writes is a regular file it creates, outside /dev, /proc and /sys, no
/// input of the run, and no other output of it.
pub fn build(args: &BuildArgs, plan: &Plan) -> Result<(), PreflightError> {
    own_dir(args, plan)?;
    let inputs = inputs(args, plan);
    let files = output_files(args, plan);
    for (culprit, path) in &files {
        guard::output_file(path, &inputs).map_err(|problem| bad(culprit, problem))?;
    }
    // Two outputs on one file: the later write would destroy the earlier (`--log-file x.qcow2`).
    for (index, (culprit, path)) in files.iter().enumerate() {
        let resolved = guard::resolve(path);
        if let Some((other, _)) = files[..index].iter().find(|(_, earlier)| guard::resolve(earlier) == resolved) {
            return Err(bad(culprit, format!("is also written as {other}: name another file")));
        }
    }
    let cache = args.cache_dir.clone().unwrap_or_else(crate::paths::default_cache_dir);
    for (option, dir) in [("--work-dir", args.work_dir.as_ref()), ("--cache-dir", Some(&cache))] {
        if let Some(dir) = dir {
            guard::output_dir(dir).map_err(|problem| bad(format!("{option} {}", dir.display()), problem))?;
        }
    }
    Ok(())
}

/// disk-image-create's `NAME.d/`, which the build creates or writes in: absent or a directory.
fn own_dir(args: &BuildArgs, plan: &Plan) -> Result<(), PreflightError> {
    let Some(output) = &args.output else { return Ok(()) };
    let Some((_, first)) = output_names(output, &plan.image.formats).into_iter().next() else { return Ok(()) };
    let Some(dir) = args.layout.own_dir(&first) else { return Ok(()) };
    match std::fs::metadata(&dir) {
        Ok(meta) if !meta.is_dir() => Err(bad(
            format!("-o {}: its directory {}", output.display(), dir.display()),
            "exists and is not a directory: DIB keeps the manifests there",
        )),
        _ => Ok(()),
    }
}

/// (culprit, path) of every file the build writes.
fn output_files(args: &BuildArgs, plan: &Plan) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    if let Some(output) = &args.output {
        let culprit = format!("-o {}", output.display());
        let images = output_names(output, &plan.image.formats);
        for (format, path) in &images {
            let name = if path == output {
                culprit.clone()
            } else {
                format!("{culprit}: the {} output {}", format.name(), path.display())
            };
            files.push((name, path.clone()));
            if args.checksum {
                for sum in checksum_paths(args.layout, path) {
                    files.push((format!("{culprit}: its checksum file {}", sum.display()), sum));
                }
            }
        }
        if let Some((_, first)) = images.first() {
            let manifest = crate::manifest::Manifest::path_in(args.layout, first);
            files.push((format!("{culprit}: its manifest {}", manifest.display()), manifest));
            let sbom = crate::sbom::path_in(args.layout, first);
            files.push((format!("{culprit}: its SBOM {}", sbom.display()), sbom));
        }
    }
    if let Some(log) = &args.log_file {
        files.push((format!("--log-file {}", log.display()), log.clone()));
    }
    if let Some(listing) = &args.tree_listing {
        files.push((format!("--tree-listing {}", listing.display()), listing.clone()));
    }
    files
}

/// What the run reads: the recipe file, files named by the environment (key files, the
/// block-device config), `--mesos-repo-key`, and the element directories.
fn inputs(args: &BuildArgs, plan: &Plan) -> Inputs {
    let mut inputs = Inputs::default();
    if args.elements.is_empty() {
        let name = args.recipe.as_deref().unwrap_or(DEFAULT_RECIPE);
        if let Ok((_, path)) = Recipe::find(name, &args.recipes_dir.search_path()) {
            inputs.file("the recipe", path);
        }
    }
    if let Some(key) = &args.mesos_repo_key {
        inputs.file("--mesos-repo-key", key);
    }
    for (name, value) in &plan.env {
        let value = if name == CONFIG_VAR { value.strip_prefix("file://").unwrap_or(value) } else { value };
        if value.starts_with('/') && Path::new(value).is_file() {
            inputs.file(format!("{name}'s file"), value);
        }
    }
    for element in &plan.elements {
        inputs.dir(format!("element `{}`", element.name), &element.path);
    }
    inputs
}
