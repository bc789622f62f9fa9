//! `mesos-image upload`: put an image into Glance v2, authenticated by Keystone v3, in every
//! target (cloud x region) at once.
//!
//! Order of work, all targets concurrently, each on its own: authenticate -> check the cloud
//! offers what was asked (import method, stores) -> look for images of that name (identical:
//! skipped; others: refused unless replacing). Then one read of the file feeds every target
//! ([`stream::FanOut`]); each creates its record, streams (direct, or stage + import), waits for
//! `active`, compares size and hashes, records its sha256 as openstacksdk does, and removes what it
//! replaces. Any failure (or a stop signal) after a record exists deletes that record; the other
//! targets are not affected.

pub mod auth;
pub mod clouds;
pub mod connection;
pub mod glance;
pub mod http;
pub mod record;
pub mod stream;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use auth::AuthSettings;
use connection::{ConnectionOptions, Id};
use glance::{Glance, Image};
use record::ImageRecord;
use stream::{Digests, FanOut};
pub use target::{Outcome, Status};

/// How the data reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `PUT /v2/images/{id}/file`; falls back to import when refused with 403.
    Direct,
    /// Stage then `glance-direct` import (interoperable import).
    GlanceDirect,
    /// Glance fetches the image from a URL itself (`web-download` import).
    WebDownload,
}

impl Method {
    /// The import method's name as Glance spells it.
    pub fn import_name(self) -> Option<&'static str> {
        match self {
            Method::Direct => None,
            Method::GlanceDirect => Some("glance-direct"),
            Method::WebDownload => Some("web-download"),
        }
    }
}

/// Which stores of one cloud receive the image (interoperable import only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stores {
    /// The cloud's default store.
    Default,
    Named(Vec<String>),
    All,
}

/// One upload, fully decided.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub image: PathBuf,
    pub record: ImageRecord,
    pub replace: bool,
    /// Upload even where an identical image exists (then replaced, as with `replace`).
    pub force: bool,
    pub method: Method,
    /// The URL Glance fetches (`web-download`).
    pub url: Option<String>,
    pub stores: Stores,
    /// Glance's `all_stores_must_succeed`: one store failing fails (and reverts) the import.
    pub all_stores_must_succeed: bool,
    /// How long to wait for `active` after the data is in.
    pub timeout: Duration,
}

impl UploadJob {
    /// The image file's size (0 if it cannot be read: the upload then names the error).
    pub fn image_size(&self) -> u64 {
        std::fs::metadata(&self.image).map_or(0, |m| m.len())
    }
}

/// One place to upload to: a cloud (or the flags' connection) and a region.
#[derive(Debug, Clone)]
pub struct Target {
    /// `cloud/region`, as the table shows it.
    pub label: String,
    pub connection: ConnectionOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("an image named `{name}` already exists ({ids}); pass --replace to replace it")]
    NameTaken { name: String, ids: String },
    #[error("cannot replace image {id} named `{name}`: it belongs to project {owner}, not to yours")]
    NotOurs { id: String, name: String, owner: String },
    #[error("{what}: this Glance does not offer it (/v2/info/{endpoint} offers: {offered})")]
    NotOffered { what: String, endpoint: &'static str, offered: String },
    #[error("image {id}: Glance stored {stored}, but {path} has {local}")]
    Mismatch { id: String, path: PathBuf, stored: String, local: String },
    #[error("interrupted")]
    Interrupted,
    #[error("{failed} of {total} targets failed: {names}")]
    TargetsFailed { failed: usize, total: usize, names: String },
}

