//! Byte-stream adapters shared by every command that moves image-sized data (after
//! coreos-installer's `io/`): hashing, progress and cancel wrappers around `Read`/`Write`, each a
//! plain adapter so it can be tested alone and stacked (`File -> hash -> progress -> cancel`).
//! An image's three digests (md5, sha256, sha512) have their own threaded hasher, [`Hashers`].
//!
//! `lock_file` is the one way a lock file is opened and `flock`ed.
//!
//! Limiting is std's `Read::take`; no adapter of our own is needed for it.

mod bounded;
mod cancel;
mod chunk;
mod digests;
mod hash;
mod lock;
mod progress;
mod sparse;

pub use bounded::read_bounded;
pub use cancel::CancelReader;
pub use chunk::{read_chunk, read_full, BUFFER_SIZE};
pub use digests::{copy_digesting, digest_file, Digests, Hashers, CHUNKS_IN_FLIGHT};
pub use hash::{HashingReader, HashingWriter, Sha256Hex, StreamDigest};
pub use lock::{lock_file, LockError, LockMode};
pub use progress::ProgressReader;
pub use sparse::SparseWriter;

/// SHA-256 of a file, streamed in `BUFFER_SIZE` reads; returns (hex digest, size).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = HashingReader::new(std::io::BufReader::with_capacity(BUFFER_SIZE, file));
    std::io::copy(&mut reader, &mut std::io::sink())?;
    let bytes = reader.byte_count();
    Ok((reader.finish(), bytes))
}

/// A reader whose every read fails with "disk on fire": for the adapters' and publishers'
/// error-path tests.
#[cfg(test)]
pub(crate) struct FailingReader;

#[cfg(test)]
impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}
