//! The pipeline as `--dry-run` shows it (text and JSON) and as docs/architecture.md's stage
//! table lists it, with each phase's own steps.

use std::fmt::Write as _;

use serde::Serialize;

use super::order::Pipeline;
use super::step::{OnRestore, Stop};
use crate::cache::CachePoint;
use crate::element::Phase;
use crate::plan::{PhaseStep, Plan};
use crate::step_id::StepId;

/// A step as `--dry-run --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StepDescription {
    pub step: StepId,
    /// The progress line that announces it.
    pub label: String,
    /// What keys it (none: the key of the step before).
    pub inputs: Vec<String>,
    pub cache_point: Option<CachePoint>,
    pub on_restore: OnRestore,
    pub stop: Stop,
    /// A phase's own steps in order: scripts, the package transaction, element files copied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub does: Vec<String>,
}

impl Pipeline {
    /// Every step, as `--dry-run` shows it.
    pub fn describe(&self, plan: &Plan) -> Vec<StepDescription> {
        self.steps()
            .iter()
            .map(|step| StepDescription {
                step: step.id.clone(),
                label: step.id.label(),
                inputs: step.inputs.iter().map(ToString::to_string).collect(),
                cache_point: step.cache_point,
                on_restore: step.on_restore,
                stop: step.stop,
                does: match step.id {
                    StepId::Phase(phase) => phase_contents(plan, phase)
                        .into_iter()
                        .map(|line| format!("{} {}", line.what, line.whose))
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    /// The plan with its steps, as `--dry-run --json` prints them: the plan's fields and
    /// `pipeline`, this list.
    pub fn dry_run_json(&self, plan: &Plan) -> anyhow::Result<String> {
        let mut json = serde_json::to_value(plan)?;
        if let Some(fields) = json.as_object_mut() {
            fields.insert("pipeline".to_owned(), serde_json::to_value(self.describe(plan))?);
        }
        Ok(serde_json::to_string_pretty(&json)? + "\n")
    }

    /// The steps as people read them (`--dry-run`).
    pub fn render(&self, plan: &Plan) -> String {
        let mut out = String::from("\npipeline:\n");
        for step in self.describe(plan) {
            let mut notes = step.properties();
            if !step.inputs.is_empty() {
                notes.push(format!("keyed by {}", step.inputs.join(", ")));
            }
            if let StepId::Phase(phase) = step.step {
                notes.extend(file_copies(plan, phase));
            }
            let line = format!("  {:22} {}", step.step.name(), notes.join("; "));
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

impl StepDescription {
    /// Its cache point, and where it differs from most steps.
    fn properties(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(point) = self.cache_point {
            notes.push(format!("cache point: {point}"));
        }
        if self.on_restore == OnRestore::Runs {
            notes.push("runs after a restore too".to_owned());
        }
        if self.stop == Stop::TooLate {
            notes.push("too late for a stop signal".to_owned());
        }
        notes
    }
}

impl Pipeline {
    /// The stage table of docs/architecture.md: one row per step, in order.
    pub fn docs_table(&self, plan: &Plan) -> String {
        let mut out =
            String::from("| step | module | where | leaves | keyed by | notes |\n|---|---|---|---|---|---|\n");
        for step in self.describe(plan) {
            let (module, place, leaves) = step.step.doc();
            let inputs =
                if step.inputs.is_empty() { "(the step before's key)".to_owned() } else { step.inputs.join(", ") };
            let notes = step.properties().join("; ");
            let _ = writeln!(out, "| {} | {module} | {place} | {leaves} | {inputs} | {notes} |", step.step.label());
        }
        out
    }
}

/// One of a phase's own steps, as `--dry-run` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseLine {
    /// The script, the package slot, or `DIR/ -> /INTO`.
    pub what: String,
    /// The script's element, `(the phase's packages)`, or the elements that have `DIR/`.
    pub whose: String,
    /// Whether it copies element files (rather than running a script or apt).
    pub copies_files: bool,
}

/// A phase's own steps in order. Element files appear when some element has the directory.
pub fn phase_contents(plan: &Plan, phase: Phase) -> Vec<PhaseLine> {
    let line = |what: String, whose: String, copies_files| PhaseLine { what, whose, copies_files };
    plan.phase_steps(phase)
        .into_iter()
        .filter_map(|step| match step {
            PhaseStep::Script(script) => Some(line(script.name.clone(), script.element.clone(), false)),
            PhaseStep::Packages { slot } => plan
                .packages
                .contains_key(&phase)
                .then(|| line(slot.to_owned(), "(the phase's packages)".to_owned(), false)),
            PhaseStep::ElementFiles { dir, into } => {
                let having: Vec<&str> =
                    plan.elements.iter().filter(|e| e.path.join(dir).is_dir()).map(|e| e.name.as_str()).collect();
                (!having.is_empty()).then(|| line(format!("{dir}/ -> /{into}"), having.join(" "), true))
            }
        })
        .collect()
}

/// Where a phase copies element files, for the text the phase listing does not show: each
/// copy and the step it follows.
fn file_copies(plan: &Plan, phase: Phase) -> Vec<String> {
    let lines = phase_contents(plan, phase);
    let mut copies = Vec::new();
    for (index, line) in lines.iter().enumerate().filter(|(_, line)| line.copies_files) {
        let after = match index.checked_sub(1).map(|before| &lines[before].what) {
            Some(before) => format!("after {before}"),
            None => "first".to_owned(),
        };
        copies.push(format!("{} ({}), {after}", line.what, line.whose));
    }
    copies
}
