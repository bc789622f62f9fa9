//! Progress and logs: one line per stage and script, full command output to the log file.
//!
//! Every external command of a build goes through [`Reporter::run`], so its output lands in the
//! log and the tail of a failing command lands in the error.
//!
//! On a terminal each step is an indicatif spinner with its elapsed time and the command's latest
//! output line; byte-moving work gets a bar with throughput. Without a terminal (CI, `| tee`) the
//! same steps are plain `==>`/`<==` lines, and `--quiet` prints nothing but errors. Bars start
//! their tick threads lazily, on the first step, so a `Reporter` can be created before the build
//! forks into its namespaces.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How many output lines of a failed command are kept for the error message.
const TAIL_LINES: usize = 25;

/// How the build log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogStyle {
    /// Ours: the log file is replaced and holds bare lines; the terminal shows the steps.
    #[default]
    Steps,
    /// disk-image-create's (lib/disk-image-create and its outfilter.py): the log file is
    /// appended to (a retried build adds to it) and every line is timestamped; the whole log,
    /// every command's output included, streams on stdout when `stdout` is set, timestamped when
    /// `timestamps` is. nodepool-builder's build log is that stream.
    Dib { stdout: bool, timestamps: bool },
}

impl LogStyle {
    /// disk-image-create's log (lib/disk-image-create): the whole log on stdout, each line
    /// timestamped unless `DIB_NO_TIMESTAMP=1`; `--logfile` implies `DIB_QUIET=1` (the log only
    /// in the file) unless `DIB_QUIET` is set; `DIB_QUIET=1` prints nothing. `var` reads the
    /// environment.
    pub fn dib(has_logfile: bool, var: impl Fn(&str) -> Option<String>) -> LogStyle {
        let quiet = match var("DIB_QUIET") {
            Some(value) if !value.is_empty() => value.trim() == "1",
            _ => has_logfile,
        };
        let bare = var("DIB_NO_TIMESTAMP").is_some_and(|value| value.trim() == "1");
        LogStyle::Dib { stdout: !quiet, timestamps: !bare }
    }
}

/// Reports progress to the terminal and writes the build log.
pub struct Reporter {
    quiet: bool,
    verbose: bool,
    style: LogStyle,
    /// Spinners and bars, present only when stderr is a terminal and not `--quiet`.
    bars: Option<MultiProgress>,
    log: Mutex<Option<File>>,
    timings: Mutex<Vec<(String, Duration)>>,
    /// The innermost running step's spinner, which shows the latest output line.
    current: Mutex<Vec<ProgressBar>>,
}

/// A command that failed, with the last lines it printed and the line that says why.
#[derive(Debug, thiserror::Error)]
#[error("{label} failed ({status}){}", reason_suffix(.decisive, .tail))]
pub struct CommandFailed {
    pub label: String,
    pub status: String,
    pub tail: Vec<String>,
    /// The first apt/mmdebstrap error line (`E: ...`) that names a cause, e.g. the mirror it
    /// could not reach; the generic summary lines after it are not.
    pub decisive: Option<String>,
}

/// Longer lines (dpkg's argument lists) are cut: the message must stay one readable line.
const REASON_MAX_CHARS: usize = 300;

fn reason_suffix(decisive: &Option<String>, tail: &[String]) -> String {
    match decisive.as_ref().or_else(|| last_telling_line(tail)) {
        Some(line) if line.chars().count() > REASON_MAX_CHARS => {
            format!(": {}...", line.chars().take(REASON_MAX_CHARS).collect::<String>())
        }
        Some(line) => format!(": {line}"),
        None => String::new(),
    }
}

/// Whether `line` is an error line that names its cause. mmdebstrap and apt end with summaries
/// (`E: mmdebstrap failed to run`, `E: setup failed: ...`, `E: apt-get update ... failed`, `E: Some
/// index files failed to download`) that only repeat that something earlier went wrong.
fn is_decisive(line: &str) -> bool {
    line.trim_start().starts_with("E: ") && !is_summary(line)
}

