//! Inputs that used to fail late (after the base stage) or be silently ignored, now refused
//! in preflight with one line: package names apt would read as options, option pairs that
//! contradict each other, settings the chosen mode does not read, and upload options that
//! were only judged after authenticating.

use crate::cli::build::BuildArgs;
use crate::cli::preflight::PreflightError;
use crate::cli::upload::UploadArgs;
use crate::element::dib_block_device::CONFIG_VAR;
use crate::plan::Plan;

/// The endpoint interfaces a Keystone catalog lists.
const INTERFACES: [&str; 6] = ["public", "internal", "admin", "publicURL", "internalURL", "adminURL"];

fn bad(culprit: impl Into<String>, problem: impl Into<String>) -> PreflightError {
    PreflightError { culprit: culprit.into(), problem: problem.into() }
}

/// `build`: package names, `--check-reproducible` with `--dry-run`, DIB_BLOCK_DEVICE_CONFIG
/// with a recipe.
pub fn build(args: &BuildArgs, plan: &Plan) -> Result<(), PreflightError> {
    for name in &args.packages {
        package_name(name.trim()).map_err(|problem| bad(format!("-p {name}"), problem))?;
    }
    if let Some(mirror) = &args.mirror {
        mirror_url(mirror).map_err(|problem| bad(format!("--mirror {mirror}"), problem))?;
    }
    if args.check_reproducible && args.dry_run {
        return Err(bad("--check-reproducible", "builds twice, --dry-run builds nothing: drop one of them"));
    }
    if plan.recipe.is_some() && plan.env.contains_key(CONFIG_VAR) {
        return Err(bad(
            CONFIG_VAR,
            "is read in element mode (disk-image-create's command line) only; a recipe describes its disk under image:",
        ));
    }
    Ok(())
}

/// A Debian package name (policy 5.6.1: lower-case letters, digits, `+ - .`, starting with a
/// letter or digit), optionally `:arch` and `=version`: nothing apt could take for an option.
pub fn package_name(spec: &str) -> Result<(), String> {
    let name = spec.split(['=', ':']).next().unwrap_or(spec);
    if name.starts_with('-') {
        return Err("starts with `-`: apt would read it as an option".to_owned());
    }
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !valid {
        return Err("not a Debian package name (lower-case letters, digits, `+`, `-`, `.`)".to_owned());
    }
    Ok(())
}

/// A mirror apt can fetch from: `http://HOST/...`, `https://HOST/...` or `file:///PATH`.
pub fn mirror_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL: name the archive as http://HOST/PATH, https://HOST/PATH or file:///PATH".to_owned());
    };
    match scheme {
        "http" | "https" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            if host.is_empty() || host.starts_with(':') {
                return Err("the URL names no host".to_owned());
            }
            Ok(())
        }
        "file" if rest.starts_with('/') => Ok(()),
        "file" => Err("a file:// mirror needs an absolute path (file:///PATH)".to_owned()),
        other => Err(format!("apt cannot fetch `{other}://` URLs: use http, https or file")),
    }
}

/// `upload`: what is judged only after authenticating otherwise.
pub fn upload(args: &UploadArgs) -> Result<(), PreflightError> {
    if let Some(interface) = args.connection.options.get(crate::upload::connection::Id::Interface) {
        if !INTERFACES.contains(&interface) {
            return Err(bad(format!("--os-interface/OS_INTERFACE {interface}"), "expected public, internal or admin"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_must_be_urls_apt_fetches() {
        for good in ["http://deb.example/debian", "https://u:p@h:8080/x", "file:///srv/mirror"] {
            mirror_url(good).unwrap();
        }
        for bad in ["notaurl", "ftp://x/y", "http:///debian", "file://relative", "http://:80/x"] {
            assert!(mirror_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_names_follow_debian_policy() {
        for good in ["vim", "g++", "libc6:amd64", "openjdk-8-jre=8u1", "0ad"] {
            package_name(good).unwrap();
        }
        for bad in ["-oops", "--allow-unauthenticated", "Vim", "a", "x y", "pkg;rm"] {
            assert!(package_name(bad).is_err(), "{bad}");
        }
    }
}
