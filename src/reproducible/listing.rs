//! A finished tree described file by file (type, mode, owner, mtime, size, content digest and
//! the package that ships the path), so two builds can be compared by path and a difference
//! can be pinned on a file and its package instead of on two image hashes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::Context;

use crate::io::HashingReader;

/// One path's description; equal entries mean equal files as mkfs copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `link`, `char`, `block`, `fifo`, `socket`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    /// sha256 of a file's content, a symlink's target, a device's number.
    pub content: String,
    /// The package whose file list holds this path, if any.
    pub package: String,
}

/// Every path below the tree (relative, `/`-rooted) and its entry.
pub type Listing = BTreeMap<String, Entry>;

/// Describe `tree`.
pub fn describe(tree: &Path) -> anyhow::Result<Listing> {
    let owners = package_owners(tree);
    let mut listing = Listing::new();
    for entry in walkdir::WalkDir::new(tree).follow_links(false).same_file_system(true) {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        let path = entry.path();
        let metadata = entry.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
        let kind = metadata.file_type();
        let (kind_name, content) = if kind.is_file() {
            ("file", digest_without_touching(path).with_context(|| format!("cannot hash {}", path.display()))?)
        } else if kind.is_dir() {
            ("dir", String::new())
        } else if kind.is_symlink() {
            ("link", fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default())
        } else if kind.is_char_device() {
            ("char", metadata.rdev().to_string())
        } else if kind.is_block_device() {
            ("block", metadata.rdev().to_string())
        } else if kind.is_fifo() {
            ("fifo", String::new())
        } else {
            ("socket", String::new())
        };
        let relative = format!("/{}", path.strip_prefix(tree).unwrap_or(path).display());
        let relative = if relative == "/" { relative } else { relative.trim_end_matches('/').to_owned() };
        let package = owners.get(&relative).cloned().unwrap_or_default();
        listing.insert(
            relative,
            Entry {
                kind: kind_name,
                mode: metadata.mode() & 0o7777,
                uid: metadata.uid(),
                gid: metadata.gid(),
                mtime: metadata.mtime(),
                size: if kind.is_file() { metadata.len() } else { 0 },
                content,
                package,
            },
        );
    }
    Ok(listing)
}

/// sha256 of a file, read with O_NOATIME: the access times were just clamped and mkfs copies
/// them, so describing the tree must not move them.
fn digest_without_touching(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOATIME).open(path)?;
    let mut reader = HashingReader::new(file);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(reader.finish())
}

/// Path -> package from dpkg's file lists in the tree.
fn package_owners(tree: &Path) -> HashMap<String, String> {
    let mut owners = HashMap::new();
    let Ok(entries) = fs::read_dir(tree.join("var/lib/dpkg/info")) else { return owners };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(package) = name.strip_suffix(".list") else { continue };
        let package = package.split(':').next().unwrap_or(package).to_owned();
        let Ok(text) = fs::read_to_string(entry.path()) else { continue };
        for line in text.lines().filter(|l| l.starts_with('/')) {
            owners.entry(line.to_owned()).or_insert_with(|| package.clone());
        }
    }
    owners
}

/// The listing as text, one line per path (paths escaped so each stays on one line).
pub fn to_text(listing: &Listing) -> String {
    let mut out = String::new();
    for (path, e) in listing {
        let _ = writeln!(
            out,
            "{}\t{}\t{:o}\t{}\t{}\t{}\t{}\t{}\t{}",
            path.escape_default(),
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.mtime,
            e.size,
            e.content.escape_default(),
            e.package
        );
    }
    out
}

/// Parse [`to_text`]'s output.
pub fn from_text(text: &str) -> anyhow::Result<Listing> {
    let mut listing = Listing::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || anyhow::anyhow!("tree listing line {}: malformed", number + 1);
        let [path, kind, mode, uid, gid, mtime, size, content, package] = fields.as_slice() else { return Err(bad()) };
        let kind = ["file", "dir", "link", "char", "block", "fifo", "socket"]
            .into_iter()
            .find(|k| k == kind)
            .ok_or_else(bad)?;
        listing.insert(
            path.to_string(),
            Entry {
                kind,
                mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                uid: uid.parse().map_err(|_| bad())?,
                gid: gid.parse().map_err(|_| bad())?,
                mtime: mtime.parse().map_err(|_| bad())?,
                size: size.parse().map_err(|_| bad())?,
                content: content.to_string(),
                package: package.to_string(),
            },
        );
    }
    Ok(listing)
}

/// One path that differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub what: Differs,
    /// The package shipping the path (either side), empty for files the build made.
    pub package: String,
}

