//! Glance v2: image records, data upload (direct or staged for `glance-direct` import), polling.
//!
//! Every call goes through `send`, which authenticates again once if Glance answers 401
//! (an expired token during a long upload) and repeats the call with a fresh body.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use reqwest::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::auth::{AuthError, AuthSettings, Session};
use super::http::server_message;
use super::stream::{body_from, Chunk, Digests, FanOut, ImageSource, SharedDigests, STALL_LIMIT};

const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{what}: Glance said {message}")]
    Server { what: String, status: StatusCode, message: String },
    #[error("{what}: no answer from Glance at {base}")]
    Transport {
        what: String,
        base: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: unexpected answer from Glance: {why}")]
    BadResponse { what: String, why: String },
    #[error("{path}: cannot read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {id}: {why}")]
    NotActive { id: String, why: String },
}

impl GlanceError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            GlanceError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An image record as Glance returns it (all properties, extra ones as strings).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Image(pub Map<String, Value>);

impl Image {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn id(&self) -> &str {
        self.str("id").unwrap_or_default()
    }

    pub fn status(&self) -> &str {
        self.str("status").unwrap_or_default()
    }

    pub fn size(&self) -> Option<u64> {
        self.0.get("size").and_then(Value::as_u64)
    }
}

/// Where image data goes: the store directly, or the staging area for a later import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTarget {
    File,
    Stage,
}

impl DataTarget {
    fn path(self) -> &'static str {
        match self {
            DataTarget::File => "file",
            DataTarget::Stage => "stage",
        }
    }
}

pub struct Glance {
    http: reqwest::Client,
    session: Session,
    base: String,
}

impl Glance {
    /// Authenticate and find the image endpoint.
    pub async fn connect(http: reqwest::Client, settings: AuthSettings) -> Result<Glance, GlanceError> {
        let session = Session::authenticate(&http, settings).await?;
        let base = session.image_endpoint()?;
        tracing::debug!("image endpoint {base}");
        Ok(Glance { http, session, base })
    }

    pub fn project_id(&self) -> Option<&str> {
        self.session.project_id()
    }

    /// Regions of this session's catalog with an image endpoint (for `--all-regions`).
    pub fn image_regions(&self) -> Vec<String> {
        self.session.image_regions()
    }

