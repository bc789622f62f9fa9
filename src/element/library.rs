//! Element discovery on the search path: every directory inside an `ELEMENTS_PATH` entry is an
//! element; an element in an earlier entry overrides one of the same name in a later entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::dib_tree::{self, Replacement, Substitution};
use super::error::ElementError;

/// One element directory, as found on the search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// The element directory (symlinks resolved, absolute).
    pub path: PathBuf,
    /// The search-path entry it was found in.
    pub source: PathBuf,
    /// `element-deps`, one name per line.
    pub deps: BTreeSet<String>,
    /// `element-provides`, one name per line.
    pub provides: BTreeSet<String>,
}

impl Element {
    /// Read an element directory's `element-deps` and `element-provides`.
    pub fn load(name: &str, path: &Path, source: &Path) -> Result<Element, ElementError> {
        Ok(Element {
            name: name.to_owned(),
            path: path.to_owned(),
            source: source.to_owned(),
            deps: read_name_set(&path.join("element-deps"))?,
            provides: read_name_set(&path.join("element-provides"))?,
        })
    }

    /// `bin/`: programs copied to `/usr/local/bin` in the image.
    pub fn bin_dir(&self) -> Option<PathBuf> {
        Some(self.path.join("bin")).filter(|dir| dir.is_dir())
    }

    /// `static/`: a tree copied into the image root.
    pub fn static_dir(&self) -> Option<PathBuf> {
        Some(self.path.join("static")).filter(|dir| dir.is_dir())
    }

    /// The first line of the README that is prose, not a heading.
    pub fn summary(&self) -> Option<String> {
        ["README.rst", "README.md"]
            .iter()
            .find_map(|file| std::fs::read_to_string(self.path.join(file)).ok())
            .and_then(|text| readme_summary(&text))
    }
}

/// One name per line, blanks stripped, as DIB reads `element-deps`; a missing file is empty.
fn read_name_set(path: &Path) -> Result<BTreeSet<String>, ElementError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| ElementError::Malformed {
                path: path.to_owned(),
                line: None,
                message: "not UTF-8 text".to_owned(),
            })?;
            Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(cause) => Err(ElementError::Read { path: path.to_owned(), cause }),
    }
}

/// First prose line of a README.rst / README.md: skips blank lines, `#` headings, RST title
/// adornments and the title line above an adornment.
fn readme_summary(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let is_adornment = |line: &str| {
        let mut chars = line.chars();
        match chars.next() {
            Some(first) if first.is_ascii_punctuation() => line.len() >= 3 && chars.all(|c| c == first),
            _ => false,
        }
    };
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let next_is_adornment = lines.get(index + 1).is_some_and(|next| is_adornment(next.trim()));
        if trimmed.is_empty() || trimmed.starts_with('#') || is_adornment(trimmed) || next_is_adornment {
            continue;
        }
        if trimmed.starts_with("..") {
            continue; // RST directive or comment
        }
        return Some(trimmed.to_owned());
    }
    None
}

/// The effective element search path: `--elements-path` entries, then `$ELEMENTS_PATH`
/// entries, then our own `elements/` directory (only if it exists). Duplicates keep their
/// first position. Entries are not checked here; [`ElementLibrary::scan`] does that.
pub fn search_path(cli_entries: &[PathBuf], env_value: Option<&str>, builtin: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = cli_entries.to_vec();
    if let Some(value) = env_value {
        entries.extend(value.split(':').filter(|e| !e.is_empty()).map(PathBuf::from));
    }
    if builtin.is_dir() {
        entries.push(builtin.to_owned());
    } else {
        tracing::debug!("built-in elements dir {} does not exist; not searched", builtin.display());
    }
    let mut seen = BTreeSet::new();
    entries.retain(|entry| seen.insert(entry.clone()));
    entries
}

/// Every element found on a search path, by name (the winner of any override).
#[derive(Debug, Clone)]
pub struct ElementLibrary {
    /// The search path, each entry absolute.
    paths: Vec<PathBuf>,
    elements: BTreeMap<String, Element>,
    /// DIB elements replaced by rule (see [`dib_tree`]).
    substitutions: Vec<Substitution>,
    /// Names a stage stands in for: they resolve to no element.
    absorbed: BTreeSet<String>,
    /// Names from DIB's tree nothing of ours can stand in for, with why.
    refused: BTreeMap<String, String>,
}

impl ElementLibrary {
    /// Scan every entry; a missing or non-directory entry is an error naming it. Later entries
    /// are read first so that earlier ones override them; each override is logged.
    pub fn scan(paths: &[PathBuf]) -> Result<ElementLibrary, ElementError> {
        let mut absolute = Vec::with_capacity(paths.len());
        for entry in paths {
            if !entry.is_dir() {
                return Err(ElementError::InvalidPathEntry { path: entry.clone() });
            }
            let canonical = entry.canonicalize().map_err(|cause| ElementError::Read { path: entry.clone(), cause })?;
            absolute.push(canonical);
        }
        let mut elements: BTreeMap<String, Element> = BTreeMap::new();
        let mut overridden: BTreeMap<String, PathBuf> = BTreeMap::new();
        for entry in absolute.iter().rev() {
            for element in scan_entry(entry)? {
                if let Some(previous) = elements.insert(element.name.clone(), element) {
                    overridden.insert(previous.name.clone(), previous.path);
                }
            }
        }
        let mut library = ElementLibrary {
            paths: absolute,
            elements,
            substitutions: Vec::new(),
            absorbed: BTreeSet::new(),
            refused: BTreeMap::new(),
        };
        library.replace_dib_layers()?;
        library.log_overrides(&overridden);
        Ok(library)
    }

