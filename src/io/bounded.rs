//! Reading a file the user named, bounded: a regular file of at most `limit` bytes. A path to
//! `/dev/zero`, a FIFO or a huge file is refused instead of read forever or into memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The text of `path`, refused when it is not a regular file or holds more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory, not a file"));
    }
    if !meta.is_file() {
        return Err(io::Error::other("is not a regular file"));
    }
    let mut text = String::new();
    // Opened after the check; the limit still holds if it was swapped for a device meanwhile.
    File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::other(format!("is larger than {limit} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        assert!(read_bounded(Path::new("/dev/zero"), 10).unwrap_err().to_string().contains("not a regular file"));
        let dir = tempfile::tempdir().unwrap();
        assert!(read_bounded(dir.path(), 10).unwrap_err().to_string().contains("is a directory"));
        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789A").unwrap();
        assert!(read_bounded(&file, 10).unwrap_err().to_string().contains("larger than 10 bytes"));
        assert_eq!(read_bounded(&file, 11).unwrap(), "0123456789A");
    }
}
