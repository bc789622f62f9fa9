//! The installed packages of a tree, read from its dpkg status file (`var/lib/dpkg/status`):
//! the one list the JSON manifest, `/etc/dib-manifests/dib-packages` and the SBOM are made from.
//!
//! Read as data, not with the host's `dpkg-query --admindir`: the host's dpkg prints
//! `${binary:Package}` qualified with the architecture for every package that is not of the host's
//! own (and for every `Multi-Arch: same` one), so an arm64 tree built on amd64 was listed as
//! `linux-image-cloud-arm64:arm64`, `bash:arm64`, ... and no check by name found them. Here the name
//! is dpkg's plain `Package` and the architecture its own field.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::Context;

/// The status file inside a tree.
pub const STATUS_FILE: &str = "var/lib/dpkg/status";

/// One installed package, as its status stanza gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledDeb {
    /// The plain package name, never `name:arch`.
    pub name: String,
    pub version: String,
    /// `arm64`, `amd64`, `all`, ... (empty if the stanza has none).
    pub architecture: String,
    /// The `Source` field as written (`foo`, `foo (1.2-3)`), if any.
    pub source: Option<String>,
}

/// The installed packages of `tree`, sorted by name and architecture; empty for a tree without
/// dpkg.
pub fn installed(tree: &Path) -> anyhow::Result<Vec<InstalledDeb>> {
    let path = tree.join(STATUS_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(parse(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The stanzas of a status file whose package is unpacked and configured (`Status: ... installed`:
/// held packages count, removed ones keeping only their configuration do not).
pub fn parse(status: &str) -> Vec<InstalledDeb> {
    let mut debs: Vec<InstalledDeb> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let mut fields = control_fields(stanza);
            if !fields.get("Status").is_some_and(|s| s.ends_with(" installed")) {
                return None;
            }
            Some(InstalledDeb {
                name: fields.remove("Package")?,
                version: fields.remove("Version")?,
                architecture: fields.remove("Architecture").unwrap_or_default(),
                source: fields.remove("Source").filter(|s| !s.is_empty()),
            })
        })
        .collect();
    debs.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    debs
}

/// First-line values of a deb822 stanza's fields (continuation lines dropped).
pub fn control_fields(stanza: &str) -> BTreeMap<String, String> {
    stanza
        .lines()
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an arm64 tree's status holds; the host's dpkg-query listed these as `name:arm64`.
    const ARM64_STATUS: &str = "Package: linux-image-cloud-arm64\nStatus: install ok installed\nPriority: optional\nArchitecture: arm64\nSource: linux-signed-arm64 (6.1.158+1)\nVersion: 6.1.158-1\nDescription: Linux for arm64 cloud\n multi\n line\n\nPackage: zlib1g\nStatus: install ok installed\nArchitecture: arm64\nMulti-Arch: same\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 1\n\nPackage: held\nStatus: hold ok installed\nArchitecture: arm64\nVersion: 2\n\nPackage: ca-certificates\nStatus: install ok installed\nArchitecture: all\nVersion: 20230311\n";

    #[test]
    fn names_are_plain_and_the_architecture_is_its_own_field() {
        let debs = parse(ARM64_STATUS);
        let listed: Vec<(&str, &str, &str)> =
            debs.iter().map(|d| (d.name.as_str(), d.version.as_str(), d.architecture.as_str())).collect();
        assert_eq!(
            listed,
            [
                ("ca-certificates", "20230311", "all"),
                ("held", "2", "arm64"),
                ("linux-image-cloud-arm64", "6.1.158-1", "arm64"),
                ("zlib1g", "1:1.2.13.dfsg-1", "arm64"),
            ]
        );
        assert!(debs.iter().all(|d| !d.name.contains(':')), "{debs:?}");
        assert_eq!(debs[2].source.as_deref(), Some("linux-signed-arm64 (6.1.158+1)"));
        assert_eq!(debs[0].source, None);
    }

    #[test]
    fn one_package_of_two_architectures_is_listed_twice() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n";
        let archs: Vec<String> = parse(status).into_iter().map(|d| format!("{}:{}", d.name, d.architecture)).collect();
        assert_eq!(archs, ["libc6:amd64", "libc6:i386"]);
    }

    #[test]
    fn a_tree_without_dpkg_has_no_packages() {
        let tree = tempfile::tempdir().unwrap();
        assert_eq!(installed(tree.path()).unwrap(), []);
    }
}
