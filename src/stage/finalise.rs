//! The finalise step, after `pre-finalise.d` and `finalise.d` (the pipeline's steps before it):
//! the build-only packages purged, then the manifests DIB's `manifests` element leaves in the
//! image.

use std::fs;
use std::path::Path;

use anyhow::Context;

use super::{packages, phases, BuildContext};
use crate::dpkg_status::{self, InstalledDeb};

/// Where the manifests go inside the image (DIB's `DIB_MANIFEST_IMAGE_DIR`).
pub const MANIFEST_DIR: &str = "etc/dib-manifests";

/// Purge every phase's build-only packages, write `/etc/dib-manifests/dib-element-manifest`
/// (one element per line) and `/etc/dib-manifests/dib-packages` (`name version` per line).
/// Returns the installed packages, sorted, for the JSON manifest.
pub fn run(ctx: &BuildContext) -> anyhow::Result<Vec<InstalledDeb>> {
    purge_build_only(ctx)?;
    let installed = dpkg_status::installed(&ctx.target)?;
    write_manifests(ctx, &installed)?;
    Ok(installed)
}

/// Purged after the last chrooted script (so the package list is final), in one apt run.
fn purge_build_only(ctx: &BuildContext) -> anyhow::Result<()> {
    let build_only: Vec<String> = ctx.plan.packages.values().flat_map(|set| set.build_only.iter().cloned()).collect();
    if build_only.is_empty() {
        return Ok(());
    }
    let _mounts = phases::mount_for_phase(ctx)?;
    packages::purge(ctx, &build_only)
}

fn write_manifests(ctx: &BuildContext, installed: &[InstalledDeb]) -> anyhow::Result<()> {
    let dir = ctx.target.join(MANIFEST_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let elements: String = ctx.plan.elements.iter().map(|e| format!("{}\n", e.name)).collect();
    write(&dir.join("dib-element-manifest"), &elements)?;
    let list: String = installed.iter().map(|deb| format!("{} {}\n", deb.name, deb.version)).collect();
    write(&dir.join("dib-packages"), &list)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
