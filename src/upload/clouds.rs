//! `clouds.yaml` + `secure.yaml`, found where openstacksdk looks for them.
//!
//! Order: `$OS_CLIENT_CONFIG_FILE` (`$OS_CLIENT_SECURE_FILE` for secure.yaml), then the current
//! directory, `$XDG_CONFIG_HOME/openstack` (default `~/.config/openstack`), `/etc/openstack`;
//! in each, `<name>.yaml`, `<name>.yml`, `<name>.json`. The first file found is the only one read.
//! secure.yaml is merged over clouds.yaml key by key, so passwords can live apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum CloudsError {
    #[error("cloud `{cloud}` was asked for but no clouds.yaml was found (searched {searched})")]
    NoConfig { cloud: String, searched: String },
    #[error("cloud `{cloud}` is not in {path} (clouds there: {known})")]
    UnknownCloud { cloud: String, path: PathBuf, known: String },
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value of the wrong type or outside its set, found before any network work.
    #[error("{path}: cloud `{cloud}`: {key}: {problem}")]
    BadValue { path: PathBuf, cloud: String, key: String, problem: String },
}

/// One cloud's settings, as strings (the way openstacksdk treats them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloudEntry {
    /// Keys of the `auth:` mapping: `auth_url`, `username`, `password`, `project_name`, ...
    pub auth: BTreeMap<String, String>,
    /// Top-level keys: `auth_type`, `region_name`, `interface`, `cacert`, `verify`,
    /// `image_endpoint_override`, ...
    pub settings: BTreeMap<String, String>,
}

impl CloudEntry {
    pub fn auth(&self, key: &str) -> Option<String> {
        self.auth.get(key).cloned()
    }

    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings.get(key).cloned()
    }
}

/// Directories searched, in order, given an environment lookup.
pub fn search_dirs(env: &dyn Fn(&str) -> Option<String>, cwd: &Path) -> Vec<PathBuf> {
    let user = match env("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg).join("openstack"),
        None => PathBuf::from(env("HOME").unwrap_or_else(|| "/root".to_owned())).join(".config/openstack"),
    };
    vec![cwd.to_owned(), user, PathBuf::from("/etc/openstack")]
}

/// The config file to read: the override variable's file, else the first `<stem>.{yaml,yml,json}`.
pub fn find_file(
    override_var: &str,
    stem: &str,
    env: &dyn Fn(&str) -> Option<String>,
    dirs: &[PathBuf],
) -> Option<PathBuf> {
    if let Some(path) = env(override_var).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    dirs.iter()
        .flat_map(|dir| ["yaml", "yml", "json"].map(|ext| dir.join(format!("{stem}.{ext}"))))
        .find(|candidate| candidate.is_file())
}

/// Load cloud `name` from the files the process environment points at.
pub fn load(name: &str) -> Result<CloudEntry, CloudsError> {
    let env = |key: &str| std::env::var(key).ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let dirs = search_dirs(&env, &cwd);
    let clouds = find_file("OS_CLIENT_CONFIG_FILE", "clouds", &env, &dirs);
    let secure = find_file("OS_CLIENT_SECURE_FILE", "secure", &env, &dirs);
    let Some(clouds) = clouds else {
        let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(CloudsError::NoConfig { cloud: name.to_owned(), searched });
    };
    load_from(name, &clouds, secure.as_deref())
}

/// Load cloud `name` from a clouds file, merged with a secure file if there is one.
pub fn load_from(name: &str, clouds_path: &Path, secure_path: Option<&Path>) -> Result<CloudEntry, CloudsError> {
    let clouds = read_clouds(clouds_path)?;
    let mut entry = clouds.get(name).cloned().ok_or_else(|| CloudsError::UnknownCloud {
        cloud: name.to_owned(),
        path: clouds_path.to_owned(),
        known: known_names(&clouds),
    })?;
    check_cloud(name, &entry, clouds_path)?;
    if let Some(secure_path) = secure_path.filter(|p| p.is_file()) {
        if let Some(secret) = read_clouds(secure_path)?.get(name) {
            // Checked on its own, so an error names the file the bad value is in.
            check_cloud(name, secret, secure_path)?;
            merge(&mut entry, secret);
        }
    }
    Ok(entry_from_value(&entry))
}

fn read_clouds(path: &Path) -> Result<Mapping, CloudsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CloudsError::Read { path: path.to_owned(), source })?;
    let parse_error = |message: String| CloudsError::Parse { path: path.to_owned(), message };
    // JSON is YAML, so one parser reads all three extensions.
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
    match doc.get("clouds") {
        Some(Value::Mapping(clouds)) => Ok(clouds.clone()),
        Some(_) => Err(parse_error("`clouds` must be a mapping of cloud names".to_owned())),
        None => Ok(Mapping::new()),
    }
}

