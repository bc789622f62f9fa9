//! Commands run inside a tree with `chroot(2)`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// PATH inside the chroot (Debian's default for root).
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A [`Command`] that runs `program` (looked up in the chroot's PATH) with `root` as its root
/// directory and `/` as its working directory. The environment is cleared down to PATH, HOME,
/// LANG and TERM, so the host's variables do not leak into the image; add more with `.env()`.
///
/// Mount `/proc`, `/dev`, ... first with [`super::ChrootMounts`] if the program needs them.
pub fn chroot_command(root: &Path, program: impl AsRef<OsStr>) -> io::Result<Command> {
    let root = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chroot path contains a NUL byte"))?;
    let mut command = Command::new(program);
    command.env_clear().env("PATH", CHROOT_PATH).env("HOME", "/root").env("LANG", "C.UTF-8");
    if let Some(term) = std::env::var_os("TERM") {
        command.env("TERM", term);
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
