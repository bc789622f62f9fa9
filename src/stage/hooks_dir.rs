//! DIB's `TMP_HOOKS_PATH`: a merged copy of every element's WHOLE directory, as
//! `generate_hooks` in DIB's `lib/img-functions` makes it. Scripts reach files beside them
//! (`$(dirname $0)/../os-apply-config`, `install.d/hook-script.py`, `../bin/*`, `svc-map`,
//! `source-repository-*`), so copying only the selected phase scripts is not enough.
//!
//! DIB's rules, kept: every sub-directory of an element except `tests` and `__pycache__` merges
//! into the directory of the same name; two elements shipping the same file directly inside one
//! of them is an error; deeper levels merge with the later copy winning; files at an element's
//! top level (`element-deps`, `pkg-map`, `svc-map`, ...) are copied over each other; `*.pyc` is
//! left out. Elements are copied in name order (DIB's order is a hash order), and symlinks are
//! followed (DIB's `find -follow`), so links pointing outside an element still work.
//! The scripts of enabled install-type directories are linked into `install.d` as DIB's
//! `install-types` element links them (`install.d/10-x -> app-source-install/10-x`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::element::Phase;
use crate::plan::{PlannedElement, PlannedScript};

/// Sub-directories DIB never copies into the hooks dir.
const SKIPPED_DIRS: [&str; 2] = ["tests", "__pycache__"];

/// Errors laying out the hooks dir that name the culprit.
#[derive(Debug, thiserror::Error)]
pub enum HooksDirError {
    #[error("{dir}/{name} is shipped by both `{first}` and `{second}` (DIB: duplicated hook)")]
    Duplicate { dir: String, name: String, first: String, second: String },
}

/// Copy every element's directory into `hooks`, then link in the install-type scripts of
/// `scripts` that are not directly in their phase directory.
pub fn merge_element_dirs<'a>(
    hooks: &Path,
    elements: &[PlannedElement],
    scripts: impl IntoIterator<Item = (Phase, &'a PlannedScript)>,
) -> anyhow::Result<()> {
    create_dir(hooks)?;
    // (dir name, file name) -> element that shipped it, for DIB's duplicate check.
    let mut owners: std::collections::BTreeMap<(String, String), String> = Default::default();
    let mut sorted: Vec<&PlannedElement> = elements.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for element in sorted {
        copy_element(hooks, element, &mut owners)?;
    }
    for (phase, script) in scripts {
        link_install_type_script(hooks, elements, phase, script)?;
    }
    Ok(())
}

fn copy_element(
    hooks: &Path,
    element: &PlannedElement,
    owners: &mut std::collections::BTreeMap<(String, String), String>,
) -> anyhow::Result<()> {
    let context = || format!("element {}: cannot copy {} into the hooks dir", element.name, element.path.display());
    for entry in sorted_entries(&element.path).with_context(context)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // metadata() follows symlinks, like DIB's `find -follow`.
        let Ok(meta) = fs::metadata(&entry) else { continue };
        if meta.is_dir() {
            if SKIPPED_DIRS.contains(&name.as_str()) {
                continue;
            }
            let dest_dir = hooks.join(&name);
            create_dir(&dest_dir)?;
            for child in sorted_entries(&entry).with_context(context)? {
                let child_name = child.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let is_dir = fs::metadata(&child).map(|m| m.is_dir()).unwrap_or(false);
                if !is_dir {
                    let key = (name.clone(), child_name.clone());
                    if let Some(first) = owners.get(&key) {
                        return Err(HooksDirError::Duplicate {
                            dir: name,
                            name: child_name,
                            first: first.clone(),
                            second: element.name.clone(),
                        }
                        .into());
                    }
                    owners.insert(key, element.name.clone());
                }
                copy_following_links(&child, &dest_dir.join(&child_name)).with_context(context)?;
            }
        } else if meta.is_file() && !name.ends_with(".pyc") {
            copy_following_links(&entry, &hooks.join(&name)).with_context(context)?;
        }
    }
    Ok(())
}

/// `install.d/<name>` for a script that lives in an install-type directory: a relative link,
/// so `$(dirname $0)` is `install.d` as in DIB.
fn link_install_type_script(
    hooks: &Path,
    elements: &[PlannedElement],
    phase: Phase,
    script: &PlannedScript,
) -> anyhow::Result<()> {
    let phase_dir = hooks.join(phase.dir_name());
    let dest = phase_dir.join(&script.name);
    if fs::symlink_metadata(&dest).is_ok() {
        return Ok(());
    }
    let element_phase_dir =
        elements
            .iter()
            .find(|e| e.name == script.element)
            .map(|e| e.path.join(phase.dir_name()))
            .with_context(|| format!("script {} names unknown element {}", script.name, script.element))?;
    let relative = script.path.strip_prefix(&element_phase_dir).with_context(|| {
        format!("element {}: {} is not inside {}", script.element, script.path.display(), phase.dir_name())
    })?;
    create_dir(&phase_dir)?;
    std::os::unix::fs::symlink(relative, &dest).with_context(|| format!("cannot link {}", dest.display()))
}

