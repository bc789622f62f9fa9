//! Command-line interface: one module per subcommand, each with its clap args and `run`.

use clap::{Parser, Subcommand};

pub mod args;
pub mod build;
pub mod cache;
pub mod check_reproducible;
pub mod culprit;
pub mod dib;
pub mod diff;
pub mod elements;
pub mod input_guard;
pub mod output_guard;
pub mod preflight;
pub mod recipes;
pub mod rootless;
pub mod test;
pub mod upload;

pub use args::{GlobalOpts, OutputFormat};

/// Build cloud guest images from diskimage-builder elements, without device-mapper or leaks.
#[derive(Debug, Parser)]
#[command(name = "mesos-image", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a disk image from a recipe or from elements (DIB mode).
    Build(Box<args::build::BuildArgs>),
    /// Upload an image to Glance (Keystone v3 auth, OS_* variables, clouds.yaml).
    Upload(Box<upload::UploadArgs>),
    /// Boot an image in qemu and run its recipe's checks inside the guest.
    Test(args::test::TestArgs),
    /// Inspect the element graph.
    Elements(elements::ElementsArgs),
    /// List and show recipes.
    Recipes(recipes::RecipesArgs),
    /// Inspect and prune the package and stage caches.
    Cache(args::cache::CacheArgs),
    /// Packages added, removed and changed between two images (from their manifests).
    Diff(diff::DiffArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Build(args) => build::run(*args, &global),
        Command::Upload(args) => upload::run(*args, &global),
        Command::Test(args) => test::run(args, &global),
        Command::Elements(args) => elements::run(args, &global),
        Command::Recipes(args) => recipes::run(args, &global),
        Command::Cache(args) => cache::run(args, &global),
        Command::Diff(args) => diff::run(args, &global),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "mesos-image", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Log to stderr; `-v` raises the level, `--quiet` keeps only errors, `RUST_LOG` wins over both.
pub fn init_logging(global: &GlobalOpts) {
    use tracing_subscriber::EnvFilter;
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::Stderr)
        // Logs piped to a file or CI stay free of colour codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}
