//! Keystone v3: password, token and application-credential auth, the service catalog, re-auth.
//!
//! Settings are read from [`ConnectionOptions`] (connection.rs: flags, `OS_*`, clouds.yaml).

use reqwest::header::HeaderValue;
use serde_json::{json, Value};

use super::clouds::CloudsError;
use super::connection::{ConnectionOptions, Id};
use super::http::server_message;
use super::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Clouds(#[from] CloudsError),
    #[error("no auth URL: set OS_AUTH_URL, --os-auth-url or `auth_url` in clouds.yaml")]
    NoAuthUrl,
    #[error("{0}")]
    Incomplete(String),
    #[error("unsupported auth type `{0}` (supported: password, token, v3applicationcredential)")]
    UnsupportedType(String),
    #[error("authentication at {url} failed: {message}")]
    Rejected { url: String, message: String },
    #[error("cannot reach Keystone at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Keystone at {url} answered without a usable token: {why}")]
    BadResponse { url: String, why: String },
    #[error("no `image` endpoint with interface `{interface}`{region} in the service catalog (found: {found}); set --os-image-url to bypass the catalog")]
    NoImageEndpoint { interface: String, region: String, found: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum User {
    Id(String),
    Name { name: String, domain: Domain },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    ProjectId(String),
    ProjectName {
        name: String,
        domain: Domain,
    },
    Domain(Domain),
    /// Application credentials carry their own scope; asking for another one is an error.
    Implied,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Password { user: User, password: Secret },
    Token { token: Secret },
    AppCredentialId { id: String, secret: Secret },
    AppCredentialName { name: String, user: User, secret: Secret },
}

/// Everything needed to obtain (and re-obtain) a token and find the image endpoint.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub auth_url: String,
    pub method: Method,
    pub scope: Scope,
    pub region: Option<String>,
    pub interface: String,
    pub image_url: Option<String>,
}

impl AuthSettings {
    pub fn from_options(opts: &ConnectionOptions) -> Result<AuthSettings, AuthError> {
        let auth_url = opts.get(Id::AuthUrl).ok_or(AuthError::NoAuthUrl)?;
        let method = method_from(opts)?;
        let scope = match method {
            Method::AppCredentialId { .. } | Method::AppCredentialName { .. } => Scope::Implied,
            _ => scope_from(opts)?,
        };
        Ok(AuthSettings {
            auth_url: identity_v3_url(auth_url),
            method,
            scope,
            region: opts.get(Id::RegionName).map(str::to_owned),
            interface: normalise_interface(opts.get(Id::Interface).unwrap_or("public")),
            image_url: opts.get(Id::ImageUrl).map(str::to_owned),
        })
    }

    /// The JSON body of `POST /v3/auth/tokens`.
    pub fn token_request(&self) -> Value {
        let identity = match &self.method {
            Method::Password { user, password } => {
                let mut user = user_json(user);
                user["password"] = json!(password.expose());
                json!({"methods": ["password"], "password": {"user": user}})
            }
            Method::Token { token } => json!({"methods": ["token"], "token": {"id": token.expose()}}),
            Method::AppCredentialId { id, secret } => json!({
                "methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret.expose()}
            }),
            Method::AppCredentialName { name, user, secret } => json!({
                "methods": ["application_credential"],
                "application_credential": {"name": name, "user": user_json(user), "secret": secret.expose()}
            }),
        };
        let mut auth = json!({"identity": identity});
        let scope = match &self.scope {
            Scope::ProjectId(id) => Some(json!({"project": {"id": id}})),
            Scope::ProjectName { name, domain } => {
                Some(json!({"project": {"name": name, "domain": domain_json(domain)}}))
            }
            Scope::Domain(domain) => Some(json!({"domain": domain_json(domain)})),
            Scope::Implied => None,
        };
        if let Some(scope) = scope {
            auth["scope"] = scope;
        }
        json!({"auth": auth})
    }
}

fn method_from(opts: &ConnectionOptions) -> Result<Method, AuthError> {
    let kind = match opts.get(Id::AuthType).map(str::to_ascii_lowercase) {
        Some(t) => match t.as_str() {
            "password" | "v3password" => "password",
            "token" | "v3token" => "token",
            "v3applicationcredential" | "applicationcredential" | "application_credential" => "appcred",
            _ => return Err(AuthError::UnsupportedType(t)),
        },
        None if opts.get(Id::ApplicationCredentialSecret).is_some() => "appcred",
        None if opts.get(Id::Token).is_some() && opts.get(Id::Password).is_none() => "token",
        None => "password",
    };
    let missing = |what: &str| AuthError::Incomplete(format!("{what} auth needs {}", what_needed(what)));
    match kind {
        "password" => Ok(Method::Password {
            user: user_from(opts).ok_or_else(|| missing("password"))?,
            password: opts.secret(Id::Password).ok_or_else(|| missing("password"))?,
        }),
        "token" => Ok(Method::Token { token: opts.secret(Id::Token).ok_or_else(|| missing("token"))? }),
        _ => {
            let secret =
                opts.secret(Id::ApplicationCredentialSecret).ok_or_else(|| missing("application-credential"))?;
            if let Some(id) = opts.get(Id::ApplicationCredentialId) {
                return Ok(Method::AppCredentialId { id: id.to_owned(), secret });
            }
            let name = opts.get(Id::ApplicationCredentialName).ok_or_else(|| missing("application-credential"))?;
            let name = name.to_owned();
            let user = user_from(opts).ok_or_else(|| missing("application-credential"))?;
            Ok(Method::AppCredentialName { name, user, secret })
        }
    }
}

fn what_needed(kind: &str) -> &'static str {
    match kind {
        "password" => "a user (OS_USERNAME or OS_USER_ID) and OS_PASSWORD",
        "token" => "OS_TOKEN",
        _ => "OS_APPLICATION_CREDENTIAL_SECRET and OS_APPLICATION_CREDENTIAL_ID (or _NAME with a user)",
    }
}

