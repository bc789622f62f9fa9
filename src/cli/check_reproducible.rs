//! `build --check-reproducible`: build the same plan twice, the second time in another work
//! directory with another time zone, umask and host name, and compare: every output by sha256,
//! the manifests apart from the fields about the run, and the two trees path by path, so a
//! difference is reported as the files (and packages) that differ, not as two hashes, and for
//! the first differing files what differs inside them (both trees are kept until then).
//! It runs whole builds, so it lives with the commands, above `build`; what a build pins and
//! how a tree is described are `reproducible/`'s, which the stages use.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::build::{self, BuildOptions};
use crate::manifest::{self, Manifest};
use crate::plan::Plan;
use crate::reproducible::content;
use crate::reproducible::listing::{self, Difference};

/// How many differing paths the report lists.
const SHOWN_DIFFERENCES: usize = 40;
/// How many differing files the report shows the content difference of.
const EXPLAINED_FILES: usize = 8;

/// What the second build changes about its surroundings.
const SECOND_TZ: &str = "Pacific/Chatham";
const SECOND_UMASK: u32 = 0o077;
const SECOND_HOSTNAME: &str = "mesos-image-check-b";

/// The outcome of the comparison.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// (file, sha256 of the first build, sha256 of the second).
    pub outputs: Vec<(String, String, String)>,
    /// Manifest fields (other than run fields) that differ.
    pub manifest_fields: Vec<String>,
    pub tree: Vec<Difference>,
    /// For the first differing regular files: tree path and what differs inside
    /// ([`content::describe`]), or why that could not be read.
    pub contents: Vec<(String, String)>,
    /// Each build's `SOURCE_DATE_EPOCH`: when they differ the mirror published a new state
    /// between the builds, which therefore had different inputs.
    pub epochs: (Option<i64>, Option<i64>),
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.outputs.iter().all(|(_, a, b)| a == b) && self.manifest_fields.is_empty() && self.tree.is_empty()
    }

    /// Read what differs inside the first differing regular files from the two kept trees.
    pub fn explain_contents(&mut self, first_root: &Path, second_root: &Path) {
        let regular = |root: &Path, path: &str| {
            fs::symlink_metadata(root.join(path.trim_start_matches('/'))).is_ok_and(|m| m.file_type().is_file())
        };
        self.contents = self
            .tree
            .iter()
            .filter(|d| d.what.content())
            .filter(|d| regular(first_root, &d.path) && regular(second_root, &d.path))
            .take(EXPLAINED_FILES)
            .map(|d| {
                let inside =
                    content::between_trees(first_root, second_root, &d.path).unwrap_or_else(|err| err.to_string());
                (d.path.clone(), inside)
            })
            .collect();
    }

    /// The report a person reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.identical() { "reproducible: identical" } else { "NOT reproducible" };
        let _ = writeln!(out, "{verdict}");
        for (file, a, b) in &self.outputs {
            if a == b {
                let _ = writeln!(out, "  same    {file}  sha256 {a}");
            } else {
                let _ = writeln!(out, "  differs {file}  sha256 {a} vs {b}");
            }
        }
        if let (Some(a), Some(b)) = self.epochs {
            if a != b {
                let _ = writeln!(
                    out,
                    "  the builds were dated differently (SOURCE_DATE_EPOCH {a} vs {b}): the mirror published a \
                     new state between them, so their inputs differ; check again, or build from a snapshot mirror"
                );
            }
        }
        for field in &self.manifest_fields {
            let _ = writeln!(out, "  manifest field `{field}` differs");
        }
        if !self.tree.is_empty() {
            let _ = writeln!(out, "  {} paths differ in the tree (first {}):", self.tree.len(), SHOWN_DIFFERENCES);
            for difference in self.tree.iter().take(SHOWN_DIFFERENCES) {
                let owner = if difference.package.is_empty() {
                    "made by the build".to_owned()
                } else {
                    difference.package.clone()
                };
                let _ = writeln!(out, "    {}  [{}]  {}", difference.path, owner, difference.what);
                if let Some((_, inside)) = self.contents.iter().find(|(path, _)| *path == difference.path) {
                    for line in inside.lines() {
                        let _ = writeln!(out, "        {line}");
                    }
                }
            }
        } else if !self.identical() {
            let _ = writeln!(
                out,
                "  the trees are identical: the difference is in the disk layer (filesystem, table, format)"
            );
        }
        out
    }
}

