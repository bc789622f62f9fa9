//! One target's upload: prepared (authenticated, capabilities checked, existing images listed),
//! decided (skip, refuse or go), delivered (record, data, verification, properties), and on any
//! failure or stop signal its record deleted.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::auth::AuthSettings;
use super::compare::{images_to_replace, is_identical, is_live, verify, MD5_PROPERTY, SHA256_PROPERTY};
use super::connection::{ConnectionOptions, Id};
use super::glance::{should_fall_back_to_import, DataTarget, Glance, GlanceError, Image};
use super::http;
use super::job::{Method, Stores, UploadError, UploadJob};
use super::stream::{Chunk, Digests, ImageSource, SharedDigests};

/// How long a failed target keeps trying to delete its record while Glance is unreachable.
const DELETE_PATIENCE: Duration = Duration::from_secs(60);
/// How often a running target looks for a stop signal.
const STOP_POLL: Duration = Duration::from_millis(100);

/// One place to upload to: a cloud (or the flags' connection) and a region.
#[derive(Debug, Clone)]
pub struct Target {
    /// `cloud/region`, as the table shows it.
    pub label: String,
    pub connection: ConnectionOptions,
}

/// Where a target's progress is shown.
pub trait Progress: Sync {
    /// A bar for `label`'s `total` bytes (hidden when nothing is drawn).
    fn bar(&self, label: &str, total: u64) -> indicatif::ProgressBar;
    /// Called once per target when it is done.
    fn done(&self, outcome: &Outcome);
}

/// Authenticate with one target's settings and find its image endpoint.
pub async fn connect(connection: &ConnectionOptions) -> anyhow::Result<Glance> {
    let settings = AuthSettings::from_options(connection)?;
    let tls = http::TlsOptions { cacert: connection.path(Id::Cacert), insecure: connection.switch(Id::Insecure) };
    let http = http::client(&tls)?;
    Ok(Glance::connect(http, settings).await?)
}

/// How a target ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Uploaded,
    /// An identical image (this id) is already there.
    Skipped(String),
    Failed(String),
}

/// What happened at one target.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: String,
    pub status: Status,
    /// The image as Glance last showed it (uploaded or skipped).
    pub image: Option<Image>,
    pub method: Option<Method>,
    /// Ids of the images `--replace`/`--force` removed.
    pub replaced: Vec<String>,
    pub seconds: f64,
    /// Bytes this target received from us (0 when skipped or fetched by Glance).
    pub bytes_sent: u64,
}

impl Outcome {
    pub fn image_id(&self) -> Option<&str> {
        self.image.as_ref().map(Image::id)
    }

    pub fn mib_per_second(&self) -> Option<f64> {
        let uploaded = self.status == Status::Uploaded;
        (uploaded && self.bytes_sent > 0 && self.seconds > 0.0)
            .then(|| self.bytes_sent as f64 / 1048576.0 / self.seconds)
    }
}

/// A failure before any record exists: nothing to clean up.
#[derive(Debug)]
pub struct Unprepared {
    target: Target,
    started: Instant,
    error: anyhow::Error,
}

/// A target that is authenticated and may receive the image.
pub struct Prepared {
    target: Target,
    glance: Glance,
    existing: Vec<Image>,
    started: Instant,
}

/// What a prepared target will do.
pub struct Decision {
    prepared: Prepared,
    action: Action,
}

enum Action {
    Skip(Image),
    Refuse(UploadError),
    Go { replace: Vec<String> },
}

/// Authenticate, check what `job` needs is offered, list images of that name.
pub async fn prepare(target: Target, job: &UploadJob) -> Result<Prepared, Unprepared> {
    let started = Instant::now();
    match prepare_steps(&target, job).await {
        Ok((glance, existing)) => Ok(Prepared { target, glance, existing, started }),
        Err(error) => Err(Unprepared { target, started, error }),
    }
}

async fn prepare_steps(target: &Target, job: &UploadJob) -> anyhow::Result<(Glance, Vec<Image>)> {
    let mut glance = connect(&target.connection).await?;
    check_offered(&mut glance, job).await?;
    let existing = glance.images_named(&job.record.name).await?;
    Ok((glance, existing))
}

