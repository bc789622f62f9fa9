//! Merging the phase directories and `environment.d` of a resolved element set into one
//! run-parts list per phase, as DIB's single hooks directory would hold them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ElementError;
use super::installtype::{self, InstallTypes};
use super::library::Element;
use super::phase::Phase;
use super::runparts::{self, Candidate, Selection};

/// One selected file of a merged phase, with the element that ships it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    pub name: String,
    pub element: String,
    pub path: PathBuf,
}

/// Every file in one element's phase directory, selected or skipped (for `elements show`).
pub fn element_scripts(element: &Element, phase: Phase) -> Result<Vec<Candidate>, ElementError> {
    runparts::list_dir(&element.path.join(phase.dir_name()), Selection::Scripts)
}

/// Per phase, the selected scripts of all `elements` in run-parts order, `install.d` including
/// the scripts of the enabled install-type directories. Phases without scripts are absent. Two
/// elements shipping the same name in a phase is an error.
pub fn merge_hooks_typed(
    elements: &[&Element],
    install_types: &InstallTypes,
) -> Result<BTreeMap<Phase, Vec<HookScript>>, ElementError> {
    let mut merged = BTreeMap::new();
    for phase in Phase::ALL {
        let types = (phase == Phase::Install).then_some(install_types);
        let scripts = merge_dir(elements, phase.dir_name(), Selection::Scripts, types)?;
        if !scripts.is_empty() {
            merged.insert(phase, scripts);
        }
    }
    Ok(merged)
}

/// [`merge_hooks_typed`] with DIB's default install type for every prefix.
pub fn merge_hooks(elements: &[&Element]) -> Result<BTreeMap<Phase, Vec<HookScript>>, ElementError> {
    merge_hooks_typed(elements, &InstallTypes::default())
}

/// The `environment.d` files of all `elements`, in the order they are sourced.
pub fn merge_environment_d(elements: &[&Element]) -> Result<Vec<HookScript>, ElementError> {
    merge_dir(elements, "environment.d", Selection::EnvironmentFiles, None)
}

/// One directory of every element merged; with `install_types`, the enabled
/// `<prefix>-<type>-install/` sub-directories count as part of it, as DIB links their scripts in.
fn merge_dir(
    elements: &[&Element],
    dir_name: &str,
    selection: Selection,
    install_types: Option<&InstallTypes>,
) -> Result<Vec<HookScript>, ElementError> {
    let mut by_name: BTreeMap<String, HookScript> = BTreeMap::new();
    let mut sorted: Vec<&Element> = elements.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for element in sorted {
        let dir = element.path.join(dir_name);
        let mut candidates = runparts::select(&dir, selection)?;
        if let Some(types) = install_types {
            candidates.extend(installtype::enabled_scripts(&dir, types)?);
        }
        for candidate in candidates {
            if let Some(existing) = by_name.get(&candidate.name) {
                return Err(ElementError::DuplicateScript {
                    phase: dir_name.to_owned(),
                    script: candidate.name,
                    first: existing.element.clone(),
                    second: element.name.clone(),
                });
            }
            by_name.insert(
                candidate.name.clone(),
                HookScript { name: candidate.name, element: element.name.clone(), path: candidate.path },
            );
        }
    }
    let mut scripts: Vec<HookScript> = by_name.into_values().collect();
    scripts.sort_by(|a, b| runparts::compare(&a.name, &b.name));
    Ok(scripts)
}
