//! How a failed command ends: one redacted line on stderr and a documented exit status.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the build, upload, test or another operation failed |
//! | 2 | usage: a bad option, value, recipe or element, found before any work |
//! | 128+N | stopped by signal N (130 for SIGINT, 143 for SIGTERM) |

use crate::cli::preflight::PreflightError;
use crate::element::ElementError;
use crate::manifest::ManifestError;
use crate::plan::PlanError;
use crate::recipe::RecipeError;
use crate::upload::auth::AuthError;
use crate::upload::clouds::CloudsError;
use crate::upload::record::RecordError;
use crate::upload::UploadError;

/// Exit status of a failed operation.
pub const FAILED: u8 = 1;
/// Exit status of bad input (also what clap uses for a malformed command line).
pub const USAGE: u8 = 2;

/// The error as one line: its context chain joined by `: `, with a cause left out when the
/// message before it already ends with it (error types that print their source themselves),
/// line breaks folded, and secrets masked.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.ends_with(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    let folded: Vec<&str> = line.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    crate::redact::text(&folded.join(" | "))
}

/// The exit status for `err`: usage errors are input the user can fix before any work started.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    // A stopped build fails through whatever command the signal killed; the flag says why.
    if let Some(signal) = crate::sandbox::stop_signal() {
        return 128 + signal as u8;
    }
    for cause in err.chain() {
        if matches!(cause.downcast_ref::<UploadError>(), Some(UploadError::Interrupted)) {
            return 128 + nix::libc::SIGINT as u8;
        }
        if cause.is::<PreflightError>()
            || cause.is::<RecipeError>()
            || cause.is::<PlanError>()
            || cause.is::<ElementError>()
            || cause.is::<RecordError>()
            || cause.is::<ManifestError>()
            || cause.is::<CloudsError>()
            || is_missing_credentials(cause)
        {
            return USAGE;
        }
    }
    FAILED
}

/// Credentials the user has not given (as opposed to ones Keystone rejected).
fn is_missing_credentials(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        cause.downcast_ref::<AuthError>(),
        Some(AuthError::NoAuthUrl | AuthError::Incomplete(_) | AuthError::UnsupportedType(_) | AuthError::Clouds(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: cannot read: {source}")]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_printed_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(21);
        let err = anyhow::Error::new(Read { path: "x".into(), source: io }).context("recipe x");
        let line = one_line(&err);
        assert_eq!(line.matches("os error 21").count(), 1, "{line}");
        assert!(line.starts_with("recipe x: x: cannot read: "), "{line}");
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let err = anyhow::anyhow!("first\n  second\n");
        assert_eq!(one_line(&err), "first | second");
    }
}
