//! `package-installs.yaml` / `package-installs.json`: the packages an element declares, with
//! DIB's keys (`phase`, `uninstall`, `build-only`, `arch`, `not-arch`, `when`, `installtype`,
//! `dib_python_version`), filtered and mapped the way DIB's `package-installs-squash` and
//! `pkg-map --missing-ok` do.
//!
//! A package's value is null (all defaults), a map of options, or a list of maps; each map in a
//! list is evaluated on its own. Unknown keys are an error naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::error::ElementError;
use super::installtype::InstallTypes;
use super::library::Element;
use super::phase::Phase;
use super::pkgmap;

/// Packages a phase installs and removes, after pkg-map, arch and `when` filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageSet {
    /// Sorted, de-duplicated.
    pub install: Vec<String>,
    /// Removed at the end of the phase (`uninstall: true`).
    pub uninstall: Vec<String>,
    /// Installed for the build, purged in cleanup (`build-only: true`). These names are also
    /// in `install`, so installing `install` is always enough.
    pub build_only: Vec<String>,
}

impl PackageSet {
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.uninstall.is_empty() && self.build_only.is_empty()
    }
}

/// The options of one package entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageParams {
    /// `install.d` when absent.
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub uninstall: Option<bool>,
    #[serde(default)]
    pub build_only: Option<bool>,
    /// Comma-separated architectures to install on.
    #[serde(default)]
    pub arch: Option<String>,
    /// Comma-separated architectures to skip.
    #[serde(default)]
    pub not_arch: Option<String>,
    #[serde(default)]
    pub when: Option<When>,
    /// `source` or `package`: install only when the element's install type matches.
    #[serde(default)]
    pub installtype: Option<String>,
    #[serde(default, rename = "dib_python_version")]
    pub dib_python_version: Option<Scalar>,
}

/// `when: "VAR = value"` or a list of such statements (all must hold).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum When {
    One(String),
    All(Vec<String>),
}

impl When {
    fn statements(&self) -> Vec<&str> {
        match self {
            When::One(one) => vec![one.as_str()],
            When::All(all) => all.iter().map(String::as_str).collect(),
        }
    }
}

