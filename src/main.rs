//! `mesos-image`: thin entry point. Parsing lives in `cli`, work in the library; exit statuses
//! are documented in `failure` and README ("Exit status").

use std::process::ExitCode;

use mesos_image::cli;
use mesos_image::{failure, progress, redact};

fn main() -> ExitCode {
    // Before anything can print: secrets in the environment (OS_PASSWORD, DIB_*_PASSWORD, ...).
    let env: Vec<(String, String)> = std::env::vars().collect();
    redact::register_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = match args.first() {
        // Started through a `disk-image-create` symlink: DIB's command line.
        Some(argv0) if cli::dib::invoked_as_disk_image_create(argv0) => cli::dib::parse(args),
        // disk-image-create's flags that `build` does not implement: one line naming them.
        _ => cli::dib::parse_mesos_image(args),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            progress::stderr_line(&format!("error: {}", failure::one_line(&err)));
            return ExitCode::from(failure::USAGE);
        }
    };
    cli::init_logging(&cli.global);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            progress::stderr_line(&format!("error: {}", failure::one_line(&err)));
            ExitCode::from(failure::exit_code(&err))
        }
    }
}