/// The targets the settings name: each cloud (or the flags/`OS_*` alone) x each region (or the
/// cloud's own). `--all-regions` is resolved later, from each cloud's catalog.
pub fn targets(base: &ConnectionOptions, clouds: &[String], regions: &[String]) -> anyhow::Result<Vec<Target>> {
    let clouds: Vec<Option<&String>> = if clouds.is_empty() { vec![None] } else { clouds.iter().map(Some).collect() };
    let mut targets = Vec::new();
    for cloud in clouds {
        let mut connection = base.clone();
        if let Some(cloud) = cloud {
            connection.set(Id::Cloud, cloud.as_str());
        }
        let connection = connection.with_cloud_config()?;
        let cloud_label = cloud.map_or("-".to_owned(), String::clone);
        if regions.is_empty() {
            let region = connection.get(Id::RegionName).unwrap_or("-");
            targets.push(Target { label: format!("{cloud_label}/{region}"), connection: connection.clone() });
        }
        for region in regions {
            let label = format!("{cloud_label}/{region}");
            targets.push(Target { label, connection: connection.clone().with(Id::RegionName, region.as_str()) });
        }
    }
    // Missing or contradictory settings are bad input: say so before any target starts.
    for target in &targets {
        AuthSettings::from_options(&target.connection).with_context(|| target.label.clone())?;
    }
    Ok(targets)
}

/// Where a target's progress is shown.
pub trait Progress: Sync {
    /// A bar for `label`'s `total` bytes (hidden when nothing is drawn).
    fn bar(&self, label: &str, total: u64) -> indicatif::ProgressBar;
    /// Called once per target when it is done.
    fn done(&self, outcome: &Outcome);
}

/// Upload `job` to every target; one outcome per target (after `--all-regions`), in order.
pub fn upload(
    targets: Vec<Target>,
    all_regions: bool,
    job: &UploadJob,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Outcome>> {
    crate::sandbox::catch_stop_signals()?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let handle = runtime.handle().clone();
    runtime.block_on(upload_all(targets, all_regions, job, progress, handle))
}

async fn upload_all(
    targets: Vec<Target>,
    all_regions: bool,
    job: &UploadJob,
    progress: &dyn Progress,
    handle: tokio::runtime::Handle,
) -> anyhow::Result<Vec<Outcome>> {
    let targets = if all_regions { expand_regions(targets).await? } else { targets };
    let prepared = futures_util::future::join_all(targets.into_iter().map(|t| target::prepare(t, job))).await;

    let needs_local = job.method == Method::WebDownload
        || (!job.force && prepared.iter().any(|p| p.as_ref().is_ok_and(|p| p.has_comparable_image())));
    let local = if needs_local { Some(digest_file(job).await?) } else { None };

    let decided: Vec<_> = prepared.into_iter().map(|p| p.map(|p| p.decide(job, local.as_ref()))).collect();
    let senders = decided.iter().filter(|d| d.as_ref().is_ok_and(|d| d.sends_data(job))).count();
    let (fan_out, mut receivers, digests) = if senders > 0 {
        let (fan, rx, digests) = FanOut::start(&job.image, senders, stream::STALL_LIMIT, handle);
        (Some(fan), rx, Some(digests))
    } else {
        (None, Vec::new(), None)
    };
    let mut runs = Vec::new();
    for decision in decided {
        let shared = match &decision {
            Ok(d) if d.sends_data(job) => receivers.pop().zip(digests.clone()),
            _ => None,
        };
        runs.push(target::deliver(decision, job, shared, local.clone(), progress));
    }
    drop(receivers);
    let outcomes = futures_util::future::join_all(runs).await;
    if let Some(fan_out) = fan_out {
        // Every body is finished or dropped, so the reader thread has ended or ends now.
        tokio::task::spawn_blocking(move || fan_out.join()).await.ok();
    }
    Ok(outcomes)
}

/// Each target stands for every region of its cloud's catalog with an image endpoint.
async fn expand_regions(targets: Vec<Target>) -> anyhow::Result<Vec<Target>> {
    let mut expanded = Vec::new();
    for target in targets {
        let glance = connect(&target.connection).await.with_context(|| format!("{}: --all-regions", target.label))?;
        let regions = glance.image_regions();
        if regions.is_empty() {
            anyhow::bail!("{}: --all-regions: the catalog has no region with an image endpoint", target.label);
        }
        let cloud = target.connection.get(Id::Cloud).unwrap_or("-").to_owned();
        for region in regions {
            expanded.push(Target {
                label: format!("{cloud}/{region}"),
                connection: target.connection.clone().with(Id::RegionName, region),
            });
        }
    }
    Ok(expanded)
}

/// Authenticate with one target's settings and find its image endpoint.
pub async fn connect(connection: &ConnectionOptions) -> anyhow::Result<Glance> {
    let settings = AuthSettings::from_options(connection)?;
    let tls = http::TlsOptions { cacert: connection.path(Id::Cacert), insecure: connection.switch(Id::Insecure) };
    let http = http::client(&tls)?;
    Ok(Glance::connect(http, settings).await?)
}

async fn digest_file(job: &UploadJob) -> anyhow::Result<Digests> {
    let path = job.image.clone();
    let digests = tokio::task::spawn_blocking(move || stream::digest_file(&path)).await.context("hashing stopped")?;
    digests.with_context(|| format!("{}: cannot read", job.image.display()))
}

/// Which existing images a clash means: none, or (with `--replace`) ours of that name.
pub fn images_to_replace(
    name: &str,
    existing: &[Image],
    replace: bool,
    project: Option<&str>,
) -> Result<Vec<String>, UploadError> {
    let live: Vec<&Image> = existing.iter().filter(|i| is_live(i)).collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    if !replace {
        let ids = live.iter().map(|i| i.id()).collect::<Vec<_>>().join(", ");
        return Err(UploadError::NameTaken { name: name.to_owned(), ids });
    }
    if let Some(foreign) = live.iter().find(|i| i.str("owner") != project) {
        return Err(UploadError::NotOurs {
            id: foreign.id().to_owned(),
            name: name.to_owned(),
            owner: foreign.str("owner").unwrap_or("unknown").to_owned(),
        });
    }
    Ok(live.iter().map(|i| i.id().to_owned()).collect())
}

fn is_live(image: &Image) -> bool {
    !matches!(image.status(), "deleted" | "pending_delete")
}

/// The property openstacksdk records the sha256 of the uploaded data in.
pub const SHA256_PROPERTY: &str = "owner_specified.openstack.sha256";
/// The property openstacksdk records the md5 of the uploaded data in.
pub const MD5_PROPERTY: &str = "owner_specified.openstack.md5";

/// The hash `image` carries that can be compared with the local file: (what, stored, local).
fn comparable_hash<'a>(image: &'a Image, local: &'a Digests) -> Option<(&'static str, &'a str, &'a str)> {
    if let Some(sha256) = image.str(SHA256_PROPERTY) {
        return Some(("sha256", sha256, &local.sha256));
    }
    match (image.str("os_hash_algo"), image.str("os_hash_value")) {
        (Some("sha512"), Some(value)) => Some(("sha512", value, &local.sha512)),
        (Some("sha256"), Some(value)) => Some(("sha256", value, &local.sha256)),
        _ => None,
    }
}