/// The import method and stores asked for must be advertised by this Glance.
async fn check_offered(glance: &mut Glance, job: &UploadJob) -> anyhow::Result<()> {
    let method = match (job.method, &job.stores) {
        (Method::Direct, Stores::Default) => return Ok(()),
        (Method::Direct, _) => Method::GlanceDirect,
        (method, _) => method,
    };
    let name = method.import_name().unwrap_or("glance-direct");
    let methods = glance.import_methods().await?;
    if !methods.iter().any(|m| m == name) {
        return Err(UploadError::NotOffered {
            what: format!("import method {name}"),
            endpoint: "import",
            offered: listed(&methods),
        }
        .into());
    }
    if job.stores == Stores::Default {
        return Ok(());
    }
    let offered = glance.stores().await?;
    let what = match &job.stores {
        Stores::All => "--all-stores".to_owned(),
        Stores::Named(names) => format!("--stores {}", names.join(",")),
        Stores::Default => String::new(),
    };
    let Some(offered) = offered else {
        return Err(UploadError::NotOffered { what, endpoint: "stores", offered: "no multiple stores".into() }.into());
    };
    if let Stores::Named(names) = &job.stores {
        if let Some(missing) = names.iter().find(|n| !offered.contains(n)) {
            let what = format!("store {missing}");
            return Err(UploadError::NotOffered { what, endpoint: "stores", offered: listed(&offered) }.into());
        }
    }
    Ok(())
}

fn listed(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl Prepared {
    /// Whether an image of that name is there that the local file may be identical to.
    pub fn has_comparable_image(&self) -> bool {
        self.existing.iter().any(|i| i.status() == "active")
    }

    /// Skip (identical, unless forced), refuse (a clash without --replace) or go.
    pub fn decide(self, job: &UploadJob, local: Option<&Digests>) -> Decision {
        if !job.force {
            if let Some(same) = local.and_then(|local| self.existing.iter().find(|i| is_identical(i, local))) {
                let action = Action::Skip(same.clone());
                return Decision { prepared: self, action };
            }
        }
        let live: Vec<Image> = self.existing.iter().filter(|i| is_live(i)).cloned().collect();
        let action =
            match images_to_replace(&job.record.name, &live, job.replace || job.force, self.glance.project_id()) {
                Ok(replace) => Action::Go { replace },
                Err(err) => Action::Refuse(err),
            };
        Decision { prepared: self, action }
    }
}

impl Decision {
    /// Whether this target takes the image data from us (and so a fan-out channel).
    pub fn sends_data(&self, job: &UploadJob) -> bool {
        matches!(self.action, Action::Go { .. }) && job.method != Method::WebDownload
    }
}

/// Carry out a decision; never fails: what went wrong is the outcome's status.
pub async fn deliver(
    decision: Result<Decision, Unprepared>,
    job: &UploadJob,
    source: &ImageSource,
    shared: Option<(mpsc::Receiver<Chunk>, SharedDigests)>,
    local: Option<Digests>,
    progress: &dyn Progress,
) -> Outcome {
    let outcome = match decision {
        Err(unprepared) => failed(&unprepared.target, unprepared.started, &unprepared.error),
        Ok(Decision { prepared, action: Action::Refuse(err) }) => {
            failed(&prepared.target, prepared.started, &anyhow::Error::from(err))
        }
        Ok(Decision { prepared, action: Action::Skip(image) }) => Outcome {
            target: prepared.target.label.clone(),
            status: Status::Skipped(image.id().to_owned()),
            image: Some(image),
            method: None,
            replaced: Vec::new(),
            seconds: prepared.started.elapsed().as_secs_f64(),
            bytes_sent: 0,
        },
        Ok(Decision { prepared, action: Action::Go { replace } }) => {
            let mut run = Run { prepared, job, source, shared, local, replace, created: None };
            run.go(progress).await
        }
    };
    progress.done(&outcome);
    outcome
}

/// The error and its causes on one line, secrets masked (what the table and the log show).
fn error_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let folded: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    crate::redact::text(&folded.join(" | "))
}

fn failed(target: &Target, started: Instant, error: &anyhow::Error) -> Outcome {
    Outcome {
        target: target.label.clone(),
        status: Status::Failed(error_line(error)),
        image: None,
        method: None,
        replaced: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
        bytes_sent: 0,
    }
}

