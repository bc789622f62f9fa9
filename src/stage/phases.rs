//! Element hooks with DIB's semantics: the hooks dir laid out as DIB's `TMP_HOOKS_PATH`, and
//! each phase's scripts run in order (outside on the host, inside chrooted), with the phase's
//! packages installed in one apt transaction at DIB's slot.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::hooks_dir::{self, create_dir, write_executable};
use super::{packages, target_config, BreakPoint, BuildContext};
use crate::element::Phase;
use crate::plan::{PhaseStep, PlannedScript};
use crate::sandbox::{self, chroot_command, Bind, ChrootMounts};

/// Where the hooks dir is bound inside the chroot (DIB's `TMP_HOOKS_PATH` inside).
pub const HOOKS_INSIDE: &str = "/tmp/in_target.d";

/// The in-chroot helpers DIB elements call, written to `<hooks>/bin`.
const HELPERS: [(&str, &str); 4] = [
    ("install-packages", include_str!("helpers/install-packages")),
    ("pkg-map", include_str!("helpers/pkg-map")),
    ("dib-init-system", include_str!("helpers/dib-init-system")),
    ("dib-run-parts", include_str!("helpers/dib-run-parts")),
];

/// The `sudo` outside scripts see on a root build host that has none (see `helpers/sudo`).
const SUDO_SHIM: &str = include_str!("helpers/sudo");

