//! An element's `pkg-map` (JSON): generic package names mapped per release, distro, OS family
//! and default. The most specific match wins: release > distro > family > default. A name mapped
//! to `""` means "nothing to install on this distro".

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::ElementError;

type NameMap = BTreeMap<String, String>;

/// A `pkg-map` file as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PkgMapFile {
    #[serde(default)]
    pub release: BTreeMap<String, BTreeMap<String, NameMap>>,
    #[serde(default)]
    pub distro: BTreeMap<String, NameMap>,
    #[serde(default)]
    pub family: BTreeMap<String, NameMap>,
    #[serde(default)]
    pub default: NameMap,
}

impl PkgMapFile {
    /// Read `<element>/pkg-map`; `None` if the element has none.
    pub fn load(element_dir: &Path) -> Result<Option<PkgMapFile>, ElementError> {
        let path = element_dir.join("pkg-map");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(ElementError::Read { path, cause }),
        };
        let malformed = |err: serde_json::Error, line| ElementError::Malformed {
            path: path.clone(),
            line,
            message: crate::recipe::strip_location(&err.to_string()),
        };
        // Through a `Value` first: DIB reads pkg-map with Python's json module, where a repeated
        // key replaces the earlier one (tripleo-image-elements' os-collect-config has two
        // `release` keys), and a typed struct would reject the duplicate instead.
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
            let line = err.line();
            malformed(err, Some(line))
        })?;
        serde_json::from_value(value).map(Some).map_err(|err| malformed(err, None))
    }

    /// The map for one target, most specific entries winning.
    pub fn resolve(&self, distro: &str, release: &str) -> NameMap {
        let mut map = self.default.clone();
        if let Some(family) = os_family(distro).and_then(|f| self.family.get(f)) {
            map.extend(family.clone());
        }
        if let Some(by_distro) = self.distro.get(distro) {
            map.extend(by_distro.clone());
        }
        if let Some(by_release) = self.release.get(distro).and_then(|r| r.get(release)) {
            map.extend(by_release.clone());
        }
        map
    }
}

/// DIB's OS families.
pub fn os_family(distro: &str) -> Option<&'static str> {
    match distro {
        "debian" | "ubuntu" => Some("debian"),
        "fedora" | "rhel" | "rhel7" | "centos" | "centos7" => Some("redhat"),
        "opensuse" => Some("suse"),
        "gentoo" => Some("gentoo"),
        _ => None,
    }
}

/// Map one generic name through a resolved map: unmapped names pass through (DIB's
/// `--missing-ok`), `""` drops the package, and a value may name several packages.
pub fn map_name(map: Option<&NameMap>, name: &str) -> Vec<String> {
    match map.and_then(|m| m.get(name)) {
        Some(mapped) => mapped.split_whitespace().map(str::to_owned).collect(),
        None => vec![name.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_replaces_the_earlier_one_as_in_python() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"release": {"ubuntu": {"focal": {"a": "b"}}}, "release": {"debian": {"bullseye": {"x": "y"}}}}"#;
        std::fs::write(dir.path().join("pkg-map"), text).unwrap();
        let map = PkgMapFile::load(dir.path()).unwrap().unwrap();
        assert_eq!(map.resolve("debian", "bullseye").get("x").map(String::as_str), Some("y"));
        assert!(map.resolve("ubuntu", "focal").is_empty());
    }

    const MAP: &str = r#"{
        "release": {"ubuntu": {"trusty": {"java": "openjdk-7-jre-headless"}}},
        "distro": {"ubuntu": {"java": "openjdk-8-jre-headless", "zk": "zookeeperd"}},
        "family": {"debian": {"java": "default-jre-headless", "zk": "zookeeper", "ntp": ""}},
        "default": {"java": "java", "zk": "zk", "ntp": "ntp", "curl": "curl"}
    }"#;

    fn map() -> PkgMapFile {
        serde_json::from_str(MAP).unwrap()
    }

    #[test]
    fn release_beats_distro_beats_family_beats_default() {
        let trusty = map().resolve("ubuntu", "trusty");
        assert_eq!(trusty["java"], "openjdk-7-jre-headless");
        assert_eq!(trusty["zk"], "zookeeperd");
        let noble = map().resolve("ubuntu", "noble");
        assert_eq!(noble["java"], "openjdk-8-jre-headless");
        let bookworm = map().resolve("debian", "bookworm");
        assert_eq!(bookworm["java"], "default-jre-headless");
        assert_eq!(bookworm["curl"], "curl");
        let other = map().resolve("gentoo", "x");
        assert_eq!(other["java"], "java");
    }

    #[test]
    fn empty_mapping_drops_and_unmapped_passes_through() {
        let resolved = map().resolve("debian", "bookworm");
        assert!(map_name(Some(&resolved), "ntp").is_empty());
        assert_eq!(map_name(Some(&resolved), "vim"), vec!["vim"]);
        assert_eq!(map_name(None, "vim"), vec!["vim"]);
    }
}
