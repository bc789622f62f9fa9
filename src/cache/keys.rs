//! Stage keys and how they are hashed: a [`Fingerprint`] takes labelled values, files and
//! element directories. Which inputs key which step, and the chain from one step's key to the
//! next, are the pipeline's (`pipeline/keys.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bump when the snapshot format or key derivation changes, so old entries stop matching.
const CACHE_SCHEMA: &str = "mesos-image-cache-v2";

/// A stage key: lowercase hex sha256. Only [`Fingerprint::finish`] and [`StageKey::parse`] make
/// one, so every key is a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StageKey(String);

impl TryFrom<String> for StageKey {
    type Error = String;

    fn try_from(text: String) -> Result<StageKey, String> {
        StageKey::parse(&text).ok_or_else(|| format!("not a cache key: {text:?}"))
    }
}

impl From<StageKey> for String {
    fn from(key: StageKey) -> String {
        key.0
    }
}

impl StageKey {
    /// A key from its text: exactly 64 lowercase hex digits, else `None`.
    pub fn parse(text: &str) -> Option<StageKey> {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| StageKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::fmt::Display for StageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accumulates everything a stage depends on. Every item is length-prefixed and labelled, so
/// two different input lists can never hash the same.
pub struct Fingerprint {
    hasher: Sha256,
}

impl Fingerprint {
    /// Start a fingerprint for `stage`, chained to the key of the stage before it.
    pub fn new(stage: &str, previous: Option<&StageKey>) -> Fingerprint {
        let mut fingerprint = Fingerprint { hasher: Sha256::new() };
        fingerprint.add_str("schema", CACHE_SCHEMA);
        fingerprint.add_str("tool", env!("CARGO_PKG_VERSION"));
        fingerprint.add_str("stage", stage);
        fingerprint.add_str("previous", previous.map(StageKey::as_str).unwrap_or(""));
        fingerprint
    }

    pub fn add_str(&mut self, label: &str, value: &str) {
        self.add_bytes(label, value.as_bytes());
    }

    pub fn add_bytes(&mut self, label: &str, value: &[u8]) {
        for part in [label.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
    }

    /// Hash a file's or directory's content, names, modes and symlink targets. A missing path
    /// hashes as "absent", so creating it later changes the key.
    pub fn add_path(&mut self, label: &str, path: &Path) -> io::Result<()> {
        if fs::symlink_metadata(path).is_err() {
            self.add_str(label, "<absent>");
            return Ok(());
        }
        let walker = walkdir::WalkDir::new(path).sort_by_file_name().follow_links(false);
        for entry in walker {
            let entry = entry.map_err(io::Error::other)?;
            let relative = entry.path().strip_prefix(path).unwrap_or(entry.path());
            self.add_entry(label, relative, entry.path())?;
        }
        Ok(())
    }

    fn add_entry(&mut self, label: &str, relative: &Path, full: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let metadata = fs::symlink_metadata(full)?;
        let name = format!("{label}:{}", relative.display());
        let mode = metadata.permissions().mode();
        if metadata.file_type().is_symlink() {
            let target = fs::read_link(full)?;
            self.add_str(&name, &format!("link {mode:o} {}", target.display()));
        } else if metadata.is_dir() {
            self.add_str(&name, &format!("dir {mode:o}"));
        } else {
            self.add_str(&name, &format!("file {mode:o}"));
            let mut file = fs::File::open(full)?;
            let mut content_hasher = Sha256::new();
            io::copy(&mut file, &mut content_hasher)?;
            self.add_bytes(&name, &content_hasher.finalize());
        }
        Ok(())
    }

    pub fn finish(self) -> StageKey {
        StageKey(hex::encode(self.hasher.finalize()))
    }
}

impl Fingerprint {
    /// Hash an element directory except the subdirectories named in `skip` (READMEs never).
    pub fn add_element_dir(&mut self, name: &str, dir: &Path, skip: &[&str]) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("element {name}: cannot read {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let file_name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if skip.contains(&file_name.as_str()) || file_name.starts_with("README") {
                continue;
            }
            self.add_path(&format!("element:{name}/{file_name}"), &entry)
                .with_context(|| format!("element {name}: cannot read {}", entry.display()))?;
        }
        Ok(())
    }
}
