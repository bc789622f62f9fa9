//! `mesos-image`: thin entry point. Parsing lives in `cli`, work in the library.

use std::process::ExitCode;

use clap::Parser;
use mesos_image::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, culprit first: `{:#}` joins the context chain with ": ".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
