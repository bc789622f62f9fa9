//! Whether this host can execute the target architecture's binaries: natively, or through a
//! binfmt_misc entry (qemu-user) registered with the `F` flag, so the kernel opened the
//! interpreter at registration and it works inside the build's chroot without being copied in.
//! Only read here: the tool never changes the host's registrations (`.ci/run` and the README
//! say how to make them).
//!
//! Reading is a handful of small files under `/proc/sys/fs/binfmt_misc`: microseconds, so the
//! build's preflight asks every time. The directory is a parameter, so tests give a fake one.

use std::path::{Path, PathBuf};

use crate::arch::{self, ElfId};

/// Where the kernel shows binfmt_misc when it is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Read binfmt_misc from this directory instead of [`BINFMT_DIR`] (tests).
pub const BINFMT_DIR_VAR: &str = "MESOS_IMAGE_BINFMT_DIR";

/// How the target's binaries run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The host's CPU runs them: no emulation at all.
    Native,
    /// The binfmt_misc entry `entry` hands them to `interpreter`.
    Emulated { entry: String, interpreter: PathBuf },
}

/// Why the host cannot run the target's binaries; each says what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    #[error("this {host} host cannot run {target} binaries: binfmt_misc is not mounted at {dir} ({fix})")]
    NotMounted { host: String, target: String, dir: PathBuf, fix: String },
    #[error("this {host} host cannot run {target} binaries: binfmt_misc at {dir} is disabled ({fix})")]
    Disabled { host: String, target: String, dir: PathBuf, fix: String },
    #[error("this {host} host cannot run {target} binaries: no binfmt_misc entry in {dir} runs {kernel} ELF executables ({fix})")]
    NoEntry { host: String, target: String, kernel: String, dir: PathBuf, fix: String },
    #[error("this {host} host cannot run {target} binaries inside a chroot: binfmt_misc entry {entry} lacks the F (fix binary) flag, so its interpreter {interpreter} is looked up in the chroot ({fix})")]
    NoFixBinary { host: String, target: String, entry: PathBuf, interpreter: String, fix: String },
    #[error("{target}: no ELF identity known for this architecture")]
    Unknown { target: String },
}

/// The Debian package and the commands that register the target's interpreter the documented
/// way (qemu-user-static ships `/usr/lib/binfmt.d/qemu-<kernel arch>.conf`, flags `POF`).
pub fn fix(target: &str) -> String {
    let kernel = arch::kernel_name(target);
    format!(
        "fix: apt-get install qemu-user-static && mount -t binfmt_misc binfmt_misc {BINFMT_DIR} \
         && /usr/lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-{kernel}.conf"
    )
}

/// Whether a host of architecture `host` can run `target`'s binaries, reading binfmt_misc
/// from `dir` when it is a foreign one.
pub fn check(host: &str, target: &str, dir: &Path) -> Result<Execution, EmulationError> {
    if arch::runs_natively(host, target) {
        return Ok(Execution::Native);
    }
    let id = arch::elf_id(target).ok_or_else(|| EmulationError::Unknown { target: target.to_owned() })?;
    let (host, target_name, fix) = (host.to_owned(), target.to_owned(), fix(target));
    let status = std::fs::read_to_string(dir.join("status")).map_err(|_| EmulationError::NotMounted {
        host: host.clone(),
        target: target_name.clone(),
        dir: dir.to_owned(),
        fix: fix.clone(),
    })?;
    if status.trim() != "enabled" {
        return Err(EmulationError::Disabled { host, target: target_name, dir: dir.to_owned(), fix });
    }
    let entries = matching_entries(dir, id);
    // An enabled entry with F wins; else name the one that lacks F (the fix is the same).
    if let Some((path, entry)) = entries.iter().find(|(_, entry)| entry.fix_binary) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Execution::Emulated { entry: name, interpreter: PathBuf::from(&entry.interpreter) });
    }
    match entries.into_iter().next() {
        Some((entry, parsed)) => {
            Err(EmulationError::NoFixBinary { host, target: target_name, entry, interpreter: parsed.interpreter, fix })
        }
        None => Err(EmulationError::NoEntry {
            host,
            target: target_name,
            kernel: arch::kernel_name(target).to_owned(),
            dir: dir.to_owned(),
            fix,
        }),
    }
}

/// The build's check: this machine, the real binfmt_misc (or [`BINFMT_DIR_VAR`]'s directory).
pub fn check_host(target: &str) -> Result<Execution, EmulationError> {
    let dir = std::env::var_os(BINFMT_DIR_VAR).map_or_else(|| PathBuf::from(BINFMT_DIR), PathBuf::from);
    check(&arch::host(), target, &dir)
}

/// One binfmt_misc entry as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    interpreter: String,
    fix_binary: bool,
    offset: u64,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

