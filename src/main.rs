//! `mesos-image`: thin entry point. Parsing lives in `cli`, work in the library; exit statuses
//! are documented in `failure` and README ("Exit status").

use std::process::ExitCode;

use clap::Parser;
use mesos_image::cli::{self, Cli};
use mesos_image::{failure, redact};

fn main() -> ExitCode {
    // Before anything can print: secrets in the environment (OS_PASSWORD, DIB_*_PASSWORD, ...).
    let env: Vec<(String, String)> = std::env::vars().collect();
    redact::register_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", failure::one_line(&err));
            ExitCode::from(failure::exit_code(&err))
        }
    }
}
