//! The content-addressed stage cache (osbuild's idea; docs/architecture.md, "Cache").
//!
//! A stage's output is stored under a key that hashes everything the stage read: the previous
//! stage's key, the plan values it depends on and the bytes of the element files it runs. An
//! unchanged prefix of the pipeline is restored instead of rebuilt. Trees are stored as
//! zstd-compressed tar archives (owners, modes, xattrs, hard links and device nodes kept) and
//! verified against their sha256 on restore; finished images are stored as files.
//!
//! Layout under `<cache-dir>`:
//!   stages/<key>.tar.zst + stages/<key>.json   tree snapshots
//!   outputs/<key>/...   + outputs/<key>.json   finished images and their manifest
//!   locks/<key>.lock                           flock: writers exclusive, readers shared
//!   apt/archives/                              the shared apt package cache
//!
//! Integrity rules: an entry is named only by a [`StageKey`], which is 64 lowercase hex digits
//! or nothing, so no path read from a file (or a file name planted in the cache) can reach
//! outside it. An entry is trusted only when its record parses, names its own key and its
//! files match the recorded sizes and checksum; otherwise it is reported in one line, removed
//! and rebuilt. Concurrent builds serialise on the entry lock instead of racing.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

mod keys;

pub use keys::{Fingerprint, StageKey};

use crate::io::{lock_file, HashingReader, LockMode, BUFFER_SIZE};
use crate::output;

/// A point of the pipeline whose result the cache stores: the tree after the base (root.d
/// included), the tree after the install phase, and the finished images with their manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePoint {
    Base,
    Install,
    Outputs,
}

impl CachePoint {
    /// How `cache list` and the build's steps name the entry.
    pub fn name(self) -> &'static str {
        match self {
            CachePoint::Base => "base",
            CachePoint::Install => "install",
            CachePoint::Outputs => "outputs",
        }
    }

    /// Whether the entry is a tree snapshot (restored into the work dir) rather than the
    /// finished files.
    pub fn is_tree(self) -> bool {
        self != CachePoint::Outputs
    }
}

impl std::fmt::Display for CachePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What we know about one cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub key: StageKey,
    /// The cache point whose result this is.
    pub stage: CachePoint,
    /// Recipe name or the element list, for `cache list`.
    pub label: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Bytes on disk.
    pub size: u64,
    /// sha256 of the archive (tree snapshots only).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Stored files and their sizes (outputs only).
    #[serde(default)]
    pub files: Vec<StoredFile>,
}

/// One file of a stored outputs entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    pub size: u64,
}

/// Why an entry cannot be trusted; reported in one line, then the entry is removed.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    #[error("its record is unreadable ({0})")]
    BadRecord(String),
    #[error("its record names another key")]
    KeyMismatch,
    #[error("{0} is missing")]
    Missing(String),
    #[error("{name} is {actual} bytes, {expected} recorded")]
    SizeMismatch { name: String, expected: u64, actual: u64 },
    #[error("the archive's checksum does not match its record")]
    ChecksumMismatch,
}

/// The cache at `<cache-dir>`.
pub struct StageCache {
    root: PathBuf,
}

