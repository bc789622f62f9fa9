//! The disk stage: the finished tree becomes a bootable raw disk file (see [`crate::disk`]).

use std::path::Path;

use crate::disk::{build_disk, DiskReport};
use crate::stage::BuildContext;

/// Build the raw disk `raw` (a path in the work dir) from the build's tree.
pub fn run(ctx: &BuildContext<'_>, raw: &Path) -> anyhow::Result<DiskReport> {
    build_disk(&ctx.target, &ctx.plan.image, &ctx.plan.release, raw, &ctx.pins, ctx.reporter)
}