/// One of mmdebstrap's or apt's closing summaries (see [`is_decisive`]). mmdebstrap wraps the
/// message its setup died with (`E: setup failed: <message>`): that is a summary only when the
/// message is one too (`E: setup failed: E: apt-get update ... failed`), else it is the cause.
fn is_summary(line: &str) -> bool {
    let Some(message) = line.trim_start().strip_prefix("E: ") else { return false };
    for wrapper in ["setup failed", "run_setup failed"] {
        if let Some(rest) = message.strip_prefix(wrapper) {
            let wrapped = rest.trim_start_matches(':').trim();
            return wrapped.is_empty() || is_summary(wrapped) || is_summary(&format!("E: {wrapped}"));
        }
    }
    const SUMMARIES: [&str; 3] = ["mmdebstrap failed", "Some index files", "Sub-process"];
    SUMMARIES.iter().any(|s| message.starts_with(s))
        || (message.starts_with("apt-get ") && message.ends_with(" failed"))
}

/// Without a decisive `E:` line (a cause printed by dpkg, a hook or a shell has no such
/// prefix), the last line that is neither a summary, mmdebstrap's `I:` progress nor a `-x`
/// trace line (`+ exit 3` follows the message that says why), as clean-up lines follow the
/// cause; the very last line only when nothing else is there.
fn last_telling_line(tail: &[String]) -> Option<&String> {
    let telling = |line: &&String| {
        let trimmed = line.trim();
        !trimmed.is_empty() && !trimmed.starts_with("I: ") && !is_summary(trimmed) && !is_xtrace(trimmed)
    };
    tail.iter().rev().find(telling).or(tail.last())
}

/// A line bash's xtrace printed: `+ command`, `++ command` in a subshell.
fn is_xtrace(line: &str) -> bool {
    line.starts_with('+') && line.trim_start_matches('+').starts_with(' ')
}

impl Reporter {
    /// The per-step timing table (slowest first), the build's total and the files written
    /// (each as its own `Display` says), after a build.
    pub fn print_summary(&self, total_seconds: f64, written: &[impl std::fmt::Display]) {
        let mut steps = self.timings();
        steps.sort_by_key(|step| std::cmp::Reverse(step.1));
        self.summary_line(&format!("\n{:<60} {:>9}", "step (slowest first)", "seconds"));
        for (label, duration) in steps.iter().take(25) {
            self.summary_line(&format!("{:<60} {:>9.1}", truncate(label, 60), duration.as_secs_f64()));
        }
        self.summary_line(&format!("{:<60} {:>9.1}", "total", total_seconds));
        for output in written {
            self.summary_line(&format!("wrote {output}"));
        }
    }

    /// A line of the closing summary: on stderr, or in DIB's style part of the log.
    fn summary_line(&self, line: &str) {
        match self.style {
            LogStyle::Steps => stderr_line(line),
            LogStyle::Dib { .. } => line.lines().for_each(|line| self.write_log(line)),
        }
    }

    pub fn new(quiet: bool, verbose: bool, log_file: Option<&Path>, style: LogStyle) -> anyhow::Result<Reporter> {
        let log = match log_file {
            Some(path) => Some(open_log(path, style)?),
            None => None,
        };
        let dib = matches!(style, LogStyle::Dib { .. });
        let interactive = !quiet && !dib && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bars = interactive.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ok(Reporter::with_parts(quiet, verbose, style, bars, log))
    }

    /// A reporter that prints nothing and logs nowhere (tests).
    pub fn silent() -> Reporter {
        Reporter::with_parts(true, false, LogStyle::Steps, None, None)
    }

