//! The image data path. Every target at once: [`FanOut`] reads the file once, hashes it, and hands
//! each chunk (shared, not copied) to one bounded channel per target, each the body of one HTTP
//! request. One target again (a retry after re-authentication, the glance-direct fallback):
//! `File -> HashingReader -> ProgressReader -> CancelReader -> Pump -> HTTP body`, a private read.
//!
//! Both move fixed-size chunks through bounded channels, so memory use does not depend on the
//! image size (nor, for the fan-out, on the number of targets: a chunk is shared by all), and
//! reading/hashing (one thread) overlaps with sending (the runtime thread).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use tokio::sync::{mpsc, watch};

use crate::io::{read_full, StreamDigest, BUFFER_SIZE};

/// Chunks that may wait in the channel: with one being filled, bounds the memory in flight to
/// `(CHUNKS_IN_FLIGHT + 1) * BUFFER_SIZE`.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// What Glance reports about stored data, computed while the data was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub bytes: u64,
    /// Hex sha512: Glance's default `hashing_algorithm`, reported as `os_hash_value`.
    pub sha512: String,
    /// Hex md5: Glance's legacy `checksum`, always computed by the server.
    pub md5: String,
    /// Hex sha256: what openstacksdk records as `owner_specified.openstack.sha256`.
    pub sha256: String,
}

/// Glance's two digests, computed as the data is read (`io::HashingReader::with_digest`).
#[derive(Default)]
pub struct GlanceDigest {
    sha512: Sha512,
    md5: Md5,
    sha256: Sha256,
}

impl StreamDigest for GlanceDigest {
    type Output = Digests;

    fn update(&mut self, data: &[u8]) {
        self.sha512.update(data);
        self.md5.update(data);
        self.sha256.update(data);
    }

    fn finish(self, bytes: u64) -> Digests {
        Digests {
            bytes,
            sha512: hex::encode(self.sha512.finalize()),
            md5: hex::encode(self.md5.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
        }
    }
}

/// A reader thread feeding an HTTP body. `finish` returns the reader once the body is complete.
pub struct Pump<R> {
    thread: JoinHandle<io::Result<R>>,
}

impl<R: Read + Send + 'static> Pump<R> {
    /// Start reading `reader` in `BUFFER_SIZE` pieces on a thread; the body yields them in order.
    pub fn start(reader: R) -> (Pump<R>, reqwest::Body) {
        let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let thread = std::thread::spawn(move || pump_chunks(reader, &tx));
        let chunks = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
        (Pump { thread }, reqwest::Body::wrap_stream(chunks))
    }

    /// Wait for the reader thread; an error if reading failed or the body was dropped early.
    pub fn finish(self) -> io::Result<R> {
        self.thread.join().map_err(|_| io::Error::other("the image reader thread panicked"))?
    }
}

/// The digests of a whole file (one read, no upload): for comparing with images already there.
pub fn digest_file(path: &Path) -> io::Result<Digests> {
    let mut reader = crate::io::HashingReader::<_, GlanceDigest>::with_digest(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish())
}

/// A chunk on its way to a target, or why the read stopped.
pub type Chunk = Result<Bytes, io::Error>;

/// What every target waits for once its body is sent: the digests of the one read.
pub type SharedDigests = watch::Receiver<Option<Result<Digests, String>>>;

/// How long a target may refuse the next chunk before it is cut off, so one stalled server
/// cannot hold the others back forever.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// One read of the image feeding several HTTP bodies.
pub struct FanOut {
    thread: JoinHandle<()>,
}

