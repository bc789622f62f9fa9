//! The disk stage: the finished tree becomes a bootable raw disk file (see [`crate::disk`]).

use std::path::Path;

use anyhow::Context;

use crate::disk::{build_disk, Boot, DiskReport};
use crate::plan::SERIAL_CONSOLE_VAR;
use crate::stage::BuildContext;

/// Build the raw disk `raw` (a path in the work dir) from the build's tree, booting as its
/// architecture does, on the plan's serial console.
pub fn run(ctx: &BuildContext<'_>, raw: &Path) -> anyhow::Result<DiskReport> {
    let plan = ctx.plan;
    let defaults = Boot::for_arch(&plan.arch)
        .with_context(|| format!("no bootable disk is written for architecture {}", plan.arch))?;
    let console = plan.env.get(SERIAL_CONSOLE_VAR).map_or(defaults.console, String::as_str);
    let boot = Boot { console, ..defaults };
    build_disk(&ctx.target, &plan.image, &boot, &plan.release, raw, &ctx.pins, ctx.reporter)
}
