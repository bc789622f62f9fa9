//! The bill of materials beside every image (`<image>.spdx.json`, SPDX 2.3 JSON): one package
//! per installed deb (version, architecture, purl, source package, the licenses its
//! machine-readable copyright file declares), the recipe and elements the image was built
//! from with their digests, and the image files with their checksums. Everything in it comes
//! from the inputs and the pinned time, so two builds of the same inputs write the same bytes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use crate::cache::Fingerprint;
use crate::dpkg_status::control_fields;
use crate::layout::OutputLayout;
use crate::reproducible::Pins;

/// One installed deb, as dpkg's status file and its copyright file describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Source package name and version (the binary's own when the status names none).
    pub source: (String, String),
    /// SPDX license expression from a DEP-5 copyright file; `None` when not machine-readable.
    pub license: Option<String>,
}

/// An input the image was built from (the recipe, an element) and its content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub kind: &'static str,
    pub name: String,
    pub sha256: String,
}

/// An image file the build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub file: String,
    pub format: String,
    pub sha256: String,
}

/// What the document describes.
#[derive(Debug, Clone)]
pub struct Contents<'a> {
    pub name: &'a str,
    pub distro: &'a str,
    pub release: &'a str,
    /// The image's architecture, Debian's name (`arm64`).
    pub arch: &'a str,
    pub debs: &'a [Deb],
    pub inputs: &'a [Input],
    pub images: &'a [ImageFile],
    pub pins: &'a Pins,
}

/// Where `mesos-image build` writes the SBOM of `image` (beside it).
pub fn path_for(image: &Path) -> PathBuf {
    path_in(OutputLayout::Beside, image)
}

/// Where a build in `layout` whose first image is `first_image` writes its SBOM.
pub fn path_in(layout: OutputLayout, first_image: &Path) -> PathBuf {
    layout.sidecar(first_image, ".spdx.json")
}

/// The sha256 of the SBOM at `path`, if there is one (for the Glance property).
pub fn digest_at(path: &Path) -> std::io::Result<Option<String>> {
    match crate::io::sha256_file(path) {
        Ok((digest, _)) => Ok(Some(digest)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The installed packages of `tree` ([`crate::dpkg_status`]) with their source package and
/// declared license, sorted by name and architecture; an empty list for a tree without dpkg.
pub fn installed_debs(tree: &Path) -> anyhow::Result<Vec<Deb>> {
    let debs = crate::dpkg_status::installed(tree)?;
    Ok(debs
        .into_iter()
        .map(|deb| Deb {
            source: parse_source(deb.source.as_deref(), &deb.name, &deb.version),
            license: declared_license(&tree.join("usr/share/doc").join(&deb.name).join("copyright")),
            name: deb.name,
            version: deb.version,
            architecture: deb.architecture,
        })
        .collect())
}

/// `Source: foo (1.2-3)` or `Source: foo`, or the binary itself.
fn parse_source(field: Option<&str>, name: &str, version: &str) -> (String, String) {
    let Some(field) = field.filter(|f| !f.is_empty()) else { return (name.to_owned(), version.to_owned()) };
    match field.split_once(' ') {
        Some((source, rest)) => (source.to_owned(), rest.trim().trim_matches(['(', ')']).to_owned()),
        None => (field.to_owned(), version.to_owned()),
    }
}

/// The licenses a DEP-5 copyright file declares for its `Files:` paragraphs, as one SPDX
/// expression; `None` when the file is missing or not machine-readable.
pub fn declared_license(copyright: &Path) -> Option<String> {
    let text = fs::read_to_string(copyright).ok()?;
    let mut paragraphs = text.split("\n\n");
    let header = control_fields(paragraphs.next()?);
    if !header.get("Format").is_some_and(|f| f.contains("copyright-format")) {
        return None;
    }
    let mut expressions = BTreeSet::new();
    for paragraph in text.split("\n\n") {
        let fields = control_fields(paragraph);
        if fields.contains_key("Files") {
            if let Some(license) = fields.get("License").filter(|l| !l.is_empty()) {
                expressions.insert(spdx_expression(license));
            }
        }
    }
    let expressions: Vec<String> = expressions.into_iter().collect();
    match expressions.len() {
        0 => None,
        1 => expressions.into_iter().next(),
        _ => Some(expressions.iter().map(|e| parenthesise(e)).collect::<Vec<_>>().join(" AND ")),
    }
}

fn parenthesise(expression: &str) -> String {
    if expression.contains(' ') {
        format!("({expression})")
    } else {
        expression.to_owned()
    }
}

/// A DEP-5 license field (`GPL-2+ or Artistic`, `BSD-3-clause`) as an SPDX expression. Short
/// names SPDX knows are mapped to their identifiers; others become `LicenseRef-` ids. An
/// exception clause (`with ... exception`) is kept whole as one `LicenseRef-`.
pub fn spdx_expression(dep5: &str) -> String {
    let words: Vec<&str> = dep5.split_whitespace().map(|w| w.trim_end_matches(',')).filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| w.eq_ignore_ascii_case("with")) {
        return license_ref(&words.join("-"));
    }
    let mut out = Vec::new();
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "or" | "|" => out.push("OR".to_owned()),
            "and" | "&" => out.push("AND".to_owned()),
            _ => {
                // Two licenses without an operator between them: DEP-5 means both.
                if out.last().is_some_and(|last| last != "OR" && last != "AND") {
                    out.push("AND".to_owned());
                }
                out.push(spdx_id(word));
            }
        }
    }
    while out.last().is_some_and(|last| last == "OR" || last == "AND") {
        out.pop();
    }
    if out.first().is_some_and(|first| first == "OR" || first == "AND") {
        out.remove(0);
    }
    if out.is_empty() {
        return license_ref("empty");
    }
    out.join(" ")
}

