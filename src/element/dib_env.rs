//! What disk-image-create exports to every element script besides the hooks themselves: its
//! variables with its defaults (`lib/disk-image-create`, `lib/img-defaults`,
//! `lib/common-defaults`) and the shell function `get_image_element_array` that `element-info`
//! defines and exports. The planner puts them in the plan's environment; the `sudo` outside
//! scripts call is a runtime helper (`stage/helpers/sudo`). docs/dib-compat.md lists each entry
//! and where we differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::installtype::DEFAULT_INSTALL_TYPE;

/// The element set as DIB describes it to scripts: name -> directory.
pub type ElementDirs<'a> = [(&'a str, &'a Path)];

/// What the plan knows that DIB turns into variables. The values of disk-image-create's other
/// flags (`--offline`, `--checksum`, `--image-size`, ...) arrive as variables from the command
/// line, named by `crate::settings`.
#[derive(Debug, Clone, Default)]
pub struct DibSettings {
    /// `--no-tmpfs` or the user's `DIB_NO_TMPFS=1` (`DIB_NO_TMPFS`).
    pub no_tmpfs: bool,
    /// `--root-label` / the recipe's label (`DIB_ROOT_LABEL`).
    pub root_label: String,
    /// The first output format, DIB's `IMAGE_TYPE`.
    pub image_type: String,
}

/// The variables disk-image-create exports before any hook runs, with its defaults; values
/// already in `env` (set by the user, `-e` or a flag) win, as DIB's `${VAR:-default}` does.
pub fn add_plan_variables(env: &mut BTreeMap<String, String>, elements: &ElementDirs, settings: &DibSettings) {
    let mut default = |key: &str, value: String| {
        env.entry(key.to_owned()).or_insert(value);
    };
    // disk-image-create runs everything under LC_ALL=C, so sort orders and messages are stable.
    default("LC_ALL", "C".into());
    default("DIB_DEFAULT_INSTALLTYPE", DEFAULT_INSTALL_TYPE.into());
    default("DIB_OFFLINE", String::new());
    default("DIB_CHECKSUM", "0".into());
    default("DIB_NO_TMPFS", if settings.no_tmpfs { "1" } else { "0" }.into());
    default("DIB_MIN_TMPFS", "2".into());
    default("DIB_ROOT_LABEL", settings.root_label.clone());
    // The disk stage writes ext4 roots only.
    default("FS_TYPE", "ext4".into());
    default("DIB_ROOT_FSTYPE", "ext4".into());
    default("IMAGE_TYPE", settings.image_type.clone());
    if let Some(python) = host_python() {
        default("DIB_PYTHON_EXEC", python.display().to_string());
    }
    default("IMAGE_ELEMENT_YAML", image_element_yaml(elements));
    default(GET_IMAGE_ELEMENT_ARRAY_VAR, get_image_element_array(elements));
    let dib_env = dib_env_declaration(env);
    env.entry("DIB_ENV".into()).or_insert(dib_env);
}

/// Bash imports a function from the environment variable `BASH_FUNC_<name>%%`: this is how
/// DIB's `export -f get_image_element_array` reaches every script, inside and outside.
pub const GET_IMAGE_ELEMENT_ARRAY_VAR: &str = "BASH_FUNC_get_image_element_array%%";

/// The body of `get_image_element_array`: prints `[name]=path ...` for
/// `eval declare -A image_elements=($(get_image_element_array))`.
fn get_image_element_array(elements: &ElementDirs) -> String {
    let pairs: String = elements.iter().map(|(name, path)| format!("[{name}]={} ", path.display())).collect();
    format!("() {{  echo \"{pairs}\"\n}}")
}

/// `IMAGE_ELEMENT_YAML`: a YAML mapping of element name to directory, as `element-info` dumps it.
fn image_element_yaml(elements: &ElementDirs) -> String {
    let map: BTreeMap<&str, String> = elements.iter().map(|(name, path)| (*name, path.display().to_string())).collect();
    serde_yaml_ng::to_string(&map).unwrap_or_default()
}

/// `DIB_ENV`: DIB records the `DIB_*` variables it started with as `declare -p` output, which the
/// manifests element writes to `dib_environment`.
fn dib_env_declaration(env: &BTreeMap<String, String>) -> String {
    env.iter()
        .filter(|(key, _)| key.starts_with("DIB_") && *key != "DIB_ENV")
        .map(|(key, value)| format!("declare -x {key}=\"{}\"", double_quoted(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `value` escaped for the inside of bash double quotes.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// DIB exports its own interpreter; elements' outside scripts run Python helpers with it.
fn host_python() -> Option<PathBuf> {
    ["/usr/bin/python3", "/usr/local/bin/python3"].iter().map(PathBuf::from).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn planned_env() -> BTreeMap<String, String> {
        let elements = [("base", Path::new("/e/base")), ("os-apply-config", Path::new("/t/os-apply-config"))];
        let mut env = BTreeMap::from([("DIB_OFFLINE".to_owned(), "1".to_owned())]);
        let settings =
            DibSettings { root_label: "cloudimg-rootfs".into(), image_type: "qcow2".into(), no_tmpfs: false };
        add_plan_variables(&mut env, &elements, &settings);
        env
    }

    #[test]
    fn dib_defaults_fill_in_and_user_values_win() {
        let env = planned_env();
        assert_eq!(env["DIB_DEFAULT_INSTALLTYPE"], "source");
        assert_eq!(env["DIB_OFFLINE"], "1");
        assert_eq!(env["DIB_ROOT_LABEL"], "cloudimg-rootfs");
        assert_eq!(env["DIB_MIN_TMPFS"], "2");
        assert_eq!(env["LC_ALL"], "C");
        assert!(!env.contains_key("DIB_IMAGE_SIZE"));
        assert!(env["DIB_ENV"].contains("declare -x DIB_OFFLINE=\"1\""), "{}", env["DIB_ENV"]);
    }

    #[test]
    fn image_element_yaml_maps_names_to_dirs() {
        let env = planned_env();
        let parsed: BTreeMap<String, String> = serde_yaml_ng::from_str(&env["IMAGE_ELEMENT_YAML"]).unwrap();
        assert_eq!(parsed["os-apply-config"], "/t/os-apply-config");
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn get_image_element_array_is_a_bash_function_scripts_can_eval() {
        let env = planned_env();
        let output = Command::new("bash")
            .arg("-c")
            .arg("eval declare -A e=($(get_image_element_array)); echo \"${e[os-apply-config]} ${#e[@]}\"")
            .env(GET_IMAGE_ELEMENT_ARRAY_VAR, &env[GET_IMAGE_ELEMENT_ARRAY_VAR])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "/t/os-apply-config 2");
    }

    #[test]
    fn dib_env_escapes_for_bash() {
        let env = BTreeMap::from([("DIB_X".to_owned(), "a\"$b`c".to_owned())]);
        let declared = dib_env_declaration(&env);
        let output = Command::new("bash").arg("-c").arg(format!("{declared}; printf %s \"$DIB_X\"")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "a\"$b`c");
    }
}
