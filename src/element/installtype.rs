//! DIB's install types: an element may keep alternative `install.d` scripts in
//! `install.d/<prefix>-<type>-install/` directories (`os-collect-config-source-install/`,
//! `os-collect-config-package-install/`); one type per prefix is enabled, and its scripts run as
//! if they sat in `install.d` itself.
//!
//! The rule is DIB's `install-types` element (`extra-data.d/99-enable-install-types`):
//! every `DIB_INSTALLTYPE_<x>` variable names a prefix (`<x>` with `_` read as `-`) and the type
//! it gets; every other prefix gets `DIB_DEFAULT_INSTALLTYPE`, which disk-image-create sets to
//! `source` unless `--install-type` says otherwise. A prefix without a directory for its chosen
//! type contributes nothing. The same choice, looked up by element name, filters
//! `package-installs.yaml` entries that carry `installtype:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ElementError;
use super::runparts::{self, Candidate, Selection};

/// disk-image-create's default when neither `--install-type` nor `DIB_DEFAULT_INSTALLTYPE` is given.
pub const DEFAULT_INSTALL_TYPE: &str = "source";

const VARIABLE_PREFIX: &str = "DIB_INSTALLTYPE_";
const DIR_SUFFIX: &str = "-install";

/// The install types a build uses: the per-prefix choices and the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallTypes {
    default: String,
    /// Prefix (dashes) -> type, from `DIB_INSTALLTYPE_*`.
    chosen: BTreeMap<String, String>,
}

impl Default for InstallTypes {
    fn default() -> Self {
        InstallTypes { default: DEFAULT_INSTALL_TYPE.to_owned(), chosen: BTreeMap::new() }
    }
}

impl InstallTypes {
    /// Read `DIB_DEFAULT_INSTALLTYPE` and every `DIB_INSTALLTYPE_*` from `env`.
    pub fn from_env(env: &BTreeMap<String, String>) -> InstallTypes {
        let default = env
            .get("DIB_DEFAULT_INSTALLTYPE")
            .filter(|value| !value.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_INSTALL_TYPE.to_owned());
        let chosen = env
            .iter()
            .filter_map(|(key, value)| {
                let prefix = key.strip_prefix(VARIABLE_PREFIX)?;
                Some((prefix.replace('_', "-"), value.clone()))
            })
            .collect();
        InstallTypes { default, chosen }
    }

    /// The type enabled for `prefix` (an element name when asked by `package-installs`).
    pub fn for_prefix(&self, prefix: &str) -> &str {
        self.chosen.get(prefix).map(String::as_str).unwrap_or(&self.default)
    }

    /// Whether `install.d/<dir_name>/` is an install-type directory that is enabled.
    pub fn enables(&self, dir_name: &str) -> bool {
        match split_dir_name(dir_name) {
            Some((prefix, kind)) => self.for_prefix(prefix) == kind,
            None => false,
        }
    }
}

/// One install-type directory of an element's `install.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallTypeDir {
    /// e.g. `os-collect-config`.
    pub prefix: String,
    /// e.g. `source`.
    pub kind: String,
    pub path: PathBuf,
}

/// `os-collect-config-source-install` -> (`os-collect-config`, `source`). The type is the last
/// dash-separated word before `-install`, as in every element DIB and TripleO ship.
fn split_dir_name(dir_name: &str) -> Option<(&str, &str)> {
    let stem = dir_name.strip_suffix(DIR_SUFFIX)?;
    let (prefix, kind) = stem.rsplit_once('-')?;
    (!prefix.is_empty() && !kind.is_empty()).then_some((prefix, kind))
}

/// The install-type directories inside `install_d`, sorted by name.
pub fn list_dirs(install_d: &Path) -> Result<Vec<InstallTypeDir>, ElementError> {
    let mut dirs = Vec::new();
    for (name, path) in runparts::entries(install_d)? {
        if !path.is_dir() {
            continue;
        }
        if let Some((prefix, kind)) = split_dir_name(&name) {
            dirs.push(InstallTypeDir { prefix: prefix.to_owned(), kind: kind.to_owned(), path });
        }
    }
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(dirs)
}

/// The scripts the enabled install-type directories of `install_d` add to the install phase.
pub fn enabled_scripts(install_d: &Path, types: &InstallTypes) -> Result<Vec<Candidate>, ElementError> {
    let mut scripts = Vec::new();
    for dir in list_dirs(install_d)? {
        if types.for_prefix(&dir.prefix) == dir.kind {
            scripts.extend(runparts::select(&dir.path, Selection::Scripts)?);
        }
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn script(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn source_is_dibs_default() {
        let types = InstallTypes::from_env(&BTreeMap::new());
        assert_eq!(types.for_prefix("os-collect-config"), "source");
        assert!(types.enables("os-collect-config-source-install"));
        assert!(!types.enables("os-collect-config-package-install"));
    }

    #[test]
    fn per_prefix_variable_beats_the_default_and_underscores_read_as_dashes() {
        let types = InstallTypes::from_env(&env(&[
            ("DIB_DEFAULT_INSTALLTYPE", "package"),
            ("DIB_INSTALLTYPE_os_apply_config", "source"),
        ]));
        assert_eq!(types.for_prefix("os-apply-config"), "source");
        assert_eq!(types.for_prefix("os-collect-config"), "package");
        assert!(types.enables("os-collect-config-package-install"));
        assert!(!types.enables("os-apply-config-package-install"));
        assert!(!types.enables("not-an-install-type-dir"));
    }

    #[test]
    fn only_the_enabled_directory_contributes_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let install_d = dir.path().join("install.d");
        script(&install_d.join("app-source-install/10-from-source"));
        script(&install_d.join("app-package-install/10-enable-package"));
        script(&install_d.join("50-common"));
        let names = |types: &InstallTypes| -> Vec<String> {
            enabled_scripts(&install_d, types).unwrap().into_iter().map(|c| c.name).collect()
        };
        assert_eq!(names(&InstallTypes::default()), ["10-from-source"]);
        let package = InstallTypes::from_env(&env(&[("DIB_INSTALLTYPE_app", "package")]));
        assert_eq!(names(&package), ["10-enable-package"]);
        let other = InstallTypes::from_env(&env(&[("DIB_INSTALLTYPE_app", "repo")]));
        assert!(names(&other).is_empty());
    }

    #[test]
    fn directory_names_split_at_the_last_word() {
        assert_eq!(split_dir_name("os-collect-config-source-install"), Some(("os-collect-config", "source")));
        assert_eq!(split_dir_name("-source-install"), None);
        assert_eq!(split_dir_name("source-install"), None);
        assert_eq!(split_dir_name("app-source"), None);
    }
}
