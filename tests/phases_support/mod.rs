//! Shared by the stage tests: plans from the planner, build contexts and tiny chroot trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mesos_image::mirror::HostDistro;
use mesos_image::plan::{HostContext, Plan, PlanOptions};
use mesos_image::progress::Reporter;
use mesos_image::recipe::Overrides;
use mesos_image::stage::BuildContext;

/// The plan the planner makes in DIB mode for `names`, found under `elements` (made with
/// [`element`]), on a minimal Debian bookworm operating-system element; `overrides` are the
/// command-line flags (`-e`, `-p`, `--base`, `--mirror`, `--release`). Stage tests run on what
/// the planner really hands the stages, never on a plan typed by hand.
pub fn plan(elements: &Path, names: &[&str], overrides: Overrides) -> Plan {
    plan_on(elements, names, "debian", overrides)
}

/// As [`plan`], on an operating-system element exporting `DISTRO_NAME=distro` (the release
/// comes from `overrides.release`, else bookworm).
pub fn plan_on(elements: &Path, names: &[&str], distro: &str, overrides: Overrides) -> Plan {
    let os_root = elements.join(".planner-os");
    element(
        &os_root,
        OS_ELEMENT,
        &[
            ("element-provides", "operating-system\n"),
            (
                "environment.d/10-test-os",
                &format!("export DISTRO_NAME={distro}\nexport DIB_RELEASE=${{DIB_RELEASE:-bookworm}}\n"),
            ),
        ],
    );
    let mut requested: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    requested.push(OS_ELEMENT.to_owned());
    let options = PlanOptions {
        elements_path: vec![elements.to_owned(), os_root],
        overrides,
        skip_base: true,
        host: HostContext { env: BTreeMap::new(), distro: HostDistro::default() },
        ..PlanOptions::default()
    };
    Plan::from_elements(&requested, &options).unwrap()
}

/// The operating-system element [`plan`] adds.
pub const OS_ELEMENT: &str = "test-os";

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

/// The host's own Debian mirror, as the planner reads it from the host's apt sources (never
/// written down in the code).
pub fn host_mirror() -> Option<String> {
    mesos_image::mirror::host_archive_uri(Path::new("/etc/apt"))
}

/// Run a program this test process has just written. Another test thread that forks while the
/// file is still open for writing holds that descriptor until it execs, and the kernel refuses
/// to run a file open for writing (`ETXTBSY`): wait that moment out.
pub fn output_of_fresh(command: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match command.output() {
            Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            result => return result.unwrap(),
        }
    }
    panic!("{command:?}: still busy after 2 s")
}