    fn with_parts(
        quiet: bool,
        verbose: bool,
        style: LogStyle,
        bars: Option<MultiProgress>,
        log: Option<File>,
    ) -> Reporter {
        Reporter {
            quiet,
            verbose,
            style,
            bars,
            log: Mutex::new(log),
            timings: Mutex::new(Vec::new()),
            current: Mutex::new(Vec::new()),
        }
    }

    /// Announce a step (stage or script); its duration is recorded when the guard drops.
    pub fn step(&self, label: impl Into<String>) -> Step<'_> {
        let label = crate::redact::text(&label.into());
        self.log_line(&format!("==> {label}"));
        let bar = match &self.bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(label.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut current) = self.current.lock() {
                    current.push(bar.clone());
                }
                Some(bar)
            }
            None => {
                if !self.quiet && self.style == LogStyle::Steps {
                    stderr_line(&format!("==> {label}"));
                }
                None
            }
        };
        Step { reporter: self, label, started: Instant::now(), bar }
    }

    /// Print a line without tearing the progress display.
    pub fn println(&self, line: &str) {
        let line = crate::redact::text(line);
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(&line);
            }
            None if !self.quiet => stderr_line(&line),
            None => {}
        }
    }

    /// Write one line to the log file (and to stderr with `-v`); the running spinner shows it.
    pub fn log_line(&self, line: &str) {
        let line = &crate::redact::text(line);
        if self.verbose && !self.quiet && self.style == LogStyle::Steps {
            self.println(&format!("    {line}"));
        }
        if let Ok(current) = self.current.lock() {
            if let Some(bar) = current.last() {
                bar.set_message(line.chars().take(100).collect::<String>());
            }
        }
        self.write_log(line);
    }

    /// One line of the log, already redacted: to the log file, and in DIB's style timestamped
    /// and streamed on stdout too.
    fn write_log(&self, line: &str) {
        let LogStyle::Dib { stdout, timestamps } = self.style else { return self.log_to_file(line) };
        let stamped = format!("{} | {line}", crate::clock::log_timestamp(std::time::SystemTime::now()));
        self.log_to_file(&stamped);
        if stdout && !self.quiet {
            // A closed stdout (the reader went away) must not end the build.
            let _ = writeln!(std::io::stdout().lock(), "{}", if timestamps { &stamped } else { line });
        }
    }

    /// Run a command with stdout and stderr merged into the log. A non-zero exit is a
    /// [`CommandFailed`] carrying the last lines the command printed.
    pub fn run(&self, label: &str, command: &mut Command) -> anyhow::Result<()> {
        self.log_line(&format!("$ {command:?}"));
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let writer_clone = writer.try_clone().context("cannot clone a pipe")?;
        command.stdin(Stdio::null()).stdout(writer).stderr(writer_clone);
        let mut child =
            command.spawn().with_context(|| format!("{label}: cannot start {:?}", command.get_program()))?;
        // Drop our copies of the write end, or the reader never sees EOF.
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut decisive = None;
        for line in BufReader::new(reader).lines() {
            let line = line.unwrap_or_else(|_| String::from("<unreadable output>"));
            self.log_line(&line);
            if decisive.is_none() && is_decisive(&line) {
                decisive = Some(line.trim().to_owned());
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let status = child.wait().with_context(|| format!("{label}: cannot wait for the command"))?;
        if status.success() {
            Ok(())
        } else {
            Err(CommandFailed { label: label.to_owned(), status: status.to_string(), tail: tail.into(), decisive }
                .into())
        }
    }

    fn log_to_file(&self, line: &str) {
        if let Ok(mut guard) = self.log.lock() {
            if let Some(file) = guard.as_mut() {
                // A full disk (or `/dev/full`) must not lose the log silently: say so once.
                if let Err(err) = writeln!(file, "{line}") {
                    stderr_line(&format!("warning: --log-file: cannot write ({err}); the rest of the log is lost"));
                    *guard = None;
                }
            }
        }
    }

    /// Recorded step durations, in the order the steps finished.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// A line on stderr that never panics. `eprintln!` panics when the reader has gone (the
/// nodepool-builder that started a build was killed, closing the pipe both streams share), and
/// a panic while unwinding skips the build's cleanup; the supervisor notices the lost reader
/// and stops the build as a hangup would (`sandbox::namespace`).
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Open the log file: ours is replaced; disk-image-create appends to it (outfilter.py opens
/// it `ab`) and says where the log goes first, on stdout.
fn open_log(path: &Path, style: LogStyle) -> anyhow::Result<File> {
    let opened = match style {
        LogStyle::Steps => File::create(path),
        LogStyle::Dib { .. } => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            if file.is_ok() {
                let _ = writeln!(std::io::stdout().lock(), "Output logs going to: {}", path.display());
            }
            file
        }
    };
    opened.with_context(|| format!("cannot create log file {}", path.display()))
}

/// A running step, and the same line once it is done. Constants, so a test checks them.
const SPINNER_TEMPLATE: &str = "{spinner} {prefix} {elapsed:>4} {wide_msg:.dim}";
const DONE_TEMPLATE: &str = "  {prefix} {msg}";

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template(SPINNER_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A running step; records its duration on drop.
pub struct Step<'a> {
    reporter: &'a Reporter,
    label: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let done = format!("<== {} ({:.1}s)", self.label, elapsed.as_secs_f64());
        if let Some(bar) = self.bar.take() {
            if let Ok(mut current) = self.reporter.current.lock() {
                // Steps nest (stage, then script), so the finished one is the last with its label.
                if let Some(index) = current.iter().rposition(|b| b.prefix() == bar.prefix()) {
                    current.remove(index);
                }
            }
            bar.set_style(
                ProgressStyle::with_template(DONE_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.finish_with_message(format!("{:.1}s", elapsed.as_secs_f64()));
        } else if !self.reporter.quiet && self.reporter.style == LogStyle::Steps {
            stderr_line(&done);
        }
        self.reporter.write_log(&done);
        if let Ok(mut timings) = self.reporter.timings.lock() {
            timings.push((self.label.clone(), elapsed));
        }
    }
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(width - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_templates_are_valid() {
        // The styles fall back to a plain spinner on a bad template; that must never happen.
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(DONE_TEMPLATE).is_ok());
    }

    #[test]
    fn failing_command_error_carries_its_last_line() {
        let reporter = Reporter::silent();
        let err = reporter.run("probe", Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"])).unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.tail, vec!["one".to_owned(), "two".to_owned()]);
        assert!(err.to_string().contains("exit status: 3"), "{err}");
    }

    #[test]
    fn an_unreachable_mirror_is_named_not_the_summary() {
        // mmdebstrap 1.3's output when its mirror refuses connections (recorded on Debian 12).
        let script = r#"printf '%s\n' 'I: running apt-get update...' 'Err:1 http://127.0.0.1:9/debian bookworm InRelease' \
            '  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)' \
            'E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)' \
            'E: Some index files failed to download. They have been ignored, or old ones used instead.' \
            'E: apt-get update --error-on=any -oAPT::Status-Fd=<$fd> -oDpkg::Use-Pty=false failed' \
            'I: removing tempdir /tmp/mmdebstrap.x...' 'E: mmdebstrap failed to run'; exit 25"#;
        let err = Reporter::silent().run("mmdebstrap", Command::new("sh").args(["-c", script])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("E: Failed to fetch http://127.0.0.1:9/"), "{message}");
        assert!(message.contains("Connection refused"), "{message}");
        assert!(!message.contains("failed to run"), "{message}");
    }

    #[test]
    fn without_a_decisive_line_the_cause_before_the_summaries_is_named() {
        // A dpkg failure inside mmdebstrap: the cause has no `E:` prefix, and the clean-up's
        // `I:` lines and the summaries follow it.
        let script = r#"printf '%s\n' 'I: extracting archives...' \
            'dpkg-deb: error: archive /var/cache/apt/archives/x.deb has premature member' \
            'E: Sub-process /usr/bin/dpkg returned an error code (1)' 'I: removing tempdir /tmp/mmdebstrap.x...' \
            'E: mmdebstrap failed to run'; exit 25"#;
        let err = Reporter::silent().run("mmdebstrap", Command::new("sh").args(["-c", script])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.ends_with(": dpkg-deb: error: archive /var/cache/apt/archives/x.deb has premature member"),
            "{message}"
        );
        let wrapped = r#"printf '%s\n' 'E: setup failed: E: apt-get update failed' 'E: setup failed: cannot open /c/x: Permission denied' \
            'E: mmdebstrap failed to run'; exit 25"#;
        let err = Reporter::silent().run("mmdebstrap", Command::new("sh").args(["-c", wrapped])).unwrap_err();
        assert!(err.to_string().ends_with(": E: setup failed: cannot open /c/x: Permission denied"), "{err}");
        let only_summary =
            Reporter::silent().run("x", Command::new("sh").args(["-c", "echo 'E: mmdebstrap failed to run'; exit 25"]));
        assert!(only_summary.unwrap_err().to_string().ends_with(": E: mmdebstrap failed to run"));
    }

    #[test]
    fn dibs_log_follows_its_quiet_and_timestamp_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
        };
        let style = |logfile, pairs| LogStyle::dib(logfile, env(pairs));
        assert_eq!(style(false, &[]), LogStyle::Dib { stdout: true, timestamps: true });
        assert_eq!(style(true, &[]), LogStyle::Dib { stdout: false, timestamps: true });
        assert_eq!(style(true, &[("DIB_QUIET", "")]), LogStyle::Dib { stdout: false, timestamps: true });
        assert_eq!(style(true, &[("DIB_QUIET", "0")]), LogStyle::Dib { stdout: true, timestamps: true });
        assert_eq!(style(false, &[("DIB_QUIET", "1")]), LogStyle::Dib { stdout: false, timestamps: true });
        assert_eq!(style(false, &[("DIB_NO_TIMESTAMP", "1")]), LogStyle::Dib { stdout: true, timestamps: false });
    }

    #[test]
    fn dibs_log_is_appended_to_and_timestamped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        std::fs::write(&path, "earlier run\n").unwrap();
        let style = LogStyle::Dib { stdout: false, timestamps: true };
        let reporter = Reporter::new(false, false, Some(&path), style).unwrap();
        reporter.run("probe", Command::new("sh").args(["-c", "set -x; true"])).unwrap();
        drop(reporter.step("stage one"));
        let log = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "earlier run", "{log}");
        for line in &lines[1..] {
            // `2026-12-07 15:53:10.123 | ...`
            let (stamp, _) = line.split_once(" | ").unwrap_or_else(|| panic!("no timestamp: {line}"));
            assert_eq!(stamp.len(), 23, "{line}");
            assert_eq!((&stamp[4..5], &stamp[10..11], &stamp[19..20]), ("-", " ", "."), "{line}");
        }
        assert!(lines.iter().any(|l| l.ends_with(" | + true")), "{log}");
        assert!(lines.iter().any(|l| l.ends_with(" | ==> stage one")), "{log}");
    }

    #[test]
    fn a_traced_script_is_named_by_its_message_not_its_trace() {
        let script = "set -x; echo 'the step fails on purpose' >&2; exit 3";
        let err = Reporter::silent().run("hook", Command::new("bash").args(["-c", script])).unwrap_err();
        assert!(err.to_string().ends_with(": the step fails on purpose"), "{err}");
        assert!(is_xtrace("++ date") && !is_xtrace("+1 more") && !is_xtrace("plain"));
    }

    #[test]
    fn steps_are_timed() {
        let reporter = Reporter::silent();
        drop(reporter.step("stage one"));
        assert_eq!(reporter.timings()[0].0, "stage one");
    }
}
