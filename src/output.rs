//! Publishing build outputs so that a half-written file can never be seen, even after SIGKILL.
//!
//! The data is written into an *unnamed* file (`O_TMPFILE`) in the destination directory, synced,
//! then given a name with `linkat` and renamed over the destination. If the process dies at any
//! point before the link, the kernel frees the unnamed inode: nothing is left behind. Between the
//! link and the rename, a hidden `.NAME.tmp-PID` name exists for a few microseconds only.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::io::{copy_digesting, Digests, HashingWriter, SparseWriter, BUFFER_SIZE};

/// Errors while publishing an output file.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: cannot open for reading: {source}")]
    OpenSource { path: PathBuf, source: io::Error },
    #[error("{dir}: cannot create an output file there: {source}")]
    CreateTemp { dir: PathBuf, source: io::Error },
    #[error("{path}: write failed: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: cannot give the output its name: {source}")]
    Link { path: PathBuf, source: io::Error },
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
}

/// Copy `source` to `dest` atomically, hashing while copying.
pub fn publish_file(source: &Path, dest: &Path) -> Result<Published, PublishError> {
    let mut input =
        File::open(source).map_err(|err| PublishError::OpenSource { path: source.to_owned(), source: err })?;
    publish_reader(&mut input, dest)
}

/// Write `bytes` to `dest` atomically.
pub fn publish_bytes(bytes: &[u8], dest: &Path) -> Result<Published, PublishError> {
    publish_reader(&mut io::Cursor::new(bytes), dest)
}

/// Stream `reader` into `dest` atomically, hashing while writing.
pub fn publish_reader(reader: &mut dyn Read, dest: &Path) -> Result<Published, PublishError> {
    stage_reader(reader, dest)?.commit()
}

/// A file written, hashed and synced in its destination's directory but not yet named: it
/// appears under its name only at [`Staged::commit`], and vanishes if dropped before that.
/// Several outputs are all staged first and then committed, so a failure while writing any
/// of them publishes none.
pub struct Staged {
    file: StagedFile,
    dest: PathBuf,
    size: u64,
    sha256: String,
}

enum StagedFile {
    /// `O_TMPFILE`: the kernel frees it if the process dies.
    Unnamed(File),
    /// The fallback: removed on drop; only a SIGKILL can leave it, under a `.NAME.tmp-` name.
    Named(tempfile::NamedTempFile),
}

impl Staged {
    /// Give the file its name, replacing whatever had it.
    pub fn commit(self) -> Result<Published, PublishError> {
        match self.file {
            StagedFile::Unnamed(file) => link_into_place(&file, &self.dest)?,
            StagedFile::Named(temp) => {
                temp.persist(&self.dest)
                    .map_err(|err| PublishError::Link { path: self.dest.clone(), source: err.error })?;
            }
        }
        Ok(Published { path: self.dest, size: self.size, sha256: self.sha256 })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Lowercase hex sha256 of the content.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Copy `source` into a [`Staged`] file for `dest`, hashing while copying.
pub fn stage_file(source: &Path, dest: &Path) -> Result<Staged, PublishError> {
    let mut input =
        File::open(source).map_err(|err| PublishError::OpenSource { path: source.to_owned(), source: err })?;
    stage_reader(&mut input, dest)
}

/// [`stage_file`] for an image: its size and three digests ([`Digests`]: what the manifest
/// records, DIB's `.md5` and what Glance will report) come from the same pass.
pub fn stage_image(source: &Path, dest: &Path) -> Result<(Staged, Digests), PublishError> {
    let mut input =
        File::open(source).map_err(|err| PublishError::OpenSource { path: source.to_owned(), source: err })?;
    let mut digests = Digests::default();
    let staged = stage_with(&mut input, dest, |reader, writer| {
        digests = copy_digesting(reader, writer)?;
        Ok((digests.bytes, digests.sha256.clone()))
    })?;
    Ok((staged, digests))
}

/// Stream `reader` into a [`Staged`] file for `dest`, hashing while writing.
pub fn stage_reader(reader: &mut dyn Read, dest: &Path) -> Result<Staged, PublishError> {
    stage_with(reader, dest, copy_hashing)
}

/// (size, hex sha256) of what `copy` moved from the reader into the file.
type CopyResult = io::Result<(u64, String)>;

fn stage_with(
    reader: &mut dyn Read,
    dest: &Path,
    copy: impl FnOnce(&mut dyn Read, &mut dyn Write) -> CopyResult,
) -> Result<Staged, PublishError> {
    let dir = parent_dir(dest);
    let write_err = |source| PublishError::Write { path: dest.to_owned(), source };
    let mut file = match open_unnamed(&dir) {
        Ok(file) => StagedFile::Unnamed(file),
        Err(PublishError::CreateTemp { source, .. }) if lacks_o_tmpfile(&source) => {
            StagedFile::Named(named_temp(dest, &dir)?)
        }
        Err(err) => return Err(err),
    };
    let handle = handle_of(&mut file);
    // Zero blocks become holes: a raw disk is mostly unwritten space (see io::SparseWriter).
    let mut sparse = SparseWriter::new(handle);
    let (size, sha256) = copy(reader, &mut sparse).map_err(write_err)?;
    sparse.finish().map_err(write_err)?;
    handle_of(&mut file).sync_all().map_err(write_err)?;
    Ok(Staged { file, dest: dest.to_owned(), size, sha256 })
}

/// The open file behind a staged output, whichever way it was created.
fn handle_of(file: &mut StagedFile) -> &mut File {
    match file {
        StagedFile::Unnamed(file) => file,
        StagedFile::Named(temp) => temp.as_file_mut(),
    }
}

/// Filesystems without `O_TMPFILE` (fuse-overlayfs in containers, NFS) refuse it with one of
/// these; older kernels treat the flag as `O_DIRECTORY` and fail with `EISDIR`.
fn lacks_o_tmpfile(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL))
}

