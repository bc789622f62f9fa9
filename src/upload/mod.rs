//! `mesos-image upload`: put an image into Glance v2, authenticated by Keystone v3, in every
//! target (cloud x region) at once.
//!
//! Order of work, all targets concurrently, each on its own: authenticate -> check the cloud
//! offers what was asked (import method, stores) -> look for images of that name (identical:
//! skipped; others: refused unless replacing). Then one read of the file feeds every target
//! ([`stream::FanOut`]); each creates its record, streams (direct, or stage + import), waits for
//! `active`, compares size and hashes, records its sha256 as openstacksdk does, and removes what it
//! replaces. The digests compared are the ones the image's manifest records
//! ([`recorded`]): the file is then only read to be sent, and not at all where every target
//! holds it already. Without them the one read also hashes. Any failure (or a stop signal) after a record exists deletes that record; the other
//! targets are not affected.

pub mod auth;
pub mod clouds;
pub mod compare;
pub mod connection;
pub mod glance;
pub mod http;
pub mod job;
pub mod record;
pub mod recorded;
pub mod secret;
pub mod stream;
pub mod target;

use anyhow::Context;

use auth::AuthSettings;
use connection::{ConnectionOptions, Id};
use stream::{Digests, FanOut, ImageSource};

pub use compare::{images_to_replace, is_identical, MD5_PROPERTY, SHA256_PROPERTY};
pub use job::{Method, Stores, UploadError, UploadJob};
pub use target::{connect, Outcome, Progress, Status, Target};

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

    let source = ImageSource::new(job.image.clone(), job.recorded.as_ref().map(|r| r.digests.clone()));
    let needs_local = job.method == Method::WebDownload
        || (!job.force && prepared.iter().any(|p| p.as_ref().is_ok_and(|p| p.has_comparable_image())));
    let local = if needs_local { Some(digests_of(&source).await?) } else { None };

    let decided: Vec<_> = prepared.into_iter().map(|p| p.map(|p| p.decide(job, local.as_ref()))).collect();
    let senders = decided.iter().filter(|d| d.as_ref().is_ok_and(|d| d.sends_data(job))).count();
    let (fan_out, mut receivers, digests) = if senders > 0 {
        let (fan, rx, digests) = FanOut::start(&source, senders, stream::STALL_LIMIT, handle);
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
        runs.push(target::deliver(decision, job, &source, shared, local.clone(), progress));
    }
    drop(receivers);
    let outcomes = futures_util::future::join_all(runs).await;
    if let Some(fan_out) = fan_out {
        // Every body is finished or dropped, so the reader thread has ended or ends now.
        tokio::task::spawn_blocking(move || fan_out.join()).await.ok();
    }
    // The figure bench/upload.sh and tests/upload.rs read: what every read of the file took.
    tracing::info!("{}: {} bytes of image data read in all", job.image.display(), source.bytes_read());
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

/// The image's size and digests, to compare with the images already there.
async fn digests_of(source: &ImageSource) -> anyhow::Result<Digests> {
    let reader = source.clone();
    let digests = tokio::task::spawn_blocking(move || reader.digests()).await.context("hashing stopped")?;
    digests.with_context(|| format!("{}: cannot read", source.path.display()))
}
