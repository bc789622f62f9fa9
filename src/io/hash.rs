//! Streaming digests: wrap a reader or writer, get the digest of everything that passed through.
//! One reader and one writer serve every digest; what is computed is a `StreamDigest` (sha256
//! for our checksums and cache entries). An image's three digests are `digests.rs`'s `Hashers`.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// What a hashing adapter computes: fed every byte that passes, finished once with the count.
pub trait StreamDigest: Default {
    type Output;
    fn update(&mut self, data: &[u8]);
    fn finish(self, bytes: u64) -> Self::Output;
}

/// Lower-case hex sha256, the digest of our `.sha256` files, cache entries and listings.
#[derive(Default)]
pub struct Sha256Hex(Sha256);

impl StreamDigest for Sha256Hex {
    type Output = String;

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self, _bytes: u64) -> String {
        hex::encode(self.0.finalize())
    }
}

/// A reader that hashes what is read through it.
pub struct HashingReader<R, D = Sha256Hex> {
    inner: R,
    digest: D,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Hash with sha256; `with_digest` for any other.
    pub fn new(inner: R) -> Self {
        Self::with_digest(inner)
    }
}

impl<R: Read, D: StreamDigest> HashingReader<R, D> {
    pub fn with_digest(inner: R) -> Self {
        HashingReader { inner, digest: D::default(), bytes: 0 }
    }

    /// Bytes read so far.
    pub fn byte_count(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything read.
    pub fn finish(self) -> D::Output {
        self.digest.finish(self.bytes)
    }
}

impl<R: Read, D: StreamDigest> Read for HashingReader<R, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.digest.update(&buf[..count]);
        self.bytes += count as u64;
        Ok(count)
    }
}

/// A writer that hashes what is written through it.
pub struct HashingWriter<W, D = Sha256Hex> {
    inner: W,
    digest: D,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hash with sha256.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, digest: Sha256Hex::default(), bytes: 0 }
    }
}

impl<W: Write, D: StreamDigest> HashingWriter<W, D> {
    pub fn with_digest(inner: W) -> Self {
        HashingWriter { inner, digest: D::default(), bytes: 0 }
    }

    pub fn byte_count(&self) -> u64 {
        self.bytes
    }

    /// The inner writer and the digest of everything written.
    pub fn finish(self) -> (W, D::Output) {
        (self.inner, self.digest.finish(self.bytes))
    }
}

impl<W: Write, D: StreamDigest> Write for HashingWriter<W, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted, so short writes stay correct.
        let count = self.inner.write(buf)?;
        self.digest.update(&buf[..count]);
        self.bytes += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn reader_hashes_what_passes() {
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(reader.byte_count(), 3);
        assert_eq!(reader.finish(), ABC);
    }

    /// A digest that records the calls, to show the reader feeds it exactly what passed.
    #[derive(Default)]
    struct Record(Vec<u8>);
    impl StreamDigest for Record {
        type Output = (Vec<u8>, u64);
        fn update(&mut self, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
        fn finish(self, bytes: u64) -> (Vec<u8>, u64) {
            (self.0, bytes)
        }
    }

    #[test]
    fn reader_feeds_any_digest_with_the_count() {
        let mut reader = HashingReader::<_, Record>::with_digest(&b"hello"[..]);
        let mut buf = [0u8; 2];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(reader.finish(), (b"he".to_vec(), 2));
    }

    #[test]
    fn writer_hashes_and_forwards() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"a").unwrap();
        writer.write_all(b"bc").unwrap();
        let (inner, digest) = writer.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(digest, ABC);
    }

    #[test]
    fn writer_counts_only_accepted_bytes() {
        // A writer that takes one byte per call.
        struct OneByte(Vec<u8>);
        impl Write for OneByte {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf[0]);
                Ok(1)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = HashingWriter::new(OneByte(Vec::new()));
        writer.write_all(b"abc").unwrap();
        assert_eq!(writer.byte_count(), 3);
        assert_eq!(writer.finish().1, ABC);
    }

    #[test]
    fn file_digest_matches_empty_vector() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let (digest, size) = crate::io::sha256_file(file.path()).unwrap();
        assert_eq!(size, 0);
        assert_eq!(digest, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
