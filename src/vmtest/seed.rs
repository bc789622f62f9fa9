//! NoCloud seed: a vfat image labelled `cidata`, built without mounting (mkfs.vfat + mcopy).
//!
//! The user-data installs the check script with `write_files` and starts it from `runcmd`,
//! detached, so it runs after cloud-init has finished: as a transient systemd unit where systemd
//! runs, else as a background shell that waits for `boot-finished` (trusty's upstart).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use super::checks::GUEST_SCRIPT_PATH;
use crate::shell::quote;

/// Lowercase on purpose: cloud-init before 17.x (trusty's 0.7.5) asks blkid for `LABEL=cidata`
/// only, case-sensitively; newer cloud-init and ds-identify accept either case.
const SEED_LABEL: &str = "cidata";

/// PATH of the guest's services (systemd's and upstart's default).
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Size of the seed filesystem in KiB; user-data with a long check list stays far below it.
const SEED_KIB: u32 = 2048;

/// What goes into the seed.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    pub instance_id: String,
    pub hostname: String,
    /// `ssh-ed25519 AAAA... comment` lines for the default user.
    pub ssh_authorized_keys: Vec<String>,
    /// The check script (see `checks::script`).
    pub check_script: String,
    /// The guest's serial console device (`ttyS0`, `ttyAMA0` on arm64): where results go.
    pub console: String,
}

#[derive(Serialize)]
struct CloudConfig<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ssh_authorized_keys: &'a [String],
    write_files: Vec<WriteFile<'a>>,
    runcmd: Vec<String>,
}

#[derive(Serialize)]
struct WriteFile<'a> {
    path: &'a str,
    permissions: &'a str,
    owner: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

/// `#cloud-config` user-data. YAML is produced by the serializer, so the script needs no escaping.
pub fn user_data(spec: &SeedSpec) -> anyhow::Result<String> {
    let config = CloudConfig {
        ssh_authorized_keys: &spec.ssh_authorized_keys,
        write_files: vec![WriteFile {
            path: GUEST_SCRIPT_PATH,
            permissions: "0700",
            owner: "root:root",
            content: &spec.check_script,
        }],
        runcmd: vec![launcher(&spec.console)],
    };
    let yaml = serde_yaml_ng::to_string(&config).context("cannot render user-data")?;
    Ok(format!("#cloud-config\n{yaml}"))
}

/// The runcmd line: detach from cloud-init (which must finish first), run the checks with the
/// results on the serial console, then power off so the host sees the VM end. The checks run in
/// a service's environment: a transient unit gets systemd's manager environment (the system
/// locale included), not cloud-init's.
fn launcher(console: &str) -> String {
    let run_checks = format!("sh {GUEST_SCRIPT_PATH} > /dev/{console} 2>&1; poweroff");
    let systemd = format!(
        "systemd-run --no-block --unit=mesos-image-check sh -c {}",
        quote(&format!("cloud-init status --wait >/dev/null 2>&1; {run_checks}"))
    );
    // Upstart starts its jobs with PATH and TERM only: the checks get that, not cloud-init's.
    let upstart = format!(
        "nohup env -i PATH={GUEST_PATH} TERM=linux sh -c {} >/dev/null 2>&1",
        quote(&format!("while [ ! -e /var/lib/cloud/instance/boot-finished ]; do sleep 2; done; {run_checks}"))
    );
    // Launch errors go to the console too, so a run that never reports can be diagnosed. Should
    // systemd-run fail, the background shell still works: cloud-final's KillMode=process spares it.
    format!(
        "exec >/dev/{console} 2>&1; if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then {systemd} || {upstart} & else {upstart} & fi"
    )
}

/// NoCloud meta-data.
pub fn meta_data(spec: &SeedSpec) -> anyhow::Result<String> {
    serde_yaml_ng::to_string(&MetaData { instance_id: &spec.instance_id, local_hostname: &spec.hostname })
        .context("cannot render meta-data")
}

