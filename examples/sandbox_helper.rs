//! Not a user-facing example: the process body `tests/sandbox.rs` starts and then kills. It
//! enters the build sandbox (private mount and PID namespaces), mounts a tmpfs and a read-only
//! bind, starts a sleeper and an orphan, reports the mounts it sees in `DIR/ready`, and waits to
//! be killed. An example rather than a `#[test]` so the harness never counts it as a passing test;
//! `cargo test` builds examples, so it is always there for the test to run.
//!
//! Usage: sandbox_helper DIR

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use mesos_image::sandbox::{self, Bind, ChrootMounts};

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: sandbox_helper DIR");
        std::process::exit(2);
    };
    if let Err(err) = sandbox::isolate() {
        eprintln!("sandbox_helper: cannot isolate: {err:#}");
        std::process::exit(1);
    }
    // From here on we are the build process (PID 2 of the new namespace): exit explicitly, even
    // on panic, with the code the tool itself would use.
    let result = std::panic::catch_unwind(|| isolated_body(&dir));
    std::process::exit(match result {
        Ok(()) if sandbox::interrupted() => 130,
        Ok(()) => 0,
        Err(_) => 101,
    });
}

fn isolated_body(dir: &Path) {
    let scratch = dir.join("tmpfs");
    sandbox::mount_tmpfs(&scratch, 1 << 20).expect("mount tmpfs");
    fs::create_dir_all(dir.join("src")).expect("create src");
    fs::create_dir_all(dir.join("tree")).expect("create tree");
    let binds = ChrootMounts::binds(&dir.join("tree"), &[Bind::read_only(dir.join("src"), "/x")]).expect("bind");
    let mut sleeper = Command::new("sleep").arg("1000").spawn().expect("spawn sleep");
    // An orphan: its parent exits at once, so the namespace's init inherits it.
    Command::new("sh").args(["-c", "sleep 1000 & (sleep 0.2 &) ; exit 0"]).status().expect("spawn orphan");
    let inside: Vec<PathBuf> = sandbox::mount_points_under(dir).expect("list mounts");
    fs::write(dir.join("ready.tmp"), format!("{inside:?}")).expect("write ready");
    fs::rename(dir.join("ready.tmp"), dir.join("ready")).expect("publish ready");
    let _ = sleeper.wait();
    drop(binds);
}