/// The enabled entries of `dir` whose magic matches `id`'s ELF header, by file name.
fn matching_entries(dir: &Path, id: ElfId) -> Vec<(PathBuf, Entry)> {
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !matches!(p.file_name().and_then(|n| n.to_str()), Some("register" | "status")))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let entry = parse_entry(&std::fs::read_to_string(&path).ok()?)?;
            entry.matches(id).then_some((path, entry))
        })
        .collect()
}

/// `enabled\ninterpreter /usr/libexec/...\nflags: POF\noffset 0\nmagic 7f45...\nmask ff...`;
/// `None` for a disabled entry or an extension (`E`) one.
fn parse_entry(text: &str) -> Option<Entry> {
    let mut lines = text.lines();
    if lines.next()? != "enabled" {
        return None;
    }
    let mut entry = Entry { interpreter: String::new(), fix_binary: false, offset: 0, magic: vec![], mask: vec![] };
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "interpreter" => entry.interpreter = value.to_owned(),
            "flags:" => entry.fix_binary = value.contains('F'),
            "offset" => entry.offset = value.parse().ok()?,
            "magic" => entry.magic = hex(value)?,
            "mask" => entry.mask = hex(value)?,
            _ => {}
        }
    }
    (!entry.magic.is_empty()).then_some(entry)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Entry {
    /// Whether an executable with `id`'s ELF header (type EXEC or DYN) is handed to this entry.
    fn matches(&self, id: ElfId) -> bool {
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = id.class;
        header[5] = id.data;
        header[6] = 1;
        // e_type ET_EXEC (2): the masks qemu registers accept ET_DYN (3) alike.
        let (kind, machine) = match id.data {
            2 => (2u16.to_be_bytes(), id.machine.to_be_bytes()),
            _ => (2u16.to_le_bytes(), id.machine.to_le_bytes()),
        };
        header[16..18].copy_from_slice(&kind);
        header[18..20].copy_from_slice(&machine);
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
        self.magic.iter().enumerate().all(|(i, &magic)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            let byte = start.checked_add(i).and_then(|at| header.get(at)).copied();
            byte.is_some_and(|byte| byte & mask == magic & mask)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry qemu-user-binfmt's `/usr/lib/binfmt.d/qemu-aarch64.conf` makes.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt(entries: &[(&str, &str)], status: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(status) = status {
            std::fs::write(dir.path().join("status"), status).unwrap();
            std::fs::write(dir.path().join("register"), "").unwrap();
        }
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_native_architecture_needs_no_binfmt_at_all() {
        let missing = Path::new("/nonexistent/binfmt_misc");
        assert_eq!(check("amd64", "amd64", missing), Ok(Execution::Native));
        assert_eq!(check("arm64", "arm64", missing), Ok(Execution::Native));
    }

    #[test]
    fn an_enabled_aarch64_entry_with_f_runs_arm64() {
        let dir = binfmt(
            &[
                ("python3.11", "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n"),
                ("qemu-aarch64", AARCH64),
            ],
            Some("enabled\n"),
        );
        let found = check("amd64", "arm64", dir.path()).unwrap();
        let interpreter = PathBuf::from("/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(found, Execution::Emulated { entry: "qemu-aarch64".into(), interpreter });
        // The same entry does not run other architectures.
        assert!(matches!(check("amd64", "riscv64", dir.path()), Err(EmulationError::NoEntry { .. })));
    }

    #[test]
    fn every_missing_piece_is_named_with_the_package_and_the_command() {
        let unmounted = binfmt(&[], None);
        let disabled = binfmt(&[("qemu-aarch64", AARCH64)], Some("disabled\n"));
        let empty = binfmt(&[], Some("enabled\n"));
        let no_f = binfmt(&[("qemu-aarch64", &AARCH64.replace("POF", "PO"))], Some("enabled\n"));
        let entry_off = binfmt(&[("qemu-aarch64", &AARCH64.replace("enabled", "disabled"))], Some("enabled\n"));
        for (dir, problem) in [
            (&unmounted, "binfmt_misc is not mounted at"),
            (&disabled, "is disabled"),
            (&empty, "no binfmt_misc entry in"),
            (&no_f, "lacks the F (fix binary) flag"),
            (&entry_off, "no binfmt_misc entry in"),
        ] {
            let message = check("amd64", "arm64", dir.path()).unwrap_err().to_string();
            assert!(message.starts_with("this amd64 host cannot run arm64 binaries"), "{message}");
            assert!(message.contains(problem), "{message}");
            assert!(message.ends_with(&format!("({})", fix("arm64"))), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        assert!(fix("arm64").contains("qemu-user-static") && fix("arm64").contains("qemu-aarch64.conf"));
    }
}