/// The fallback: a hidden named temporary file beside `dest`.
fn named_temp(dest: &Path, dir: &Path) -> Result<tempfile::NamedTempFile, PublishError> {
    let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{file_name}.tmp-"))
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|source| PublishError::CreateTemp { dir: dir.to_owned(), source })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn open_unnamed(dir: &Path) -> Result<File, PublishError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_tmpfile())
        .mode(0o644)
        .open(dir)
        .map_err(|source| PublishError::CreateTemp { dir: dir.to_owned(), source })
}

/// `O_TMPFILE` from nix's libc re-export, kept in one place.
fn libc_o_tmpfile() -> i32 {
    nix::fcntl::OFlag::O_TMPFILE.bits()
}

/// Copy everything, returning the byte count and hex sha256. Large reads: this moves images.
fn copy_hashing(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<(u64, String)> {
    let mut hashing = HashingWriter::new(writer);
    io::copy(&mut io::BufReader::with_capacity(BUFFER_SIZE, reader), &mut hashing)?;
    let size = hashing.byte_count();
    Ok((size, hashing.finish().1))
}

/// Give the unnamed file a hidden name, then rename it over `dest`.
fn link_into_place(file: &File, dest: &Path) -> Result<(), PublishError> {
    use std::os::fd::AsRawFd;
    let link_err = |source| PublishError::Link { path: dest.to_owned(), source };
    let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hidden = parent_dir(dest).join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&hidden);
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        &proc_path,
        nix::fcntl::AT_FDCWD,
        &hidden,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(|errno| link_err(io::Error::from(errno)))?;
    std::fs::rename(&hidden, dest).map_err(|err| {
        let _ = std::fs::remove_file(&hidden);
        link_err(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_file_has_content_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.txt");
        let published = publish_bytes(b"abc", &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert_eq!(published.size, 3);
        assert_eq!(published.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // Only the destination exists: no temporary names are left.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn publishing_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        std::fs::write(&dest, "old").unwrap();
        publish_bytes(b"new", &dest).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
    }

    #[test]
    fn failing_reader_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err = publish_reader(&mut crate::io::FailingReader, &dest).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// What `stage_reader` does where `O_TMPFILE` is refused.
    fn publish_via_named_temp(reader: &mut dyn Read, dest: &Path) -> Result<Published, PublishError> {
        let mut temp = named_temp(dest, &parent_dir(dest))?;
        let (size, sha256) = copy_hashing(reader, temp.as_file_mut())
            .map_err(|source| PublishError::Write { path: dest.to_owned(), source })?;
        let staged = Staged { file: StagedFile::Named(temp), dest: dest.to_owned(), size, sha256 };
        staged.commit()
    }

    #[test]
    fn staged_files_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let first = stage_reader(&mut io::Cursor::new(b"one"), &dir.path().join("one")).unwrap();
        let second = stage_reader(&mut io::Cursor::new(b"two"), &dir.path().join("two")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing named before commit");
        drop(second);
        first.commit().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("one")], "the dropped one left nothing");
    }

    #[test]
    fn named_temp_fallback_publishes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let published = publish_via_named_temp(&mut io::Cursor::new(b"abc"), &dest).unwrap();
        assert_eq!(published.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert!(publish_via_named_temp(&mut crate::io::FailingReader, &dir.path().join("bad")).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")], "only the published file remains");
    }

    #[test]
    fn a_staged_image_carries_its_three_digests() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("in");
        std::fs::write(&source, b"abc").unwrap();
        let (staged, digests) = stage_image(&source, &dir.path().join("out")).unwrap();
        assert_eq!(digests.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert!(digests.sha512.starts_with("ddaf35a193617aba"), "{}", digests.sha512);
        assert_eq!((digests.bytes, staged.size()), (3, 3));
        assert_eq!(staged.sha256(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(digests.sha256, staged.sha256());
        staged.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"abc");
    }

    #[test]
    fn missing_directory_names_it() {
        let err = publish_bytes(b"x", Path::new("/nonexistent-dir-xyz/out")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent-dir-xyz:"), "{err}");
    }
}
