//! The build's sandbox (docs/architecture.md, "Sandbox"): a private mount and PID namespace tied to the
//! tool's life, the chroot's mounts as an RAII guard, chrooted commands, and tree removal that
//! never deletes through a mount point.

mod chroot;
mod mounts;
mod namespace;

pub use chroot::chroot_command;
pub use mounts::{mount_points_under, mount_tmpfs, remove_tree, unmount_below, Bind, ChrootMounts, MountError};
pub use namespace::{catch_stop_signals, check_interrupted, interrupted, isolate, stop_signal, Interrupted};
