//! The HTTP client (rustls, so no system OpenSSL) and reading what a server said in an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA bundle {path} (OS_CACERT/--os-cacert): cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("CA bundle {path} (OS_CACERT/--os-cacert) holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// TLS settings: extra trusted roots and whether to verify at all.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub cacert: Option<PathBuf>,
    pub insecure: bool,
}

/// The client used for Keystone and Glance. The system roots are trusted, plus `cacert`'s.
pub fn client(tls: &TlsOptions) -> Result<reqwest::Client, TlsError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("mesos-image/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &tls.cacert {
        for cert in read_ca_bundle(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if tls.insecure {
        tracing::warn!("--insecure: server certificates are not verified");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(TlsError::Client)
}

/// Every certificate of a PEM bundle; an error if there is none (a wrong path is a common mistake).
pub fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// One line saying what the server said: its JSON `message`, else the text of an HTML/plain body.
pub fn server_message(status: StatusCode, body: &str) -> String {
    let detail = json_message(body).unwrap_or_else(|| html_text(body));
    let reason = format!("{} {}", status.as_str(), status.canonical_reason().unwrap_or(""));
    let reason = reason.trim();
    let detail = detail.trim();
    if detail.is_empty() {
        format!("HTTP {reason}")
    } else {
        format!("HTTP {reason}: {detail}")
    }
}

fn json_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    // Keystone: {"error": {"message"}}; Glance/others: {"message"} or {"<Title>": {"message"}}.
    let direct = value["error"]["message"].as_str().or_else(|| value["message"].as_str());
    let nested = || value.as_object()?.values().find_map(|v| v["message"].as_str());
    direct.or_else(nested).map(str::to_owned)
}

fn html_text(body: &str) -> String {
    let mut text = String::with_capacity(body.len());
    let mut in_tag = false;
    let mut in_heading = false;
    let mut tag = String::new();
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag.trim_start_matches('/').to_ascii_lowercase();
                if name == "title" || name == "h1" {
                    // webob's <title> and <h1> only repeat the status line, which we print anyway.
                    in_heading = !tag.starts_with('/');
                }
                text.push(' ');
            }
            _ if in_tag => tag.push(c),
            _ if in_heading => {}
            _ => text.push(c),
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webob_html_errors_become_one_line() {
        let body = "<html>\n <head>\n  <title>413 Request Entity Too Large</title>\n </head>\n <body>\n  <h1>413 Request Entity Too Large</h1>\n  The incoming image is too large: The provided image is too large.<br /><br />\n\n\n\n </body>\n</html>";
        assert_eq!(
            server_message(StatusCode::PAYLOAD_TOO_LARGE, body),
            "HTTP 413 Payload Too Large: The incoming image is too large: The provided image is too large."
        );
    }

    #[test]
    fn keystone_json_errors_give_their_message() {
        let body = r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#;
        assert_eq!(
            server_message(StatusCode::UNAUTHORIZED, body),
            "HTTP 401 Unauthorized: The request you have made requires authentication."
        );
        assert_eq!(server_message(StatusCode::NOT_FOUND, ""), "HTTP 404 Not Found");
    }

    #[test]
    fn unreadable_or_empty_ca_bundles_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client(&TlsOptions { cacert: Some(missing.clone()), insecure: false }).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = client(&TlsOptions { cacert: Some(junk), insecure: false }).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
