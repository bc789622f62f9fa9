//! `mesos-image test`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct TestArgs {}

pub fn run(_args: TestArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`test` is not implemented yet")
}
