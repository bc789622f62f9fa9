//! A deterministic, parallel writer of compressed qcow2 images.
//!
//! `qemu-img convert -c` compresses on one thread when its writes stay in order, and with `-W`
//! the compressed clusters land in completion order, so two runs over the same disk differ byte
//! for byte. This writer compresses batches of clusters on every core and places the results
//! strictly in cluster order: the output depends on the raw disk's bytes alone, whatever the
//! thread count or timing.
//!
//! The image is qcow2 version 3 (compat 1.1), 64 KiB clusters, 16-bit refcounts, no extensions:
//!
//! ```text
//! cluster 0        header
//! clusters 1..     L1 table
//! then             data: compressed clusters packed back to back, uncompressed ones aligned
//! then             L2 tables, refcount blocks, refcount table
//! ```
//!
//! Every data cluster is deflated the way qemu reads it: raw deflate (no zlib header) with a
//! 4 KiB window, because qemu inflates with windowBits -12 and a larger window would make
//! back-references it cannot follow. A cluster that does not shrink below the cluster size
//! (qemu's rule) is stored as a normal cluster; an all-zero cluster or a hole is left
//! unallocated and reads back as zeros.

use std::fs::File;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use flate2::{Compress, Compression, FlushCompress, Status};

const CLUSTER_BITS: u32 = 16;
const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const CLUSTER_BYTES: usize = 1 << CLUSTER_BITS;
/// u64 entries per L2 table: each table maps 512 MiB of the disk.
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// 16-bit refcounts (refcount_order 4) per refcount block: each block covers 2 GiB of file.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
/// Clusters read and compressed together: bounds memory at a few batches in flight (one being
/// compressed, one queued, one being written) while giving every worker plenty to do.
const BATCH_CLUSTERS: usize = 512;
/// qemu's compressed size is counted in 512-byte sectors and its virtual size in whole sectors.
const SECTOR: u64 = 512;
/// One below qemu's default (Z_DEFAULT_COMPRESSION, 6). Measured on debian-base (release build,
/// 2 cores): level 6 converts in 4.2 s to 170.92 MB, 5 in 3.5 s to 171.05 MB, 4 in 3.4 s to
/// 172.49 MB; the lazy-match effort 6 adds finds almost nothing in 64 KiB clusters.
const LEVEL: u32 = 5;
/// The deflate window qemu inflates with: 2^12 = 4 KiB.
const WINDOW_BITS: u8 = 12;

/// qemu refuses an L1 table larger than this (QCOW_MAX_L1_SIZE): 4 Mi entries, 2 PiB of disk.
const MAX_L1_BYTES: u64 = 32 << 20;

const HEADER_LENGTH: u32 = 112;
const L1_COPIED: u64 = 1 << 63;
const L2_COPIED: u64 = 1 << 63;
const L2_COMPRESSED: u64 = 1 << 62;
/// Where the sector count sits in a compressed cluster descriptor: 62 - (cluster_bits - 8).
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);

static ZEROS: [u8; CLUSTER_BYTES] = [0; CLUSTER_BYTES];

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("cannot read raw disk {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write qcow2 image {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("raw disk {path} is {size} bytes, more than a qcow2 image with 64 KiB clusters holds")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("cannot compress a cluster of {path}: {message}")]
    Compress { path: PathBuf, message: String },
    #[error("qcow2 image {path}: host cluster {cluster} is shared by more than 65535 compressed clusters")]
    RefcountOverflow { path: PathBuf, cluster: u64 },
}

/// What was written: for the build log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub virtual_size: u64,
    pub compressed_clusters: u64,
    pub uncompressed_clusters: u64,
    pub file_size: u64,
}

