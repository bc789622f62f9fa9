//! `mesos-image upload`: put an image into Glance v2, authenticated by Keystone v3.
//!
//! Order of work: build the record (flags, recipe, file header) -> authenticate -> refuse a name
//! clash unless replacing -> create the record -> stream the data (direct, or stage + import)
//! -> wait for `active` -> compare size and hashes -> remove replaced images. Any failure after
//! the record exists deletes it, so no `queued` image is left behind.

pub mod auth;
pub mod clouds;
pub mod glance;
pub mod http;
pub mod record;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use auth::{AuthSettings, ConnectionOptions};
use glance::{should_fall_back_to_import, DataTarget, Glance, Image};
use record::ImageRecord;
use stream::Digests;

/// How the data reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `PUT /v2/images/{id}/file`; falls back to import when refused with 403.
    Direct,
    /// Stage then `glance-direct` import (interoperable import).
    Import,
}

/// One upload, fully decided.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub image: PathBuf,
    pub record: ImageRecord,
    pub replace: bool,
    pub method: Method,
    /// How long to wait for `active` after the data is in.
    pub timeout: Duration,
}

/// What was done.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub image: Image,
    pub method: Method,
    /// Ids of the images `--replace` removed.
    pub replaced: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("an image named `{name}` already exists ({ids}); pass --replace to replace it")]
    NameTaken { name: String, ids: String },
    #[error("cannot replace image {id} named `{name}`: it belongs to project {owner}, not to yours")]
    NotOurs { id: String, name: String, owner: String },
    #[error("--import: this Glance does not offer glance-direct import (it offers: {0})")]
    NoGlanceDirect(String),
    #[error("image {id}: Glance stored {stored}, but {path} has {local}")]
    Mismatch { id: String, path: PathBuf, stored: String, local: String },
    #[error("interrupted")]
    Interrupted,
}

/// Upload `job.image` with the given connection settings; `bar` shows the data transfer.
pub fn upload(connection: &ConnectionOptions, job: &UploadJob, bar: &ProgressBar) -> anyhow::Result<Uploaded> {
    let connection = connection.clone().with_cloud_config()?;
    let settings = AuthSettings::from_options(&connection)?;
    let http = http::client(&http::TlsOptions { cacert: connection.cacert.clone(), insecure: connection.insecure })?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(upload_with(http, settings, job, bar))
}

async fn upload_with(
    http: reqwest::Client,
    settings: AuthSettings,
    job: &UploadJob,
    bar: &ProgressBar,
) -> anyhow::Result<Uploaded> {
    let mut glance = Glance::connect(http, settings).await?;
    let name = &job.record.name;
    let existing = glance.images_named(name).await?;
    let to_replace = images_to_replace(name, &existing, job.replace, glance.project_id())?;

    let created = glance.create(&job.record.create_body()).await?;
    let id = created.id().to_owned();
    tracing::info!("created image {id} `{name}`; uploading {}", job.image.display());
    let outcome = tokio::select! {
        outcome = send_and_verify(&mut glance, &id, job, bar) => outcome,
        _ = tokio::signal::ctrl_c() => Err(UploadError::Interrupted.into()),
    };
    let (image, method) = match outcome {
        Ok(done) => done,
        Err(err) => {
            bar.abandon();
            return Err(remove_failed_record(&mut glance, &id, err).await);
        }
    };
    bar.finish_and_clear();

    for old in &to_replace {
        glance
            .delete(old)
            .await
            .with_context(|| format!("image {id} is uploaded, but the image it replaces, {old}, is still there"))?;
        tracing::info!("removed the replaced image {old}");
    }
    Ok(Uploaded { image, method, replaced: to_replace })
}

/// Delete the record of a failed upload; the upload's error stays the one reported.
async fn remove_failed_record(glance: &mut Glance, id: &str, err: anyhow::Error) -> anyhow::Error {
    match glance.delete(id).await {
        Ok(()) => {
            tracing::debug!("deleted the record {id} of the failed upload");
            err
        }
        Err(cleanup) => anyhow::anyhow!("{err:#}; deleting the failed image {id} failed too: {cleanup}"),
    }
}

async fn send_and_verify(
    glance: &mut Glance,
    id: &str,
    job: &UploadJob,
    bar: &ProgressBar,
) -> anyhow::Result<(Image, Method)> {
    let (digests, method) = match job.method {
        Method::Import => (stage_and_import(glance, id, job, bar, None).await?, Method::Import),
        Method::Direct => match glance.send_data(id, DataTarget::File, &job.image, bar).await {
            Ok(digests) => (digests, Method::Direct),
            Err(refusal) => {
                let methods = match glance.import_methods().await {
                    Ok(methods) => methods,
                    Err(err) => {
                        tracing::warn!("cannot ask Glance for its import methods: {:#}", anyhow::Error::from(err));
                        Vec::new()
                    }
                };
                if !should_fall_back_to_import(&refusal, &methods) {
                    return Err(refusal.into());
                }
                tracing::warn!("direct upload refused ({refusal}); staging and importing with glance-direct instead");
                (stage_and_import(glance, id, job, bar, Some(methods)).await?, Method::Import)
            }
        },
    };
    let image = glance.wait_until_active(id, job.timeout).await?;
    verify(&image, &digests, job)?;
    Ok((image, method))
}

async fn stage_and_import(
    glance: &mut Glance,
    id: &str,
    job: &UploadJob,
    bar: &ProgressBar,
    methods: Option<Vec<String>>,
) -> Result<Digests, anyhow::Error> {
    let methods = match methods {
        Some(methods) => methods,
        None => glance.import_methods().await?,
    };
    if !methods.iter().any(|m| m == "glance-direct") {
        let offered = if methods.is_empty() { "none".to_owned() } else { methods.join(", ") };
        return Err(UploadError::NoGlanceDirect(offered).into());
    }
    let digests = glance.send_data(id, DataTarget::Stage, &job.image, bar).await?;
    glance.import_staged(id).await?;
    Ok(digests)
}

/// Which existing images a clash means: none, or (with `--replace`) ours of that name.
pub fn images_to_replace(
    name: &str,
    existing: &[Image],
    replace: bool,
    project: Option<&str>,
) -> Result<Vec<String>, UploadError> {
    let live: Vec<&Image> = existing.iter().filter(|i| !matches!(i.status(), "deleted" | "pending_delete")).collect();
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
        (Some(algo), _) if algo != "sha512" => {
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

    fn job() -> UploadJob {
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
            method: Method::Direct,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn verification_compares_size_and_hashes() {
        let digests = Digests { bytes: 3, sha512: "s".into(), md5: "m".into() };
        let stored = |size: u64, sha: &str, md5: &str| {
            Image(
                json!({"id": "i", "size": size, "os_hash_algo": "sha512", "os_hash_value": sha, "checksum": md5})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        };
        assert!(verify(&stored(3, "s", "m"), &digests, &job()).is_ok());
        assert!(verify(&stored(4, "s", "m"), &digests, &job()).unwrap_err().to_string().contains("4 bytes"));
        assert!(verify(&stored(3, "t", "m"), &digests, &job()).unwrap_err().to_string().contains("sha512 t"));
        assert!(verify(&stored(3, "s", "n"), &digests, &job()).unwrap_err().to_string().contains("md5 n"));
    }
}
