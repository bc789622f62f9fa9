//! `mesos-image cache`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct CacheArgs {}

pub fn run(_args: CacheArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`cache` is not implemented yet")
}