/// Lay out `ctx.hooks_dir` as DIB's `TMP_HOOKS_PATH`: a merged copy of every element's whole
/// directory (see [`hooks_dir`]), `bin/` with our in-chroot helpers over the elements' own,
/// `pkg-map.d/<element>` with each element's resolved pkg-map; and, outside the hooks dir, the
/// `sudo` outside scripts call. Call once, before the root stage.
pub fn prepare_hooks(ctx: &BuildContext) -> anyhow::Result<()> {
    let hooks = &ctx.hooks_dir;
    let scripts = Phase::ALL.into_iter().flat_map(|phase| ctx.plan.scripts_for(phase).iter().map(move |s| (phase, s)));
    hooks_dir::merge_element_dirs(hooks, &ctx.plan.elements, scripts)?;
    for dir in Phase::ALL.iter().map(|p| p.dir_name()).chain(["environment.d", "bin", "pkg-map.d"]) {
        create_dir(&hooks.join(dir))?;
    }
    for (name, text) in HELPERS {
        write_executable(&hooks.join("bin").join(name), text)?;
    }
    write_xtrace_env(hooks)?;
    for (element, map) in &ctx.plan.pkg_maps {
        let lines: String = map.iter().map(|(generic, mapped)| format!("{generic} {mapped}\n")).collect();
        let path = hooks.join("pkg-map.d").join(element);
        fs::write(&path, lines).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let host_bin = host_bin_dir(ctx);
    create_dir(&host_bin)?;
    write_executable(&host_bin.join("sudo"), SUDO_SHIM)?;
    create_dir(&lockfiles_dir(ctx))?;
    Ok(())
}

/// Programs outside scripts find first on `PATH` (the `sudo` shim); not in the image.
fn host_bin_dir(ctx: &BuildContext) -> PathBuf {
    ctx.work_dir.join("host-bin")
}

/// DIB_LOCKFILES: where elements `flock` around shared downloads.
fn lockfiles_dir(ctx: &BuildContext) -> PathBuf {
    ctx.cache_dir.join("lockfiles")
}

/// Run one phase: its steps in plan order (scripts, packages at the phase's slot, element
/// files), `--break` shells where asked. Inside phases get the chroot's mounts for their
/// duration. The pipeline announces the phase (`pipeline/`).
pub fn run_phase(ctx: &BuildContext, phase: Phase) -> anyhow::Result<()> {
    sandbox::check_interrupted()?;
    let _mounts = if phase.runs_inside() {
        target_config::enter(ctx)?;
        Some(mount_for_phase(ctx)?)
    } else {
        None
    };
    break_if(ctx, BreakPoint::Before(phase), phase);
    match run_steps(ctx, phase) {
        Ok(()) => {
            break_if(ctx, BreakPoint::After(phase), phase);
            Ok(())
        }
        Err(err) => {
            break_if(ctx, BreakPoint::AfterError, phase);
            Err(err)
        }
    }
}

/// Mount `/proc`, `/sys`, `/dev` and the hooks dir (read-only) into the target.
pub fn mount_for_phase(ctx: &BuildContext) -> anyhow::Result<ChrootMounts> {
    let binds = [Bind::read_only(&ctx.hooks_dir, HOOKS_INSIDE)];
    Ok(ChrootMounts::mount(&ctx.target, &binds)?)
}

fn run_steps(ctx: &BuildContext, phase: Phase) -> anyhow::Result<()> {
    for step in ctx.plan.phase_steps(phase) {
        match step {
            PhaseStep::Script(script) => {
                sandbox::check_interrupted()?;
                run_script(ctx, phase, script)?;
            }
            PhaseStep::Packages { .. } => {
                if let Some(set) = ctx.plan.packages.get(&phase) {
                    let wanted: Vec<String> = set.install.iter().chain(&set.build_only).cloned().collect();
                    packages::install(ctx, &wanted)?;
                }
            }
            PhaseStep::ElementFiles { dir, into } => copy_element_files(ctx, dir, Path::new(into))?,
        }
    }
    if let Some(set) = ctx.plan.packages.get(&phase) {
        packages::remove(ctx, &set.uninstall)?;
    }
    Ok(())
}

/// Copy every element's `dir/` into the tree at `into`. After `bin/`: /usr/local/bin comes
/// before the hooks dir's bin/ on PATH, so an element's own copy of a helper (DIB's Python
/// pkg-map, its install-packages) must not shadow ours there either.
fn copy_element_files(ctx: &BuildContext, dir: &str, into: &Path) -> anyhow::Result<()> {
    copy_element_dirs(ctx, dir, into)?;
    if dir == "bin" {
        let local_bin = ctx.target.join(into);
        for (name, text) in HELPERS {
            if fs::symlink_metadata(local_bin.join(name)).is_ok() {
                remove_existing_file(&local_bin.join(name))?;
                write_executable(&local_bin.join(name), text)?;
            }
        }
    }
    Ok(())
}

fn run_script(ctx: &BuildContext, phase: Phase, script: &PlannedScript) -> anyhow::Result<()> {
    let _step = ctx.reporter.step(format!("{phase}/{} ({})", script.name, script.element));
    let mut command = script_command(ctx, phase, &script.name)?;
    let label = format!("{}/{} of element {}", phase.dir_name(), script.name, script.element);
    ctx.reporter.run(&label, &mut command)
}

/// `bash -c` that sources every `environment.d` file, then execs the script, with the plan's
/// variables and the runtime paths DIB elements rely on.
fn script_command(ctx: &BuildContext, phase: Phase, name: &str) -> anyhow::Result<Command> {
    let inside = phase.runs_inside();
    let hooks = if inside { PathBuf::from(HOOKS_INSIDE) } else { ctx.hooks_dir.clone() };
    let prelude = source_prelude(ctx, &hooks);
    let script = hooks.join(phase.dir_name()).join(name);
    let mut command = if inside {
        chroot_command(&ctx.target, "bash").context("cannot prepare a chrooted command")?
    } else {
        let mut host = Command::new("bash");
        host.current_dir(&ctx.target);
        host
    };
    command.arg("-c").arg(format!("{prelude}exec \"$0\"")).arg(&script);
    command.envs(script_env(ctx, inside));
    Ok(command)
}

/// `set -e`, every `environment.d` file sourced; with `-x` traced, and the script itself started
/// with xtrace on through [`XTRACE_ENV`], whether or not it checks `DIB_DEBUG_TRACE` itself.
fn source_prelude(ctx: &BuildContext, hooks: &Path) -> String {
    let mut prelude = String::from(if ctx.trace { "set -ex; " } else { "set -e; " });
    for file in &ctx.plan.environment_d {
        let path = hooks.join("environment.d").join(&file.name);
        prelude.push_str(&format!("source {}; ", crate::shell::quote(&path.to_string_lossy())));
    }
    if ctx.trace {
        let xtrace = hooks.join(XTRACE_ENV);
        prelude.push_str(&format!("export BASH_ENV={}; ", crate::shell::quote(&xtrace.to_string_lossy())));
    }
    prelude
}

/// The file in the hooks dir that `-x` hands each script as `BASH_ENV`: bash reads it before
/// the script's first line, so every bash script runs traced, as under DIB's `-x`; it unsets
/// itself, so the programs the script starts are not traced by it.
const XTRACE_ENV: &str = ".dib-xtrace.bash";

/// Write [`XTRACE_ENV`] into the hooks dir.
fn write_xtrace_env(hooks: &Path) -> anyhow::Result<()> {
    let path = hooks.join(XTRACE_ENV);
    fs::write(&path, "unset BASH_ENV\nset -x\n").with_context(|| format!("cannot write {}", path.display()))
}

/// The variables every script sees: the plan's, then the runtime paths.
pub fn script_env(ctx: &BuildContext, inside: bool) -> BTreeMap<String, String> {
    let mut env = ctx.plan.env.clone();
    if ctx.trace {
        // The plan counts the `-x` as DIB does; at least 1 when tracing.
        let level = env.entry("DIB_DEBUG_TRACE".into()).or_default();
        if level.trim().parse::<u32>().unwrap_or(0) == 0 {
            *level = "1".into();
        }
    }
    env.entry("ARCH".into()).or_insert_with(|| ctx.plan.arch.clone());
    env.entry("DIB_RELEASE".into()).or_insert_with(|| ctx.plan.release.clone());
    env.entry("DISTRO_NAME".into()).or_insert_with(|| ctx.plan.distro.clone());
    if inside {
        env.insert("TMP_HOOKS_PATH".into(), HOOKS_INSIDE.into());
        env.insert("DEBIAN_FRONTEND".into(), "noninteractive".into());
        let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        env.insert("PATH".into(), format!("{path}:{HOOKS_INSIDE}/bin"));
    } else {
        let target = ctx.target.to_string_lossy().into_owned();
        env.insert("TARGET_ROOT".into(), target.clone());
        env.insert("TMP_MOUNT_PATH".into(), target);
        env.insert("TMP_HOOKS_PATH".into(), ctx.hooks_dir.to_string_lossy().into_owned());
        let cache = ctx.cache_dir.to_string_lossy().into_owned();
        env.entry("DIB_IMAGE_CACHE".into()).or_insert(cache);
        env.entry("DIB_LOCKFILES".into()).or_insert_with(|| lockfiles_dir(ctx).to_string_lossy().into_owned());
        let work = ctx.work_dir.to_string_lossy().into_owned();
        // DIB's default `${IMAGE_NAME}.d/` is relative: run from the tree, it put the files
        // into the image. The caller's value still wins, as in DIB.
        let saved = format!("{}/", ctx.saved_dir().display());
        env.entry("DIB_MANIFEST_SAVE_DIR".into()).or_insert(saved);
        env.insert("TMP_BUILD_DIR".into(), work.clone());
        env.insert("TMP_IMAGE_DIR".into(), work);
        let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
        env.insert("PATH".into(), format!("{}:{host_path}", host_bin_dir(ctx).display()));
    }
    env
}

/// `--break`: an interactive shell (chrooted for inside phases) before going on or failing.
fn break_if(ctx: &BuildContext, point: BreakPoint, phase: Phase) {
    if ctx.break_at != Some(point) {
        return;
    }
    eprintln!("--break at {phase}: starting a shell in {}; exit it to resume", ctx.target.display());
    let command = if phase.runs_inside() {
        chroot_command(&ctx.target, "bash").map(|mut c| {
            c.envs(script_env(ctx, true));
            c
        })
    } else {
        let mut host = Command::new("bash");
        host.current_dir(&ctx.target).envs(script_env(ctx, false));
        Ok(host)
    };
    let status = command.and_then(|mut c| c.stdin(Stdio::inherit()).stdout(Stdio::inherit()).status());
    if let Err(err) = status {
        eprintln!("--break: cannot start the shell: {err}");
    }
}

/// Copy every element's `<dir>/` into `<target>/<to>`, elements in plan order.
fn copy_element_dirs(ctx: &BuildContext, dir: &str, to: &Path) -> anyhow::Result<()> {
    for element in &ctx.plan.elements {
        let source = element.path.join(dir);
        if source.is_dir() {
            copy_tree(&source, &ctx.target.join(to))
                .with_context(|| format!("element {}: cannot copy {dir}/ into the image", element.name))?;
        }
    }
    Ok(())
}

/// Copy a directory tree (files keep their mode, symlinks stay symlinks). Refuses to write
/// through a symlink in the target, so an element cannot overwrite host files.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry?;
        let relative = entry.path().strip_prefix(from)?;
        let dest = to.join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            if fs::symlink_metadata(&dest).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                anyhow::bail!("{} is a symlink in the image", dest.display());
            }
            fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
        } else {
            remove_existing_file(&dest)?;
            if kind.is_symlink() {
                let link = fs::read_link(entry.path())?;
                std::os::unix::fs::symlink(&link, &dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
            } else {
                fs::copy(entry.path(), &dest).with_context(|| format!("cannot copy to {}", dest.display()))?;
            }
        }
    }
    Ok(())
}

