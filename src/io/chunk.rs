//! Reading image data in chunks: the one buffer size, a fill that tolerates short reads, and
//! chunks as shared `Bytes` for readers that hand one chunk to several consumers.

use bytes::Bytes;
use std::io::Read;

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

/// The next `BUFFER_SIZE` chunk of `reader` (shorter only at the end), or `None` at its end:
/// one allocation a chunk, shared by every consumer without copying.
pub fn read_chunk(mut reader: &mut dyn Read) -> std::io::Result<Option<Bytes>> {
    let mut chunk = vec![0u8; BUFFER_SIZE];
    let filled = read_full(&mut reader, &mut chunk)?;
    if filled == 0 {
        return Ok(None);
    }
    chunk.truncate(filled);
    Ok(Some(Bytes::from(chunk)))
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