/// Whether `image` holds exactly the local data (active, same size, same hash).
pub fn is_identical(image: &Image, local: &Digests) -> bool {
    image.status() == "active"
        && image.size() == Some(local.bytes)
        && comparable_hash(image, local).is_some_and(|(_, stored, local)| stored == local)
}

/// Require the stored size and hashes to match what was read from disk.
fn verify(image: &Image, digests: &Digests, job: &UploadJob) -> Result<(), UploadError> {
    let mismatch = |stored: String, local: String| UploadError::Mismatch {
        id: image.id().to_owned(),
        path: job.image.clone(),
        stored,
        local,
    };
    if image.size() != Some(digests.bytes) {
        let stored = image.size().map_or("no size".to_owned(), |s| format!("{s} bytes"));
        return Err(mismatch(stored, format!("{} bytes", digests.bytes)));
    }
    match (image.str("os_hash_algo"), image.str("os_hash_value")) {
        (Some("sha512"), Some(value)) if value != digests.sha512 => {
            return Err(mismatch(format!("sha512 {value}"), format!("sha512 {}", digests.sha512)))
        }
        (Some("sha256"), Some(value)) if value != digests.sha256 => {
            return Err(mismatch(format!("sha256 {value}"), format!("sha256 {}", digests.sha256)))
        }
        (Some(algo), _) if algo != "sha512" && algo != "sha256" => {
            tracing::debug!("Glance hashes with {algo}; comparing the md5 checksum only");
        }
        _ => {}
    }
    if let Some(checksum) = image.str("checksum").filter(|c| *c != digests.md5) {
        return Err(mismatch(format!("md5 {checksum}"), format!("md5 {}", digests.md5)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(id: &str, owner: &str, status: &str) -> Image {
        Image(json!({"id": id, "owner": owner, "status": status}).as_object().unwrap().clone())
    }

    #[test]
    fn a_clash_is_refused_without_replace() {
        let existing = vec![image("a", "p1", "active")];
        let err = images_to_replace("u", &existing, false, Some("p1")).unwrap_err().to_string();
        assert!(err.contains("`u`") && err.contains("a") && err.contains("--replace"), "{err}");
        assert_eq!(images_to_replace("u", &[], false, Some("p1")).unwrap(), Vec::<String>::new());
        assert!(images_to_replace("u", &[image("d", "p1", "deleted")], false, Some("p1")).unwrap().is_empty());
    }

    #[test]
    fn replace_takes_only_our_own_images() {
        let ours = vec![image("a", "p1", "active"), image("b", "p1", "queued")];
        assert_eq!(images_to_replace("u", &ours, true, Some("p1")).unwrap(), vec!["a", "b"]);
        let mixed = vec![image("a", "p1", "active"), image("c", "p2", "active")];
        let err = images_to_replace("u", &mixed, true, Some("p1")).unwrap_err().to_string();
        assert!(err.contains("image c") && err.contains("p2"), "{err}");
    }

    pub(crate) fn job() -> UploadJob {
        UploadJob {
            image: PathBuf::from("x.qcow2"),
            record: record::ImageRecord {
                name: "x".into(),
                disk_format: "qcow2".into(),
                container_format: "bare".into(),
                visibility: "private".into(),
                min_disk: None,
                min_ram: None,
                tags: vec![],
                properties: Default::default(),
                recipe: None,
            },
            replace: false,
            force: false,
            method: Method::Direct,
            url: None,
            stores: Stores::Default,
            all_stores_must_succeed: true,
            timeout: Duration::from_secs(1),
        }
    }

    fn digests() -> Digests {
        Digests { bytes: 3, sha512: "s".into(), md5: "m".into(), sha256: "h".into() }
    }

    fn stored(value: serde_json::Value) -> Image {
        Image(value.as_object().unwrap().clone())
    }

    #[test]
    fn verification_compares_size_and_hashes() {
        let digests = digests();
        let image = |size: u64, sha: &str, md5: &str| {
            stored(json!({"id": "i", "size": size, "os_hash_algo": "sha512", "os_hash_value": sha, "checksum": md5}))
        };
        assert!(verify(&image(3, "s", "m"), &digests, &job()).is_ok());
        assert!(verify(&image(4, "s", "m"), &digests, &job()).unwrap_err().to_string().contains("4 bytes"));
        assert!(verify(&image(3, "t", "m"), &digests, &job()).unwrap_err().to_string().contains("sha512 t"));
        assert!(verify(&image(3, "s", "n"), &digests, &job()).unwrap_err().to_string().contains("md5 n"));
    }

    #[test]
    fn identical_means_active_same_size_and_same_hash() {
        let local = digests();
        let by_glance = stored(json!({"status": "active", "size": 3, "os_hash_algo": "sha512", "os_hash_value": "s"}));
        assert!(is_identical(&by_glance, &local));
        let by_sdk = stored(json!({"status": "active", "size": 3, SHA256_PROPERTY: "h", "os_hash_algo": "md5"}));
        assert!(is_identical(&by_sdk, &local));
        let other = stored(json!({"status": "active", "size": 3, SHA256_PROPERTY: "x"}));
        assert!(!is_identical(&other, &local));
        let queued = stored(json!({"status": "queued", "size": 3, "os_hash_algo": "sha512", "os_hash_value": "s"}));
        assert!(!is_identical(&queued, &local));
        let no_hash = stored(json!({"status": "active", "size": 3}));
        assert!(!is_identical(&no_hash, &local));
    }
}