/// Write `raw` as a compressed qcow2 image at `out` (created or truncated), compressing on
/// `threads` threads. The virtual size is the raw size rounded up to whole 512-byte sectors, as
/// `qemu-img convert` does; disk images are whole sectors already. The file is not synced: the
/// build publishes a synced copy of it.
pub fn write_compressed(raw: &Path, out: &Path, threads: NonZeroUsize) -> Result<Summary, Qcow2Error> {
    let read_err = |source| Qcow2Error::Read { path: raw.to_owned(), source };
    let input = File::open(raw).map_err(read_err)?;
    let raw_len = input.metadata().map_err(read_err)?.len();
    if raw_len.div_ceil(CLUSTER_SIZE * L2_ENTRIES) * 8 > MAX_L1_BYTES {
        return Err(Qcow2Error::TooLarge { path: raw.to_owned(), size: raw_len });
    }
    let runs = data_runs(&input, raw_len).map_err(read_err)?;
    let output = File::create(out).map_err(|source| Qcow2Error::Write { path: out.to_owned(), source })?;
    let mut image = Layout::new(raw_len.next_multiple_of(SECTOR), output, out);

    std::thread::scope(|scope| {
        // The writer places one batch while the next is read and compressed.
        let (sender, receiver) = sync_channel::<Batch>(1);
        let writer = scope.spawn(move || -> Result<Layout, Qcow2Error> {
            for batch in receiver {
                image.place(&batch)?;
            }
            Ok(image)
        });
        let produced = (|| {
            for clusters in batches(&runs) {
                let data = read_batch(&input, raw_len, &clusters).map_err(read_err)?;
                let encoded = compress_batch(&data, threads, raw)?;
                if sender.send(Batch { clusters, data, encoded }).is_err() {
                    break; // The writer failed; its error is the one to report.
                }
            }
            Ok::<(), Qcow2Error>(())
        })();
        drop(sender);
        let image = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        produced?;
        image?.finish()
    })
}

/// The clusters holding data, as runs of cluster indexes: the raw disk is sparse, and a hole
/// need not be read to know it is zeros.
fn data_runs(input: &File, len: u64) -> std::io::Result<Vec<Range<u64>>> {
    use nix::unistd::{lseek, Whence};
    let mut runs: Vec<Range<u64>> = Vec::new();
    let mut position = 0u64;
    while position < len {
        let start = match lseek(input.as_fd(), to_off(position)?, Whence::SeekData) {
            Ok(start) => start as u64,
            Err(nix::errno::Errno::ENXIO) => break, // Only a hole is left.
            Err(errno) => return Err(errno.into()),
        };
        let end = (lseek(input.as_fd(), to_off(start)?, Whence::SeekHole)? as u64).min(len);
        if end <= start {
            break;
        }
        let clusters = start / CLUSTER_SIZE..end.div_ceil(CLUSTER_SIZE);
        match runs.last_mut() {
            Some(last) if last.end >= clusters.start => last.end = last.end.max(clusters.end),
            _ => runs.push(clusters),
        }
        position = end;
    }
    Ok(runs)
}

fn to_off(offset: u64) -> std::io::Result<i64> {
    i64::try_from(offset).map_err(|_| std::io::Error::other(format!("offset {offset} is past what lseek takes")))
}

/// Split the runs into batches of at most [`BATCH_CLUSTERS`] cluster indexes.
fn batches(runs: &[Range<u64>]) -> impl Iterator<Item = Vec<u64>> + '_ {
    let mut clusters = runs.iter().flat_map(|run| run.clone()).peekable();
    std::iter::from_fn(move || {
        clusters.peek()?;
        Some(clusters.by_ref().take(BATCH_CLUSTERS).collect())
    })
}

/// Read `clusters` (ascending indexes) into one buffer of whole clusters, a cluster past the end
/// of the file padded with zeros; consecutive clusters are read with one call.
fn read_batch(input: &File, len: u64, clusters: &[u64]) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; clusters.len() * CLUSTER_BYTES];
    let mut first = 0;
    while first < clusters.len() {
        let mut last = first;
        while last + 1 < clusters.len() && clusters[last + 1] == clusters[last] + 1 {
            last += 1;
        }
        let offset = clusters[first] * CLUSTER_SIZE;
        let wanted = ((last - first + 1) as u64 * CLUSTER_SIZE).min(len.saturating_sub(offset));
        let buffer = &mut data[first * CLUSTER_BYTES..][..wanted as usize];
        input.read_exact_at(buffer, offset)?;
        first = last + 1;
    }
    Ok(data)
}

/// How one cluster is stored.
#[derive(Debug, PartialEq, Eq)]
enum Encoded {
    /// All zeros: left unallocated.
    Zero,
    /// Raw deflate, shorter than a cluster.
    Compressed(Vec<u8>),
    /// Did not compress below the cluster size: stored as is.
    Plain,
}

