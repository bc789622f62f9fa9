//! Errors at the element module's edge: each names the culprit element, file or path entry.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ElementError {
    /// DIB: `InvalidElementDir`.
    #[error("ELEMENTS_PATH entry `{}` is not a directory", path.display())]
    InvalidPathEntry { path: PathBuf },
    /// DIB: `MissingElementException`.
    #[error("element `{name}` not found{}", required_by_suffix(required_by))]
    NotFound { name: String, required_by: Option<String> },
    /// DIB: `AlreadyProvidedException` (a requested element is provided by another one).
    #[error("element `{name}` was requested but is already provided by `{provided_by}`")]
    AlreadyProvided { name: String, provided_by: String },
    /// Two elements of the resolved set provide the same name.
    #[error("elements `{first}` and `{second}` both provide `{name}`")]
    ProvideConflict { name: String, first: String, second: String },
    /// DIB: `MissingOSException`.
    #[error("no element provides `operating-system` (requested: {requested}); include an operating-system element such as ubuntu or debian-minimal")]
    MissingOperatingSystem { requested: String },
    // Not named `source`: thiserror would chain it and `{:#}` would print the cause twice.
    #[error("{}: cannot read: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}{}: {message}", path.display(), line_suffix(*line))]
    Malformed { path: PathBuf, line: Option<usize>, message: String },
    #[error("{phase}/{script} is shipped by both `{first}` and `{second}`")]
    DuplicateScript { phase: String, script: String, first: String, second: String },
    /// An element of diskimage-builder's tree that needs its loop-mounted image (docs/dib-compat.md).
    #[error("element `{name}` (diskimage-builder's) cannot run under mesos-image: {why}")]
    Refused { name: String, why: String },
    #[error("sourcing environment.d file {}: {message}", path.display())]
    Environment { path: PathBuf, message: String },
}

fn required_by_suffix(required_by: &Option<String>) -> String {
    match required_by {
        Some(parent) => format!(" (required by `{parent}`)"),
        None => String::new(),
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}
