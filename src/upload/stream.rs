//! The image data path. [`FanOut`] reads the file once, in `BUFFER_SIZE` chunks, and hands each
//! chunk (shared, not copied) to one bounded channel per target, each the body of one HTTP
//! request. An image whose build recorded its digests ([`ImageSource::recorded`], from the
//! manifest) is only sent: Glance's own digests are compared with the recorded ones. Any other
//! is hashed on the way ([`crate::io::Hashers`]: md5, sha256 and sha512, what Glance and
//! openstacksdk record, each on a thread of its own). A lone request (a retry after
//! re-authentication, the glance-direct fallback) is a fan-out of one.
//!
//! Every channel is bounded, so memory use does not depend on the image size (nor on the number
//! of targets: a chunk is shared by all). Reading, each digest and sending (the runtime thread)
//! run on threads of their own: on one thread the three digests cost about as much CPU as a
//! localhost Glance takes the data in (README, "Throughput"), and a reader that also hashed
//! would make every target wait for the slowest digest.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use tokio::sync::{mpsc, watch};

pub use crate::io::Digests;
use crate::io::{read_chunk, Hashers, CHUNKS_IN_FLIGHT};

/// The image file as upload reads it: where it is, the digests its build recorded (then the
/// data is sent, not hashed) and how many bytes were read from it in all.
#[derive(Debug, Clone)]
pub struct ImageSource {
    pub path: PathBuf,
    pub recorded: Option<Digests>,
    read: Arc<AtomicU64>,
}

impl ImageSource {
    pub fn new(path: PathBuf, recorded: Option<Digests>) -> ImageSource {
        ImageSource { path, recorded, read: Arc::default() }
    }

    /// Bytes read from the file so far, by every reader of this upload.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn count(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The size and digests of the whole file: the recorded ones, or one read hashing it (for
    /// comparing with images already there).
    pub fn digests(&self) -> io::Result<Digests> {
        if let Some(recorded) = &self.recorded {
            return Ok(recorded.clone());
        }
        let digests = crate::io::digest_file(&self.path)?;
        self.count(digests.bytes);
        Ok(digests)
    }
}

/// What the reader does with each chunk besides sending it: hash it, or, where the digests are
/// recorded, only count it.
enum Digesting {
    Hash(Hashers),
    Recorded { digests: Digests, bytes: u64 },
}

impl Digesting {
    fn start(recorded: Option<&Digests>) -> Digesting {
        match recorded {
            Some(digests) => Digesting::Recorded { digests: digests.clone(), bytes: 0 },
            None => Digesting::Hash(Hashers::start()),
        }
    }

    fn update(&mut self, chunk: &Bytes) -> io::Result<()> {
        match self {
            Digesting::Hash(hashers) => hashers.update(chunk),
            Digesting::Recorded { bytes, .. } => {
                *bytes += chunk.len() as u64;
                Ok(())
            }
        }
    }

