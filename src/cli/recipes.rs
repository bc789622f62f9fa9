//! `mesos-image recipes`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct RecipesArgs {}

pub fn run(_args: RecipesArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`recipes` is not implemented yet")
}