/// Every differing path, in path order.
pub fn compare(first: &Listing, second: &Listing) -> Vec<Difference> {
    let mut differences = Vec::new();
    let paths: std::collections::BTreeSet<&String> = first.keys().chain(second.keys()).collect();
    for path in paths {
        let (what, package) = match (first.get(path), second.get(path)) {
            (Some(a), None) => (Differs::OnlyInFirst, a.package.clone()),
            (None, Some(b)) => (Differs::OnlyInSecond, b.package.clone()),
            (Some(a), Some(b)) if a != b => (Differs::Fields(differing_fields(a, b)), a.package.clone()),
            _ => continue,
        };
        differences.push(Difference { path: path.clone(), what, package });
    }
    differences
}

/// What differs about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Differs {
    OnlyInFirst,
    OnlyInSecond,
    /// The path is in both trees; these fields differ.
    Fields(Vec<Field>),
}

/// One differing field of a path present in both trees: the first build's value, then the
/// second's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Kind(&'static str, &'static str),
    /// A regular file's bytes.
    Content,
    /// A symlink's target or a device's number.
    Target(String, String),
    Size(u64, u64),
    Mode(u32, u32),
    Owner((u32, u32), (u32, u32)),
    Mtime(i64, i64),
    Package(String, String),
}

impl Differs {
    /// Whether a regular file's bytes differ (so what differs inside can be shown).
    pub fn content(&self) -> bool {
        matches!(self, Differs::Fields(fields) if fields.contains(&Field::Content))
    }
}

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Differs::OnlyInFirst => f.write_str("only in the first build"),
            Differs::OnlyInSecond => f.write_str("only in the second build"),
            Differs::Fields(fields) => {
                let texts: Vec<String> = fields.iter().map(ToString::to_string).collect();
                f.write_str(&texts.join(", "))
            }
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Kind(a, b) => write!(f, "type {a} vs {b}"),
            Field::Content => f.write_str("content"),
            Field::Target(a, b) => write!(f, "{a} vs {b}"),
            Field::Size(a, b) => write!(f, "size {a} vs {b}"),
            Field::Mode(a, b) => write!(f, "mode {a:o} vs {b:o}"),
            Field::Owner(a, b) => write!(f, "owner {}:{} vs {}:{}", a.0, a.1, b.0, b.1),
            Field::Mtime(a, b) => write!(f, "mtime {a} vs {b}"),
            Field::Package(a, b) => write!(f, "package {a} vs {b}"),
        }
    }
}

fn differing_fields(a: &Entry, b: &Entry) -> Vec<Field> {
    let content = match a.kind {
        "file" => Field::Content,
        _ => Field::Target(a.content.clone(), b.content.clone()),
    };
    [
        (a.kind != b.kind).then_some(Field::Kind(a.kind, b.kind)),
        (a.content != b.content).then_some(content),
        (a.size != b.size).then_some(Field::Size(a.size, b.size)),
        (a.mode != b.mode).then_some(Field::Mode(a.mode, b.mode)),
        ((a.uid, a.gid) != (b.uid, b.gid)).then_some(Field::Owner((a.uid, a.gid), (b.uid, b.gid))),
        (a.mtime != b.mtime).then_some(Field::Mtime(a.mtime, b.mtime)),
        (a.package != b.package).then(|| Field::Package(a.package.clone(), b.package.clone())),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_path_the_field_and_the_package() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
        fs::write(root.join("var/lib/dpkg/info/foo:amd64.list"), "/.\n/etc\n/etc/foo.conf\n").unwrap();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/foo.conf"), "a").unwrap();
        fs::write(root.join("etc/same"), "s").unwrap();
        let first = describe(root).unwrap();
        assert_eq!(from_text(&to_text(&first)).unwrap(), first);

        fs::write(root.join("etc/foo.conf"), "b").unwrap();
        fs::write(root.join("etc/new"), "n").unwrap();
        let second = describe(root).unwrap();
        let differences = compare(&first, &second);
        let found: Vec<_> = differences.iter().map(|d| (d.path.as_str(), d.package.as_str())).collect();
        assert!(found.contains(&("/etc/foo.conf", "foo")), "{differences:?}");
        assert!(found.contains(&("/etc/new", "")), "{differences:?}");
        assert!(!found.iter().any(|(p, _)| *p == "/etc/same"), "{differences:?}");
        let foo = differences.iter().find(|d| d.path == "/etc/foo.conf").unwrap();
        assert!(foo.what.to_string().starts_with("content"), "{}", foo.what);
        assert!(foo.what.content());
    }
}
