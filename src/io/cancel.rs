//! A reader that can be stopped from another thread: once the flag is set, the next read fails,
//! so a thread pumping a file into a request that the server already refused stops reading.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Fails every read once `cancel` is set; until then a plain pass-through.
pub struct CancelReader<R> {
    inner: R,
    cancel: Arc<AtomicBool>,
}

impl<R: Read> CancelReader<R> {
    pub fn new(inner: R, cancel: Arc<AtomicBool>) -> Self {
        CancelReader { inner, cancel }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            // Not `Interrupted`: callers retry that kind, and this must stop them.
            return Err(io::Error::other("reading cancelled"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_until_cancelled_then_fails() {
        let cancel = Arc::new(AtomicBool::new(false));
        let mut reader = CancelReader::new(&b"abcdef"[..], cancel.clone());
        let mut buf = [0u8; 3];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf, b"abc");
        cancel.store(true, Ordering::SeqCst);
        let err = reader.read(&mut buf).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::Interrupted, "a retrying caller would spin");
        assert_eq!(err.to_string(), "reading cancelled");
        // What was not read stays in the inner reader.
        assert_eq!(reader.into_inner(), b"def");
    }

    #[test]
    fn stops_a_copy_loop() {
        let cancel = Arc::new(AtomicBool::new(true));
        let mut reader = CancelReader::new(std::io::repeat(1), cancel);
        assert!(std::io::copy(&mut reader, &mut std::io::sink()).is_err());
    }
}