/// Compress every cluster of `data` on `threads` threads. Threads take the next cluster as they
/// finish one, so the load evens out; each result is a function of its cluster's bytes alone, so
/// the order they finish in does not matter.
fn compress_batch(data: &[u8], threads: NonZeroUsize, raw: &Path) -> Result<Vec<Encoded>, Qcow2Error> {
    let count = data.len() / CLUSTER_BYTES;
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, Encoded)>, Qcow2Error> {
        let mut compressor = Compress::new_with_window_bits(Compression::new(LEVEL), false, WINDOW_BITS);
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                return Ok(done);
            }
            let cluster = &data[index * CLUSTER_BYTES..][..CLUSTER_BYTES];
            let encoded = encode(&mut compressor, cluster)
                .map_err(|message| Qcow2Error::Compress { path: raw.to_owned(), message })?;
            done.push((index, encoded));
        }
    };
    let workers = threads.get().min(count.max(1));
    let parts: Vec<Result<Vec<(usize, Encoded)>, Qcow2Error>> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        parts
    });
    let mut encoded: Vec<Option<Encoded>> = (0..count).map(|_| None).collect();
    for part in parts {
        for (index, cluster) in part? {
            encoded[index] = Some(cluster);
        }
    }
    // Every index below `count` was taken by exactly one worker.
    Ok(encoded.into_iter().map(|cluster| cluster.unwrap_or(Encoded::Plain)).collect())
}

/// Encode one whole cluster. qemu's rule: compressed data must be smaller than the cluster
/// (it compresses into a buffer of cluster_size - 1 and stores the cluster plain if that fills).
fn encode(compressor: &mut Compress, cluster: &[u8]) -> Result<Encoded, String> {
    if cluster == &ZEROS[..] {
        return Ok(Encoded::Zero);
    }
    compressor.reset();
    let mut out = Vec::with_capacity(CLUSTER_BYTES - 1);
    match compressor.compress_vec(cluster, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => {
            // Batches wait in a queue: hold what the cluster takes, not a cluster's worth.
            out.shrink_to_fit();
            Ok(Encoded::Compressed(out))
        }
        Ok(Status::Ok | Status::BufError) => Ok(Encoded::Plain),
        Err(err) => Err(err.to_string()),
    }
}

struct Batch {
    clusters: Vec<u64>,
    data: Vec<u8>,
    encoded: Vec<Encoded>,
}

/// Where everything goes in the file, decided in cluster order.
struct Layout {
    file: File,
    path: PathBuf,
    virtual_size: u64,
    l1_entries: u64,
    /// One L2 table per 512 MiB of disk, made when its first cluster is allocated.
    l2: Vec<Option<Vec<u64>>>,
    /// Refcount of every host cluster so far (u32 here; checked to fit 16 bits at the end).
    refcounts: Vec<u32>,
    /// Next free cluster-aligned offset: everything before it is in use.
    tail: u64,
    /// Where the next compressed cluster may start, inside a host cluster already in use;
    /// the rest of that host cluster is free.
    cursor: Option<u64>,
    compressed: u64,
    uncompressed: u64,
}