/// Write `user-data` and `meta-data` into `dir` and pack them into `dir/seed.img`.
pub fn build_seed(spec: &SeedSpec, dir: &Path) -> anyhow::Result<PathBuf> {
    let user_data_path = dir.join("user-data");
    let meta_data_path = dir.join("meta-data");
    std::fs::write(&user_data_path, user_data(spec)?)
        .with_context(|| format!("cannot write {}", user_data_path.display()))?;
    std::fs::write(&meta_data_path, meta_data(spec)?)
        .with_context(|| format!("cannot write {}", meta_data_path.display()))?;
    let image = dir.join("seed.img");
    let _ = std::fs::remove_file(&image);
    run_tool(Command::new("mkfs.vfat").args(["-C", "-n", SEED_LABEL]).arg(&image).arg(SEED_KIB.to_string()))?;
    run_tool(Command::new("mcopy").arg("-i").arg(&image).arg(&user_data_path).arg(&meta_data_path).arg("::/"))?;
    Ok(image)
}

/// Generate a throwaway ed25519 key pair in `dir`; returns the public key line.
pub fn generate_ssh_key(dir: &Path) -> anyhow::Result<String> {
    let key = dir.join("id_ed25519");
    run_tool(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "mesos-image-test", "-f"]).arg(&key),
    )?;
    let public = key.with_extension("pub");
    let line = std::fs::read_to_string(&public).with_context(|| format!("cannot read {}", public.display()))?;
    Ok(line.trim().to_owned())
}

fn run_tool(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .with_context(|| format!("cannot run {program} (is it installed? see scripts/install-deps.sh)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!("{program} failed ({}): {}", output.status, stderr.trim().lines().last().unwrap_or(""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SeedSpec {
        SeedSpec {
            instance_id: "iid-test".into(),
            hostname: "probe".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAtest mesos-image-test".into()],
            check_script: "#!/bin/sh\necho 'quoted: \"x\"' # comment\n".into(),
            console: "ttyAMA0".into(),
        }
    }

    #[test]
    fn user_data_is_cloud_config_that_round_trips() {
        let text = user_data(&spec()).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(parsed["write_files"][0]["content"].as_str(), Some(spec().check_script.as_str()));
        assert_eq!(parsed["write_files"][0]["path"].as_str(), Some(GUEST_SCRIPT_PATH));
        assert_eq!(parsed["ssh_authorized_keys"][0].as_str(), Some("ssh-ed25519 AAAAtest mesos-image-test"));
        let runcmd = parsed["runcmd"][0].as_str().unwrap();
        assert!(runcmd.contains("systemd-run --no-block --unit=mesos-image-check"));
        assert!(runcmd.contains("boot-finished"));
        // Results and launch errors go to the machine's console, never a port it lacks.
        assert_eq!(runcmd.matches("/dev/ttyAMA0").count(), 4, "launch errors and both launchers: {runcmd}");
        assert!(!runcmd.contains("ttyS0"), "{runcmd}");
    }

    #[test]
    fn launcher_is_valid_sh() {
        let status = Command::new("dash").args(["-n", "-c"]).arg(launcher("ttyS0")).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn seed_image_is_a_cidata_vfat_holding_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let image = build_seed(&spec(), dir.path()).unwrap();
        let listing = Command::new("mdir").args(["-b", "-i"]).arg(&image).arg("::/").output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("user-data") && listing.contains("meta-data"), "{listing}");
        let label = Command::new("mlabel").args(["-s", "-i"]).arg(&image).arg("::").output().unwrap();
        assert!(String::from_utf8_lossy(&label.stdout).contains("cidata"));
    }

    #[test]
    fn ssh_key_is_ed25519() {
        let dir = tempfile::tempdir().unwrap();
        assert!(generate_ssh_key(dir.path()).unwrap().starts_with("ssh-ed25519 "));
    }
}
