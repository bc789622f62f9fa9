//! Commands run inside a tree with `chroot(2)`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// PATH inside the chroot (Debian's default for root).
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host variables a chrooted command keeps: the terminal, and proxies (as DIB passes them, so
/// apt inside works behind the same proxy as the host).
/// `SOURCE_DATE_EPOCH` is the build's pinned time (set by the build for itself); tools inside
/// (dpkg, useradd's password-change date, python) honour it.
const KEPT_VARIABLES: [&str; 8] =
    ["TERM", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SOURCE_DATE_EPOCH"];

/// A [`Command`] that runs `program` (looked up in the chroot's PATH) with `root` as its root
/// directory and `/` as its working directory. The environment is cleared down to PATH, HOME,
/// LANG, TERM, the proxy variables and SOURCE_DATE_EPOCH, so the host's other variables do not leak into the
/// image; add more with `.env()`.
///
/// Mount `/proc`, `/dev`, ... first with [`super::ChrootMounts`] if the program needs them.
pub fn chroot_command(root: &Path, program: impl AsRef<OsStr>) -> io::Result<Command> {
    let root = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chroot path contains a NUL byte"))?;
    let mut command = Command::new(program);
    command.env_clear().env("PATH", CHROOT_PATH).env("HOME", "/root").env("LANG", "C.UTF-8");
    for name in KEPT_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    // SAFETY: the closure only makes the async-signal-safe chroot(2) and chdir(2) calls on a
    // string allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::chroot(root.as_c_str())?;
            nix::unistd::chdir("/")?;
            Ok(())
        });
    }
    Ok(command)
}
