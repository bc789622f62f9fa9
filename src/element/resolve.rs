//! Dependency expansion with DIB's semantics: breadth-first from the requested set, an element
//! that another element provides is never expanded, and the provided names are dropped from the
//! result. Unlike DIB (which iterates Python sets), the queue is fed in sorted order, so the same
//! request always expands the same way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::error::ElementError;
use super::library::{Element, ElementLibrary};

/// The name every build needs a provider for.
const OPERATING_SYSTEM: &str = "operating-system";

impl ElementLibrary {
    /// Expand `requested` into the full element set, sorted by name.
    pub fn resolve(&self, requested: &[String]) -> Result<Vec<&Element>, ElementError> {
        let requested: BTreeSet<String> = requested.iter().cloned().collect();
        let mut included: BTreeSet<String> = requested.clone();
        // Who first asked for an element, for "not found" errors.
        let mut required_by: BTreeMap<String, String> = BTreeMap::new();
        // Provided name -> the element providing it.
        let mut provided_by: BTreeMap<String, String> = BTreeMap::new();
        let mut queue: VecDeque<String> = requested.iter().cloned().collect();

        while let Some(name) = queue.pop_front() {
            if provided_by.contains_key(&name) || self.is_absorbed(&name) {
                continue;
            }
            if let Some(why) = self.refused(&name) {
                return Err(ElementError::Refused { name: name.clone(), why: why.to_owned() });
            }
            let element = self.get(&name).ok_or_else(|| ElementError::NotFound {
                name: name.clone(),
                required_by: required_by.get(&name).cloned(),
            })?;
            for provided in &element.provides {
                if let Some(other) = provided_by.get(provided) {
                    return Err(ElementError::ProvideConflict {
                        name: provided.clone(),
                        first: other.clone(),
                        second: name.clone(),
                    });
                }
                provided_by.insert(provided.clone(), name.clone());
            }
            for dep in &element.deps {
                if included.contains(dep) || provided_by.contains_key(dep) {
                    continue;
                }
                required_by.entry(dep.clone()).or_insert_with(|| name.clone());
                queue.push_back(dep.clone());
            }
            included.extend(element.deps.iter().cloned());
        }

        if let Some(name) = requested.iter().find(|name| provided_by.contains_key(*name)) {
            return Err(ElementError::AlreadyProvided { name: name.clone(), provided_by: provided_by[name].clone() });
        }
        if !provided_by.contains_key(OPERATING_SYSTEM) {
            return Err(ElementError::MissingOperatingSystem {
                requested: requested.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        // Every remaining name was looked up when it was dequeued, except names that were
        // dropped from the queue because a provider turned up; those are removed here.
        included
            .iter()
            .filter(|name| !provided_by.contains_key(*name) && !self.is_absorbed(name))
            .map(|name| {
                self.get(name).ok_or_else(|| ElementError::NotFound {
                    name: name.clone(),
                    required_by: required_by.get(name).cloned(),
                })
            })
            .collect()
    }
}
