//! `mesos-image build`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct BuildArgs {}

pub fn run(_args: BuildArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`build` is not implemented yet")
}