/// A directory's entries sorted by name (full paths).
fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    Ok(entries)
}

/// Copy a file or a directory tree, following symlinks (loops are an error), keeping modes;
/// an existing file at the destination is replaced, directories merge.
fn copy_following_links(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(true).sort_by_file_name() {
        let entry = entry?;
        let relative = entry.path().strip_prefix(from)?;
        let dest = if relative.as_os_str().is_empty() { to.to_owned() } else { to.join(relative) };
        if entry.file_type().is_dir() {
            create_dir(&dest)?;
        } else if entry.file_type().is_file() {
            if fs::symlink_metadata(&dest).is_ok() {
                fs::remove_file(&dest).with_context(|| format!("cannot replace {}", dest.display()))?;
            }
            fs::copy(entry.path(), &dest).with_context(|| format!("cannot copy to {}", dest.display()))?;
        }
    }
    Ok(())
}

/// Write one of our helper programs (mode 0755).
pub fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn element(root: &Path, name: &str) -> PlannedElement {
        PlannedElement { name: name.into(), path: root.join(name) }
    }

    #[test]
    fn whole_element_dirs_merge_and_install_type_scripts_are_linked() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        write(&root.join("os-apply-config/install.d/99-install-config-templates"), "#!/bin/sh\n", 0o755);
        write(&root.join("os-apply-config/install.d/app-source-install/10-app"), "#!/bin/sh\nsrc\n", 0o755);
        write(&root.join("os-apply-config/install.d/app-package-install/10-app"), "#!/bin/sh\npkg\n", 0o755);
        write(&root.join("os-apply-config/os-refresh-config/configure.d/20-os-apply-config"), "x", 0o755);
        write(&root.join("os-apply-config/element-deps"), "os-refresh-config\n", 0o644);
        write(&root.join("os-apply-config/tests/test_it.py"), "", 0o644);
        write(&root.join("os-apply-config/x.pyc"), "", 0o644);
        write(&root.join("os-refresh-config/os-refresh-config/post-configure.d/99-refresh-completed"), "y", 0o755);
        write(&root.join("heat-config/install.d/hook-script.py"), "print()\n", 0o644);
        write(&root.join("heat-config/bin/heat-config-notify"), "#!/bin/sh\n", 0o755);
        let elements =
            vec![element(root, "heat-config"), element(root, "os-apply-config"), element(root, "os-refresh-config")];
        let script = PlannedScript {
            name: "10-app".into(),
            element: "os-apply-config".into(),
            path: root.join("os-apply-config/install.d/app-source-install/10-app"),
        };
        let hooks_tmp = tempfile::tempdir().unwrap();
        let hooks = hooks_tmp.path().join("hooks");
        merge_element_dirs(&hooks, &elements, [(Phase::Install, &script)]).unwrap();

        assert!(hooks.join("os-refresh-config/configure.d/20-os-apply-config").is_file());
        assert!(hooks.join("os-refresh-config/post-configure.d/99-refresh-completed").is_file());
        assert!(hooks.join("install.d/hook-script.py").is_file());
        assert!(hooks.join("install.d/app-package-install/10-app").is_file());
        let mode = fs::metadata(hooks.join("bin/heat-config-notify")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(hooks.join("element-deps").is_file());
        assert!(!hooks.join("tests").exists());
        assert!(!hooks.join("x.pyc").exists());
        let link = hooks.join("install.d/10-app");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("app-source-install/10-app"));
        assert_eq!(fs::read_to_string(&link).unwrap(), "#!/bin/sh\nsrc\n");
    }

    #[test]
    fn the_same_file_from_two_elements_is_dibs_duplicated_hook_error() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        write(&root.join("a/bin/tool"), "#!/bin/sh\n", 0o755);
        write(&root.join("b/bin/tool"), "#!/bin/sh\n", 0o755);
        let hooks = tempfile::tempdir().unwrap();
        let err =
            merge_element_dirs(hooks.path(), &[element(root, "a"), element(root, "b")], []).unwrap_err().to_string();
        assert_eq!(err, "bin/tool is shipped by both `a` and `b` (DIB: duplicated hook)");
    }
}
