//! One upload, fully decided: what to send (the image, its record), how (method, stores) and
//! what may fail for every target alike.

use std::path::PathBuf;
use std::time::Duration;

use super::record::ImageRecord;
use super::recorded::Recorded;

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
    /// The digests the image's manifest records: then the data is sent without hashing it.
    pub recorded: Option<Recorded>,
}

impl UploadJob {
    /// The image file's size (0 if it cannot be read: the upload then names the error).
    pub fn image_size(&self) -> u64 {
        std::fs::metadata(&self.image).map_or(0, |m| m.len())
    }
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
    /// What Glance stored (the file as read) is not what the build recorded: the file changed
    /// since the build, keeping its size, or the data was damaged on the way.
    #[error("{path} does not match its manifest (image {id}: Glance stored {stored}, {manifest} records {recorded})")]
    NotAsManifest { id: String, path: PathBuf, manifest: PathBuf, stored: String, recorded: String },
    #[error("interrupted")]
    Interrupted,
    #[error("{failed} of {total} targets failed: {names}")]
    TargetsFailed { failed: usize, total: usize, names: String },
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A job for unit tests: direct upload of `x.qcow2` to the default store.
    pub(crate) fn job() -> UploadJob {
        UploadJob {
            image: PathBuf::from("x.qcow2"),
            record: ImageRecord {
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
            recorded: None,
        }
    }
}
