//! Where the tool finds its own data (elements, recipes) and its caches.

use std::path::PathBuf;

/// Directory holding the project's `elements/` and `recipes/`.
///
/// Looked up in order: `$MESOS_IMAGE_DATA_DIR`, `<exe>/../share/mesos-image` (installed layout,
/// used by the container image), then the source checkout the binary was built from.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESOS_IMAGE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(|bin| bin.parent()) {
            let shared = prefix.join("share/mesos-image");
            if shared.join("elements").is_dir() {
                return shared;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Our own elements: always the last `ELEMENTS_PATH` entry.
pub fn builtin_elements_dir() -> PathBuf {
    data_dir().join("elements")
}

/// Our own recipes.
pub fn builtin_recipes_dir() -> PathBuf {
    data_dir().join("recipes")
}

/// Default cache root: `$XDG_CACHE_HOME/mesos-image` or `~/.cache/mesos-image`.
pub fn default_cache_dir() -> PathBuf {
    // A relative or empty value (`HOME=''`) would put the cache in the current directory: the
    // XDG spec says to ignore such values, and HOME falls back to the user's passwd entry.
    let absolute = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        return xdg.join("mesos-image");
    }
    let home = absolute("HOME")
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|user| user.dir))
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/mesos-image")
}
