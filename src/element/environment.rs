//! Sourcing `environment.d` files in bash, as dib-run-parts does before every script, to learn
//! what they export (`DISTRO_NAME`, `DIB_RELEASE`, defaults `when:` statements read).
//!
//! The files run under `set -eu -o pipefail` like in dib-run-parts, with only the given
//! variables plus `PATH` and `HOME`, so the result does not depend on the caller's shell.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::child::ChildError;

use super::error::ElementError;

/// Marks which file is being sourced, so a failure names it.
const MARKER: &str = "mesos-image-sourcing:";

/// The default limit for sourcing environment.d, and the variable that changes it (seconds).
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(60);
pub const TIME_LIMIT_VAR: &str = "MESOS_IMAGE_ENVIRONMENT_D_TIMEOUT";

/// Variables bash itself sets; never part of the result.
const SHELL_VARIABLES: [&str; 4] = ["PWD", "OLDPWD", "SHLVL", "_"];

/// Source `files` in order with `initial` exported; returns every exported variable afterwards
/// (including the initial ones, minus `PATH`/`HOME` unless a file changed them). `bin_dirs` go
/// in front of `PATH`, as DIB puts the elements' `bin/` there, so helpers such as
/// `dib-init-system` can be called from environment.d.
pub fn source_files(
    files: &[PathBuf],
    initial: &BTreeMap<String, String>,
    bin_dirs: &[PathBuf],
) -> Result<BTreeMap<String, String>, ElementError> {
    let script = format!(
        "set -eu -o pipefail\nfor __mi_file in \"$@\"; do echo \"{MARKER}$__mi_file\" >&2; source \"$__mi_file\"; done\nunset __mi_file\nexec env -0\n"
    );
    let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
    let host_home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    let search_path: Vec<String> =
        bin_dirs.iter().map(|dir| dir.display().to_string()).chain(std::iter::once(host_path.clone())).collect();
    let mut command = Command::new("bash");
    command.arg("-c").arg(&script).arg("bash").args(files).env_clear();
    command.env("PATH", search_path.join(":")).env("HOME", &host_home);
    command.envs(initial);
    let limit = time_limit();
    let output = crate::child::run_bounded(&mut command, limit).map_err(|err| match err {
        ChildError::Spawn(err) => ElementError::Environment {
            path: files.first().cloned().unwrap_or_default(),
            message: format!("cannot run bash: {err}"),
        },
        ChildError::TimedOut { stderr, .. } => ElementError::Environment {
            path: sourcing(&String::from_utf8_lossy(&stderr)).unwrap_or_default(),
            message: format!(
                "still running after {} s, killed (an environment.d file only sets variables; {TIME_LIMIT_VAR} raises the limit)",
                limit.as_secs_f64()
            ),
        },
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let culprit = sourcing(&stderr);
        let detail = stderr.lines().rev().find(|l| !l.starts_with(MARKER) && !l.trim().is_empty());
        return Err(ElementError::Environment {
            path: culprit.unwrap_or_default(),
            message: detail.map(str::to_owned).unwrap_or_else(|| format!("exited with {}", output.status)),
        });
    }
    let mut result = parse_env0(&output.stdout);
    for name in SHELL_VARIABLES {
        result.remove(name);
    }
    let given_path = search_path.join(":");
    for (name, given) in [("PATH", &given_path), ("HOME", &host_home)] {
        if result.get(name) == Some(given) && !initial.contains_key(name) {
            result.remove(name);
        }
    }
    Ok(result)
}

/// The file being sourced when bash stopped: the last marker line.
fn sourcing(stderr: &str) -> Option<PathBuf> {
    stderr.lines().rev().find_map(|l| l.strip_prefix(MARKER)).map(PathBuf::from)
}

/// How long sourcing all environment.d files may take: they only set variables, so a file
/// still running after this hangs (a loop, a read from the terminal, a dead network call).
fn time_limit() -> Duration {
    let seconds = std::env::var(TIME_LIMIT_VAR).ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0);
    seconds.map(Duration::from_secs_f64).unwrap_or(DEFAULT_TIME_LIMIT)
}

/// `env -0` output: `NAME=value\0...`.
fn parse_env0(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_collected_and_defaults_respect_initial_values() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("10-distro.bash");
        std::fs::write(
            &first,
            "export DISTRO_NAME=debian\nexport DIB_RELEASE=${DIB_RELEASE:-bookworm}\nLOCAL_ONLY=1\n",
        )
        .unwrap();
        let second = dir.path().join("20-more");
        std::fs::write(&second, "export DERIVED=\"$DISTRO_NAME-$DIB_RELEASE\"\n").unwrap();
        let initial = BTreeMap::from([("DIB_RELEASE".to_owned(), "trixie".to_owned())]);
        let env = source_files(&[first, second], &initial, &[]).unwrap();
        assert_eq!(env["DISTRO_NAME"], "debian");
        assert_eq!(env["DIB_RELEASE"], "trixie");
        assert_eq!(env["DERIVED"], "debian-trixie");
        assert!(!env.contains_key("LOCAL_ONLY"));
        assert!(!env.contains_key("PWD"));
        assert!(!env.contains_key("PATH"));
    }

    #[test]
    fn element_bin_dirs_are_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("fake-init-system");
        std::fs::write(&helper, "#!/bin/sh\necho systemd\n").unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let file = dir.path().join("10-init");
        std::fs::write(&file, "export DIB_INIT_SYSTEM=$(fake-init-system)\n").unwrap();
        let env = source_files(&[file], &BTreeMap::new(), &[bin]).unwrap();
        assert_eq!(env["DIB_INIT_SYSTEM"], "systemd");
        assert!(!env.contains_key("PATH"));
    }

    #[test]
    fn a_failing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("10-good");
        std::fs::write(&good, "export A=1\n").unwrap();
        let bad = dir.path().join("20-bad");
        std::fs::write(&bad, "echo $UNSET_VARIABLE\n").unwrap();
        let err = source_files(&[good, bad.clone()], &BTreeMap::new(), &[]).unwrap_err().to_string();
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains("UNSET_VARIABLE"), "{err}");
    }
}