    /// One line per element an earlier path entry overrides, as DIB's element search does; the
    /// ones diskimage-builder's tree lost by rule have their own line (the substitution) instead.
    fn log_overrides(&self, overridden: &BTreeMap<String, PathBuf>) {
        for (name, loser) in overridden {
            let substituted = self.substitutions.iter().any(|s| &s.name == name);
            match self.elements.get(name) {
                Some(winner) if !substituted => {
                    tracing::warn!("element {name}: {} overrides {}", winner.path.display(), loser.display())
                }
                _ => {}
            }
        }
    }

    /// Apply [`dib_tree`]'s rules to every winner that comes from diskimage-builder's tree.
    fn replace_dib_layers(&mut self) -> Result<(), ElementError> {
        if !self.paths.iter().any(|p| dib_tree::is_dib_tree(p)) {
            return Ok(());
        }
        let builtin = crate::paths::builtin_elements_dir().canonicalize().ok();
        let ours = self.paths.iter().find(|p| Some(*p) == builtin.as_ref()).cloned();
        // DIB's vm depends on it; whatever provides it is replaced below.
        self.absorbed.insert(dib_tree::BLOCK_DEVICE.to_owned());
        let from_dib: Vec<Element> =
            self.elements.values().filter(|e| dib_tree::is_dib_tree(&e.source)).cloned().collect();
        for dib in from_dib {
            let Some(replacement) = dib_tree::replacement(&dib.name, ours.as_deref()) else {
                continue;
            };
            let (by, why) = match replacement {
                Replacement::Ours(dir, why) => {
                    let path = dir.canonicalize().map_err(|cause| ElementError::Read { path: dir.clone(), cause })?;
                    let source = ours.clone().unwrap_or_default();
                    let element = Element::load(&dib.name, &path, &source)?;
                    let by = format!("mesos-image's {}", path.display());
                    self.elements.insert(dib.name.clone(), element);
                    (by, why)
                }
                Replacement::Stage(stage, why) => {
                    self.elements.remove(&dib.name);
                    self.absorbed.insert(dib.name.clone());
                    (stage.to_owned(), why)
                }
                Replacement::Refused(why) => {
                    self.elements.remove(&dib.name);
                    self.refused.insert(dib.name.clone(), why);
                    continue;
                }
            };
            self.substitutions.push(Substitution { name: dib.name.clone(), dib_path: dib.path.clone(), by, why });
        }
        Ok(())
    }

    /// The substitutions that concern a resolved set: elements of ours standing in for DIB's
    /// that were resolved, and stages standing in for names in `requested`.
    pub fn substitutions_for(&self, resolved: &[&Element], requested: &[String]) -> Vec<Substitution> {
        self.substitutions
            .iter()
            .filter(|s| resolved.iter().any(|e| e.name == s.name) || requested.contains(&s.name))
            .cloned()
            .collect()
    }

    /// Whether a stage stands in for `name` (it resolves to no element).
    pub fn is_absorbed(&self, name: &str) -> bool {
        self.absorbed.contains(name)
    }

    /// Why `name` (from DIB's tree) cannot be used, if it cannot.
    pub fn refused(&self, name: &str) -> Option<&str> {
        self.refused.get(name).map(String::as_str)
    }

    /// The search path that was scanned (absolute), earliest first.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The search path as `ELEMENTS_PATH` spells it.
    pub fn elements_path_var(&self) -> String {
        self.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
    }

    pub fn get(&self, name: &str) -> Option<&Element> {
        self.elements.get(name)
    }

    /// Every element, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Element> {
        self.elements.values()
    }
}

/// The elements (sub-directories) of one search-path entry, sorted by name.
fn scan_entry(entry: &Path) -> Result<Vec<Element>, ElementError> {
    let read_error = |cause| ElementError::Read { path: entry.to_owned(), cause };
    let mut found = Vec::new();
    for dirent in std::fs::read_dir(entry).map_err(read_error)? {
        let dirent = dirent.map_err(read_error)?;
        let Some(name) = dirent.file_name().to_str().map(str::to_owned) else {
            tracing::debug!("skipping non-UTF-8 name in {}", entry.display());
            continue;
        };
        // Hidden directories (.git and friends) are never elements.
        if name.starts_with('.') || !dirent.path().is_dir() {
            continue;
        }
        let path = dirent.path().canonicalize().map_err(|cause| ElementError::Read { path: dirent.path(), cause })?;
        found.push(Element::load(&name, &path, entry)?);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_skips_rst_title_and_adornments() {
        let text = "======\nubuntu\n======\n\nUse Ubuntu cloud images as the base.\n\nMore.\n";
        assert_eq!(readme_summary(text).as_deref(), Some("Use Ubuntu cloud images as the base."));
    }

    #[test]
    fn summary_skips_markdown_headings_and_underlined_titles() {
        assert_eq!(readme_summary("# vm\n\nA bootable disk.\n").as_deref(), Some("A bootable disk."));
        assert_eq!(readme_summary("docker\n------\nInstalls docker.\n").as_deref(), Some("Installs docker."));
        assert_eq!(readme_summary("# only a title\n"), None);
    }

    #[test]
    fn search_path_puts_cli_first_env_next_and_drops_duplicates() {
        let builtin = PathBuf::from("/nonexistent/builtin");
        let got = search_path(&[PathBuf::from("/a")], Some("/b::/a:/c"), &builtin);
        assert_eq!(got, vec![PathBuf::from("/a"), PathBuf::from("/b"), PathBuf::from("/c")]);
    }
}
