//! The image data path. [`FanOut`] reads the file once, in `BUFFER_SIZE` chunks, and hands each
//! chunk (shared, not copied) to one bounded channel per target, each the body of one HTTP
//! request, and to three hashing threads ([`Hashers`]: md5, sha256 and sha512, what Glance and
//! openstacksdk record). A lone request (a retry after re-authentication, the glance-direct
//! fallback) is a fan-out of one.
//!
//! Every channel is bounded, so memory use does not depend on the image size (nor on the number
//! of targets: a chunk is shared by all). Reading, each digest and sending (the runtime thread)
//! run on threads of their own: on one thread the three digests cost about as much CPU as a
//! localhost Glance takes the data in (README, "Throughput"), and a reader that also hashes
//! would make every target wait for the slowest digest.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use tokio::sync::{mpsc, watch};

use crate::io::{read_full, BUFFER_SIZE};

/// Chunks that may wait in each channel (to a target or a hasher): the reader is at most this
/// far ahead of the slowest, so at most about `(CHUNKS_IN_FLIGHT + 2) * BUFFER_SIZE` of the
/// image is in memory at once, whatever its size and the number of targets.
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

/// The three digests, each on a thread of its own, fed the chunks the reader shares.
pub struct Hashers {
    feeds: Vec<SyncSender<Bytes>>,
    threads: [JoinHandle<String>; 3],
    bytes: u64,
}

impl Hashers {
    pub fn start() -> Hashers {
        let (md5, md5_thread) = hasher::<Md5>();
        let (sha256, sha256_thread) = hasher::<Sha256>();
        let (sha512, sha512_thread) = hasher::<Sha512>();
        Hashers { feeds: vec![md5, sha256, sha512], threads: [md5_thread, sha256_thread, sha512_thread], bytes: 0 }
    }

    /// Hand `chunk` to every digest; waits while one is `CHUNKS_IN_FLIGHT` chunks behind.
    pub fn update(&mut self, chunk: &Bytes) -> io::Result<()> {
        for feed in &self.feeds {
            feed.send(chunk.clone()).map_err(|_| io::Error::other("a hashing thread stopped"))?;
        }
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// The digests of everything handed over, once each thread has hashed its last chunk.
    pub fn finish(self) -> io::Result<Digests> {
        drop(self.feeds);
        let [md5, sha256, sha512] =
            self.threads.map(|thread| thread.join().map_err(|_| io::Error::other("a hashing thread panicked")));
        Ok(Digests { bytes: self.bytes, sha512: sha512?, md5: md5?, sha256: sha256? })
    }
}

/// A thread computing one digest of the chunks sent to it; its result is the hex digest.
fn hasher<D: Digest + Send + 'static>() -> (SyncSender<Bytes>, JoinHandle<String>) {
    let (feed, chunks) = sync_channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let thread = std::thread::spawn(move || {
        let mut digest = D::new();
        for chunk in chunks {
            digest.update(&chunk);
        }
        hex::encode(digest.finalize())
    });
    (feed, thread)
}

/// The next chunk of `file`, or `None` at its end.
fn next_chunk(file: &mut File) -> io::Result<Option<Bytes>> {
    let mut chunk = vec![0u8; BUFFER_SIZE];
    let filled = read_full(file, &mut chunk)?;
    if filled == 0 {
        return Ok(None);
    }
    chunk.truncate(filled);
    Ok(Some(Bytes::from(chunk)))
}

/// The digests of a whole file (one read, no upload): for comparing with images already there.
pub fn digest_file(path: &Path) -> io::Result<Digests> {
    let mut file = File::open(path)?;
    let mut hashers = Hashers::start();
    while let Some(chunk) = next_chunk(&mut file)? {
        hashers.update(&chunk)?;
    }
    hashers.finish()
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
            if let Ok(read) = &result {
                tracing::info!("{}: read once: {} bytes for {targets} target(s)", path.display(), read.bytes);
            }
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
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) => {
            broadcast_error(&senders, &err);
            return Err(err);
        }
    };
    let mut hashers = Hashers::start();
    loop {
        let chunk = match next_chunk(&mut file) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return hashers.finish(),
            Err(err) => {
                broadcast_error(&senders, &err);
                return Err(err);
            }
        };
        // A target whose body was dropped (its request failed) or that stalled is let go; the
        // others go on. Reading stops early only if no target is left.
        senders.retain(|tx| {
            handle
                .block_on(async { matches!(tokio::time::timeout(stall, tx.send(Ok(chunk.clone()))).await, Ok(Ok(()))) })
        });
        if senders.is_empty() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "no target is reading the image data any more"));
        }
        if let Err(err) = hashers.update(&chunk) {
            broadcast_error(&senders, &err);
            return Err(err);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashers_match_known_digests_across_chunks() {
        let mut hashers = Hashers::start();
        hashers.update(&Bytes::from_static(b"a")).unwrap();
        hashers.update(&Bytes::from_static(b"bc")).unwrap();
        let digests = hashers.finish().unwrap();
        assert_eq!(digests.bytes, 3);
        assert_eq!(digests.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(digests.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(digests.sha512.starts_with("ddaf35a193617aba"), "{}", digests.sha512);
        assert!(digests.sha512.ends_with("a54ca49f"), "{}", digests.sha512);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// A file of `len` bytes that are not all alike, so misordered chunks would show.
    fn sample(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        (file, data)
    }

    async fn collect(mut rx: mpsc::Receiver<Chunk>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[test]
    fn every_target_gets_every_byte_in_order_and_the_digests_match_one_read() {
        let (file, data) = sample(3 * BUFFER_SIZE + 123);
        let rt = runtime();
        let (fan_out, receivers, mut digests) = FanOut::start(file.path(), 2, STALL_LIMIT, rt.handle().clone());
        let received = rt.block_on(futures_util::future::join_all(receivers.into_iter().map(collect)));
        fan_out.join();
        assert!(received.iter().all(|r| *r == data));
        let read = rt.block_on(digests.wait_for(Option::is_some)).unwrap().clone().unwrap().unwrap();
        assert_eq!(read, digest_file(file.path()).unwrap());
        assert_eq!(read.bytes, data.len() as u64);
        assert_eq!(read.sha256, crate::io::sha256_file(file.path()).unwrap().0);
    }

    #[test]
    fn a_stalled_target_is_cut_off_and_reading_stops() {
        let (file, _) = sample(64 * BUFFER_SIZE);
        let rt = runtime();
        let stall = Duration::from_millis(300);
        let (fan_out, receivers, mut digests) = FanOut::start(file.path(), 1, stall, rt.handle().clone());
        // The one target never takes a chunk: after `stall` the reader gives up, far before
        // reading 64 chunks (it may be only CHUNKS_IN_FLIGHT ahead).
        let started = std::time::Instant::now();
        let result = rt.block_on(digests.wait_for(Option::is_some)).unwrap().clone().unwrap();
        assert!(result.unwrap_err().contains("no target is reading"));
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(receivers);
        fan_out.join();
    }

    #[test]
    fn a_missing_file_fails_every_body() {
        let rt = runtime();
        let (fan_out, mut receivers, _) =
            FanOut::start(Path::new("/nonexistent/x.raw"), 1, STALL_LIMIT, rt.handle().clone());
        let first = rt.block_on(receivers[0].recv()).unwrap();
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::NotFound);
        fan_out.join();
    }
}