    /// What was read: its digests, or the recorded ones with the size actually read (Glance's
    /// size is compared with what it was sent).
    fn finish(self) -> io::Result<Digests> {
        match self {
            Digesting::Hash(hashers) => hashers.finish(),
            Digesting::Recorded { digests, bytes } => Ok(Digests { bytes, ..digests }),
        }
    }
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
    /// Start reading `source` for `targets` bodies. The runtime `handle` times the sends (a
    /// target that takes no chunk for `stall` is dropped, which fails its request alone).
    pub fn start(
        source: &ImageSource,
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
        let source = source.clone();
        let thread = std::thread::spawn(move || {
            let result = fan_out(&source, senders, stall, &handle);
            let path = source.path.display();
            if let Ok(read) = &result {
                tracing::info!("{path}: read once: {} bytes for {targets} target(s)", read.bytes);
            }
            // Sent before the senders are dropped (inside fan_out), so a body that ends finds it.
            let _ = done_tx.send(Some(result.map_err(|e| format!("{path}: cannot read: {e}"))));
        });
        (FanOut { thread }, receivers, done_rx)
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn fan_out(
    source: &ImageSource,
    mut senders: Vec<mpsc::Sender<Chunk>>,
    stall: Duration,
    handle: &tokio::runtime::Handle,
) -> io::Result<Digests> {
    let broadcast_error = |senders: &[mpsc::Sender<Chunk>], err: &io::Error| {
        for tx in senders {
            let _ = tx.try_send(Err(io::Error::new(err.kind(), err.to_string())));
        }
    };
    let mut file = match File::open(&source.path) {
        Ok(file) => file,
        Err(err) => {
            broadcast_error(&senders, &err);
            return Err(err);
        }
    };
    let mut digesting = Digesting::start(source.recorded.as_ref());
    loop {
        let chunk = match read_chunk(&mut file) {
            Ok(Some(chunk)) => {
                source.count(chunk.len() as u64);
                chunk
            }
            Ok(None) => return digesting.finish(),
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
        if let Err(err) = digesting.update(&chunk) {
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
    use crate::io::BUFFER_SIZE;
    use std::path::Path;

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

    fn source(path: &Path) -> ImageSource {
        ImageSource::new(path.to_owned(), None)
    }

    #[test]
    fn every_target_gets_every_byte_in_order_and_the_digests_match_one_read() {
        let (file, data) = sample(3 * BUFFER_SIZE + 123);
        let rt = runtime();
        let source = source(file.path());
        let (fan_out, receivers, mut digests) = FanOut::start(&source, 2, STALL_LIMIT, rt.handle().clone());
        let received = rt.block_on(futures_util::future::join_all(receivers.into_iter().map(collect)));
        fan_out.join();
        assert!(received.iter().all(|r| *r == data));
        let read = rt.block_on(digests.wait_for(Option::is_some)).unwrap().clone().unwrap().unwrap();
        assert_eq!(read, crate::io::digest_file(file.path()).unwrap());
        assert_eq!(read.bytes, data.len() as u64);
        assert_eq!(read.sha256, crate::io::sha256_file(file.path()).unwrap().0);
        assert_eq!(source.bytes_read(), data.len() as u64, "one read for both targets");
    }

    /// Recorded digests are what the fan-out reports: the data is sent, not hashed (these are no
    /// digests of it), and the size is what was read.
    #[test]
    fn recorded_digests_are_reported_with_the_size_read() {
        let (file, data) = sample(2 * BUFFER_SIZE + 5);
        let rt = runtime();
        let recorded = Digests { bytes: 1, sha512: "r512".into(), md5: "rmd5".into(), sha256: "r256".into() };
        let source = ImageSource::new(file.path().to_owned(), Some(recorded.clone()));
        assert_eq!(source.digests().unwrap(), recorded);
        assert_eq!(source.bytes_read(), 0, "recorded digests need no read");
        let (fan_out, receivers, mut digests) = FanOut::start(&source, 1, STALL_LIMIT, rt.handle().clone());
        let received = rt.block_on(futures_util::future::join_all(receivers.into_iter().map(collect)));
        fan_out.join();
        assert!(received.len() == 1 && received[0] == data, "one body, every byte");
        let read = rt.block_on(digests.wait_for(Option::is_some)).unwrap().clone().unwrap().unwrap();
        assert_eq!(read, Digests { bytes: data.len() as u64, ..recorded });
        assert_eq!(source.bytes_read(), data.len() as u64);
    }

    #[test]
    fn without_recorded_digests_the_file_is_hashed_once_to_compare() {
        let (file, data) = sample(BUFFER_SIZE + 1);
        let source = source(file.path());
        assert_eq!(source.digests().unwrap(), crate::io::digest_file(file.path()).unwrap());
        assert_eq!(source.bytes_read(), data.len() as u64);
    }

    #[test]
    fn a_stalled_target_is_cut_off_and_reading_stops() {
        let (file, _) = sample(64 * BUFFER_SIZE);
        let rt = runtime();
        let stall = Duration::from_millis(300);
        let (fan_out, receivers, mut digests) = FanOut::start(&source(file.path()), 1, stall, rt.handle().clone());
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
            FanOut::start(&source(Path::new("/nonexistent/x.raw")), 1, STALL_LIMIT, rt.handle().clone());
        let first = rt.block_on(receivers[0].recv()).unwrap();
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::NotFound);
        fan_out.join();
    }
}