fn known_names(clouds: &Mapping) -> String {
    let names: Vec<&str> = clouds.keys().filter_map(Value::as_str).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Deep-merge `over` into `base`: mappings merge, everything else is replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// What a key of a cloud entry must hold. Keys not listed here are openstacksdk's business, not
/// ours: they are kept when scalar and otherwise ignored, as before.
#[derive(Clone, Copy)]
enum Shape {
    /// Text only: a number here is a mistake (`auth_url: 5`), not a value.
    Text,
    /// Text or a number (names, IDs and passwords may look numeric: `project_id: 1234`).
    Word,
    /// `true`/`false` (or those words quoted).
    Bool,
    /// One of openstacksdk's endpoint interfaces.
    Interface,
    /// A list of region names or `{name: ...}` mappings.
    Regions,
}

const TOP_KEYS: &[(&str, Shape)] = &[
    ("auth_type", Shape::Text),
    ("region_name", Shape::Text),
    ("interface", Shape::Interface),
    ("verify", Shape::Bool),
    ("cacert", Shape::Text),
    ("cert", Shape::Text),
    ("key", Shape::Text),
    ("image_endpoint_override", Shape::Text),
    ("identity_api_version", Shape::Word),
    ("image_api_version", Shape::Word),
    ("regions", Shape::Regions),
];

/// Auth keys whose value is a URL; every other auth key is a [`Shape::Word`].
const AUTH_TEXT_KEYS: &[&str] = &["auth_url"];

const INTERFACES: &[&str] = &["public", "internal", "admin"];

/// Refuse values of the wrong type before anything uses them, naming the file, the cloud and
/// the key. Values are never quoted: the entry holds passwords.
fn check_cloud(cloud: &str, value: &Value, path: &Path) -> Result<(), CloudsError> {
    let bad = |key: &str, problem: String| CloudsError::BadValue {
        path: path.to_owned(),
        cloud: cloud.to_owned(),
        key: key.to_owned(),
        problem,
    };
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => return Ok(()),
        other => {
            let message = format!("cloud `{cloud}`: expected a mapping of settings, found {}", kind(other));
            return Err(CloudsError::Parse { path: path.to_owned(), message });
        }
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        if key == "auth" {
            check_auth(value).map_err(|(k, problem)| bad(&k, problem))?;
        } else if let Some((_, shape)) = TOP_KEYS.iter().find(|(name, _)| *name == key) {
            check_shape(value, *shape).map_err(|problem| bad(key, problem))?;
        }
    }
    Ok(())
}

fn check_auth(value: &Value) -> Result<(), (String, String)> {
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => return Ok(()),
        other => {
            return Err(("auth".to_owned(), format!("expected a mapping of auth settings, found {}", kind(other))))
        }
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let shape = if AUTH_TEXT_KEYS.contains(&key) { Shape::Text } else { Shape::Word };
        check_shape(value, shape).map_err(|problem| (format!("auth.{key}"), problem))?;
    }
    Ok(())
}

fn check_shape(value: &Value, shape: Shape) -> Result<(), String> {
    let ok = match (shape, value) {
        (_, Value::Null) | (Shape::Text | Shape::Interface, Value::String(_)) => true,
        (Shape::Word, Value::String(_) | Value::Number(_)) => true,
        (Shape::Bool, Value::Bool(_)) => true,
        (Shape::Bool, Value::String(s)) => s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"),
        (Shape::Regions, Value::Sequence(regions)) => return regions.iter().try_for_each(check_region),
        _ => false,
    };
    if !ok {
        return Err(format!("expected {}, found {}", expected(shape), kind(value)));
    }
    match (shape, value) {
        (Shape::Interface, Value::String(s))
            if !INTERFACES.contains(&s.trim_end_matches("URL").to_ascii_lowercase().as_str()) =>
        {
            Err(format!("`{s}`: expected public, internal or admin"))
        }
        _ => Ok(()),
    }
}

fn check_region(region: &Value) -> Result<(), String> {
    match region {
        Value::String(_) => Ok(()),
        Value::Mapping(map) if map.get("name").is_some_and(Value::is_string) => Ok(()),
        Value::Mapping(_) => Err("a region mapping needs a `name` that is text".to_owned()),
        other => Err(format!("expected region names or {{name: ...}} mappings, found {}", kind(other))),
    }
}

fn expected(shape: Shape) -> &'static str {
    match shape {
        Shape::Text => "text",
        Shape::Word => "text or a number",
        Shape::Bool => "true or false",
        Shape::Interface => "public, internal or admin",
        Shape::Regions => "a list of regions",
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// An entry [`check_cloud`] accepted, as strings.
fn entry_from_value(value: &Value) -> CloudEntry {
    let mut entry = CloudEntry::default();
    let Value::Mapping(map) = value else { return entry };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        if key == "auth" {
            if let Value::Mapping(auth) = value {
                entry.auth = scalars(auth);
            }
        } else if let Some(text) = scalar(value) {
            // `verify: "False"` and `verify: false` mean the same.
            let text = if key == "verify" { text.to_ascii_lowercase() } else { text };
            entry.settings.insert(key.to_owned(), text);
        }
    }
    entry
}