impl Layout {
    fn new(virtual_size: u64, file: File, path: &Path) -> Layout {
        let l1_entries = virtual_size.div_ceil(CLUSTER_SIZE * L2_ENTRIES);
        // At least one L1 cluster, so an empty disk still has a well-formed table offset.
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE).max(1);
        let mut layout = Layout {
            file,
            path: path.to_owned(),
            virtual_size,
            l1_entries,
            l2: (0..l1_entries).map(|_| None).collect(),
            refcounts: Vec::new(),
            tail: 0,
            cursor: None,
            compressed: 0,
            uncompressed: 0,
        };
        layout.allocate_clusters(1 + l1_clusters); // header, L1
        layout
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), Qcow2Error> {
        self.file.write_all_at(bytes, offset).map_err(|source| Qcow2Error::Write { path: self.path.clone(), source })
    }

    /// Take `count` whole clusters at the tail, each referenced once; returns their offset.
    fn allocate_clusters(&mut self, count: u64) -> u64 {
        let offset = self.tail;
        self.tail += count * CLUSTER_SIZE;
        self.refcounts.resize((self.tail / CLUSTER_SIZE) as usize, 0);
        for cluster in offset / CLUSTER_SIZE..self.tail / CLUSTER_SIZE {
            self.refcounts[cluster as usize] += 1;
        }
        offset
    }

    /// Find room for `len` compressed bytes as qemu does: right after the previous compressed
    /// cluster when they fit in its host cluster, or when that host cluster is the last one
    /// in use (then they run on into fresh clusters); else at the tail. Every host cluster the
    /// bytes touch is referenced once more.
    fn allocate_bytes(&mut self, len: u64) -> u64 {
        let start = match self.cursor {
            Some(cursor) => {
                let gap_end = cursor.next_multiple_of(CLUSTER_SIZE);
                if gap_end == self.tail || cursor + len <= gap_end {
                    cursor
                } else {
                    self.tail
                }
            }
            None => self.tail,
        };
        let end = start + len;
        let end_cluster = end.div_ceil(CLUSTER_SIZE);
        self.tail = self.tail.max(end_cluster * CLUSTER_SIZE);
        self.refcounts.resize((self.tail / CLUSTER_SIZE) as usize, 0);
        for cluster in start / CLUSTER_SIZE..end_cluster {
            self.refcounts[cluster as usize] += 1;
        }
        self.cursor = (!end.is_multiple_of(CLUSTER_SIZE)).then_some(end);
        start
    }

    fn map(&mut self, guest_cluster: u64, entry: u64) {
        let table = self.l2[(guest_cluster / L2_ENTRIES) as usize].get_or_insert_with(|| vec![0; L2_ENTRIES as usize]);
        table[(guest_cluster % L2_ENTRIES) as usize] = entry;
    }

    fn place(&mut self, batch: &Batch) -> Result<(), Qcow2Error> {
        for (index, (&guest_cluster, encoded)) in batch.clusters.iter().zip(&batch.encoded).enumerate() {
            match encoded {
                Encoded::Zero => {}
                Encoded::Compressed(bytes) => {
                    let len = bytes.len() as u64;
                    let offset = self.allocate_bytes(len);
                    self.write_at(bytes, offset)?;
                    // Sectors past the one holding the first byte, up to the one holding the last.
                    let more_sectors = (offset + len - 1) / SECTOR - offset / SECTOR;
                    self.map(guest_cluster, L2_COMPRESSED | more_sectors << CSIZE_SHIFT | offset);
                    self.compressed += 1;
                }
                Encoded::Plain => {
                    let offset = self.allocate_clusters(1);
                    self.write_at(&batch.data[index * CLUSTER_BYTES..][..CLUSTER_BYTES], offset)?;
                    // Referenced once: COPIED says it may be written in place.
                    self.map(guest_cluster, L2_COPIED | offset);
                    self.uncompressed += 1;
                }
            }
        }
        Ok(())
    }

    /// Write the L2 tables, the refcounts, the L1 table and the header.
    fn finish(mut self) -> Result<Summary, Qcow2Error> {
        let mut l1 = vec![0u64; self.l1_entries as usize];
        for (index, table) in std::mem::take(&mut self.l2).into_iter().enumerate() {
            if let Some(table) = table {
                let offset = self.allocate_clusters(1);
                self.write_at(&be_bytes(&table), offset)?;
                l1[index] = L1_COPIED | offset;
            }
        }
        let l1_offset = CLUSTER_SIZE;
        self.write_at(&be_bytes(&l1), l1_offset)?;

        // The refcount blocks and table count themselves too: grow until the count settles.
        let used = self.tail / CLUSTER_SIZE;
        let (mut blocks, mut table_clusters) = (0, 0);
        loop {
            let total = used + blocks + table_clusters;
            let (need_blocks, need_table) = refcount_clusters(total);
            if (need_blocks, need_table) == (blocks, table_clusters) {
                break;
            }
            (blocks, table_clusters) = (need_blocks, need_table);
        }
        let blocks_offset = self.allocate_clusters(blocks);
        let table_offset = self.allocate_clusters(table_clusters);

        let mut counts = Vec::with_capacity((blocks * REFCOUNTS_PER_BLOCK) as usize * 2);
        for (cluster, &count) in self.refcounts.iter().enumerate() {
            let count = u16::try_from(count)
                .map_err(|_| Qcow2Error::RefcountOverflow { path: self.path.clone(), cluster: cluster as u64 })?;
            counts.extend_from_slice(&count.to_be_bytes());
        }
        counts.resize((blocks * CLUSTER_SIZE) as usize, 0);
        self.write_at(&counts, blocks_offset)?;
        let mut table: Vec<u64> = (0..blocks).map(|block| blocks_offset + block * CLUSTER_SIZE).collect();
        table.resize((table_clusters * L2_ENTRIES) as usize, 0);
        self.write_at(&be_bytes(&table), table_offset)?;

        let header = header(self.virtual_size, self.l1_entries, l1_offset, table_offset, table_clusters);
        self.write_at(&header, 0)?;
        Ok(Summary {
            virtual_size: self.virtual_size,
            compressed_clusters: self.compressed,
            uncompressed_clusters: self.uncompressed,
            file_size: self.tail,
        })
    }
}

