//! Bad input found before any work: the culprit and what is wrong with it, as every preflight
//! check (`preflight`, `input_guard`, `output_guard`) reports it.

/// Bad input, found before any work: the culprit and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{culprit}: {problem}")]
pub struct PreflightError {
    pub culprit: String,
    pub problem: String,
}

pub fn bad(culprit: impl Into<String>, problem: impl Into<String>) -> PreflightError {
    PreflightError { culprit: culprit.into(), problem: problem.into() }
}
