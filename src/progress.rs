//! Progress and logs: one line per stage and script, full command output to the log file.
//!
//! Every external command of a build goes through [`Reporter::run`], so its output lands in the
//! log and the tail of a failing command lands in the error.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How many output lines of a failed command are kept for the error message.
const TAIL_LINES: usize = 25;

/// Reports progress to the terminal and writes the build log.
pub struct Reporter {
    quiet: bool,
    verbose: bool,
    log: Mutex<Option<File>>,
    timings: Mutex<Vec<(String, Duration)>>,
}

/// A command that failed, with the last lines it printed.
#[derive(Debug, thiserror::Error)]
#[error("{label} failed ({status}){}", tail_suffix(.tail))]
pub struct CommandFailed {
    pub label: String,
    pub status: String,
    pub tail: Vec<String>,
}

fn tail_suffix(tail: &[String]) -> String {
    match tail.last() {
        Some(last) => format!(": {last}"),
        None => String::new(),
    }
}

impl Reporter {
    pub fn new(quiet: bool, verbose: bool, log_file: Option<&Path>) -> anyhow::Result<Reporter> {
        let log = match log_file {
            Some(path) => Some(File::create(path).with_context(|| format!("cannot create log file {}", path.display()))?),
            None => None,
        };
        Ok(Reporter { quiet, verbose, log: Mutex::new(log), timings: Mutex::new(Vec::new()) })
    }

    /// A reporter that prints nothing and logs nowhere (tests).
    pub fn silent() -> Reporter {
        Reporter { quiet: true, verbose: false, log: Mutex::new(None), timings: Mutex::new(Vec::new()) }
    }

    /// Announce a step (stage or script); its duration is recorded when the guard drops.
    pub fn step(&self, label: impl Into<String>) -> Step<'_> {
        let label = label.into();
        if !self.quiet {
            eprintln!("==> {label}");
        }
        self.log_line(&format!("==> {label}"));
        Step { reporter: self, label, started: Instant::now() }
    }

    /// Write one line to the log file (and to stderr with `-v`).
    pub fn log_line(&self, line: &str) {
        if self.verbose && !self.quiet {
            eprintln!("    {line}");
        }
        if let Ok(mut guard) = self.log.lock() {
            if let Some(file) = guard.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    }

    /// Run a command with stdout and stderr merged into the log. A non-zero exit is a
    /// [`CommandFailed`] carrying the last lines the command printed.
    pub fn run(&self, label: &str, command: &mut Command) -> anyhow::Result<()> {
        self.log_line(&format!("$ {command:?}"));
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let writer_clone = writer.try_clone().context("cannot clone a pipe")?;
        command.stdin(Stdio::null()).stdout(writer).stderr(writer_clone);
        let mut child = command.spawn().with_context(|| format!("{label}: cannot start {:?}", command.get_program()))?;
        // Drop our copies of the write end, or the reader never sees EOF.
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        for line in BufReader::new(reader).lines() {
            let line = line.unwrap_or_else(|_| String::from("<unreadable output>"));
            self.log_line(&line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let status = child.wait().with_context(|| format!("{label}: cannot wait for the command"))?;
        if status.success() {
            Ok(())
        } else {
            Err(CommandFailed { label: label.to_owned(), status: status.to_string(), tail: tail.into() }.into())
        }
    }

    /// Recorded step durations, in the order the steps finished.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// A running step; records its duration on drop.
pub struct Step<'a> {
    reporter: &'a Reporter,
    label: String,
    started: Instant,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.reporter.log_line(&format!("<== {} ({:.1}s)", self.label, elapsed.as_secs_f64()));
        if let Ok(mut timings) = self.reporter.timings.lock() {
            timings.push((self.label.clone(), elapsed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_error_carries_its_last_line() {
        let reporter = Reporter::silent();
        let err = reporter
            .run("probe", Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"]))
            .unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.tail, vec!["one".to_owned(), "two".to_owned()]);
        assert!(err.to_string().contains("exit status: 3"), "{err}");
    }

    #[test]
    fn steps_are_timed() {
        let reporter = Reporter::silent();
        drop(reporter.step("stage one"));
        assert_eq!(reporter.timings()[0].0, "stage one");
    }
}