/// A target that goes ahead.
struct Run<'a> {
    prepared: Prepared,
    job: &'a UploadJob,
    source: &'a ImageSource,
    shared: Option<(mpsc::Receiver<Chunk>, SharedDigests)>,
    local: Option<Digests>,
    replace: Vec<String>,
    /// The record made, once made: deleted if anything after fails.
    created: Option<String>,
}

impl Run<'_> {
    async fn go(&mut self, progress: &dyn Progress) -> Outcome {
        let bar = progress.bar(&self.prepared.target.label, self.job.image_size());
        let result = tokio::select! {
            result = self.steps(&bar) => result,
            _ = stop_signal() => Err(UploadError::Interrupted.into()),
        };
        let started = self.prepared.started;
        let label = self.prepared.target.label.clone();
        // A body still held would keep the fan-out waiting for this target.
        self.shared = None;
        match result {
            Ok((image, method)) => {
                bar.finish_and_clear();
                let bytes_sent = if method == Method::WebDownload { 0 } else { image.size().unwrap_or(0) };
                Outcome {
                    target: label,
                    status: Status::Uploaded,
                    image: Some(image),
                    method: Some(method),
                    replaced: std::mem::take(&mut self.replace),
                    seconds: started.elapsed().as_secs_f64(),
                    bytes_sent,
                }
            }
            Err(err) => {
                bar.abandon();
                let err = self.remove_failed_record(err).await;
                failed(&self.prepared.target, started, &err)
            }
        }
    }

    async fn steps(&mut self, bar: &indicatif::ProgressBar) -> anyhow::Result<(Image, Method)> {
        let glance = &mut self.prepared.glance;
        let created = glance.create(&self.job.record.create_body()).await?;
        let id = created.id().to_owned();
        self.created = Some(id.clone());
        let name = &self.job.record.name;
        tracing::info!("{}: created image {id} `{name}`", self.prepared.target.label);
        let (digests, method) = self.send(&id, bar).await?;
        let glance = &mut self.prepared.glance;
        let image = glance.wait_until_active(&id, self.job.timeout).await?;
        verify(&image, &digests, self.job)?;
        if let Some(failed) = image.str("os_glance_failed_import").filter(|s| !s.is_empty()) {
            tracing::warn!("{}: image {id} is active, but not in store(s) {failed}", self.prepared.target.label);
        }
        let object = format!("images/{name}");
        let recorded = [(SHA256_PROPERTY, digests.sha256.as_str()), (MD5_PROPERTY, &digests.md5), (OBJECT, &object)];
        let image = record_hashes(glance, &image, &recorded, &self.prepared.target.label).await;
        // From here the image stays, whatever happens.
        self.created = None;
        for old in &self.replace {
            let removed = glance.delete(old).await;
            removed
                .with_context(|| format!("image {id} is uploaded, but the image it replaces, {old}, is still there"))?;
            tracing::info!("removed the replaced image {old}");
        }
        Ok((image, method))
    }

    /// Put the data in: direct, staged and imported, or fetched by Glance.
    async fn send(&mut self, id: &str, bar: &indicatif::ProgressBar) -> anyhow::Result<(Digests, Method)> {
        let job = self.job;
        let glance = &mut self.prepared.glance;
        match (job.method, &job.stores) {
            (Method::WebDownload, _) => {
                let url = job.url.as_deref().unwrap_or_default();
                glance.import(id, &import_body(job, json!({"name": "web-download", "uri": url}))).await?;
                let local = self.local.clone().ok_or_else(|| anyhow::anyhow!("no local digests to verify with"))?;
                Ok((local, Method::WebDownload))
            }
            (Method::GlanceDirect, _) | (Method::Direct, Stores::Named(_) | Stores::All) => {
                let digests = glance.send_data(id, DataTarget::Stage, self.source, &mut self.shared, bar).await?;
                glance.import(id, &import_body(job, json!({"name": "glance-direct"}))).await?;
                Ok((digests, Method::GlanceDirect))
            }
            (Method::Direct, Stores::Default) => {
                match glance.send_data(id, DataTarget::File, self.source, &mut self.shared, bar).await {
                    Ok(digests) => Ok((digests, Method::Direct)),
                    Err(refusal) => self.fall_back(id, refusal, bar).await,
                }
            }
        }
    }

    /// A refused direct upload: stage and import instead, where Glance offers it.
    async fn fall_back(
        &mut self,
        id: &str,
        refusal: GlanceError,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<(Digests, Method)> {
        // The shared body is spent: the retry reads the file privately.
        self.shared = None;
        let glance = &mut self.prepared.glance;
        let methods = glance.import_methods().await.unwrap_or_else(|err| {
            tracing::warn!("cannot ask Glance for its import methods: {:#}", anyhow::Error::from(err));
            Vec::new()
        });
        if !should_fall_back_to_import(&refusal, &methods) {
            return Err(refusal.into());
        }
        tracing::warn!("direct upload refused ({refusal}); staging and importing with glance-direct instead");
        let digests = glance.send_data(id, DataTarget::Stage, self.source, &mut None, bar).await?;
        glance.import(id, &import_body(self.job, json!({"name": "glance-direct"}))).await?;
        Ok((digests, Method::GlanceDirect))
    }

    /// Delete the record of a failed upload; the upload's error stays the one reported.
    async fn remove_failed_record(&mut self, err: anyhow::Error) -> anyhow::Error {
        let Some(id) = self.created.take() else { return err };
        match self.prepared.glance.delete_patiently(&id, DELETE_PATIENCE).await {
            Ok(()) => {
                tracing::debug!("deleted the record {id} of the failed upload");
                err
            }
            Err(cleanup) => anyhow::anyhow!("{err:#}; deleting the failed image {id} failed too: {cleanup}"),
        }
    }
}

