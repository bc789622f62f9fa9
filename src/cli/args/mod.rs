//! The commands' argument types, apart from the commands: `preflight` checks them and each
//! command runs on them, so neither has to import the other's module.

use clap::Args;

pub mod build;
pub mod cache;
pub mod search;
pub mod test;

/// How `upload` and `test` print their result: a table for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// More output (-v: debug, -vv: trace). Secrets are never printed.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}
