//! Which distribution mirror a build uses.
//!
//! In order: `--mirror`, `DIB_DISTRIBUTION_MIRROR`, the recipe's `mirror`, a default an
//! element's `environment.d` exported, and finally, only when the target distro is the build
//! host's own distro, the host's apt sources for the main archive. No mirror host is ever
//! written into the project: it always comes from the user or the host.

use std::path::Path;

/// One file of a mirror, by curl as the root stage's downloads, so proxies and file:// mirrors
/// work alike. The error is curl's last line.
pub fn fetch(url: &str, max_seconds: u32) -> Result<Vec<u8>, String> {
    let output = std::process::Command::new("curl")
        .args(["-fsSL", "--retry", "2", "--connect-timeout", "10", "--max-time", &max_seconds.to_string(), url])
        .output()
        .map_err(|err| format!("cannot run curl: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().last().unwrap_or("curl failed").trim().to_owned());
    }
    Ok(output.stdout)
}

/// The candidates, most important first.
#[derive(Debug, Clone, Default)]
pub struct MirrorSources<'a> {
    pub flag: Option<&'a str>,
    pub env: Option<&'a str>,
    pub recipe: Option<&'a str>,
    pub element_default: Option<&'a str>,
}

/// What we know about the build host.
#[derive(Debug, Clone, Default)]
pub struct HostDistro {
    /// `ID` from `/etc/os-release`.
    pub id: Option<String>,
    /// The main archive URI from the host's apt sources.
    pub archive: Option<String>,
}

impl HostDistro {
    /// Read `/etc/os-release` and the host's apt sources.
    pub fn detect() -> HostDistro {
        let id = std::fs::read_to_string("/etc/os-release").ok().and_then(|text| os_release_id(&text));
        HostDistro { id, archive: host_archive_uri(Path::new("/etc/apt")) }
    }
}

/// Pick the mirror for `distro`; `None` when nothing names one.
pub fn resolve(sources: &MirrorSources, distro: &str, host: &HostDistro) -> Option<String> {
    let explicit = [sources.flag, sources.env, sources.recipe, sources.element_default]
        .into_iter()
        .flatten()
        .find(|value| !value.trim().is_empty());
    if let Some(mirror) = explicit {
        return Some(mirror.trim().to_owned());
    }
    if host.id.as_deref() == Some(distro) {
        return host.archive.clone();
    }
    None
}

/// `ID=` of an os-release file, unquoted.
pub fn os_release_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("ID="))
        .map(|value| value.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .filter(|id| !id.is_empty())
}

/// The first main-archive URI in `<apt_dir>/sources.list`, then `sources.list.d/*.list` and
/// `*.sources` in name order.
pub fn host_archive_uri(apt_dir: &Path) -> Option<String> {
    let mut files = vec![apt_dir.join("sources.list")];
    if let Ok(entries) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut extra: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        extra.sort();
        files.extend(extra);
    }
    files.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => archive_from_deb822(&text),
            Some("list") => archive_from_one_line(&text),
            _ => None,
        }
    })
}

/// A security archive is never the main archive.
fn is_security(uri: &str, suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates") || uri.trim_end_matches('/').ends_with("-security")
}

/// First `URIs:` entry of an enabled `deb` stanza of a deb822 `.sources` file.
pub fn archive_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        let types = field("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb") || field("Enabled").is_some_and(|v| v == "no") {
            continue;
        }
        let suites = field("Suites").unwrap_or_default();
        let Some(uri) = field("URIs").and_then(|uris| uris.split_whitespace().next().map(str::to_owned)) else {
            continue;
        };
        if suites.split_whitespace().all(|suite| is_security(&uri, suite)) {
            continue;
        }
        return Some(uri);
    }
    None
}

/// First `deb URI suite ...` line of a one-line-style `sources.list`.
pub fn archive_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb ")?.trim_start();
        // Skip `[arch=amd64 signed-by=...]` options.
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']')?.1.trim_start(),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let suite = words.next()?;
        (!is_security(uri, suite)).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb deb-src\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

    #[test]
    fn deb822_skips_security_and_takes_first_uri() {
        assert_eq!(archive_from_deb822(DEB822).as_deref(), Some("http://mirror.example/debian"));
        let disabled = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nEnabled: no\n\nTypes: deb\nURIs: http://b.example/debian\nSuites: bookworm\n";
        assert_eq!(archive_from_deb822(disabled).as_deref(), Some("http://b.example/debian"));
        assert_eq!(archive_from_deb822("Types: deb-src\nURIs: http://a.example/\nSuites: x\n"), None);
    }

    #[test]
    fn one_line_sources_skip_comments_src_options_and_security() {
        let text = "# deb http://old.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb http://security.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/ubuntu trusty main\n";
        assert_eq!(archive_from_one_line(text).as_deref(), Some("http://mirror.example/ubuntu"));
    }

    #[test]
    fn os_release_id_is_unquoted() {
        assert_eq!(os_release_id("NAME=\"Debian\"\nID=debian\n").as_deref(), Some("debian"));
        assert_eq!(os_release_id("ID=\"ubuntu\"\n").as_deref(), Some("ubuntu"));
    }

    #[test]
    fn explicit_sources_win_in_order_and_host_only_for_same_distro() {
        let host = HostDistro { id: Some("debian".into()), archive: Some("http://host.example/debian".into()) };
        let all = MirrorSources {
            flag: Some("http://flag.example"),
            env: Some("http://env.example"),
            recipe: Some("http://recipe.example"),
            element_default: None,
        };
        assert_eq!(resolve(&all, "debian", &host).as_deref(), Some("http://flag.example"));
        let env_only = MirrorSources {
            env: Some("http://env.example"),
            recipe: Some("http://recipe.example"),
            ..Default::default()
        };
        assert_eq!(resolve(&env_only, "debian", &host).as_deref(), Some("http://env.example"));
        let none = MirrorSources::default();
        assert_eq!(resolve(&none, "debian", &host).as_deref(), Some("http://host.example/debian"));
        assert_eq!(resolve(&none, "ubuntu", &host), None);
    }

    #[test]
    fn host_archive_reads_sources_list_d_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let list_d = dir.path().join("sources.list.d");
        std::fs::create_dir(&list_d).unwrap();
        std::fs::write(list_d.join("b.sources"), DEB822).unwrap();
        std::fs::write(list_d.join("a.list.disabled"), "deb http://disabled.example/debian bookworm main\n").unwrap();
        assert_eq!(host_archive_uri(dir.path()).as_deref(), Some("http://mirror.example/debian"));
        std::fs::write(dir.path().join("sources.list"), "deb http://first.example/debian bookworm main\n").unwrap();
        assert_eq!(host_archive_uri(dir.path()).as_deref(), Some("http://first.example/debian"));
    }
}