    /// Send a request built by `build` (called again after a re-authentication).
    async fn send<F>(&mut self, what: &str, mut build: F) -> Result<Response, GlanceError>
    where
        F: FnMut(&reqwest::Client, HeaderValue) -> Result<RequestBuilder, GlanceError>,
    {
        let mut reauthenticated = false;
        loop {
            let request = build(&self.http, self.session.token_header()?)?;
            let response = request.send().await.map_err(|source| GlanceError::Transport {
                what: what.to_owned(),
                base: self.base.clone(),
                source,
            })?;
            tracing::debug!("{what} -> {}", response.status());
            if response.status() == StatusCode::UNAUTHORIZED && !reauthenticated {
                self.session.reauthenticate(&self.http).await?;
                reauthenticated = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.base)
    }

    /// Send, require a 2xx answer and parse its JSON body.
    async fn call_json<F>(&mut self, what: &str, build: F) -> Result<Value, GlanceError>
    where
        F: FnMut(&reqwest::Client, HeaderValue) -> Result<RequestBuilder, GlanceError>,
    {
        let response = require_success(what, self.send(what, build).await?).await?;
        let text = response.text().await.map_err(|e| bad(what, &e.to_string()))?;
        serde_json::from_str(&text).map_err(|_| bad(what, "the body is not JSON"))
    }

    /// Images visible to us with exactly this name (any owner, not deleted).
    pub async fn images_named(&mut self, name: &str) -> Result<Vec<Image>, GlanceError> {
        let url = self.url("images");
        let what = format!("listing images named `{name}`");
        let body = self
            .call_json(&what, |http, token| Ok(http.get(&url).query(&[("name", name)]).header("x-auth-token", token)))
            .await?;
        let images = body["images"].as_array().ok_or_else(|| bad(&what, "no `images` list"))?;
        Ok(images.iter().filter_map(|i| i.as_object().cloned().map(Image)).collect())
    }

    pub async fn create(&mut self, record: &Value) -> Result<Image, GlanceError> {
        let url = self.url("images");
        let what = "creating the image record";
        let body =
            self.call_json(what, |http, token| Ok(http.post(&url).header("x-auth-token", token).json(record))).await?;
        let image = body.as_object().cloned().map(Image).ok_or_else(|| bad(what, "not an object"))?;
        if image.id().is_empty() {
            return Err(bad(what, "no image id"));
        }
        Ok(image)
    }

    pub async fn get(&mut self, id: &str) -> Result<Image, GlanceError> {
        let url = self.url(&format!("images/{id}"));
        let what = format!("reading image {id}");
        let body = self.call_json(&what, |http, token| Ok(http.get(&url).header("x-auth-token", token))).await?;
        body.as_object().cloned().map(Image).ok_or_else(|| bad(&what, "not an object"))
    }

    pub async fn delete(&mut self, id: &str) -> Result<(), GlanceError> {
        let url = self.url(&format!("images/{id}"));
        let what = format!("deleting image {id}");
        let response = self.send(&what, |http, token| Ok(http.delete(&url).header("x-auth-token", token))).await?;
        require_success(&what, response).await.map(drop)
    }

    /// Import methods the server advertises (`GET /v2/info/import`); none if it cannot say.
    pub async fn import_methods(&mut self) -> Result<Vec<String>, GlanceError> {
        let url = self.url("info/import");
        let what = "asking for import methods";
        let response = self.send(what, |http, token| Ok(http.get(&url).header("x-auth-token", token))).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let response = require_success(what, response).await?;
        let body: Value = response.json().await.map_err(|e| bad(what, &e.to_string()))?;
        let methods = body["import-methods"]["value"].as_array().cloned().unwrap_or_default();
        Ok(methods.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
    }

    /// Store ids the server offers (`GET /v2/info/stores`); `None` when it has no multiple stores.
    pub async fn stores(&mut self) -> Result<Option<Vec<String>>, GlanceError> {
        let url = self.url("info/stores");
        let what = "asking for stores";
        let response = self.send(what, |http, token| Ok(http.get(&url).header("x-auth-token", token))).await?;
        if matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Ok(None);
        }
        let response = require_success(what, response).await?;
        let body: Value = response.json().await.map_err(|e| bad(what, &e.to_string()))?;
        let stores = body["stores"].as_array().ok_or_else(|| bad(what, "no `stores` list"))?;
        Ok(Some(stores.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect()))
    }

    /// `POST /v2/images/{id}/import` with `body` (method, stores, all_stores, ...).
    pub async fn import(&mut self, id: &str, body: &Value) -> Result<(), GlanceError> {
        let url = self.url(&format!("images/{id}/import"));
        let method = body["method"]["name"].as_str().unwrap_or("import");
        let what = format!("importing image {id} ({method})");
        let response =
            self.send(&what, |http, token| Ok(http.post(&url).header("x-auth-token", token).json(body))).await?;
        require_success(&what, response).await.map(drop)
    }

    /// Add (or replace) extra properties of an existing image (JSON patch).
    pub async fn set_properties(&mut self, id: &str, properties: &[(&str, &str)]) -> Result<Image, GlanceError> {
        let url = self.url(&format!("images/{id}"));
        let what = format!("setting properties of image {id}");
        let patch: Vec<Value> =
            properties.iter().map(|(k, v)| json!({"op": "add", "path": format!("/{k}"), "value": v})).collect();
        let body = self
            .call_json(&what, |http, token| {
                Ok(http
                    .patch(&url)
                    .header("x-auth-token", token)
                    .header(CONTENT_TYPE, "application/openstack-images-v2.1-json-patch")
                    .json(&patch))
            })
            .await?;
        body.as_object().cloned().map(Image).ok_or_else(|| bad(&what, "not an object"))
    }

    /// `set_properties`, repeated while Glance cannot be reached or answers 5xx, for `patience`.
    pub async fn set_properties_patiently(
        &mut self,
        id: &str,
        properties: &[(&str, &str)],
        patience: Duration,
    ) -> Result<Image, GlanceError> {
        let deadline = Instant::now() + patience;
        loop {
            match self.set_properties(id, properties).await {
                Err(err) if retryable(&err) && Instant::now() < deadline => {
                    tracing::debug!("{err}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                result => return result,
            }
        }
    }

    /// Delete, retrying while Glance cannot be reached or answers 5xx (a restarting server) for
    /// up to `patience`: a failed upload must not leave its record behind.
    pub async fn delete_patiently(&mut self, id: &str, patience: Duration) -> Result<(), GlanceError> {
        let deadline = Instant::now() + patience;
        loop {
            match self.delete(id).await {
                Ok(()) => return Ok(()),
                Err(GlanceError::Server { status, .. }) if status == StatusCode::NOT_FOUND => return Ok(()),
                Err(err) if retryable(&err) && Instant::now() < deadline => {
                    tracing::debug!("deleting image {id}: {err}; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Stream the image to the image's `file` or `stage` URL. The first request's body is
    /// `shared` (the fan-out's channel, taken) when there is one; a repeated request (after
    /// re-authentication) or a lone one reads the file itself, as a fan-out of one. A request
    /// the server refuses drops its body, which stops that read.
    pub async fn send_data(
        &mut self,
        id: &str,
        target: DataTarget,
        source: &ImageSource,
        shared: &mut Option<(mpsc::Receiver<Chunk>, SharedDigests)>,
        bar: &ProgressBar,
    ) -> Result<Digests, GlanceError> {
        let url = self.url(&format!("images/{id}/{}", target.path()));
        let path = source.path.as_path();
        let what = format!("uploading {} to image {id}", path.display());
        let size = std::fs::metadata(path).map_err(|source| GlanceError::Read { path: path.to_owned(), source })?.len();
        let mut read: Option<SharedDigests> = None;
        let mut own_reads = Vec::new();
        let started = Instant::now();
        let sent = self
            .send(&what, |http, token| {
                bar.set_position(0);
                let (rx, digests) = match shared.take() {
                    Some(shared) => shared,
                    None => {
                        let (fan_out, mut rx, digests) =
                            FanOut::start(source, 1, STALL_LIMIT, tokio::runtime::Handle::current());
                        own_reads.push(fan_out);
                        (rx.pop().ok_or_else(|| bad(&what, "no body"))?, digests)
                    }
                };
                read = Some(digests);
                // The server may answer before reading all data (403, 413) and then close the
                // connection; never hand that connection back to the pool for the next request.
                Ok(http
                    .put(&url)
                    .header("x-auth-token", token)
                    .header(CONNECTION, "close")
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .header("x-openstack-image-size", size)
                    .body(body_from(rx, bar.clone())))
            })
            .await;
        let response = sent?;
        if !response.status().is_success() {
            return Err(require_success(&what, response).await.err().unwrap_or_else(|| bad(&what, "refused")));
        }
        drop(response);
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!("{what}: {size} bytes sent in {seconds:.2} s ({:.1} MiB/s)", size as f64 / 1048576.0 / seconds);
        let mut digests = read.ok_or_else(|| bad(&what, "no request was sent"))?;
        let result = digests.wait_for(Option::is_some).await.map_err(|_| bad(&what, "the image reader stopped"))?;
        let result = result.clone();
        for fan_out in own_reads {
            // Each has ended (its body is complete or dropped); joining cannot wait long.
            tokio::task::spawn_blocking(move || fan_out.join()).await.ok();
        }
        match result {
            Some(Ok(digests)) => Ok(digests),
            Some(Err(why)) => Err(GlanceError::Read { path: path.to_owned(), source: std::io::Error::other(why) }),
            None => Err(bad(&what, "the image reader stopped")),
        }
    }

    /// Poll until the image is `active`; an error naming the state if it can no longer become so.
    pub async fn wait_until_active(&mut self, id: &str, timeout: Duration) -> Result<Image, GlanceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let image = self.get(id).await?;
            let not_active = |why: String| GlanceError::NotActive { id: id.to_owned(), why };
            match image.status() {
                "active" => return Ok(image),
                "killed" | "deleted" | "pending_delete" => {
                    return Err(not_active(format!("Glance set the status to `{}`", image.status())))
                }
                _ => {}
            }
            if let Some(stores) = image.str("os_glance_failed_import").filter(|s| !s.is_empty()) {
                let detail = self.last_task_message(id).await.unwrap_or_default();
                return Err(not_active(format!("import to store(s) {stores} failed{detail}")));
            }
            if Instant::now() >= deadline {
                return Err(not_active(format!(
                    "still `{}` after {} s (raise --timeout?)",
                    image.status(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The message of the image's newest task (import failures are explained there).
    async fn last_task_message(&mut self, id: &str) -> Option<String> {
        let url = self.url(&format!("images/{id}/tasks"));
        let body = self
            .call_json("reading import tasks", |http, token| Ok(http.get(&url).header("x-auth-token", token)))
            .await
            .ok()?;
        let tasks = body["tasks"].as_array()?;
        let newest = tasks.iter().max_by_key(|t| t["created_at"].as_str().unwrap_or_default().to_owned())?;
        newest["message"].as_str().filter(|m| !m.is_empty()).map(|m| format!(": {m}"))
    }
}

async fn require_success(what: &str, response: Response) -> Result<Response, GlanceError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    Err(GlanceError::Server { what: what.to_owned(), status, message: server_message(status, &text) })
}

fn bad(what: &str, why: &str) -> GlanceError {
    GlanceError::BadResponse { what: what.to_owned(), why: why.to_owned() }
}

/// Whether a failed call may succeed when repeated: no answer, or a server error.
fn retryable(err: &GlanceError) -> bool {
    match err {
        GlanceError::Transport { .. } => true,
        GlanceError::Server { status, .. } => status.is_server_error(),
        _ => false,
    }
}

/// Whether a refused direct upload should be retried as stage + `glance-direct` import.
pub fn should_fall_back_to_import(refusal: &GlanceError, methods: &[String]) -> bool {
    refusal.status() == Some(StatusCode::FORBIDDEN) && methods.iter().any(|m| m == "glance-direct")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: StatusCode) -> GlanceError {
        GlanceError::Server { what: "upload".into(), status, message: String::new() }
    }

    #[test]
    fn falls_back_only_on_403_with_glance_direct_advertised() {
        let with = vec!["web-download".to_owned(), "glance-direct".to_owned()];
        let without = vec!["web-download".to_owned()];
        assert!(should_fall_back_to_import(&refusal(StatusCode::FORBIDDEN), &with));
        assert!(!should_fall_back_to_import(&refusal(StatusCode::FORBIDDEN), &without));
        assert!(!should_fall_back_to_import(&refusal(StatusCode::PAYLOAD_TOO_LARGE), &with));
        assert!(!should_fall_back_to_import(&bad("x", "y"), &with));
    }
}