/// DEP-5 short names (Debian policy's list, case-insensitively) and their SPDX identifiers.
const KNOWN_LICENSES: [(&str, &str); 58] = [
    ("GPL-1", "GPL-1.0-only"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("GFDL-1.2", "GFDL-1.2-only"),
    ("GFDL-1.2+", "GFDL-1.2-or-later"),
    ("GFDL-1.3", "GFDL-1.3-only"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"),
    ("Apache-1.0", "Apache-1.0"),
    ("Apache-1.1", "Apache-1.1"),
    ("Apache-2.0", "Apache-2.0"),
    ("Artistic", "Artistic-1.0"),
    ("Artistic-1.0", "Artistic-1.0"),
    ("Artistic-2.0", "Artistic-2.0"),
    ("Expat", "MIT"),
    ("MIT", "MIT"),
    ("X11", "X11"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("ISC", "ISC"),
    ("Zlib", "Zlib"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2.0", "MPL-2.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("CC0", "CC0-1.0"),
    ("CC-BY-3.0", "CC-BY-3.0"),
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("CC-BY-SA-3.0", "CC-BY-SA-3.0"),
    ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
    ("PSF-2", "PSF-2.0"),
    ("Python-2.0", "Python-2.0"),
    ("OpenSSL", "OpenSSL"),
    ("curl", "curl"),
    ("BSL-1.0", "BSL-1.0"),
    ("Unlicense", "Unlicense"),
    ("WTFPL", "WTFPL"),
    ("FTL", "FTL"),
    ("Libpng", "Libpng"),
    ("IJG", "IJG"),
    ("Sleepycat", "Sleepycat"),
    ("EPL-1.0", "EPL-1.0"),
    ("EPL-2.0", "EPL-2.0"),
    ("CDDL-1.0", "CDDL-1.0"),
    ("OFL-1.1", "OFL-1.1"),
    ("Unicode-DFS-2016", "Unicode-DFS-2016"),
    ("BSD-2-Clause-FreeBSD", "BSD-2-Clause-FreeBSD"),
    ("ICU", "ICU"),
];

fn spdx_id(name: &str) -> String {
    KNOWN_LICENSES
        .iter()
        .find(|(dep5, _)| dep5.eq_ignore_ascii_case(name))
        .map(|(_, spdx)| (*spdx).to_owned())
        .unwrap_or_else(|| license_ref(name))
}

/// `LicenseRef-` ids may only hold letters, digits, `.` and `-`.
fn license_ref(name: &str) -> String {
    let cleaned: String = name
        .replace('+', "-or-later")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    format!("LicenseRef-{cleaned}")
}

/// The content digest of an input file or directory (names, modes, content), as the stage
/// cache hashes it.
pub fn input_digest(kind: &'static str, name: &str, path: &Path) -> anyhow::Result<Input> {
    let mut fingerprint = Fingerprint::new("sbom-input", None);
    fingerprint.add_path(name, path).with_context(|| format!("{kind} {name}: cannot read {}", path.display()))?;
    Ok(Input { kind, name: name.to_owned(), sha256: fingerprint.finish().to_string() })
}

/// `pkg:deb/<distro>/<name>@<version>?arch=<arch>&distro=<distro>-<release>`.
pub fn purl(distro: &str, release: &str, deb: &Deb) -> String {
    format!(
        "pkg:deb/{distro}/{}@{}?arch={}&distro={distro}-{release}",
        percent_encode(&deb.name),
        percent_encode(&deb.version),
        percent_encode(&deb.architecture)
    )
}

/// purl's encoding: everything but unreserved characters (and `:` of epochs) is escaped.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SPDX ids may only hold letters, digits, `.` and `-`.
fn spdx_id_part(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect()
}

/// The SPDX 2.3 document.
pub fn document(contents: &Contents<'_>) -> Value {
    let created = rfc3339(contents.pins.epoch.seconds);
    let namespace_id = contents.pins.seed.guid("spdx-document-namespace");
    let mut packages = Vec::new();
    let mut relationships = Vec::new();

    let image_ids: Vec<String> =
        contents.images.iter().map(|image| format!("SPDXRef-Image-{}", spdx_id_part(&image.format))).collect();
    for (image, id) in contents.images.iter().zip(&image_ids) {
        packages.push(image_package(image, contents, id));
        relationships.push(relationship("SPDXRef-DOCUMENT", "DESCRIBES", id));
    }
    for input in contents.inputs {
        let id = format!("SPDXRef-{}-{}", spdx_id_part(input.kind), spdx_id_part(&input.name));
        packages.push(input_package(input, &id));
        relationships.extend(image_ids.iter().map(|image| relationship(image, "GENERATED_FROM", &id)));
    }
    for deb in contents.debs {
        let id = format!("SPDXRef-deb-{}-{}", spdx_id_part(&deb.name), spdx_id_part(&deb.architecture));
        packages.push(deb_package(contents, deb, &id));
        relationships.extend(image_ids.iter().map(|image| relationship(image, "CONTAINS", &id)));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": contents.name,
        "documentNamespace": format!("https://spdx.org/spdxdocs/mesos-image-{}-{namespace_id}", spdx_id_part(contents.name)),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: mesos-image-{}", env!("CARGO_PKG_VERSION"))],
            "comment": "created is the build's SOURCE_DATE_EPOCH, so identical inputs give an identical document",
        },
        "documentDescribes": image_ids,
        "packages": packages,
        "relationships": relationships,
        "hasExtractedLicensingInfos": extracted_licenses(contents.debs),
    })
}

/// The package an image file the build wrote is.
/// Its architecture is in `description` (Debian's and the kernel's name: SPDX 2.3 has no field
/// of its own for it) and in every deb's purl.
fn image_package(image: &ImageFile, contents: &Contents<'_>, id: &str) -> Value {
    let arch = contents.arch;
    json!({
        "SPDXID": id,
        "name": image.file,
        "packageFileName": image.file,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "checksums": [{"algorithm": "SHA256", "checksumValue": image.sha256}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "description": format!(
            "{} {} {arch} ({}) image",
            contents.distro,
            contents.release,
            crate::arch::kernel_name(arch)
        ),
        "comment": format!("{} disk image, architecture {arch}", image.format),
    })
}

/// The package an input (the recipe, an element) is, named by its kind and digested.
fn input_package(input: &Input, id: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": format!("{}:{}", input.kind, input.name),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "SOURCE",
        "checksums": [{"algorithm": "SHA256", "checksumValue": input.sha256}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!("mesos-image {} the image was built from; digest of its files, names and modes", input.kind),
    })
}

/// The package an installed deb is, with its declared license and purl.
fn deb_package(contents: &Contents<'_>, deb: &Deb, id: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": deb.name,
        "versionInfo": deb.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "sourceInfo": format!("built from Debian source package {} {}", deb.source.0, deb.source.1),
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": deb.license.clone().unwrap_or_else(|| "NOASSERTION".to_owned()),
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(contents.distro, contents.release, deb),
        }],
    })
}

