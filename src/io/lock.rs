//! Advisory file locks (`flock`): the one place a lock file is opened and locked, for the cache
//! entries and the shared apt archives alike.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Whether a lock is for reading (shared) or writing (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Why a lock could not be taken; names the lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot lock {}: {errno}", path.display())]
    Lock { path: std::path::PathBuf, errno: Errno },
}

/// Lock `path` (created if missing, never truncated). With `wait`, blocks until granted;
/// without, `None` while another open file holds a conflicting lock. The lock lasts as long as
/// the returned guard.
pub fn lock_file(path: &Path, mode: LockMode, wait: bool) -> Result<Option<Flock<File>>, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| LockError::Open { path: path.to_owned(), source })?;
    let arg = match (mode, wait) {
        (LockMode::Shared, true) => FlockArg::LockShared,
        (LockMode::Shared, false) => FlockArg::LockSharedNonblock,
        (LockMode::Exclusive, true) => FlockArg::LockExclusive,
        (LockMode::Exclusive, false) => FlockArg::LockExclusiveNonblock,
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) if !wait => Ok(None),
        Err((_, errno)) => Err(LockError::Lock { path: path.to_owned(), errno }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.lock");
        let first = lock_file(&path, LockMode::Shared, false).unwrap();
        assert!(first.is_some());
        // flock locks belong to the open file, so a second open stands for another process.
        assert!(lock_file(&path, LockMode::Shared, false).unwrap().is_some());
        assert!(lock_file(&path, LockMode::Exclusive, false).unwrap().is_none());
        drop(first);
    }

    #[test]
    fn an_exclusive_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.lock");
        let held = lock_file(&path, LockMode::Exclusive, true).unwrap();
        assert!(lock_file(&path, LockMode::Shared, false).unwrap().is_none());
        drop(held);
        assert!(lock_file(&path, LockMode::Exclusive, false).unwrap().is_some());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = lock_file(Path::new("/nonexistent-dir/x.lock"), LockMode::Shared, true).unwrap_err();
        assert!(err.to_string().starts_with("cannot open /nonexistent-dir/x.lock:"), "{err}");
    }
}
