//! Shared by the stage tests: hand-built plans, build contexts and tiny chroot trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mesos_image::element::Phase;
use mesos_image::plan::{Plan, PlannedElement, PlannedScript};
use mesos_image::progress::Reporter;
use mesos_image::recipe::{BaseMethod, GlanceSpec, ImageSpec};
use mesos_image::stage::BuildContext;

pub fn empty_plan() -> Plan {
    Plan {
        recipe: None,
        recipe_source: None,
        distro: "debian".into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        base: None,
        mirror: None,
        elements: Vec::new(),
        added_elements: Vec::new(),
        scripts: BTreeMap::new(),
        environment_d: Vec::new(),
        packages: BTreeMap::new(),
        env: BTreeMap::new(),
        pkg_maps: BTreeMap::new(),
        image: ImageSpec::default(),
        glance: GlanceSpec::default(),
        checks: Vec::new(),
    }
}

/// An element directory under `root` with the given files (`path` relative to the element,
/// text); files in phase dirs and `environment.d` are made executable.
pub fn element(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    for (path, text) in files {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Add `element`'s scripts to `plan` as the element engine would (run-parts order per phase).
pub fn add_element(plan: &mut Plan, name: &str, dir: &Path) {
    plan.elements.push(PlannedElement { name: name.into(), path: dir.to_owned() });
    plan.elements.sort_by(|a, b| a.name.cmp(&b.name));
    for phase in Phase::ALL {
        let phase_dir = dir.join(phase.dir_name());
        for script in list(&phase_dir) {
            let planned = PlannedScript { name: script.clone(), element: name.into(), path: phase_dir.join(&script) };
            plan.scripts.entry(phase).or_default().push(planned);
        }
    }
    for list in plan.scripts.values_mut() {
        list.sort_by(|a, b| mesos_image::element::runparts::compare(&a.name, &b.name));
    }
    let env_dir = dir.join("environment.d");
    for file in list(&env_dir) {
        plan.environment_d.push(PlannedScript { name: file.clone(), element: name.into(), path: env_dir.join(&file) });
    }
}

pub fn packages(plan: &mut Plan, phase: Phase, install: &[&str]) {
    let set = plan.packages.entry(phase).or_default();
    set.install = install.iter().map(|s| s.to_string()).collect();
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Paths of one test build under `work`.
pub struct Dirs {
    pub work: PathBuf,
    pub target: PathBuf,
    pub hooks: PathBuf,
    pub cache: PathBuf,
    pub apt_cache: PathBuf,
}

impl Dirs {
    pub fn new(work: &Path) -> Dirs {
        let dirs = Dirs {
            work: work.to_owned(),
            target: work.join("tree"),
            hooks: work.join("hooks"),
            cache: work.join("cache"),
            apt_cache: work.join("cache/apt"),
        };
        fs::create_dir_all(&dirs.target).unwrap();
        dirs
    }

    pub fn context<'a>(&self, plan: &'a Plan, reporter: &'a Reporter) -> BuildContext<'a> {
        BuildContext {
            plan,
            target: self.target.clone(),
            hooks_dir: self.hooks.clone(),
            work_dir: self.work.clone(),
            cache_dir: self.cache.clone(),
            apt_cache: self.apt_cache.clone(),
            trace: false,
            break_at: None,
            reporter,
            pins: mesos_image::reproducible::Pins::fixed(1_700_000_000, "phases test"),
        }
    }
}

/// Copy host programs and the libraries `ldd` names into `tree`, enough for a chroot that
/// runs bash scripts without a real base system.
pub fn tiny_tree(tree: &Path, programs: &[&str]) {
    for program in programs {
        let path = which(program);
        copy_into(tree, &path);
        let ldd = Command::new("ldd").arg(&path).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line.split_whitespace().find(|word| word.starts_with('/'));
            if let Some(lib) = lib {
                copy_into(tree, Path::new(lib));
            }
        }
    }
    for dir in ["tmp", "etc", "usr/sbin"] {
        fs::create_dir_all(tree.join(dir)).unwrap();
    }
    // The chroot's PATH has /bin and /usr/bin; a merged-/usr host gives /usr/bin paths.
    if !tree.join("bin").exists() {
        std::os::unix::fs::symlink("usr/bin", tree.join("bin")).unwrap();
    }
}

fn which(program: &str) -> PathBuf {
    let output = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    fs::canonicalize(&path).unwrap_or(path)
}

fn copy_into(tree: &Path, path: &Path) {
    let real = fs::canonicalize(path).unwrap();
    for name in [path, real.as_path()] {
        let dest = tree.join(name.strip_prefix("/").unwrap());
        if dest.exists() {
            continue;
        }
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&real, &dest).unwrap();
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The host's own Debian mirror, read from its apt sources (never written down in the code).
pub fn host_mirror() -> Option<String> {
    let mut texts = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|ext| ext == "sources" || ext == "list"));
    files.sort();
    for file in files {
        texts.push(fs::read_to_string(file).unwrap_or_default());
    }
    texts.push(fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            if let Some(uris) = line.strip_prefix("URIs:") {
                if let Some(uri) = uris.split_whitespace().find(|u| u.starts_with("http")) {
                    return Some(uri.to_owned());
                }
            }
            if line.starts_with("deb ") {
                if let Some(uri) = line.split_whitespace().find(|u| u.starts_with("http")) {
                    return Some(uri.to_owned());
                }
            }
        }
    }
    None
}

pub fn base(plan: &mut Plan, method: BaseMethod) {
    plan.base = Some(method);
}
