//! Byte-stream adapters shared by every command that moves image-sized data (after
//! coreos-installer's `io/`): hashing, progress and cancel wrappers around `Read`/`Write`, each a
//! plain adapter so it can be tested alone and stacked (`File -> hash -> progress -> cancel`).
//!
//! `lock_file` is the one way a lock file is opened and `flock`ed.
//!
//! Limiting is std's `Read::take`; no adapter of our own is needed for it.

mod bounded;
mod cancel;
mod hash;
mod lock;
mod progress;
mod sparse;

pub use bounded::read_bounded;
pub use cancel::CancelReader;
pub use hash::{HashingReader, HashingWriter, Sha256Hex, Sha256Md5, StreamDigest};
pub use lock::{lock_file, LockError, LockMode};
pub use progress::ProgressReader;
pub use sparse::SparseWriter;

/// Buffer and chunk size for streaming images (copying, hashing, uploading): large enough that
/// per-call overhead vanishes against disk and network time, small enough to keep memory flat.
pub const BUFFER_SIZE: usize = 1 << 20;

/// Fill `buf` unless the reader ends first; returns the bytes read (less than `buf.len()` only
/// at the end). Unlike `read_exact`, a short end is not an error.
pub fn read_full<R: std::io::Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Read};

    /// Hands out at most `step` bytes a call and fails once with `Interrupted`.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupted: bool,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_full_fills_across_short_reads_and_interrupts() {
        let data: Vec<u8> = (0..10).collect();
        let mut reader = Trickle { data: &data, step: 3, interrupted: false };
        let mut buf = [0u8; 8];
        assert_eq!(read_full(&mut reader, &mut buf).unwrap(), 8);
        assert_eq!(&buf, &data[..8]);
        // The end: a short fill, then zero.
        assert_eq!(read_full(&mut reader, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &data[8..]);
        assert_eq!(read_full(&mut reader, &mut buf).unwrap(), 0);
    }

    #[test]
    fn read_full_passes_real_errors_on() {
        let err = read_full(&mut crate::io::FailingReader, &mut [0u8; 4]).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }
}
