//! A reader that advances a progress bar by the bytes read through it.

use std::io::{self, Read};

use indicatif::ProgressBar;

/// Advances `bar` by every byte read through it.
pub struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> ProgressReader<R> {
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        ProgressReader { inner, bar }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_byte_and_forwards_it() {
        let bar = ProgressBar::hidden();
        let data = vec![7u8; 100_000];
        let mut reader = ProgressReader::new(&data[..], bar.clone());
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        assert_eq!(bar.position(), 100_000);
        assert_eq!(sink, data);
    }

    #[test]
    fn a_failed_read_does_not_advance() {
        let bar = ProgressBar::hidden();
        let mut reader = ProgressReader::new(crate::io::FailingReader, bar.clone());
        assert!(reader.read(&mut [0u8; 8]).is_err());
        assert_eq!(bar.position(), 0);
    }
}