/// Build `plan` twice and compare. The first build's outputs are the user's; the second's go
/// to a hidden directory beside them, removed when the builds agree and kept when they do not.
pub fn build_twice(plan: &Plan, options: &BuildOptions) -> anyhow::Result<Comparison> {
    let output_dir = match options.output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file = options.output.file_name().context("--output has no file name")?.to_owned();
    // A stop signal is passed on to the running build, and this process unwinds (removing the
    // kept trees and the second build's outputs) and exits 128 + the signal.
    crate::sandbox::catch_stop_signals()?;
    // Both builds and the comparison of their trees run in one user namespace when rootless: the
    // kept trees hold files of the namespace's other ids, which only it can read and remove.
    crate::sandbox::ensure_privileges()?;
    let scratch = tempfile::Builder::new()
        .prefix(".check-reproducible-")
        .tempdir_in(&output_dir)
        .with_context(|| format!("cannot create a directory in {}", output_dir.display()))?;
    let work_root = options.work_dir.clone().unwrap_or_else(|| options.cache_dir.join("work"));
    fs::create_dir_all(&work_root).with_context(|| format!("cannot create {}", work_root.display()))?;
    let work = tempfile::Builder::new()
        .prefix("check-reproducible-")
        .tempdir_in(&work_root)
        .with_context(|| format!("cannot create the check's work directories in {}", work_root.display()))?;
    crate::sandbox::remove_on_exit(work.path());
    // The trees are kept in the check's work directory (removed with it, however this ends) until
    // the differing files have been read.
    let runs = [
        (
            options.output.clone(),
            work.path().join("a"),
            scratch.path().join("first.tree"),
            work.path().join("first.root"),
        ),
        (
            scratch.path().join(&file),
            work.path().join("b"),
            scratch.path().join("second.tree"),
            work.path().join("second.root"),
        ),
    ];
    for (index, (output, work_dir, tree, root)) in runs.iter().enumerate() {
        fs::create_dir_all(work_dir).with_context(|| format!("cannot create {}", work_dir.display()))?;
        let run = BuildOptions {
            output: output.clone(),
            use_cache: false,
            work_dir: Some(work_dir.clone()),
            tree_listing: Some(tree.clone()),
            keep_tree: Some(root.clone()),
            ..options.clone()
        };
        build_in_child(plan, &run, index == 1).with_context(|| format!("build {} of 2", index + 1))?;
        crate::sandbox::check_interrupted()?;
    }
    let mut comparison = compare_builds(&runs[0].0, &runs[1].0, &runs[0].2, &runs[1].2)?;
    comparison.explain_contents(&runs[0].3, &runs[1].3);
    drop(work);
    if !comparison.identical() {
        let kept = scratch.keep();
        eprintln!("the second build's outputs are kept in {}", kept.display());
    }
    Ok(comparison)
}

