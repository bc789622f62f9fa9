//! What the tool may write to: only regular files it creates, in directories of its own.
//!
//! The tool runs as root, so a wrong `-o` could otherwise replace `/dev/full` with an image or
//! overwrite the recipe it is reading. Every path a command writes (`-o` and its sidecars,
//! `--log-file`, `--checksum` files, the cache and the work dir) is judged here before any
//! work starts. A path is refused when it:
//! - already exists and is not a regular file (a device node, FIFO or socket, found through
//!   any symlink),
//! - resolves into `/dev`, `/proc` or `/sys`, which hold no files a build should make,
//! - is one of the run's inputs (recipe, key file, block-device config) or lies inside an
//!   element directory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Kernel file systems: nothing the tool makes belongs there.
const KERNEL_TREES: [&str; 3] = ["/dev", "/proc", "/sys"];

/// What a run reads: files that must not be written, and directories nothing may be written into.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// (what it is, path): the recipe, a key file, a block-device config.
    pub files: Vec<(String, PathBuf)>,
    /// (what it is, path): element directories.
    pub dirs: Vec<(String, PathBuf)>,
}

impl Inputs {
    pub fn file(&mut self, what: impl Into<String>, path: impl Into<PathBuf>) {
        self.files.push((what.into(), path.into()));
    }

    pub fn dir(&mut self, what: impl Into<String>, path: impl Into<PathBuf>) {
        self.dirs.push((what.into(), path.into()));
    }
}

/// A file the tool is going to create (or replace with one of its own): refused unless it is
/// absent or a regular file, outside the kernel trees and not an input. The `Err` is the
/// problem, to follow the caller's culprit.
pub fn output_file(path: &Path, inputs: &Inputs) -> Result<(), String> {
    if let Ok(meta) = fs::metadata(path) {
        if !meta.is_file() {
            return Err(format!("is {}, not a regular file: outputs are only ever regular files", kind(&meta)));
        }
        for (what, input) in &inputs.files {
            if fs::metadata(input).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino()) {
                return Err(format!(
                    "is {what} {} of this run: an output must not overwrite an input",
                    input.display()
                ));
            }
        }
    }
    let resolved = resolve(path);
    kernel_tree(&resolved)?;
    for (what, dir) in &inputs.dirs {
        if let Ok(dir) = fs::canonicalize(dir) {
            if resolved.starts_with(&dir) {
                return Err(format!("lies inside {what} ({}): an output must not change an input", dir.display()));
            }
        }
    }
    Ok(())
}

/// A directory the tool writes in (cache, work dir): refused when it resolves into a kernel tree.
pub fn output_dir(path: &Path) -> Result<(), String> {
    kernel_tree(&resolve(path))
}

fn kernel_tree(resolved: &Path) -> Result<(), String> {
    match KERNEL_TREES.iter().find(|tree| resolved.starts_with(tree)) {
        Some(tree) => Err(format!("resolves into {tree} ({}): not a place for outputs", resolved.display())),
        None => Ok(()),
    }
}

/// The absolute path `path` names, every symlink resolved: component by component, each
/// existing prefix canonicalized, so `..` after a link climbs out of the link's target as the
/// kernel does; the missing rest is taken as written.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path)
    };
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = fs::canonicalize(&out) {
                    out = real;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// What a non-regular file is, for the error line.
fn kind(meta: &fs::Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_of_the_existing_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink("/dev", real.join("devlink")).unwrap();
        assert_eq!(resolve(&real.join("devlink/x/y")), PathBuf::from("/dev/x/y"));
        assert_eq!(resolve(&real.join("a/../b")), real.join("b"));
        assert!(output_file(&real.join("devlink/new.qcow2"), &Inputs::default()).unwrap_err().contains("/dev"));
    }

    #[test]
    fn inputs_and_non_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("r.yaml");
        fs::write(&recipe, "x").unwrap();
        let mut inputs = Inputs::default();
        inputs.file("the recipe", &recipe);
        inputs.dir("element `app`", dir.path().join("app"));
        fs::create_dir(dir.path().join("app")).unwrap();
        assert!(output_file(&recipe, &inputs).unwrap_err().contains("the recipe"));
        assert!(output_file(&dir.path().join("app/x.qcow2"), &inputs).unwrap_err().contains("element `app`"));
        assert!(output_file(dir.path(), &inputs).unwrap_err().starts_with("is a directory"));
        output_file(&dir.path().join("new.qcow2"), &inputs).unwrap();
    }
}