fn remove_existing_file(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shim(args: &[&str]) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sudo");
        std::fs::write(&path, SUDO_SHIM).unwrap();
        let output = Command::new("bash").arg(&path).args(args).env("SHIM_TEST", "kept").output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    #[test]
    fn sudo_shim_runs_the_command_with_the_environment() {
        assert_eq!(shim(&["-E", "sh", "-c", "echo $SHIM_TEST"]), (true, "kept".into()));
        assert_eq!(shim(&["sh", "-c", "echo $SHIM_TEST"]), (true, "kept".into()));
        assert_eq!(shim(&["FOO=bar", "BAZ=1", "sh", "-c", "echo $FOO$BAZ"]), (true, "bar1".into()));
        assert_eq!(shim(&["-En", "--", "printf", "%s", "-x"]), (true, "-x".into()));
        assert_eq!(shim(&["-s", "echo $((40+2))"]), (true, "42".into()));
    }

    #[test]
    fn sudo_shim_switches_user_and_refuses_unknown_options() {
        assert_eq!(shim(&["-u", "nobody", "id", "-un"]), (true, "nobody".into()));
        assert_eq!(shim(&["-u", "root", "id", "-u"]), (true, "0".into()));
        assert!(!shim(&["-x", "true"]).0);
        assert!(!shim(&[]).0);
    }
}