/// One build in a forked child, as if run on its own (a build isolates its process for good).
/// The second build runs under another time zone, umask and (in its own UTS namespace) host
/// name, none of which may reach the image.
fn build_in_child(plan: &Plan, options: &BuildOptions, vary: bool) -> anyhow::Result<()> {
    // SAFETY: called from the single-threaded CLI before any build started; the child only
    // runs the build and exits.
    match unsafe { fork() }.context("cannot fork a build")? {
        ForkResult::Child => {
            let code = match vary_surroundings(vary).and_then(|()| build::execute(plan, options)) {
                Ok(_) => 0,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    1
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            let mut passed_on = false;
            loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)).context("cannot wait for a build")? {
                    WaitStatus::StillAlive => {}
                    WaitStatus::Exited(_, 0) => return Ok(()),
                    status => anyhow::bail!("the build failed ({status:?})"),
                }
                if let (Some(signal), false) = (crate::sandbox::stop_signal(), passed_on) {
                    // A signal sent to this process alone (not its group) still stops the build.
                    let signal = nix::sys::signal::Signal::try_from(signal).context("unknown stop signal")?;
                    let _ = nix::sys::signal::kill(child, signal);
                    passed_on = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

fn vary_surroundings(vary: bool) -> anyhow::Result<()> {
    if !vary {
        return Ok(());
    }
    std::env::set_var("TZ", SECOND_TZ);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(SECOND_UMASK));
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).context("cannot create a UTS namespace")?;
    nix::unistd::sethostname(SECOND_HOSTNAME).context("cannot set the host name")?;
    Ok(())
}

/// Compare two finished builds by their outputs, manifests and tree listings.
pub fn compare_builds(
    first: &Path,
    second: &Path,
    first_tree: &Path,
    second_tree: &Path,
) -> anyhow::Result<Comparison> {
    let read_manifest = |image: &Path| -> anyhow::Result<serde_json::Value> {
        // Beside the image, or in its NAME.d/ when built as disk-image-create.
        let beside = Manifest::path_for(image);
        let path = match beside.exists() {
            true => beside,
            false => Manifest::find(image)?.map_or(beside, |located| located.path),
        };
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))
    };
    let (a, b) = (read_manifest(first)?, read_manifest(second)?);
    let epoch = |manifest: &serde_json::Value| manifest["reproducible"]["source_date_epoch"]["seconds"].as_i64();
    let mut comparison = Comparison {
        manifest_fields: manifest::differing_fields(&a, &b),
        epochs: (epoch(&a), epoch(&b)),
        ..Comparison::default()
    };
    let outputs = |manifest: &serde_json::Value| -> Vec<(String, String)> {
        manifest["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| (o["file"].as_str().unwrap_or("").to_owned(), o["sha256"].as_str().unwrap_or("").to_owned()))
            .collect()
    };
    for ((file, sha_a), (_, sha_b)) in outputs(&a).into_iter().zip(outputs(&b)) {
        comparison.outputs.push((file, sha_a, sha_b));
    }
    let read_listing = |path: &Path| -> anyhow::Result<listing::Listing> {
        listing::from_text(&fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)
    };
    comparison.tree = listing::compare(&read_listing(first_tree)?, &read_listing(second_tree)?);
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproducible::listing::{Differs, Field};

    #[test]
    fn report_names_differing_paths_and_their_packages() {
        let comparison = Comparison {
            outputs: vec![("x.qcow2".into(), "aa".into(), "bb".into())],
            manifest_fields: vec![],
            tree: vec![Difference {
                path: "/usr/lib/x.pyc".into(),
                what: Differs::Fields(vec![Field::Content]),
                package: "python3-x".into(),
            }],
            contents: vec![],
            epochs: (Some(1), Some(1)),
        };
        assert!(!comparison.identical());
        let report = comparison.render();
        assert!(report.starts_with("NOT reproducible\n"), "{report}");
        assert!(report.contains("/usr/lib/x.pyc  [python3-x]  content"), "{report}");
        assert!(report.contains("differs x.qcow2  sha256 aa vs bb"), "{report}");
        assert!(!report.contains("dated differently"), "{report}");
    }

    /// The report shows what differs inside a differing file, read from both kept trees;
    /// paths that differ only in metadata get no excerpt.
    #[test]
    fn report_shows_what_differs_inside_a_file() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (root, id) in [(one.path(), "1111"), (two.path(), "2222")] {
            fs::create_dir(root.join("etc")).unwrap();
            fs::write(root.join("etc/nondet"), format!("id={id}\n")).unwrap();
            fs::write(root.join("etc/mode"), "same\n").unwrap();
        }
        let difference = |path: &str, field: Field| Difference {
            path: path.into(),
            what: Differs::Fields(vec![field]),
            package: String::new(),
        };
        let mut comparison = Comparison {
            tree: vec![difference("/etc/mode", Field::Mode(0o644, 0o600)), difference("/etc/nondet", Field::Content)],
            ..Comparison::default()
        };
        comparison.explain_contents(one.path(), two.path());
        assert_eq!(
            comparison.contents,
            vec![("/etc/nondet".to_owned(), "@@ line 1 @@\n-id=1111\n+id=2222\n".to_owned())]
        );
        let report = comparison.render();
        assert!(
            report.contains("    /etc/nondet  [made by the build]  content\n        @@ line 1 @@\n        -id=1111\n        +id=2222\n"),
            "{report}"
        );
    }

    /// Two builds either side of a mirror update are not the same inputs: the report says so
    /// rather than leaving the reader to blame the packages.
    #[test]
    fn builds_dated_differently_are_blamed_on_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, epoch: i64| {
            let image = dir.path().join(name);
            let manifest = serde_json::json!({
                "outputs": [{"file": name, "sha256": format!("{epoch}")}],
                "reproducible": {"source_date_epoch": {"seconds": epoch, "origin": {"kind": "given"}}, "seed": "s"},
            });
            fs::write(Manifest::path_for(&image), manifest.to_string()).unwrap();
            let tree = dir.path().join(format!("{name}.tree"));
            fs::write(&tree, "").unwrap();
            (image, tree)
        };
        let (first, first_tree) = write("a.qcow2", 1_700_000_000);
        let (second, second_tree) = write("b.qcow2", 1_700_086_400);
        let comparison = compare_builds(&first, &second, &first_tree, &second_tree).unwrap();
        assert_eq!(comparison.epochs, (Some(1_700_000_000), Some(1_700_086_400)));
        let report = comparison.render();
        assert!(report.contains("dated differently (SOURCE_DATE_EPOCH 1700000000 vs 1700086400)"), "{report}");
        assert!(report.contains("manifest field `reproducible` differs"), "{report}");
    }
}
