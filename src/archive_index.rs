//! Which package names the target's archive has: the `Package:` and `Provides:` names of its
//! `Packages` indexes, so a build can refuse an extra package (`-p`, a recipe's `packages`)
//! the archive lacks before any work, instead of after the base stage.
//!
//! The indexes are found through `dists/RELEASE/InRelease` (the file the build is dated from),
//! checked against its SHA256 list, and the names kept in the cache under the InRelease's
//! digest: the same archive state is read once. Anything that goes wrong here is an
//! [`IndexError`] the caller treats as "cannot tell", never as a refusal.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The archive a build installs from.
#[derive(Debug, Clone)]
pub struct Archive<'a> {
    pub mirror: &'a str,
    pub release: &'a str,
    pub components: &'a [&'a str],
    pub arch: &'a str,
}

impl std::fmt::Display for Archive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} {}", self.mirror, self.release, self.components.join(","), self.arch)
    }
}

/// Why the names could not be read; the build goes on without the check.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct IndexError {
    url: String,
    reason: String,
}

/// Package names and provided names of an archive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ArchiveNames(BTreeSet<String>);

impl ArchiveNames {
    /// Whether `spec` (`name`, `name=version`, `name:arch`) names a package or a provided name.
    pub fn has(&self, spec: &str) -> bool {
        self.0.contains(package_of(spec))
    }
}

/// The package name of an apt install spec.
pub fn package_of(spec: &str) -> &str {
    spec.split(['=', ':']).next().unwrap_or(spec).trim()
}

/// The names of `archive`, from the cache under `cache_dir` or read from the mirror.
pub fn load(archive: &Archive, cache_dir: &Path) -> Result<ArchiveNames, IndexError> {
    let base = format!("{}/dists/{}", archive.mirror.trim_end_matches('/'), archive.release);
    let in_release_url = format!("{base}/InRelease");
    let in_release = fetch(&in_release_url)?;
    let digest = hex::encode(Sha256::digest(&in_release));
    let cached = cache_dir.join("archive-index").join(format!(
        "{digest}-{}-{}.names",
        archive.components.join(","),
        archive.arch
    ));
    if let Ok(text) = std::fs::read_to_string(&cached) {
        return Ok(ArchiveNames(text.lines().map(str::to_owned).collect()));
    }
    let sums = sha256_list(&String::from_utf8_lossy(&in_release));
    let mut names = ArchiveNames::default();
    for component in archive.components {
        let text = packages_index(&base, component, archive.arch, &sums)?;
        names.0.extend(parse_names(&text));
    }
    // A cache that cannot be written only costs a download next time.
    if let Err(err) = store(&cached, &names) {
        tracing::debug!("archive index not cached at {}: {err}", cached.display());
    }
    Ok(names)
}

/// `COMPONENT/binary-ARCH/Packages.{xz,gz}`, whichever the InRelease lists first, verified
/// and decompressed.
fn packages_index(base: &str, component: &str, arch: &str, sums: &[(String, String)]) -> Result<String, IndexError> {
    let missing = || IndexError {
        url: format!("{base}/InRelease"),
        reason: format!("lists no {component}/binary-{arch}/Packages.xz or .gz"),
    };
    let (path, expected) = ["xz", "gz"]
        .iter()
        .find_map(|ext| {
            let path = format!("{component}/binary-{arch}/Packages.{ext}");
            sums.iter().find(|(_, p)| *p == path).map(|(sum, _)| (path, sum.clone()))
        })
        .ok_or_else(missing)?;
    let url = format!("{base}/{path}");
    let bytes = fetch(&url)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected {
        return Err(IndexError { url, reason: format!("sha256 {actual}, the InRelease says {expected}") });
    }
    let text = if path.ends_with(".xz") { unxz(&bytes) } else { gunzip(&bytes) };
    text.map_err(|reason| IndexError { url, reason })
}

/// `(sha256, path)` of the InRelease's `SHA256:` section.
fn sha256_list(in_release: &str) -> Vec<(String, String)> {
    in_release
        .lines()
        .skip_while(|line| !line.starts_with("SHA256:"))
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (sum, _size, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some((sum.to_owned(), path.to_owned()))
        })
        .collect()
}

/// Every `Package:` name and every name in a `Provides:` list (versions dropped).
pub fn parse_names(packages: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in packages.lines() {
        if let Some(name) = line.strip_prefix("Package:") {
            names.insert(name.trim().to_owned());
        } else if let Some(provided) = line.strip_prefix("Provides:") {
            for item in provided.split(',') {
                let name = item.split('(').next().unwrap_or(item).trim();
                if !name.is_empty() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

fn store(path: &Path, names: &ArchiveNames) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    for name in &names.0 {
        writeln!(file, "{name}")?;
    }
    file.persist(path).map(drop).map_err(|err| err.error)
}

fn fetch(url: &str) -> Result<Vec<u8>, IndexError> {
    crate::mirror::fetch(url, 120).map_err(|reason| IndexError { url: url.to_owned(), reason })
}

fn gunzip(bytes: &[u8]) -> Result<String, String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).map_err(|err| format!("cannot gunzip: {err}"))?;
    Ok(text)
}

/// The host's `xz`, fed from a thread so neither pipe fills up.
fn unxz(bytes: &[u8]) -> Result<String, String> {
    let mut child = Command::new("xz")
        .args(["-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run xz: {err}"))?;
    let mut stdin = child.stdin.take().ok_or("xz has no stdin")?;
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().map_err(|err| format!("xz: {err}"))?;
    let fed = feeder.join().map_err(|_| "xz feeder panicked".to_owned())?;
    if !output.status.success() {
        return Err(format!("xz: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    fed.map_err(|err| format!("xz: {err}"))?;
    String::from_utf8(output.stdout).map_err(|_| "the Packages index is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_provided_names_are_read() {
        let text = "Package: mesos\nVersion: 1\nProvides: mesos-agent (= 1.4), mesos-master\n\nPackage: vim\n";
        let names = ArchiveNames(parse_names(text));
        assert!(names.has("mesos") && names.has("mesos-agent") && names.has("mesos-master") && names.has("vim"));
        assert!(names.has("vim=2:9.0") && names.has("vim:amd64"));
        assert!(!names.has("emacs") && !names.has("1.4"));
    }

    #[test]
    fn the_sha256_section_is_read_and_no_other() {
        let text = "Date: x\nMD5Sum:\n 00 1 main/binary-amd64/Packages.gz\nSHA256:\n ab 10 main/binary-amd64/Packages.gz\n cd 20 main/binary-amd64/Packages\nDescription: y\n";
        assert_eq!(
            sha256_list(text),
            vec![
                ("ab".to_owned(), "main/binary-amd64/Packages.gz".to_owned()),
                ("cd".to_owned(), "main/binary-amd64/Packages".to_owned())
            ]
        );
    }

    #[test]
    fn xz_and_gzip_indexes_decompress() {
        let text = "Package: a\n";
        let xz = Command::new("sh").args(["-c", "printf 'Package: a\\n' | xz -c"]).output().unwrap().stdout;
        assert_eq!(unxz(&xz).unwrap(), text);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        assert_eq!(gunzip(&gz.finish().unwrap()).unwrap(), text);
    }
}