fn user_from(opts: &ConnectionOptions) -> Option<User> {
    if let Some(id) = opts.get(Id::UserId) {
        return Some(User::Id(id.to_owned()));
    }
    let name = opts.get(Id::Username)?.to_owned();
    let domain = domain_from(Id::UserDomainId, Id::UserDomainName, opts);
    Some(User::Name { name, domain })
}

/// A specific domain, else the generic `OS_DOMAIN_*`, else `default` (what Keystone bootstraps).
fn domain_from(id: Id, name: Id, opts: &ConnectionOptions) -> Domain {
    [(id, true), (name, false), (Id::DomainId, true), (Id::DomainName, false)]
        .into_iter()
        .find_map(|(setting, is_id)| {
            let value = opts.get(setting)?.to_owned();
            Some(if is_id { Domain::Id(value) } else { Domain::Name(value) })
        })
        .unwrap_or_else(|| Domain::Id("default".to_owned()))
}

fn scope_from(opts: &ConnectionOptions) -> Result<Scope, AuthError> {
    if let Some(id) = opts.get(Id::ProjectId) {
        return Ok(Scope::ProjectId(id.to_owned()));
    }
    if let Some(name) = opts.get(Id::ProjectName) {
        let domain = domain_from(Id::ProjectDomainId, Id::ProjectDomainName, opts);
        return Ok(Scope::ProjectName { name: name.to_owned(), domain });
    }
    match (opts.get(Id::DomainId), opts.get(Id::DomainName)) {
        (Some(id), _) => Ok(Scope::Domain(Domain::Id(id.to_owned()))),
        (None, Some(name)) => Ok(Scope::Domain(Domain::Name(name.to_owned()))),
        (None, None) => Err(AuthError::Incomplete(
            "no project to scope the token to: set OS_PROJECT_NAME or OS_PROJECT_ID (images belong to projects)"
                .to_owned(),
        )),
    }
}

fn user_json(user: &User) -> Value {
    match user {
        User::Id(id) => json!({"id": id}),
        User::Name { name, domain } => json!({"name": name, "domain": domain_json(domain)}),
    }
}

fn domain_json(domain: &Domain) -> Value {
    match domain {
        Domain::Id(id) => json!({"id": id}),
        Domain::Name(name) => json!({"name": name}),
    }
}

/// `http://ks:5000`, `http://ks:5000/` and `http://ks:5000/v3/` all mean `http://ks:5000/v3`.
pub fn identity_v3_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v3")
    }
}

/// `publicURL` (keystone v2 habit) means `public`.
fn normalise_interface(interface: &str) -> String {
    interface.trim_end_matches("URL").to_ascii_lowercase()
}

/// One endpoint of the service catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub service_type: String,
    pub interface: String,
    pub region: Option<String>,
    pub url: String,
}

/// A token and what came with it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub project_id: Option<String>,
    pub catalog: Vec<Endpoint>,
}

/// Pick the image endpoint: matching interface, and region when one is set.
pub fn image_endpoint(catalog: &[Endpoint], interface: &str, region: Option<&str>) -> Result<String, AuthError> {
    catalog
        .iter()
        .find(|e| {
            e.service_type == "image"
                && e.interface == interface
                && region.is_none_or(|r| e.region.as_deref() == Some(r))
        })
        .map(|e| e.url.clone())
        .ok_or_else(|| AuthError::NoImageEndpoint {
            interface: interface.to_owned(),
            region: region.map(|r| format!(" in region `{r}`")).unwrap_or_default(),
            found: describe_image_endpoints(catalog),
        })
}