fn scalars(map: &Mapping) -> BTreeMap<String, String> {
    map.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v)?))).collect()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key: &str| map.get(key).cloned()
    }

    #[test]
    fn search_order_is_cwd_then_user_then_system() {
        let env = env_of(&[("HOME", "/home/u")]);
        let dirs = search_dirs(&env, Path::new("/work"));
        assert_eq!(
            dirs,
            vec![PathBuf::from("/work"), PathBuf::from("/home/u/.config/openstack"), PathBuf::from("/etc/openstack")]
        );
        let env = env_of(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/xdg")]);
        assert_eq!(search_dirs(&env, Path::new("/work"))[1], PathBuf::from("/xdg/openstack"));
    }

    #[test]
    fn first_existing_file_wins_and_the_override_beats_all() {
        let root = tempfile::tempdir().unwrap();
        let cwd = root.path().join("cwd");
        let user = root.path().join("user");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("clouds.yaml"), "clouds: {}\n").unwrap();
        let dirs = vec![cwd.clone(), user.clone()];
        let none = env_of(&[]);
        assert_eq!(find_file("OS_CLIENT_CONFIG_FILE", "clouds", &none, &dirs), Some(user.join("clouds.yaml")));

        std::fs::write(cwd.join("clouds.yml"), "clouds: {}\n").unwrap();
        assert_eq!(find_file("OS_CLIENT_CONFIG_FILE", "clouds", &none, &dirs), Some(cwd.join("clouds.yml")));

        let forced = env_of(&[("OS_CLIENT_CONFIG_FILE", "/elsewhere/c.yaml")]);
        assert_eq!(
            find_file("OS_CLIENT_CONFIG_FILE", "clouds", &forced, &dirs),
            Some(PathBuf::from("/elsewhere/c.yaml"))
        );
        assert_eq!(find_file("OS_CLIENT_SECURE_FILE", "secure", &none, &dirs), None);
    }

    #[test]
    fn secure_yaml_is_merged_over_clouds_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let clouds = dir.path().join("clouds.yaml");
        let secure = dir.path().join("secure.yaml");
        std::fs::write(
            &clouds,
            "clouds:\n  lab:\n    region_name: RegionOne\n    verify: false\n    auth:\n      auth_url: http://ks:5000/v3\n      username: demo\n      password: wrong\n  other: {}\n",
        )
        .unwrap();
        std::fs::write(&secure, "clouds:\n  lab:\n    auth:\n      password: right\n").unwrap();
        let entry = load_from("lab", &clouds, Some(&secure)).unwrap();
        assert_eq!(entry.auth("password").as_deref(), Some("right"));
        assert_eq!(entry.auth("username").as_deref(), Some("demo"));
        assert_eq!(entry.setting("region_name").as_deref(), Some("RegionOne"));
        assert_eq!(entry.setting("verify").as_deref(), Some("false"));

        let err = load_from("nope", &clouds, None).unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("lab, other"), "{err}");
    }

    #[test]
    fn json_clouds_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let clouds = dir.path().join("clouds.json");
        std::fs::write(&clouds, r#"{"clouds": {"j": {"auth": {"auth_url": "http://x/v3"}}}}"#).unwrap();
        assert_eq!(load_from("j", &clouds, None).unwrap().auth("auth_url").as_deref(), Some("http://x/v3"));
    }

    #[test]
    fn values_of_the_wrong_type_name_file_cloud_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let clouds = dir.path().join("clouds.yaml");
        std::fs::write(
            &clouds,
            "clouds:\n  n: {auth: {auth_url: 5}}\n  s: {auth: x}\n  r: {regions: {a: 1}}\n  v: {verify: maybe}\n  \
             i: {interface: [x]}\n  w: {interface: sideways}\n  e: text\n  \
             ok: {verify: \"False\", interface: internalURL, regions: [a, {name: b}], auth: {project_id: 1234, password: hunter2}}\n",
        )
        .unwrap();
        let err = |cloud: &str| load_from(cloud, &clouds, None).unwrap_err().to_string();
        let file = clouds.display().to_string();
        for (cloud, text) in [
            ("n", "cloud `n`: auth.auth_url: expected text, found a number"),
            ("s", "cloud `s`: auth: expected a mapping of auth settings, found text"),
            ("r", "cloud `r`: regions: expected a list of regions, found a mapping"),
            ("v", "cloud `v`: verify: expected true or false, found text"),
            ("i", "cloud `i`: interface: expected public, internal or admin, found a list"),
            ("w", "cloud `w`: interface: `sideways`: expected public, internal or admin"),
            ("e", "cloud `e`: expected a mapping of settings, found text"),
        ] {
            let message = err(cloud);
            assert_eq!(message, format!("{file}: {text}"));
        }
        let entry = load_from("ok", &clouds, None).unwrap();
        assert_eq!(entry.setting("verify").as_deref(), Some("false"));
        assert_eq!(entry.auth("project_id").as_deref(), Some("1234"));

        let secure = dir.path().join("secure.yaml");
        std::fs::write(&secure, "clouds:\n  ok: {auth: {password: [hunter2]}}\n").unwrap();
        let message = load_from("ok", &clouds, Some(&secure)).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}: cloud `ok`: auth.password: expected text or a number, found a list", secure.display())
        );
        assert!(!message.contains("hunter2"), "{message}");
    }
}
