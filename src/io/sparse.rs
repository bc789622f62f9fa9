//! A writer that leaves holes where the data is zeros, as `cp --sparse=always` does: a raw disk
//! image is mostly unwritten space, and copying it into place byte by byte would allocate all of
//! it (a 488 MB raw image of a 6 MB tree, measured) and write every zero to disk.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// The filesystem block size holes are made of: a zero run shorter than this, or not aligned to
/// it, is written as data (the filesystem could not leave it unallocated anyway).
const BLOCK: usize = 4096;

/// Writes into a new, empty file, seeking over every all-zero block instead of writing it; the
/// content read back is exactly what was written. Call [`SparseWriter::finish`] at the end, so
/// a trailing hole still counts in the file's length.
pub struct SparseWriter<'a> {
    inner: &'a mut File,
    /// Position in the output (what has been written or skipped).
    position: u64,
    /// Zero bytes skipped since the last write, not yet reflected in the file's length.
    pending_hole: u64,
}

impl<'a> SparseWriter<'a> {
    /// `inner` must be positioned at the start of an empty file.
    pub fn new(inner: &'a mut File) -> Self {
        SparseWriter { inner, position: 0, pending_hole: 0 }
    }

    /// Make the file as long as everything written, a trailing hole included.
    pub fn finish(self) -> io::Result<()> {
        self.inner.flush()?;
        if self.pending_hole > 0 {
            self.inner.set_len(self.position)?;
        }
        Ok(())
    }

    /// Write `data` as data, after moving past any pending hole.
    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if self.pending_hole > 0 {
            self.inner.seek(SeekFrom::Start(self.position))?;
            self.pending_hole = 0;
        }
        self.inner.write_all(data)?;
        self.position += data.len() as u64;
        Ok(())
    }

    fn skip(&mut self, len: usize) {
        self.pending_hole += len as u64;
        self.position += len as u64;
    }
}

impl Write for SparseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            // Chunks end on block boundaries of the output, so holes line up with its blocks.
            let to_boundary = BLOCK - (self.position % BLOCK as u64) as usize;
            let (chunk, tail) = rest.split_at(to_boundary.min(rest.len()));
            if chunk.len() == BLOCK && chunk.iter().all(|&byte| byte == 0) {
                self.skip(chunk.len());
            } else {
                self.write_data(chunk)?;
            }
            rest = tail;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    fn written(pieces: &[&[u8]]) -> (Vec<u8>, std::fs::Metadata) {
        let mut file = tempfile::tempfile().unwrap();
        let mut writer = SparseWriter::new(&mut file);
        for piece in pieces {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        (back, file.metadata().unwrap())
    }

    #[test]
    fn content_round_trips_whatever_the_write_sizes() {
        let mut data = vec![0u8; 5 * BLOCK + 123];
        data[BLOCK + 7] = 1;
        data[4 * BLOCK] = 2;
        for split in [1, 100, BLOCK - 1, BLOCK, BLOCK + 1, data.len()] {
            let pieces: Vec<&[u8]> = data.chunks(split).collect();
            let (back, _) = written(&pieces);
            assert_eq!(back, data, "split {split}");
        }
    }

    #[test]
    fn zero_blocks_are_not_allocated_and_a_trailing_hole_keeps_the_length() {
        let mut data = vec![0u8; 1 << 22];
        data[0] = 7;
        let (back, metadata) = written(&[&data]);
        assert_eq!(back, data);
        assert_eq!(metadata.len(), 1 << 22);
        // One 4 KiB block of data (plus filesystem rounding), not 4 MiB.
        assert!(metadata.blocks() * 512 < 1 << 20, "{} bytes allocated", metadata.blocks() * 512);
    }

    #[test]
    fn data_after_a_hole_lands_at_its_offset() {
        let zeros = vec![0u8; 3 * BLOCK];
        let (back, metadata) = written(&[&zeros, b"end"]);
        assert_eq!(metadata.len(), 3 * BLOCK as u64 + 3);
        assert_eq!(&back[3 * BLOCK..], b"end");
        assert!(back[..3 * BLOCK].iter().all(|&byte| byte == 0));
    }
}