/// One entry per `LicenseRef-` the debs' licenses name, sorted and once each: SPDX requires
/// every such reference to be declared in the document.
fn extracted_licenses(debs: &[Deb]) -> Vec<Value> {
    let license_refs: BTreeSet<&str> = debs
        .iter()
        .filter_map(|deb| deb.license.as_deref())
        .flat_map(|license| license.split([' ', '(', ')']))
        .filter(|token| token.starts_with("LicenseRef-"))
        .collect();
    license_refs
        .iter()
        .map(|id| {
            json!({
                "licenseId": id,
                "name": id.trim_start_matches("LicenseRef-"),
                "extractedText": "A license short name from a Debian machine-readable copyright file that SPDX has no identifier for; its text is in the package's /usr/share/doc/PACKAGE/copyright.",
            })
        })
        .collect()
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// `1970-01-01T00:00:00Z` form of a Unix time.
pub fn rfc3339(seconds: i64) -> String {
    let t = crate::clock::utc(seconds);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// The document as the bytes written beside the image.
pub fn to_json(document: &Value) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(document).context("cannot serialise the SBOM")?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The SPDX document of this build: its debs, its recipe and elements, its image files.
pub fn for_build(
    plan: &crate::plan::Plan,
    recipe_file: Option<&Path>,
    pins: &Pins,
    debs: &[Deb],
    outputs: &[crate::manifest::OutputEntry],
    name: &str,
) -> anyhow::Result<Value> {
    let mut inputs = Vec::new();
    if let (Some(recipe), Some(path)) = (&plan.recipe, recipe_file) {
        inputs.push(input_digest("recipe", recipe, path)?);
    }
    for element in &plan.elements {
        inputs.push(input_digest("element", &element.name, &element.path)?);
    }
    let images: Vec<ImageFile> = outputs
        .iter()
        .map(|o| ImageFile { file: o.file.clone(), format: o.format.clone(), sha256: o.sha256.clone() })
        .collect();
    Ok(document(&Contents {
        name,
        distro: &plan.distro,
        release: &plan.release,
        arch: &plan.arch,
        debs,
        inputs: &inputs,
        images: &images,
        pins,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP5: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: *\nCopyright: 2020 A\nLicense: GPL-2+\n\nFiles: lib/*\nCopyright: 2021 B\nLicense: BSD-3-clause or public-domain\n\nLicense: GPL-2+\n On Debian systems, see /usr/share/common-licenses/GPL-2.\n";

    #[test]
    fn dep5_licenses_become_one_spdx_expression() {
        let dir = tempfile::tempdir().unwrap();
        let copyright = dir.path().join("copyright");
        fs::write(&copyright, DEP5).unwrap();
        assert_eq!(
            declared_license(&copyright).as_deref(),
            Some("(BSD-3-Clause OR LicenseRef-public-domain) AND GPL-2.0-or-later")
        );
        fs::write(&copyright, "This package was debianized by someone.\nLicense: GPL\n").unwrap();
        assert_eq!(declared_license(&copyright), None);
        assert_eq!(
            spdx_expression("GPL-2+ with OpenSSL exception"),
            "LicenseRef-GPL-2-or-later-with-OpenSSL-exception"
        );
        assert_eq!(spdx_expression("Expat"), "MIT");
        assert_eq!(spdx_expression("LGPL-2.1+, GPL-2+"), "LGPL-2.1-or-later AND GPL-2.0-or-later");
    }

    #[test]
    fn status_file_gives_installed_debs_with_source_and_purl() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc/libfoo1")).unwrap();
        fs::write(root.join("usr/share/doc/libfoo1/copyright"), DEP5).unwrap();
        fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: libfoo1\nStatus: install ok installed\nArchitecture: amd64\nSource: foo (1:2.0-1)\nVersion: 1:2.0-1+b1\nDescription: x\n multi\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2-2\nArchitecture: amd64\n",
        )
        .unwrap();
        let debs = installed_debs(root).unwrap();
        let names: Vec<_> = debs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["bash", "libfoo1"]);
        assert_eq!(debs[1].source, ("foo".to_owned(), "1:2.0-1".to_owned()));
        assert_eq!(debs[0].source, ("bash".to_owned(), "5.2-2".to_owned()));
        assert_eq!(debs[0].license, None);
        assert!(debs[1].license.as_deref().unwrap().contains("GPL-2.0-or-later"));
        assert_eq!(
            purl("debian", "bookworm", &debs[1]),
            "pkg:deb/debian/libfoo1@1:2.0-1%2Bb1?arch=amd64&distro=debian-bookworm"
        );
    }

    #[test]
    fn document_is_a_function_of_its_contents() {
        let pins = Pins::fixed(1_731_149_083, "sbom");
        let debs = [Deb {
            name: "libfoo1".into(),
            version: "1.0".into(),
            architecture: "amd64".into(),
            source: ("foo".into(), "1.0".into()),
            license: Some("GPL-2.0-or-later OR LicenseRef-public-domain".into()),
        }];
        let inputs = [Input { kind: "element", name: "vm".into(), sha256: "ab".into() }];
        let images = [ImageFile { file: "x.qcow2".into(), format: "qcow2".into(), sha256: "cd".into() }];
        let contents = Contents {
            name: "x.qcow2",
            distro: "debian",
            release: "bookworm",
            arch: "arm64",
            debs: &debs,
            inputs: &inputs,
            images: &images,
            pins: &pins,
        };
        let doc = document(&contents);
        assert_eq!(to_json(&doc).unwrap(), to_json(&document(&contents)).unwrap());
        assert_eq!(doc["creationInfo"]["created"], "2024-11-09T10:44:43Z");
        assert_eq!(doc["documentDescribes"], json!(["SPDXRef-Image-qcow2"]));
        assert_eq!(doc["hasExtractedLicensingInfos"][0]["licenseId"], "LicenseRef-public-domain");
        assert_eq!(doc["packages"].as_array().unwrap().len(), 3);
        assert_eq!(doc["packages"][0]["description"], "debian bookworm arm64 (aarch64) image");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
