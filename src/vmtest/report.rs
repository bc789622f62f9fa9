//! Results: parse the serial log into one outcome per check, render a table or JSON.
//!
//! A check that never reported is a failure: the guest may have crashed, hung or run out of
//! time, and a silent check must never count as passed.

use std::fmt::Write as _;

use serde::Serialize;

use super::checks::{label, BEGIN_MARKER, END_MARKER, RESULT_PREFIX};
use crate::recipe::Check;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
        }
    }
}

/// One row of the result table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub index: usize,
    pub check: String,
    pub result: Outcome,
    pub detail: String,
}

/// Every check's outcome plus what the log says about the run as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub results: Vec<CheckResult>,
    /// The begin marker was seen: the script started.
    pub started: bool,
    /// The end marker was seen: the script ran to the end.
    pub finished: bool,
}

impl Report {
    /// Parse results from a serial log. Only output after the last begin marker counts, so a
    /// guest that rebooted and ran the script twice reports its last run.
    pub fn from_serial_log(log: &str, checks: &[Check]) -> Report {
        let (started, body) = match log.rfind(BEGIN_MARKER) {
            Some(at) => (true, &log[at + BEGIN_MARKER.len()..]),
            None => (false, ""),
        };
        let finished = body.contains(END_MARKER);
        let mut reported: Vec<Option<(Outcome, String)>> = vec![None; checks.len()];
        for line in body.lines() {
            if let Some((index, outcome, detail)) = parse_result_line(line) {
                if let Some(slot) = reported.get_mut(index) {
                    *slot = Some((outcome, detail));
                }
            }
        }
        let missing = if !started {
            "no result: the check script never started (see the serial log)"
        } else if !finished {
            "no result: the guest stopped or timed out before this check reported"
        } else {
            "no result reported"
        };
        let results = checks
            .iter()
            .zip(reported)
            .enumerate()
            .map(|(index, (check, found))| {
                let (result, detail) = found.unwrap_or((Outcome::Fail, missing.to_owned()));
                CheckResult { index, check: label(check), result, detail }
            })
            .collect();
        Report { results, started, finished }
    }

    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.result == Outcome::Fail).count()
    }

    /// True only when there were checks and every one passed.
    pub fn all_passed(&self) -> bool {
        !self.results.is_empty() && self.failures() == 0
    }

    /// Aligned plain-text table: check, result, detail.
    pub fn table(&self) -> String {
        let width = self.results.iter().map(|r| r.check.chars().count()).max().unwrap_or(0).max("CHECK".len());
        let mut text = format!("{:<width$}  RESULT  DETAIL\n", "CHECK");
        for row in &self.results {
            let _ = writeln!(text, "{:<width$}  {:<6}  {}", row.check, row.result.as_str(), row.detail);
        }
        text
    }
}

/// `MESOS-IMAGE-CHECK <index> PASS|FAIL <detail>`, possibly preceded by console noise.
fn parse_result_line(line: &str) -> Option<(usize, Outcome, String)> {
    let rest = &line[line.find(RESULT_PREFIX)? + RESULT_PREFIX.len()..];
    let mut parts = rest.trim_end_matches(['\r', '\n']).splitn(3, ' ');
    let index = parts.next()?.parse().ok()?;
    let outcome = match parts.next()? {
        "PASS" => Outcome::Pass,
        "FAIL" => Outcome::Fail,
        _ => return None,
    };
    Some((index, outcome, parts.next().unwrap_or("").trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> Vec<Check> {
        vec![Check::Package("jq".into()), Check::PortClosed(2181), Check::CloudInitDone]
    }

    #[test]
    fn results_parse_and_missing_ones_fail() {
        let log = "[  1.0] Linux version\r\nMESOS-IMAGE-CHECKS-BEGIN\r\n\
                   MESOS-IMAGE-CHECK 0 PASS 1.6-2.1\r\n\
                   [ 9.9] noise MESOS-IMAGE-CHECK 1 FAIL something listens on tcp/2181\r\n\
                   MESOS-IMAGE-CHECKS-END\r\n";
        let report = Report::from_serial_log(log, &checks());
        assert!(report.started && report.finished);
        assert_eq!(report.results[0].result, Outcome::Pass);
        assert_eq!(report.results[0].detail, "1.6-2.1");
        assert_eq!(report.results[1].result, Outcome::Fail);
        assert_eq!(report.results[1].detail, "something listens on tcp/2181");
        assert_eq!(report.results[2].result, Outcome::Fail);
        assert_eq!(report.results[2].detail, "no result reported");
        assert_eq!(report.failures(), 2);
        assert!(!report.all_passed());
    }

    #[test]
    fn a_log_without_markers_fails_everything() {
        let report = Report::from_serial_log("MESOS-IMAGE-CHECK 0 PASS forged before begin\n", &checks());
        assert!(!report.started);
        assert!(report.results.iter().all(|r| r.result == Outcome::Fail && r.detail.contains("never started")));
    }

    #[test]
    fn only_the_last_run_counts_and_unfinished_runs_say_so() {
        let log = "MESOS-IMAGE-CHECKS-BEGIN\nMESOS-IMAGE-CHECK 0 PASS old\nMESOS-IMAGE-CHECKS-END\n\
                   MESOS-IMAGE-CHECKS-BEGIN\nMESOS-IMAGE-CHECK 1 PASS nothing listens\n";
        let report = Report::from_serial_log(log, &checks());
        assert!(report.started && !report.finished);
        assert_eq!(report.results[0].result, Outcome::Fail);
        assert!(report.results[0].detail.contains("timed out"));
        assert_eq!(report.results[1].result, Outcome::Pass);
    }

    #[test]
    fn out_of_range_and_malformed_lines_are_ignored() {
        let log = "MESOS-IMAGE-CHECKS-BEGIN\nMESOS-IMAGE-CHECK 7 PASS x\nMESOS-IMAGE-CHECK 0 MAYBE x\n\
                   MESOS-IMAGE-CHECK %s %s %s\nMESOS-IMAGE-CHECKS-END\n";
        let report = Report::from_serial_log(log, &checks());
        assert_eq!(report.failures(), 3);
    }

    #[test]
    fn all_passed_needs_at_least_one_check() {
        let report = Report::from_serial_log("MESOS-IMAGE-CHECKS-BEGIN\nMESOS-IMAGE-CHECKS-END\n", &[]);
        assert!(!report.all_passed());
    }

    #[test]
    fn table_has_a_row_per_check() {
        let log = "MESOS-IMAGE-CHECKS-BEGIN\nMESOS-IMAGE-CHECK 0 PASS 1.6\nMESOS-IMAGE-CHECKS-END\n";
        let table = Report::from_serial_log(log, &checks()).table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("package jq") && lines[1].contains("PASS"));
        assert!(lines[2].starts_with("port 2181 closed") && lines[2].contains("FAIL"));
    }
}