impl StageCache {
    /// Open (and create) the cache directory.
    pub fn open(root: &Path) -> anyhow::Result<StageCache> {
        fs::create_dir_all(root).with_context(|| format!("cannot create cache directory {}", root.display()))?;
        // Entries are written and removed below these: a link there would lead out of the cache.
        for sub in ["stages", "outputs", "locks", "apt", "apt/archives", "apt/archives/partial"] {
            let dir = root.join(sub);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    bail!("cache directory {}: a link or a file, not a directory of the cache: refused", dir.display())
                }
                Err(_) => {
                    fs::create_dir(&dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?
                }
            }
        }
        Ok(StageCache { root: root.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host apt archive cache, bound into the chroot during apt runs.
    pub fn apt_archives(&self) -> PathBuf {
        self.root.join("apt/archives")
    }

    fn tree_archive(&self, key: &StageKey) -> PathBuf {
        self.root.join("stages").join(format!("{key}.tar.zst"))
    }

    fn tree_meta(&self, key: &StageKey) -> PathBuf {
        self.root.join("stages").join(format!("{key}.json"))
    }

    fn outputs_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join("outputs").join(key.as_str())
    }

    fn outputs_meta(&self, key: &StageKey) -> PathBuf {
        self.root.join("outputs").join(format!("{key}.json"))
    }

    fn lock_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// Hold the entry's lock: writers exclusively, readers shared, so a reader never sees an
    /// archive from one writer and a record from another. Waits for the holder.
    fn lock(&self, key: &StageKey, mode: LockMode) -> anyhow::Result<Flock<fs::File>> {
        self.try_lock(key, mode, true)?.context("cache lock was not granted")
    }

    /// As [`Self::lock`]; with `wait` false, `None` while another process holds it.
    fn try_lock(&self, key: &StageKey, mode: LockMode, wait: bool) -> anyhow::Result<Option<Flock<fs::File>>> {
        Ok(lock_file(&self.lock_path(key), mode, wait)?)
    }

    /// Is an intact tree snapshot stored under `key`? A corrupt one is reported, removed and
    /// counts as absent, so the stage is rebuilt. Reads the whole archive to check its sha256.
    pub fn has_tree(&self, key: &StageKey) -> bool {
        let Ok(_lock) = self.lock(key, LockMode::Shared) else { return false };
        let (meta, archive) = (self.tree_meta(key), self.tree_archive(key));
        if !meta.exists() && !archive.exists() {
            return false;
        }
        match self.check_tree(key) {
            Ok(_) => true,
            Err(corruption) => {
                drop(_lock);
                self.discard(key, "snapshot", &corruption);
                false
            }
        }
    }

    fn check_tree(&self, key: &StageKey) -> Result<EntryMeta, Corruption> {
        let meta = self.read_entry(&self.tree_meta(key), key)?;
        let archive = self.tree_archive(key);
        let size = fs::metadata(&archive).map_err(|_| Corruption::Missing(file_name(&archive)))?.len();
        if size != meta.size {
            return Err(Corruption::SizeMismatch { name: file_name(&archive), expected: meta.size, actual: size });
        }
        let digest = fs::File::open(&archive)
            .and_then(|mut file| copy_and_hash(&mut file, &mut io::sink()))
            .map_err(|_| Corruption::Missing(file_name(&archive)))?;
        if meta.sha256.as_deref() != Some(digest.as_str()) {
            return Err(Corruption::ChecksumMismatch);
        }
        Ok(meta)
    }

    /// The entry's record, which must parse and name `key` itself.
    fn read_entry(&self, path: &Path, key: &StageKey) -> Result<EntryMeta, Corruption> {
        let text = fs::read(path).map_err(|_| Corruption::Missing(file_name(path)))?;
        let meta: EntryMeta = serde_json::from_slice(&text).map_err(|err| Corruption::BadRecord(err.to_string()))?;
        if &meta.key != key {
            return Err(Corruption::KeyMismatch);
        }
        Ok(meta)
    }

    /// Report a corrupt entry in one line and remove it.
    fn discard(&self, key: &StageKey, what: &str, corruption: &Corruption) {
        tracing::warn!("cache: {what} {} is corrupt ({corruption}); removed, rebuilding it", key.short());
        self.remove(key);
    }

    /// Store `tree` under `key`. The archive appears atomically (see [`output`]).
    pub fn save_tree(&self, key: &StageKey, stage: CachePoint, label: &str, tree: &Path) -> anyhow::Result<()> {
        let _lock = self.lock(key, LockMode::Exclusive)?;
        let mut tar = tar_command();
        tar.arg("-C").arg(tree).args(["-c", "."]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = tar.spawn().context("cannot start tar")?;
        let mut stdout = child.stdout.take().context("tar has no stdout")?;
        let archive = self.tree_archive(key);
        let published = output::publish_reader(&mut stdout, &archive);
        // Close our end first: if publishing failed midway, tar must see a broken pipe rather than
        // block forever on a pipe nobody reads.
        drop(stdout);
        if published.is_err() {
            let _ = child.kill();
        }
        let finished = child.wait_with_output().context("cannot wait for tar")?;
        let published = published?;
        if !finished.status.success() {
            let _ = fs::remove_file(&archive);
            bail!("tar of {} failed: {}", tree.display(), String::from_utf8_lossy(&finished.stderr).trim());
        }
        let meta = EntryMeta {
            key: key.clone(),
            stage,
            label: label.to_owned(),
            created: crate::clock::now(),
            size: published.size,
            sha256: Some(published.sha256),
            files: Vec::new(),
        };
        write_meta(&self.tree_meta(key), &meta)
    }

    /// Extract the snapshot `key` into the empty directory `tree`, verifying its checksum.
    /// A corrupt snapshot is removed and reported.
    pub fn restore_tree(&self, key: &StageKey, tree: &Path) -> anyhow::Result<()> {
        let lock = self.lock(key, LockMode::Shared)?;
        let meta = self.read_entry(&self.tree_meta(key), key)?;
        let archive = self.tree_archive(key);
        let mut input = fs::File::open(&archive).with_context(|| format!("cannot open {}", archive.display()))?;
        let mut tar = tar_command();
        tar.arg("-C").arg(tree).args(["-x", "-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped());
        let mut child = tar.spawn().context("cannot start tar")?;
        let mut stdin = child.stdin.take().context("tar has no stdin")?;
        let copied = copy_and_hash(&mut input, &mut stdin);
        drop(stdin);
        let finished = child.wait_with_output().context("cannot wait for tar")?;
        // A corrupt archive usually also makes tar fail: judge the checksum first so the bad
        // entry is dropped either way.
        let intact = matches!(&copied, Ok(digest) if meta.sha256.as_deref() == Some(digest.as_str()));
        if !intact {
            drop(lock);
            self.discard(key, "snapshot", &Corruption::ChecksumMismatch);
            bail!("cache entry {} is corrupt (checksum mismatch); it was removed, run again", archive.display());
        }
        if !finished.status.success() {
            bail!("restoring {} failed: {}", archive.display(), String::from_utf8_lossy(&finished.stderr).trim());
        }
        touch(&self.tree_meta(key));
        Ok(())
    }

    /// The stored outputs for `key`: (file name, path) pairs, if present and intact. A corrupt
    /// entry (unreadable record, missing or truncated file) is reported, removed and absent.
    /// The entry's shared lock stays held while the result lives, so `cache prune` cannot
    /// remove the files while a build copies them out.
    pub fn outputs(&self, key: &StageKey) -> Option<StoredOutputs> {
        let lock = self.lock(key, LockMode::Shared).ok()?;
        let (meta, dir) = (self.outputs_meta(key), self.outputs_dir(key));
        if !meta.exists() && !dir.exists() {
            return None;
        }
        match self.check_outputs(key) {
            Ok(files) => {
                touch(&meta);
                Some(StoredOutputs { files, _lock: lock })
            }
            Err(corruption) => {
                drop(lock);
                self.discard(key, "stored image", &corruption);
                None
            }
        }
    }

    fn check_outputs(&self, key: &StageKey) -> Result<Vec<(String, PathBuf)>, Corruption> {
        let meta = self.read_entry(&self.outputs_meta(key), key)?;
        if meta.files.is_empty() {
            return Err(Corruption::BadRecord("no files recorded".into()));
        }
        let dir = self.outputs_dir(key);
        let mut files = Vec::new();
        for stored in &meta.files {
            // Names come from the record: only plain file names may address a file.
            if stored.name.contains('/') || stored.name.starts_with('.') {
                return Err(Corruption::BadRecord(format!("file name {:?}", stored.name)));
            }
            let path = dir.join(&stored.name);
            let size = fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .ok_or_else(|| Corruption::Missing(stored.name.clone()))?
                .len();
            if size != stored.size {
                return Err(Corruption::SizeMismatch {
                    name: stored.name.clone(),
                    expected: stored.size,
                    actual: size,
                });
            }
            files.push((stored.name.clone(), path));
        }
        files.sort();
        Ok(files)
    }

    /// Store finished files (name, source path) under `key`.
    pub fn save_outputs(&self, key: &StageKey, label: &str, files: &[(String, PathBuf)]) -> anyhow::Result<()> {
        let _lock = self.lock(key, LockMode::Exclusive)?;
        let dir = self.outputs_dir(key);
        // The record goes first, so a reader never pairs an old record with new files.
        let _ = fs::remove_file(self.outputs_meta(key));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut size = 0;
        let mut stored = Vec::new();
        for (name, source) in files {
            let published = output::publish_file(source, &dir.join(name))?;
            size += published.size;
            stored.push(StoredFile { name: name.clone(), size: published.size });
        }
        let meta = EntryMeta {
            key: key.clone(),
            stage: CachePoint::Outputs,
            label: label.to_owned(),
            created: crate::clock::now(),
            size,
            sha256: None,
            files: stored,
        };
        write_meta(&self.outputs_meta(key), &meta)
    }

    /// Every entry, newest first. The key is taken from the record's file name, which must be a
    /// valid key; other files are ignored and a record naming another key is not listed.
    pub fn list(&self) -> anyhow::Result<Vec<EntryMeta>> {
        let mut entries = Vec::new();
        for sub in ["stages", "outputs"] {
            let dir = self.root.join(sub);
            for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let path = entry?.path();
                let Some(key) = record_key(&path) else { continue };
                match self.read_entry(&path, &key) {
                    Ok(meta) => entries.push(meta),
                    Err(corruption) => tracing::warn!("cache: entry {} is corrupt ({corruption})", key.short()),
                }
            }
        }
        entries.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.key.cmp(&b.key)));
        Ok(entries)
    }

    /// Every key with a record, intact or not (what `prune --all` removes).
    pub fn keys(&self) -> anyhow::Result<Vec<StageKey>> {
        let mut keys = Vec::new();
        for sub in ["stages", "outputs"] {
            let dir = self.root.join(sub);
            for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
                keys.extend(record_key(&entry?.path()));
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Remove one entry (tree or outputs). Only paths built from the validated key are touched.
    pub fn remove(&self, key: &StageKey) {
        let _ = fs::remove_file(self.tree_meta(key));
        let _ = fs::remove_file(self.tree_archive(key));
        let _ = fs::remove_file(self.outputs_meta(key));
        let _ = fs::remove_dir_all(self.outputs_dir(key));
    }

    /// Remove one entry unless a build is reading or writing it now; returns whether it went.
    pub fn remove_unless_busy(&self, key: &StageKey) -> anyhow::Result<bool> {
        let Some(_lock) = self.try_lock(key, LockMode::Exclusive, false)? else { return Ok(false) };
        self.remove(key);
        Ok(true)
    }

    /// Bytes used by the apt archive cache.
    pub fn apt_size(&self) -> u64 {
        walkdir::WalkDir::new(self.apt_archives())
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Empty the apt archive cache (the directory itself stays). A link in place of `apt` or
    /// `apt/archives` is refused: pruning never follows a link out of the cache.
    pub fn clear_apt(&self) -> anyhow::Result<()> {
        let dir = self.apt_archives();
        for own in [self.root.join("apt"), dir.clone()] {
            let real_dir = fs::symlink_metadata(&own).is_ok_and(|m| m.is_dir());
            if !real_dir {
                bail!("{}: not a directory of the cache (a link or a file): left alone", own.display());
            }
        }
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("deb") {
                fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A cache entry's stored outputs, its shared lock held until this is dropped.
pub struct StoredOutputs {
    files: Vec<(String, PathBuf)>,
    _lock: Flock<fs::File>,
}

impl std::ops::Deref for StoredOutputs {
    type Target = Vec<(String, PathBuf)>;
    fn deref(&self) -> &Self::Target {
        &self.files
    }
}

/// GNU tar keeping everything a root filesystem needs; zstd level 1 on all cores is fast enough
/// to sit on the critical path.
fn tar_command() -> Command {
    let mut tar = Command::new("tar");
    tar.args([
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
        "--sparse",
        "--use-compress-program=zstd -1 -T0",
    ]);
    tar
}

/// Copy `input` to `output` and hash all of `input`. A failing `output` (tar exited early) does
/// not stop the hashing, so the checksum verdict is about the archive alone.
fn copy_and_hash(input: &mut dyn Read, output: &mut dyn Write) -> io::Result<String> {
    let mut reader = HashingReader::new(io::BufReader::with_capacity(BUFFER_SIZE, input));
    if io::copy(&mut reader, output).is_err() {
        io::copy(&mut reader, &mut io::sink())?;
    }
    Ok(reader.finish())
}

fn write_meta(path: &Path, meta: &EntryMeta) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(meta)?;
    output::publish_bytes(&json, path)?;
    Ok(())
}

/// The key a record file names by its own name (`<key>.json`), if that is a valid key.
fn record_key(path: &Path) -> Option<StageKey> {
    if path.extension().and_then(|e| e.to_str()) != Some("json") {
        return None;
    }
    StageKey::parse(path.file_stem()?.to_str()?)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Mark an entry as used, so pruning by age keeps what builds still restore.
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Last use of an entry, seconds since the epoch.
pub fn last_used(cache: &StageCache, meta: &EntryMeta) -> u64 {
    let path = if meta.stage.is_tree() { cache.tree_meta(&meta.key) } else { cache.outputs_meta(&meta.key) };
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(meta.created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(dir: &Path) -> StageKey {
        let mut fingerprint = Fingerprint::new("install", None);
        fingerprint.add_path("elements", dir).unwrap();
        fingerprint.finish()
    }

    #[test]
    fn key_changes_with_content_mode_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("50-x");
        fs::write(&script, "echo a").unwrap();
        let first = key_of(dir.path());
        assert_eq!(first, key_of(dir.path()), "same input, same key");
        fs::write(&script, "echo b").unwrap();
        let second = key_of(dir.path());
        assert_ne!(first, second);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let third = key_of(dir.path());
        assert_ne!(second, third);
        fs::rename(&script, dir.path().join("60-x")).unwrap();
        assert_ne!(third, key_of(dir.path()));
    }

    #[test]
    fn key_is_chained_to_previous_stage() {
        let a = Fingerprint::new("install", None).finish();
        let previous = Fingerprint::new("root", None).finish();
        let b = Fingerprint::new("install", Some(&previous)).finish();
        assert_ne!(a, b);
    }

    #[test]
    fn labels_keep_inputs_apart() {
        let mut one = Fingerprint::new("s", None);
        one.add_str("ab", "c");
        let mut two = Fingerprint::new("s", None);
        two.add_str("a", "bc");
        assert_ne!(one.finish(), two.finish());
    }

    #[test]
    fn tree_round_trips_and_corruption_is_caught() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir(tree.path().join("etc")).unwrap();
        fs::write(tree.path().join("etc/hostname"), "box\n").unwrap();
        std::os::unix::fs::symlink("hostname", tree.path().join("etc/link")).unwrap();
        let key = Fingerprint::new("root", None).finish();
        assert!(!cache.has_tree(&key));
        cache.save_tree(&key, CachePoint::Base, "test", tree.path()).unwrap();
        assert!(cache.has_tree(&key));

        let restored = tempfile::tempdir().unwrap();
        cache.restore_tree(&key, restored.path()).unwrap();
        assert_eq!(fs::read_to_string(restored.path().join("etc/hostname")).unwrap(), "box\n");
        assert_eq!(fs::read_link(restored.path().join("etc/link")).unwrap(), Path::new("hostname"));
        assert_eq!(cache.list().unwrap().len(), 1);

        // Flip a byte in the archive: the restore must fail and drop the entry.
        let archive = cache.tree_archive(&key);
        let mut bytes = fs::read(&archive).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&archive, bytes).unwrap();
        let again = tempfile::tempdir().unwrap();
        assert!(cache.restore_tree(&key, again.path()).is_err());
        assert!(!cache.has_tree(&key));
    }

    #[test]
    fn failed_snapshot_write_does_not_hang() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        // A tree larger than a pipe buffer, so tar is mid-write when publishing fails.
        let tree = tempfile::tempdir().unwrap();
        let noise: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        fs::write(tree.path().join("big"), noise).unwrap();
        fs::remove_dir(cache_dir.path().join("stages")).unwrap();
        let key = Fingerprint::new("root", None).finish();
        let err = cache.save_tree(&key, CachePoint::Base, "test", tree.path()).unwrap_err();
        assert!(err.to_string().contains("stages"), "{err}");
    }

    fn saved_tree(cache: &StageCache) -> StageKey {
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("file"), "content").unwrap();
        let key = Fingerprint::new("root", None).finish();
        cache.save_tree(&key, CachePoint::Base, "test", tree.path()).unwrap();
        key
    }

    #[test]
    fn keys_are_64_hex_digits_only() {
        assert!(StageKey::parse(&"a".repeat(64)).is_some());
        for bad in ["../../x", "/etc", "", &"A".repeat(64), &"a".repeat(63), &format!("{}/", "a".repeat(63))] {
            assert!(StageKey::parse(bad).is_none(), "{bad:?}");
        }
        let record = r#"{"key":"../../victim","stage":"base","label":"x","created":0,"size":0}"#;
        assert!(serde_json::from_str::<EntryMeta>(record).is_err());
    }

    #[test]
    fn prune_cannot_reach_outside_the_cache() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), "x").unwrap();
        let cache_dir = outside.path().join("cache");
        let cache = StageCache::open(&cache_dir).unwrap();
        let planted = |name: &str, key: &str| {
            let record = format!(r#"{{"key":"{key}","stage":"outputs","label":"x","created":0,"size":0}}"#);
            fs::write(cache_dir.join("outputs").join(name), record).unwrap();
        };
        planted("evil.json", "../../victim");
        planted("x.json", victim.to_str().unwrap());
        planted(&format!("{}.json", "b".repeat(64)), "../../victim");
        for key in cache.keys().unwrap() {
            cache.remove_unless_busy(&key).unwrap();
        }
        assert!(cache.list().unwrap().is_empty());
        assert!(victim.join("keep").is_file(), "prune deleted outside the cache");
    }

    #[test]
    fn corrupt_snapshots_are_detected_and_removed() {
        type Corrupt = fn(&StageCache, &StageKey);
        let corruptions: [(&str, Corrupt); 4] = [
            ("truncated archive", |c, k| {
                let archive = c.tree_archive(k);
                let len = fs::metadata(&archive).unwrap().len();
                fs::File::options().write(true).open(&archive).unwrap().set_len(len / 2).unwrap();
            }),
            ("bad JSON", |c, k| fs::write(c.tree_meta(k), "{not json").unwrap()),
            ("missing archive", |c, k| fs::remove_file(c.tree_archive(k)).unwrap()),
            ("missing record", |c, k| fs::remove_file(c.tree_meta(k)).unwrap()),
        ];
        for (what, corrupt) in corruptions {
            let cache_dir = tempfile::tempdir().unwrap();
            let cache = StageCache::open(cache_dir.path()).unwrap();
            let key = saved_tree(&cache);
            assert!(cache.has_tree(&key), "{what}: intact before");
            corrupt(&cache, &key);
            assert!(!cache.has_tree(&key), "{what}: must count as absent");
            assert!(!cache.tree_archive(&key).exists() && !cache.tree_meta(&key).exists(), "{what}: not removed");
        }
    }

    #[test]
    fn corrupt_outputs_are_detected_and_removed() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let source = cache_dir.path().join("img");
        fs::write(&source, "qcow-bytes").unwrap();
        let key = Fingerprint::new("outputs", None).finish();
        cache.save_outputs(&key, "t", &[("x.qcow2".into(), source)]).unwrap();
        let path = cache.outputs(&key).unwrap()[0].1.clone();
        fs::write(&path, "qc").unwrap();
        assert!(cache.outputs(&key).is_none(), "a truncated image must not be restored");
        assert!(!cache.outputs_dir(&key).exists());
    }