impl FanOut {
    /// Start reading `path` for `targets` bodies. The runtime `handle` times the sends (a target
    /// that takes no chunk for `stall` is dropped, which fails its request alone).
    pub fn start(
        path: &Path,
        targets: usize,
        stall: Duration,
        handle: tokio::runtime::Handle,
    ) -> (FanOut, Vec<mpsc::Receiver<Chunk>>, SharedDigests) {
        let mut senders = Vec::with_capacity(targets);
        let mut receivers = Vec::with_capacity(targets);
        for _ in 0..targets {
            let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
            senders.push(tx);
            receivers.push(rx);
        }
        let (done_tx, done_rx) = watch::channel(None);
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let result = fan_out(&path, senders, stall, &handle);
            // Sent before the senders are dropped (inside fan_out), so a body that ends finds it.
            let _ = done_tx.send(Some(result.map_err(|e| format!("{}: cannot read: {e}", path.display()))));
        });
        (FanOut { thread }, receivers, done_rx)
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn fan_out(
    path: &Path,
    mut senders: Vec<mpsc::Sender<Chunk>>,
    stall: Duration,
    handle: &tokio::runtime::Handle,
) -> io::Result<Digests> {
    let broadcast_error = |senders: &[mpsc::Sender<Chunk>], err: &io::Error| {
        for tx in senders {
            let _ = tx.try_send(Err(io::Error::new(err.kind(), err.to_string())));
        }
    };
    let mut reader = match File::open(path) {
        Ok(file) => crate::io::HashingReader::<_, GlanceDigest>::with_digest(file),
        Err(err) => {
            broadcast_error(&senders, &err);
            return Err(err);
        }
    };
    loop {
        let mut chunk = vec![0u8; BUFFER_SIZE];
        let filled = match read_full(&mut reader, &mut chunk) {
            Ok(filled) => filled,
            Err(err) => {
                broadcast_error(&senders, &err);
                return Err(err);
            }
        };
        if filled == 0 {
            return Ok(reader.finish());
        }
        chunk.truncate(filled);
        let chunk = Bytes::from(chunk);
        // A target whose body was dropped (its request failed) or that stalled is let go; the
        // others go on. Reading stops early only if no target is left.
        senders.retain(|tx| {
            handle
                .block_on(async { matches!(tokio::time::timeout(stall, tx.send(Ok(chunk.clone()))).await, Ok(Ok(()))) })
        });
        if senders.is_empty() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "no target is reading the image data any more"));
        }
    }
}

/// An HTTP body streaming the chunks of `rx`, advancing `bar` as they go.
pub fn body_from(rx: mpsc::Receiver<Chunk>, bar: indicatif::ProgressBar) -> reqwest::Body {
    let chunks = stream::unfold((rx, bar), |(mut rx, bar)| async move {
        let chunk = rx.recv().await?;
        if let Ok(data) = &chunk {
            bar.inc(data.len() as u64);
        }
        Some((chunk, (rx, bar)))
    });
    reqwest::Body::wrap_stream(chunks)
}

fn pump_chunks<R: Read>(mut reader: R, tx: &mpsc::Sender<io::Result<Vec<u8>>>) -> io::Result<R> {
    loop {
        let mut chunk = vec![0u8; BUFFER_SIZE];
        let filled = match read_full(&mut reader, &mut chunk) {
            Ok(filled) => filled,
            Err(err) => {
                // The HTTP client aborts the request on a body error; the caller gets `err`.
                let _ = tx.blocking_send(Err(io::Error::new(err.kind(), err.to_string())));
                return Err(err);
            }
        };
        if filled == 0 {
            return Ok(reader);
        }
        chunk.truncate(filled);
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the server stopped reading the image data"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn glance_digest_matches_known_digests() {
        let mut reader = crate::io::HashingReader::<_, GlanceDigest>::with_digest(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let digests = reader.finish();
        assert_eq!(out, b"abc");
        assert_eq!(digests.bytes, 3);
        assert_eq!(digests.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert!(digests.sha512.starts_with("ddaf35a193617aba"), "{}", digests.sha512);
        assert!(digests.sha512.ends_with("a54ca49f"), "{}", digests.sha512);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn pump_delivers_every_byte_in_order() {
        let data: Vec<u8> = (0..(3 * BUFFER_SIZE + 123)).map(|i| (i % 251) as u8).collect();
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let source = data.clone();
        let thread = std::thread::spawn(move || pump_chunks(&source[..], &tx).map(|_| ()));
        let received: Vec<u8> = runtime().block_on(async move {
            let chunks = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
            chunks.map(|chunk| chunk.unwrap()).concat().await
        });
        thread.join().unwrap().unwrap();
        assert_eq!(received, data);
    }

    /// A reader that never ends and counts what was taken from it.
    struct Endless(Arc<AtomicU64>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok(buf.len())
        }
    }

    #[test]
    fn pump_reads_ahead_only_a_bounded_amount() {
        let taken = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let reader = Endless(taken.clone());
        let thread = std::thread::spawn(move || pump_chunks(reader, &tx).map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let limit = ((CHUNKS_IN_FLIGHT + 1) * BUFFER_SIZE) as u64;
        assert!(taken.load(Ordering::SeqCst) <= limit, "read ahead {} bytes", taken.load(Ordering::SeqCst));
        // Dropping the receiving end stops the thread with an error instead of reading forever.
        drop(rx);
        let err = thread.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