/// A YAML scalar written as a number or a string (`dib_python_version: 3`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Display for PackageParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(phase) = &self.phase {
            parts.push(format!("phase={phase}"));
        }
        if self.uninstall == Some(true) {
            parts.push("uninstall".to_owned());
        }
        if self.build_only == Some(true) {
            parts.push("build-only".to_owned());
        }
        if let Some(arch) = &self.arch {
            parts.push(format!("arch={arch}"));
        }
        if let Some(not_arch) = &self.not_arch {
            parts.push(format!("not-arch={not_arch}"));
        }
        if let Some(when) = &self.when {
            parts.push(format!("when=[{}]", when.statements().join(", ")));
        }
        if let Some(installtype) = &self.installtype {
            parts.push(format!("installtype={installtype}"));
        }
        if let Some(version) = &self.dib_python_version {
            parts.push(format!("dib_python_version={version}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One package's entries: null, `""`, a map, or a list of maps.
#[derive(Debug, Clone, PartialEq)]
struct ParamList(Vec<PackageParams>);

impl<'de> Deserialize<'de> for ParamList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamListVisitor;
        impl<'de> Visitor<'de> for ParamListVisitor {
            type Value = ParamList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, a map of package options, or a list of such maps")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ParamList, E> {
                Ok(ParamList(vec![PackageParams::default()]))
            }
            fn visit_none<E: de::Error>(self) -> Result<ParamList, E> {
                self.visit_unit()
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ParamList, E> {
                if value.is_empty() {
                    self.visit_unit()
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParamList, A::Error> {
                PackageParams::deserialize(de::value::MapAccessDeserializer::new(map)).map(|p| ParamList(vec![p]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ParamList, A::Error> {
                Vec::<PackageParams>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(ParamList)
            }
        }
        deserializer.deserialize_any(ParamListVisitor)
    }
}

/// One declaration: a package name with one set of options.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageDecl {
    pub name: String,
    pub params: PackageParams,
}

/// One `package-installs` file of an element.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInstalls {
    pub path: PathBuf,
    pub decls: Vec<PackageDecl>,
}

impl PackageInstalls {
    /// The element's `package-installs.json` and `package-installs.yaml`, in that order (DIB
    /// reads both when both exist).
    pub fn load(element_dir: &Path) -> Result<Vec<PackageInstalls>, ElementError> {
        let mut files = Vec::new();
        for ext in ["json", "yaml"] {
            let path = element_dir.join(format!("package-installs.{ext}"));
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(cause) => return Err(ElementError::Read { path, cause }),
            };
            files.push(PackageInstalls::parse(&text, &path)?);
        }
        Ok(files)
    }

    /// Parse one file. JSON is tried first for `.json` files, as DIB does; YAML reads both.
    pub fn parse(text: &str, path: &Path) -> Result<PackageInstalls, ElementError> {
        let is_json = path.extension().is_some_and(|e| e == "json");
        let as_yaml = || {
            serde_yaml_ng::from_str::<Option<BTreeMap<String, ParamList>>>(text).map_err(|err| {
                ElementError::Malformed {
                    path: path.to_owned(),
                    line: Some(err.location().map(|l| l.line()).unwrap_or(1)),
                    message: crate::recipe::strip_location(&err.to_string()),
                }
            })
        };
        let parsed = if is_json {
            // Like DIB: a `.json` file that is not JSON is read as YAML; the JSON error is the
            // one reported when both fail.
            match serde_json::from_str::<Option<BTreeMap<String, ParamList>>>(text) {
                Ok(parsed) => parsed,
                Err(json_err) => as_yaml().map_err(|_| ElementError::Malformed {
                    path: path.to_owned(),
                    line: Some(json_err.line()),
                    message: crate::recipe::strip_location(&json_err.to_string()),
                })?,
            }
        } else {
            as_yaml()?
        };
        let decls = parsed
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(name, list)| list.0.into_iter().map(move |params| PackageDecl { name: name.clone(), params }))
            .collect();
        Ok(PackageInstalls { path: path.to_owned(), decls })
    }
}

/// What the filters are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct PackageContext<'a> {
    /// `ARCH` (amd64, arm64, ...).
    pub arch: &'a str,
    /// The environment scripts see: `when` statements and install types read it.
    pub env: &'a BTreeMap<String, String>,
}

/// Per phase, the packages all `elements` declare after filtering and each listing element's
/// pkg-map (`pkg_maps`: element -> resolved map). Phases with nothing are absent.
pub fn collect(
    elements: &[&Element],
    pkg_maps: &BTreeMap<String, BTreeMap<String, String>>,
    context: PackageContext,
) -> Result<BTreeMap<Phase, PackageSet>, ElementError> {
    let mut sets: BTreeMap<Phase, PackageSets> = BTreeMap::new();
    for element in elements {
        for file in PackageInstalls::load(&element.path)? {
            for decl in &file.decls {
                let Some(placement) = place(decl, element, &file.path, context)? else { continue };
                let names = pkgmap::map_name(pkg_maps.get(&element.name), &decl.name);
                let set = sets.entry(placement.phase).or_default();
                for name in names {
                    match placement.kind {
                        Kind::Install => {
                            set.install.insert(name);
                        }
                        Kind::Uninstall => {
                            set.uninstall.insert(name);
                        }
                        Kind::BuildOnly => {
                            set.install.insert(name.clone());
                            set.build_only.insert(name);
                        }
                    }
                }
            }
        }
    }
    Ok(sets.into_iter().map(|(phase, set)| (phase, set.into_package_set())).filter(|(_, s)| !s.is_empty()).collect())
}

#[derive(Default)]
struct PackageSets {
    install: BTreeSet<String>,
    uninstall: BTreeSet<String>,
    build_only: BTreeSet<String>,
}

impl PackageSets {
    fn into_package_set(self) -> PackageSet {
        PackageSet {
            install: self.install.into_iter().collect(),
            uninstall: self.uninstall.into_iter().collect(),
            build_only: self.build_only.into_iter().collect(),
        }
    }
}

enum Kind {
    Install,
    Uninstall,
    BuildOnly,
}

struct Placement {
    phase: Phase,
    kind: Kind,
}

/// Where a declaration goes, or `None` when a filter drops it.
fn place(
    decl: &PackageDecl,
    element: &Element,
    file: &Path,
    context: PackageContext,
) -> Result<Option<Placement>, ElementError> {
    let malformed = |message: String| ElementError::Malformed {
        path: file.to_owned(),
        line: None,
        message: format!("package `{}`: {message}", decl.name),
    };
    let params = &decl.params;
    let phase = match &params.phase {
        None => Phase::Install,
        Some(text) => Phase::parse(text)
            .filter(|p| p.package_slot().is_some())
            .ok_or_else(|| malformed(format!("phase `{text}` is not pre-install.d, install.d or post-install.d")))?,
    };
    if params.arch.is_some() && params.not_arch.is_some() {
        return Err(malformed("both `arch` and `not-arch` are given".to_owned()));
    }
    // Evaluated before the other filters, as DIB does, so an unset variable is always reported.
    let mut when_holds = true;
    if let Some(when) = &params.when {
        for statement in when.statements() {
            when_holds &= evaluate_when(statement, context.env).map_err(&malformed)?;
        }
    }
    if !when_holds {
        tracing::debug!("{}: package {} skipped by its `when`", element.name, decl.name);
        return Ok(None);
    }
    if let Some(arch) = &params.arch {
        if !arch_listed(arch, context.arch) {
            return Ok(None);
        }
    }
    if let Some(not_arch) = &params.not_arch {
        if arch_listed(not_arch, context.arch) {
            return Ok(None);
        }
    }
    if let Some(wanted) = &params.installtype {
        if *wanted != element_installtype(&element.name, context.env) {
            return Ok(None);
        }
    }
    if let Some(version) = &params.dib_python_version {
        if context.env.get("DIB_PYTHON_VERSION").map(String::as_str).unwrap_or("") != version.to_string() {
            return Ok(None);
        }
    }
    let kind = if params.build_only == Some(true) {
        Kind::BuildOnly
    } else if params.uninstall == Some(true) {
        Kind::Uninstall
    } else {
        Kind::Install
    };
    Ok(Some(Placement { phase, kind }))
}

/// The element's install type by DIB's rule (`DIB_INSTALLTYPE_<element>`, else
/// `DIB_DEFAULT_INSTALLTYPE`, else `source`), as `package-installs-squash` looks it up.
fn element_installtype(element: &str, env: &BTreeMap<String, String>) -> String {
    InstallTypes::from_env(env).for_prefix(element).to_owned()
}

/// Whether `arch` is in a comma-separated list; the kernel's spelling of an architecture
/// (`x86_64`, `aarch64`) counts as the Debian one, since elements use both.
fn arch_listed(list: &str, arch: &str) -> bool {
    let alias = crate::arch::kernel_name(arch);
    list.split(',').map(str::trim).any(|item| item == arch || item == alias)
}

/// `VAR = value` or `VAR != value`; an unset variable is an error, as in DIB.
fn evaluate_when(statement: &str, env: &BTreeMap<String, String>) -> Result<bool, String> {
    let var_len = statement.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    let (var, rest) = statement.split_at(var_len);
    let rest = rest.trim_start();
    let (negate, value) = if let Some(value) = rest.strip_prefix("!=") {
        (true, value)
    } else if let Some(value) = rest.strip_prefix('=') {
        (false, value)
    } else {
        return Err(format!("malformed `when` statement `{statement}` (expected VAR = value or VAR != value)"));
    };
    if var.is_empty() {
        return Err(format!("malformed `when` statement `{statement}` (no variable name)"));
    }
    let actual = env.get(var).ok_or_else(|| format!("`when` variable `{var}` is not set"))?;
    Ok((actual == value.trim()) != negate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn when_statements_compare_like_dib() {
        let e = env(&[("DIB_FEATURE", "1")]);
        assert!(evaluate_when("DIB_FEATURE=1", &e).unwrap());
        assert!(evaluate_when("DIB_FEATURE = 1", &e).unwrap());
        assert!(!evaluate_when("DIB_FEATURE=0", &e).unwrap());
        assert!(evaluate_when("DIB_FEATURE!=0", &e).unwrap());
        assert!(!evaluate_when("DIB_FEATURE != 1", &e).unwrap());
        assert!(evaluate_when("MISSING=1", &e).unwrap_err().contains("MISSING"));
        assert!(evaluate_when("no operator", &e).is_err());
    }

    #[test]
    fn arch_lists_are_trimmed_and_accept_kernel_names() {
        assert!(arch_listed("ppc64, amd64", "amd64"));
        assert!(arch_listed("x86_64", "amd64"));
        assert!(!arch_listed("arm64", "amd64"));
    }

    #[test]
    fn values_may_be_null_empty_map_or_list() {
        let text = "a:\nb: ''\nc: {phase: pre-install.d}\nd:\n  - arch: amd64\n  - not-arch: amd64\n";
        let parsed = PackageInstalls::parse(text, Path::new("e/package-installs.yaml")).unwrap();
        let names: Vec<&str> = parsed.decls.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "d"]);
        assert_eq!(parsed.decls[2].params.phase.as_deref(), Some("pre-install.d"));
    }

    #[test]
    fn unknown_key_is_an_error_with_file_and_line() {
        let text = "a:\nb:\n  phase: install.d\n  colour: blue\n";
        let err = PackageInstalls::parse(text, Path::new("e/package-installs.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("e/package-installs.yaml:4: "), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn json_file_written_as_yaml_is_read_like_dib_does() {
        let parsed = PackageInstalls::parse("curl:\njq:\n", Path::new("e/package-installs.json")).unwrap();
        assert_eq!(parsed.decls.len(), 2);
        let err = PackageInstalls::parse("{\"a\": {\"phase\": }", Path::new("e/package-installs.json")).unwrap_err();
        assert!(err.to_string().starts_with("e/package-installs.json:1: "), "{err}");
    }

    #[test]
    fn json_files_parse() {
        let text = r#"{"libxml2": null, "grub2": {"phase": "pre-install.d"}, "nm": {"uninstall": true}}"#;
        let parsed = PackageInstalls::parse(text, Path::new("e/package-installs.json")).unwrap();
        assert_eq!(parsed.decls.len(), 3);
        assert_eq!(parsed.decls[2].params.uninstall, Some(true));
    }
}