/// Refcount blocks and refcount table clusters needed to count `clusters` host clusters.
fn refcount_clusters(clusters: u64) -> (u64, u64) {
    let blocks = clusters.div_ceil(REFCOUNTS_PER_BLOCK);
    (blocks, (blocks * 8).div_ceil(CLUSTER_SIZE))
}

fn be_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|entry| entry.to_be_bytes()).collect()
}

/// The version 3 header, [`HEADER_LENGTH`] bytes; the zeros after it end the (empty) list of
/// header extensions.
fn header(virtual_size: u64, l1_entries: u64, l1_offset: u64, refcount_table: u64, refcount_clusters: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LENGTH as usize + 8);
    header.extend_from_slice(b"QFI\xfb");
    header.extend_from_slice(&3u32.to_be_bytes()); // version
    header.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    header.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    header.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    header.extend_from_slice(&virtual_size.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
                                                   // write_compressed refuses a disk whose L1 table would pass MAX_L1_BYTES: fits 32 bits.
    header.extend_from_slice(&(l1_entries as u32).to_be_bytes());
    header.extend_from_slice(&l1_offset.to_be_bytes());
    header.extend_from_slice(&refcount_table.to_be_bytes());
    header.extend_from_slice(&(refcount_clusters as u32).to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    header.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    header.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    header.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    header.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    header.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit refcounts
    header.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    header.push(0); // compression_type: zlib
    header.extend_from_slice(&[0; 7]); // padding to a multiple of 8
    header.extend_from_slice(&[0; 8]); // end of header extensions
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate_as_qemu(compressed: &[u8]) -> Vec<u8> {
        let mut inflater = Decompress::new_with_window_bits(false, WINDOW_BITS);
        let mut out = Vec::with_capacity(CLUSTER_BYTES);
        inflater.decompress_vec(compressed, &mut out, FlushDecompress::Finish).unwrap();
        out
    }

    fn text_cluster() -> Vec<u8> {
        let mut text = Vec::new();
        let mut line = 0u64;
        while text.len() < CLUSTER_BYTES {
            text.extend_from_slice(format!("line {line}: the quick brown fox {}\n", line * 7919 % 1013).as_bytes());
            line += 1;
        }
        text.truncate(CLUSTER_BYTES);
        text
    }

    fn noise_cluster(seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..CLUSTER_BYTES)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn clusters_are_zero_compressed_with_a_4k_window_or_plain() {
        let mut compressor = Compress::new_with_window_bits(Compression::new(LEVEL), false, WINDOW_BITS);
        assert_eq!(encode(&mut compressor, &ZEROS).unwrap(), Encoded::Zero);
        assert_eq!(encode(&mut compressor, &noise_cluster(3)).unwrap(), Encoded::Plain);
        let text = text_cluster();
        let Encoded::Compressed(bytes) = encode(&mut compressor, &text).unwrap() else {
            panic!("text did not compress")
        };
        assert!(bytes.len() < CLUSTER_BYTES / 2, "{}", bytes.len());
        // No zlib header (0x78 ..) and readable with qemu's -12 window.
        assert_ne!(bytes[0], 0x78);
        assert_eq!(inflate_as_qemu(&bytes), text);
        // The compressor is reused across clusters: the same input gives the same bytes.
        assert_eq!(encode(&mut compressor, &text).unwrap(), Encoded::Compressed(bytes));
    }

    #[test]
    fn compressed_results_do_not_depend_on_the_thread_count() {
        let mut data = Vec::new();
        for i in 0..40u64 {
            match i % 4 {
                0 => data.extend_from_slice(&ZEROS),
                1 => data.extend_from_slice(&noise_cluster(i)),
                _ => data.extend_from_slice(&text_cluster()),
            }
        }
        let one = compress_batch(&data, NonZeroUsize::MIN, Path::new("r")).unwrap();
        let four = compress_batch(&data, NonZeroUsize::new(4).unwrap(), Path::new("r")).unwrap();
        assert_eq!(one.len(), 40);
        assert_eq!(one, four);
        assert_eq!(one[0], Encoded::Zero);
        assert_eq!(one[1], Encoded::Plain);
        assert!(matches!(one[2], Encoded::Compressed(_)));
    }

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.qcow2");
        let file = File::create(&path).unwrap();
        (dir, Layout::new(3 * CLUSTER_SIZE * L2_ENTRIES, file, &path))
    }

    #[test]
    fn compressed_bytes_pack_across_clusters_and_fill_gaps_left_by_plain_clusters() {
        let (_dir, mut layout) = layout();
        let data_start = 2 * CLUSTER_SIZE; // header, one L1 cluster
        assert_eq!(layout.tail, data_start);
        assert_eq!(layout.allocate_bytes(40_000), data_start);
        // Runs on into a fresh cluster: both host clusters referenced.
        assert_eq!(layout.allocate_bytes(40_000), data_start + 40_000);
        assert_eq!(layout.tail, data_start + 2 * CLUSTER_SIZE);
        assert_eq!(layout.refcounts[2..], [2, 1]);
        // A plain cluster goes to the tail; the gap before it is still usable for what fits.
        assert_eq!(layout.allocate_clusters(1), data_start + 2 * CLUSTER_SIZE);
        assert_eq!(layout.allocate_bytes(1000), data_start + 80_000);
        assert_eq!(layout.refcounts[2..], [2, 2, 1]);
        // What does not fit starts after the plain cluster.
        assert_eq!(layout.allocate_bytes(60_000), data_start + 3 * CLUSTER_SIZE);
        assert_eq!(layout.refcounts[2..], [2, 2, 1, 1]);
        // Ending exactly on a boundary leaves no partial cluster.
        assert_eq!(layout.allocate_bytes(CLUSTER_SIZE * 4 - 60_000), data_start + 3 * CLUSTER_SIZE + 60_000);
        assert_eq!(layout.cursor, None);
        assert_eq!(layout.allocate_bytes(10), layout.tail - CLUSTER_SIZE);
    }

    #[test]
    fn refcount_space_counts_itself() {
        assert_eq!(refcount_clusters(1), (1, 1));
        assert_eq!(refcount_clusters(REFCOUNTS_PER_BLOCK), (1, 1));
        assert_eq!(refcount_clusters(REFCOUNTS_PER_BLOCK + 1), (2, 1));
        // 8192 blocks fill one table cluster.
        assert_eq!(refcount_clusters(REFCOUNTS_PER_BLOCK * 8193), (8193, 2));
    }

    #[test]
    fn header_fields_sit_where_the_spec_puts_them() {
        let header = header(5 << 30, 10, CLUSTER_SIZE, 7 * CLUSTER_SIZE, 1);
        assert_eq!(header.len(), HEADER_LENGTH as usize + 8);
        let u32_at = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().unwrap());
        assert_eq!(&header[..4], b"QFI\xfb");
        assert_eq!(u32_at(4), 3);
        assert_eq!(u32_at(20), 16);
        assert_eq!(u64_at(24), 5 << 30);
        assert_eq!(u32_at(36), 10);
        assert_eq!(u64_at(40), CLUSTER_SIZE);
        assert_eq!(u64_at(48), 7 * CLUSTER_SIZE);
        assert_eq!(u32_at(56), 1);
        assert_eq!(u32_at(96), 4);
        assert_eq!(u32_at(100), 112);
        assert_eq!(header[104], 0);
    }

    #[test]
    fn holes_are_not_read_and_a_partial_last_cluster_is_padded() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&raw).unwrap();
        let len = 10 * CLUSTER_SIZE + 1000;
        file.set_len(len).unwrap();
        file.write_all_at(b"x", 3 * CLUSTER_SIZE + 5).unwrap();
        file.write_all_at(b"y", len - 1).unwrap();
        let runs = data_runs(&file, len).unwrap();
        assert!(!runs.is_empty() && runs.iter().all(|run| run.start >= 3), "{runs:?}");
        assert!(runs.iter().any(|run| run.contains(&3)) && runs.last().unwrap().end == 11, "{runs:?}");
        let data = read_batch(&file, len, &[3, 10]).unwrap();
        assert_eq!(data.len(), 2 * CLUSTER_BYTES);
        assert_eq!(data[5], b'x');
        assert_eq!(data[CLUSTER_BYTES + 999], b'y');
        assert!(data[CLUSTER_BYTES + 1000..].iter().all(|&b| b == 0));
        let batches: Vec<Vec<u64>> = batches(&[0..BATCH_CLUSTERS as u64 + 1, 9000..9002]).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], [BATCH_CLUSTERS as u64, 9000, 9001]);
    }

    #[test]
    fn a_missing_raw_disk_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.raw");
        let err = write_compressed(&missing, &dir.path().join("o"), NonZeroUsize::MIN).unwrap_err();
        assert!(err.to_string().contains("missing.raw"), "{err}");
    }
}
