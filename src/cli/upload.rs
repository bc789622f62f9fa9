//! `mesos-image upload`.

use clap::Args;

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct UploadArgs {}

pub fn run(_args: UploadArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    anyhow::bail!("`upload` is not implemented yet")
}
