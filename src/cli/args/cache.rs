//! `mesos-image cache`'s arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The largest `--older-than` whose age in seconds fits the clock's 64 bits: a larger one
/// would wrap around and prune recent entries.
const MAX_DAYS: u64 = u64::MAX / 86_400;

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Cache directory.
    #[arg(long, global = true, value_name = "DIR", env = "MESOS_IMAGE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List stage snapshots and stored images, newest first, with the apt cache size.
    List,
    /// Remove cache entries (by default: those unused for 14 days).
    Prune {
        /// Remove entries not used for this many days.
        #[arg(long, value_name = "DAYS", default_value_t = 14, conflicts_with = "all",
              value_parser = clap::value_parser!(u64).range(0..=MAX_DAYS))]
        older_than: u64,
        /// Remove every entry and the downloaded packages.
        #[arg(long)]
        all: bool,
        /// Also empty the apt package cache.
        #[arg(long)]
        apt: bool,
    },
}
