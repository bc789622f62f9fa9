//! `mesos-image elements`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct ElementsArgs {}

pub fn run(_args: ElementsArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`elements` is not implemented yet")
}