    #[test]
    fn prune_leaves_outputs_a_build_is_copying_out() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let source = cache_dir.path().join("img");
        fs::write(&source, "qcow").unwrap();
        let key = Fingerprint::new("outputs", None).finish();
        cache.save_outputs(&key, "t", &[("x.qcow2".into(), source)]).unwrap();
        let stored = cache.outputs(&key).unwrap();
        assert!(!cache.remove_unless_busy(&key).unwrap(), "pruned while a build restores it");
        assert!(stored[0].1.is_file());
        drop(stored);
        assert!(cache.remove_unless_busy(&key).unwrap());
    }

    #[test]
    fn clearing_apt_never_follows_a_link_out_of_the_cache() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("keep.deb"), "x").unwrap();
        fs::remove_dir_all(cache.apt_archives()).unwrap();
        std::os::unix::fs::symlink(host.path(), cache.apt_archives()).unwrap();
        assert!(cache.clear_apt().unwrap_err().to_string().contains("not a directory of the cache"));
        assert!(host.path().join("keep.deb").is_file());
        let err = StageCache::open(cache_dir.path()).err().expect("a linked apt/archives is refused").to_string();
        assert!(err.contains("not a directory of the cache"), "{err}");
        assert!(!host.path().join("partial").exists(), "open created a directory through the link");
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_a_mixed_entry() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let key = saved_tree(&cache);
        std::thread::scope(|scope| {
            for worker in 0..4 {
                let (cache, key) = (&cache, &key);
                scope.spawn(move || {
                    for _ in 0..5 {
                        if worker % 2 == 0 {
                            let tree = tempfile::tempdir().unwrap();
                            fs::write(tree.path().join("file"), format!("writer {worker}")).unwrap();
                            cache.save_tree(key, CachePoint::Base, "test", tree.path()).unwrap();
                        } else {
                            assert!(cache.has_tree(key), "a reader saw a corrupt entry");
                            let out = tempfile::tempdir().unwrap();
                            cache.restore_tree(key, out.path()).unwrap();
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn outputs_round_trip() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(cache_dir.path()).unwrap();
        let source = cache_dir.path().join("img");
        fs::write(&source, "qcow").unwrap();
        let key = Fingerprint::new("outputs", None).finish();
        assert!(cache.outputs(&key).is_none());
        cache.save_outputs(&key, "t", &[("x.qcow2".into(), source)]).unwrap();
        let stored = cache.outputs(&key).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(fs::read_to_string(&stored[0].1).unwrap(), "qcow");
    }
}
