//! `mesos-image diff A B`: what changed between two images, from their manifests: packages
//! added, removed and changed (version), elements added and removed, and whether the image
//! files are the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::args::GlobalOpts;
use crate::manifest::Manifest;

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The older image's manifest (`IMAGE.manifest.json`, or the image: its manifest beside it or in `NAME.d/`).
    #[arg(value_name = "A")]
    pub first: PathBuf,
    /// The newer image's manifest (`IMAGE.manifest.json`, or the image: its manifest beside it or in `NAME.d/`).
    #[arg(value_name = "B")]
    pub second: PathBuf,
}

pub fn run(args: DiffArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    let first = read(&args.first)?;
    let second = read(&args.second)?;
    print!("{}", render(&first, &second));
    Ok(())
}

/// A manifest file, or the manifest of an image (beside it or in its `NAME.d/`).
fn read(path: &Path) -> anyhow::Result<Manifest> {
    let is_manifest = path.to_string_lossy().ends_with(".json");
    if !is_manifest {
        if let Some(located) = Manifest::find(path)? {
            return Ok(located.manifest);
        }
    }
    let manifest_path = if is_manifest { path.to_owned() } else { Manifest::path_for(path) };
    let bytes = std::fs::read(&manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a mesos-image manifest", manifest_path.display()))
}

/// One package's change between two images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added { name: String, version: String },
    Removed { name: String, version: String },
    Changed { name: String, from: String, to: String },
}

/// Packages added, removed and changed from `first` to `second`, by name.
pub fn package_changes(first: &Manifest, second: &Manifest) -> Vec<Change> {
    let index = |m: &Manifest| -> BTreeMap<String, String> {
        m.packages.iter().map(|p| (p.qualified_name(&m.arch), p.version.clone())).collect()
    };
    let (a, b) = (index(first), index(second));
    let mut changes = Vec::new();
    for (name, version) in &a {
        match b.get(name) {
            None => changes.push(Change::Removed { name: name.clone(), version: version.clone() }),
            Some(new) if new != version => {
                changes.push(Change::Changed { name: name.clone(), from: version.clone(), to: new.clone() })
            }
            Some(_) => {}
        }
    }
    for (name, version) in &b {
        if !a.contains_key(name) {
            changes.push(Change::Added { name: name.clone(), version: version.clone() });
        }
    }
    changes.sort_by(|x, y| change_name(x).cmp(change_name(y)));
    changes
}

fn change_name(change: &Change) -> &str {
    match change {
        Change::Added { name, .. } | Change::Removed { name, .. } | Change::Changed { name, .. } => name,
    }
}

/// The report: one line per change, then a summary line.
pub fn render(first: &Manifest, second: &Manifest) -> String {
    let mut out = String::new();
    for element in first.elements.iter().filter(|e| !second.elements.contains(e)) {
        let _ = writeln!(out, "- element {element}");
    }
    for element in second.elements.iter().filter(|e| !first.elements.contains(e)) {
        let _ = writeln!(out, "+ element {element}");
    }
    let changes = package_changes(first, second);
    let (mut added, mut removed, mut changed) = (0, 0, 0);
    for change in &changes {
        let _ = match change {
            Change::Added { name, version } => {
                added += 1;
                writeln!(out, "+ {name} {version}")
            }
            Change::Removed { name, version } => {
                removed += 1;
                writeln!(out, "- {name} {version}")
            }
            Change::Changed { name, from, to } => {
                changed += 1;
                writeln!(out, "~ {name} {from} -> {to}")
            }
        };
    }
    let _ = writeln!(out, "packages: {added} added, {removed} removed, {changed} changed");
    let same_images = !first.outputs.is_empty()
        && first.outputs.len() == second.outputs.len()
        && first.outputs.iter().zip(&second.outputs).all(|(a, b)| a.sha256 == b.sha256);
    let _ = writeln!(out, "images: {}", if same_images { "identical" } else { "differ" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{OutputEntry, Package};

    fn manifest(packages: &[(&str, &str)], elements: &[&str], sha: &str) -> Manifest {
        Manifest {
            tool_version: "0".into(),
            recipe: None,
            distro: "debian".into(),
            release: "bookworm".into(),
            arch: "amd64".into(),
            boot: None,
            elements: elements.iter().map(|e| e.to_string()).collect(),
            packages: packages
                .iter()
                .map(|(n, v)| Package { name: n.to_string(), version: v.to_string(), arch: "amd64".into() })
                .collect(),
            outputs: vec![OutputEntry {
                file: "x.qcow2".into(),
                format: "qcow2".into(),
                size: 1,
                sha256: sha.into(),
                ..OutputEntry::default()
            }],
            recipe_source: None,
            root_uuid: String::new(),
            kernel_version: String::new(),
            glance: Default::default(),
            checks: vec![],
            cache_key: "k".into(),
            run: Default::default(),
            reproducible: None,
            sbom: None,
        }
    }

    #[test]
    fn lists_added_removed_and_changed_packages() {
        let a = manifest(&[("bash", "5.2-1"), ("curl", "7.88"), ("jq", "1.6")], &["vm"], "aa");
        let b = manifest(&[("bash", "5.2-2"), ("jq", "1.6"), ("zsh", "5.9")], &["vm", "docker"], "bb");
        assert_eq!(
            package_changes(&a, &b),
            vec![
                Change::Changed { name: "bash".into(), from: "5.2-1".into(), to: "5.2-2".into() },
                Change::Removed { name: "curl".into(), version: "7.88".into() },
                Change::Added { name: "zsh".into(), version: "5.9".into() },
            ]
        );
        let report = render(&a, &b);
        assert!(report.contains("+ element docker\n"), "{report}");
        assert!(report.contains("~ bash 5.2-1 -> 5.2-2\n- curl 7.88\n+ zsh 5.9\n"), "{report}");
        assert!(report.contains("packages: 1 added, 1 removed, 1 changed\nimages: differ\n"), "{report}");
        assert!(render(&a, &a).ends_with("packages: 0 added, 0 removed, 0 changed\nimages: identical\n"));
    }

    #[test]
    fn reads_a_manifest_or_the_one_beside_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        let m = manifest(&[("bash", "5")], &["vm"], "aa");
        std::fs::write(Manifest::path_for(&image), m.to_json().unwrap()).unwrap();
        assert_eq!(read(&image).unwrap(), m);
        assert_eq!(read(&Manifest::path_for(&image)).unwrap(), m);
        let err = read(&dir.path().join("missing.qcow2")).unwrap_err().to_string();
        assert!(err.contains("missing.qcow2.manifest.json"), "{err}");
    }
}
