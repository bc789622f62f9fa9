//! The build's sandbox (docs/architecture.md, "Sandbox"): a user namespace for builds without
//! root, a private mount and PID namespace tied to the tool's life, the chroot's mounts as an
//! RAII guard, chrooted commands, and tree removal that never deletes through a mount point.

mod chroot;
mod janitor;
mod mounts;
mod namespace;
mod userns;

pub use chroot::chroot_command;
pub use janitor::remove_on_exit;
pub use mounts::{mount_points_under, mount_tmpfs, remove_tree, unmount_below, Bind, ChrootMounts, MountError};
pub use namespace::{catch_stop_signals, check_interrupted, interrupted, isolate, stop_signal, Interrupted};
pub use userns::{can_isolate, id_maps, HostFiles, IdMaps, IdRange, Invoker, UsernsError, NEEDED_IDS};

/// Make sure this process may build: root with CAP_SYS_ADMIN stays as it is; anyone else
/// (an ordinary user, root in a container without that capability) moves into a user
/// namespace of its own and starts the janitor that removes the build's work directories even
/// after a SIGKILL (`userns.rs`, `janitor.rs`). Idempotent: inside, the capability is there.
/// Call while the process is single-threaded (it forks).
pub fn ensure_privileges() -> anyhow::Result<()> {
    if can_isolate() {
        return Ok(());
    }
    let maps = id_maps(&HostFiles::system(), &Invoker::current())?;
    userns::enter(&maps)?;
    janitor::start()
}