/// Record the hashes as openstacksdk does; the image is verified already, so a refusal only
/// warns (the next run then compares `os_hash_value` instead).
async fn record_hashes(glance: &mut Glance, image: &Image, properties: &[(&str, &str)], label: &str) -> Image {
    match glance.set_properties_patiently(image.id(), properties, PATCH_PATIENCE).await {
        Ok(updated) => updated,
        Err(err) => {
            tracing::warn!("{label}: image {} is uploaded, but its sha256 property is not set: {err}", image.id());
            image.clone()
        }
    }
}

/// How long setting properties is retried on a server error (Glance's import task may still be
/// writing the image row: sqlite answers 500 "database is locked").
const PATCH_PATIENCE: Duration = Duration::from_secs(15);

/// openstacksdk's property naming where the data came from.
const OBJECT: &str = "owner_specified.openstack.object";

/// The body of `POST /v2/images/{id}/import`: the method, and the stores when chosen.
fn import_body(job: &UploadJob, method: Value) -> Value {
    let mut body = json!({"method": method});
    match &job.stores {
        Stores::Default => {}
        Stores::Named(stores) => body["stores"] = json!(stores),
        Stores::All => body["all_stores"] = json!(true),
    }
    if job.stores != Stores::Default {
        body["all_stores_must_succeed"] = json!(job.all_stores_must_succeed);
    }
    body
}

/// Resolves once a stop signal (SIGINT, SIGTERM, SIGHUP) has reached the tool.
async fn stop_signal() {
    while !crate::sandbox::interrupted() {
        tokio::time::sleep(STOP_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_bodies_name_the_stores_only_when_chosen() {
        let mut job = crate::upload::job::tests::job();
        assert_eq!(import_body(&job, json!({"name": "glance-direct"})), json!({"method": {"name": "glance-direct"}}));
        job.stores = Stores::Named(vec!["a".into(), "b".into()]);
        let body = import_body(&job, json!({"name": "glance-direct"}));
        assert_eq!(body["stores"], json!(["a", "b"]));
        assert_eq!(body["all_stores_must_succeed"], json!(true));
        job.stores = Stores::All;
        job.all_stores_must_succeed = false;
        let body = import_body(&job, json!({"name": "web-download", "uri": "http://x/i"}));
        assert_eq!(body["all_stores"], json!(true));
        assert_eq!(body["all_stores_must_succeed"], json!(false));
        assert_eq!(body["method"]["uri"], json!("http://x/i"));
    }
}
