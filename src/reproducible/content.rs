//! What differs inside a file two builds made differently, as a person reads it: for text the
//! first differing lines of each side (a unified-diff-like excerpt), for binary data the first
//! differing byte offset and both sizes. It reads the two files themselves, so the report says
//! why a path differs, not just that its digest did.

use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// How much of each file is read: enough for the first difference of any file a person reads.
const READ_LIMIT: u64 = 8 << 20;
/// Lines of each side shown for a text difference.
const SHOWN_LINES: usize = 4;
/// Characters of a line shown.
const LINE_WIDTH: usize = 160;

/// Errors reading a file of a kept tree.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: a component is a symbolic link, not followed out of the tree")]
    Symlinked { path: PathBuf },
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
}

/// The difference between the file at tree path `path` (`/`-rooted) in two trees.
pub fn between_trees(first_root: &Path, second_root: &Path, path: &str) -> Result<String, ContentError> {
    let read = |root: &Path| -> Result<(Vec<u8>, u64), ContentError> {
        let full = within(root, path)?;
        let failed = |cause| ContentError::Read { path: full.clone(), cause };
        let file = fs::File::open(&full).map_err(failed)?;
        let size = file.metadata().map_err(failed)?.len();
        let mut bytes = Vec::new();
        file.take(READ_LIMIT).read_to_end(&mut bytes).map_err(failed)?;
        Ok((bytes, size))
    };
    let ((a, a_size), (b, b_size)) = (read(first_root)?, read(second_root)?);
    Ok(describe(&a, &b, (a_size, b_size)))
}

/// `root` joined with the tree path `path`, refusing any symlinked component (an absolute link
/// in the tree would point at the host's file).
fn within(root: &Path, path: &str) -> Result<PathBuf, ContentError> {
    let mut full = root.to_owned();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => full.push(name),
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ContentError::Symlinked { path: root.join(path.trim_start_matches('/')) })
            }
        }
        if fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ContentError::Symlinked { path: full });
        }
    }
    Ok(full)
}

/// The difference between two files' contents (`sizes` are the whole files' sizes; the bytes
/// may be a prefix). Text (UTF-8 without NUL) gets the first differing lines of each side,
/// anything else the first differing byte.
pub fn describe(a: &[u8], b: &[u8], sizes: (u64, u64)) -> String {
    match (text(a), text(b)) {
        (Some(a), Some(b)) => text_difference(a, b),
        _ => binary_difference(a, b, sizes),
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// `@@ line N @@` then up to [`SHOWN_LINES`] `-` lines (first build) and `+` lines (second)
/// of the first run of differing lines.
fn text_difference(a: &str, b: &str) -> String {
    let (a_lines, b_lines): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let same_start = a_lines.iter().zip(&b_lines).take_while(|(x, y)| x == y).count();
    let same_end =
        a_lines[same_start..].iter().rev().zip(b_lines[same_start..].iter().rev()).take_while(|(x, y)| x == y).count();
    let removed = &a_lines[same_start..a_lines.len() - same_end];
    let added = &b_lines[same_start..b_lines.len() - same_end];
    let mut out = String::new();
    if removed.is_empty() && added.is_empty() {
        // Same lines: the difference is in line endings or a final newline.
        let _ = writeln!(out, "text, same lines; differs in line endings or the final newline");
        return out;
    }
    let _ = writeln!(out, "@@ line {} @@", same_start + 1);
    for (sign, lines) in [('-', removed), ('+', added)] {
        for line in lines.iter().take(SHOWN_LINES) {
            let shown: String = line.chars().take(LINE_WIDTH).collect();
            let cut = if shown.len() < line.len() { "..." } else { "" };
            let _ = writeln!(out, "{sign}{shown}{cut}");
        }
        if lines.len() > SHOWN_LINES {
            let _ = writeln!(out, "{sign}... ({} more lines)", lines.len() - SHOWN_LINES);
        }
    }
    out
}

fn binary_difference(a: &[u8], b: &[u8], (a_size, b_size): (u64, u64)) -> String {
    let offset = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let at = match (a.get(offset), b.get(offset)) {
        (Some(x), Some(y)) => format!("first difference at byte {offset} (0x{offset:x}): {x:02x} vs {y:02x}"),
        _ if a_size == b_size => format!("the first {offset} bytes are the same (the rest was not read)"),
        _ => format!("one is a prefix of the other: the first {offset} bytes are the same"),
    };
    format!("binary, {a_size} vs {b_size} bytes; {at}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shows_the_first_differing_lines_of_each_side() {
        let a = "one\ntwo\nuuid=1111\nfour\n";
        let b = "one\ntwo\nuuid=2222\nfour\n";
        assert_eq!(describe(a.as_bytes(), b.as_bytes(), (19, 19)), "@@ line 3 @@\n-uuid=1111\n+uuid=2222\n");
        let many: String = (0..10).map(|n| format!("{n}\n")).collect();
        let shown = describe(b"x\n", many.as_bytes(), (2, 20));
        assert!(shown.starts_with("@@ line 1 @@\n-x\n+0\n+1\n+2\n+3\n+... (6 more lines)\n"), "{shown}");
        assert!(describe(b"a\n", b"a", (2, 1)).contains("final newline"));
    }

    #[test]
    fn binary_gives_the_first_differing_offset_and_sizes() {
        let a = [0u8, 1, 2, 3, 4];
        let b = [0u8, 1, 2, 9, 4, 5];
        assert_eq!(describe(&a, &b, (5, 6)), "binary, 5 vs 6 bytes; first difference at byte 3 (0x3): 03 vs 09\n");
        assert_eq!(
            describe(&a, &a[..3], (5, 3)),
            "binary, 5 vs 3 bytes; one is a prefix of the other: the first 3 bytes are the same\n"
        );
    }

    #[test]
    fn files_are_read_from_both_trees_and_links_are_not_followed() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (root, text) in [(one.path(), "id=a\n"), (two.path(), "id=b\n")] {
            fs::create_dir(root.join("etc")).unwrap();
            fs::write(root.join("etc/nondet"), text).unwrap();
        }
        assert_eq!(between_trees(one.path(), two.path(), "/etc/nondet").unwrap(), "@@ line 1 @@\n-id=a\n+id=b\n");
        std::os::unix::fs::symlink("/etc", one.path().join("host")).unwrap();
        let err = between_trees(one.path(), two.path(), "/host/hostname").unwrap_err();
        assert!(matches!(err, ContentError::Symlinked { .. }), "{err}");
    }
}