/// Regions holding an image endpoint of this interface, in catalog order, each once
/// (what `--all-regions` uploads to).
pub fn image_regions(catalog: &[Endpoint], interface: &str) -> Vec<String> {
    let mut regions: Vec<String> = Vec::new();
    for endpoint in catalog.iter().filter(|e| e.service_type == "image" && e.interface == interface) {
        if let Some(region) = endpoint.region.as_ref().filter(|r| !regions.contains(r)) {
            regions.push(region.clone());
        }
    }
    regions
}

fn describe_image_endpoints(catalog: &[Endpoint]) -> String {
    let found: Vec<String> = catalog
        .iter()
        .filter(|e| e.service_type == "image")
        .map(|e| format!("{}@{}", e.interface, e.region.as_deref().unwrap_or("-")))
        .collect();
    if found.is_empty() {
        "no image service".to_owned()
    } else {
        found.join(", ")
    }
}

fn parse_catalog(body: &Value) -> Vec<Endpoint> {
    let services = body["token"]["catalog"].as_array().cloned().unwrap_or_default();
    services
        .iter()
        .flat_map(|service| {
            let service_type = service["type"].as_str().unwrap_or_default().to_owned();
            let endpoints = service["endpoints"].as_array().cloned().unwrap_or_default();
            endpoints.into_iter().map(move |e| Endpoint {
                service_type: service_type.clone(),
                interface: e["interface"].as_str().unwrap_or_default().to_owned(),
                region: e["region_id"].as_str().or_else(|| e["region"].as_str()).map(str::to_owned),
                url: e["url"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// An authenticated session: can re-authenticate when Glance says the token is no longer valid.
pub struct Session {
    settings: AuthSettings,
    token: Token,
}

impl Session {
    pub async fn authenticate(http: &reqwest::Client, settings: AuthSettings) -> Result<Session, AuthError> {
        let token = request_token(http, &settings).await?;
        Ok(Session { settings, token })
    }

    pub async fn reauthenticate(&mut self, http: &reqwest::Client) -> Result<(), AuthError> {
        tracing::debug!("token rejected, authenticating again at {}", self.settings.auth_url);
        self.token = request_token(http, &self.settings).await?;
        Ok(())
    }

    /// The `X-Auth-Token` value, marked sensitive so HTTP debug output never shows it.
    pub fn token_header(&self) -> Result<HeaderValue, AuthError> {
        let mut value = HeaderValue::from_str(self.token.value.expose()).map_err(|_| AuthError::BadResponse {
            url: self.settings.auth_url.clone(),
            why: "the token is not a valid header value".to_owned(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    pub fn project_id(&self) -> Option<&str> {
        self.token.project_id.as_deref()
    }

    /// Regions of the catalog with an image endpoint of the configured interface.
    pub fn image_regions(&self) -> Vec<String> {
        image_regions(&self.token.catalog, &self.settings.interface)
    }

    /// Glance's base URL (no version suffix): the override, else the catalog's.
    pub fn image_endpoint(&self) -> Result<String, AuthError> {
        let url = match &self.settings.image_url {
            Some(url) => url.clone(),
            None => image_endpoint(&self.token.catalog, &self.settings.interface, self.settings.region.as_deref())?,
        };
        Ok(unversioned(&url))
    }
}

/// Catalog image URLs are often unversioned but some carry `/v2`; we add the version per call.
pub fn unversioned(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((base, last)) if last.starts_with("v2") || last == "v1" => base.to_owned(),
        _ => trimmed.to_owned(),
    }
}

async fn request_token(http: &reqwest::Client, settings: &AuthSettings) -> Result<Token, AuthError> {
    let url = format!("{}/auth/tokens", settings.auth_url);
    let transport = |source| AuthError::Transport { url: settings.auth_url.clone(), source };
    let response = http.post(&url).json(&settings.token_request()).send().await.map_err(transport)?;
    let status = response.status();
    let subject = response.headers().get("x-subject-token").cloned();
    let text = response.text().await.map_err(transport)?;
    tracing::debug!("POST {url} -> {status}");
    if !status.is_success() {
        return Err(AuthError::Rejected { url: settings.auth_url.clone(), message: server_message(status, &text) });
    }
    let bad = |why: &str| AuthError::BadResponse { url: settings.auth_url.clone(), why: why.to_owned() };
    let value =
        subject.and_then(|v| v.to_str().ok().map(Secret::new)).ok_or_else(|| bad("no X-Subject-Token header"))?;
    let body: Value = serde_json::from_str(&text).map_err(|_| bad("the body is not JSON"))?;
    Ok(Token {
        value,
        project_id: body["token"]["project"]["id"].as_str().map(str::to_owned),
        catalog: parse_catalog(&body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_opts() -> ConnectionOptions {
        ConnectionOptions::default()
            .with(Id::AuthUrl, "http://ks:5000/")
            .with(Id::Username, "demo")
            .with(Id::Password, "hunter2")
            .with(Id::ProjectName, "demo")
            .with(Id::UserDomainName, "Default")
    }

    #[test]
    fn password_body_has_user_domain_and_project_scope() {
        let settings = AuthSettings::from_options(&password_opts()).unwrap();
        assert_eq!(settings.auth_url, "http://ks:5000/v3");
        let body = settings.token_request();
        assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
        assert_eq!(body["auth"]["identity"]["password"]["user"]["domain"], json!({"name": "Default"}));
        assert_eq!(body["auth"]["identity"]["password"]["user"]["password"], json!("hunter2"));
        assert_eq!(body["auth"]["scope"]["project"], json!({"name": "demo", "domain": {"id": "default"}}));
    }

    #[test]
    fn application_credentials_send_no_scope() {
        let opts = ConnectionOptions::default()
            .with(Id::AuthUrl, "http://ks:5000/v3")
            .with(Id::ApplicationCredentialId, "abc")
            .with(Id::ApplicationCredentialSecret, "s3cret")
            .with(Id::ProjectName, "ignored");
        let body = AuthSettings::from_options(&opts).unwrap().token_request();
        assert_eq!(body["auth"]["identity"]["methods"], json!(["application_credential"]));
        assert_eq!(body["auth"]["identity"]["application_credential"]["id"], json!("abc"));
        assert!(body["auth"].get("scope").is_none());
    }

    #[test]
    fn token_auth_is_chosen_by_type_or_by_a_lone_token() {
        let opts = ConnectionOptions::default()
            .with(Id::AuthUrl, "http://ks/v3")
            .with(Id::Token, "tok")
            .with(Id::ProjectId, "p1");
        let settings = AuthSettings::from_options(&opts).unwrap();
        assert_eq!(settings.method, Method::Token { token: Secret::new("tok") });
        assert_eq!(settings.token_request()["auth"]["scope"], json!({"project": {"id": "p1"}}));
        let typed = opts.with(Id::AuthType, "v3token").with(Id::Password, "x");
        assert!(matches!(AuthSettings::from_options(&typed).unwrap().method, Method::Token { .. }));
    }

    #[test]
    fn missing_pieces_are_named() {
        let no_password = password_opts().with(Id::Password, "");
        let err = AuthSettings::from_options(&no_password).unwrap_err().to_string();
        assert!(err.contains("OS_PASSWORD"), "{err}");
        let no_project = password_opts().with(Id::ProjectName, "");
        let err = AuthSettings::from_options(&no_project).unwrap_err().to_string();
        assert!(err.contains("OS_PROJECT_NAME"), "{err}");
        let bad_type = password_opts().with(Id::AuthType, "saml2");
        assert!(AuthSettings::from_options(&bad_type).unwrap_err().to_string().contains("saml2"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let settings = AuthSettings::from_options(&password_opts()).unwrap();
        let shown = format!("{settings:?} {:?}", password_opts());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    fn endpoint(interface: &str, region: &str, url: &str) -> Endpoint {
        Endpoint {
            service_type: "image".into(),
            interface: interface.into(),
            region: Some(region.into()),
            url: url.into(),
        }
    }

    #[test]
    fn image_endpoint_honours_interface_and_region() {
        let catalog = vec![
            endpoint("public", "R1", "http://r1-public"),
            endpoint("internal", "R1", "http://r1-internal"),
            endpoint("public", "R2", "http://r2-public"),
        ];
        assert_eq!(image_endpoint(&catalog, "public", None).unwrap(), "http://r1-public");
        assert_eq!(image_endpoint(&catalog, "internal", Some("R1")).unwrap(), "http://r1-internal");
        assert_eq!(image_endpoint(&catalog, "public", Some("R2")).unwrap(), "http://r2-public");
        let err = image_endpoint(&catalog, "admin", Some("R2")).unwrap_err().to_string();
        assert!(err.contains("`admin`") && err.contains("R2") && err.contains("public@R1"), "{err}");
        assert_eq!(normalise_interface("internalURL"), "internal");
        assert_eq!(image_regions(&catalog, "public"), vec!["R1", "R2"]);
        assert_eq!(image_regions(&catalog, "internal"), vec!["R1"]);
    }

    #[test]
    fn versions_are_stripped_from_image_urls() {
        assert_eq!(unversioned("http://gl:9292/"), "http://gl:9292");
        assert_eq!(unversioned("http://gl:9292/v2"), "http://gl:9292");
        assert_eq!(unversioned("https://cloud/image/v2.1/"), "https://cloud/image");
        assert_eq!(unversioned("https://cloud/image"), "https://cloud/image");
    }
}
