//! Build-time configuration of the target that must not ship in the image: services blocked
//! (`policy-rc.d`), the host's resolver (`resolv.conf`, as DIB swaps it), dpkg's
//! `force-unsafe-io` and dpkg's `path-exclude`s for what no image needs at run time. [`enter`] is idempotent (a tree restored from the stage cache may
//! already have it); [`leave`] undoes exactly what we added.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::BuildContext;

/// Marks our policy-rc.d, so a tree that ships its own keeps it.
const POLICY_MARKER: &str = "# mesos-image: no services start while the image is built";
/// dpkg config file that turns off fsync for the build (the image is synced once at the end).
pub const UNSAFE_IO_CONFIG: &str = "etc/dpkg/dpkg.cfg.d/mesos-image-unsafe-io";

/// dpkg config file that keeps documentation, man pages and translations out of the tree.
pub const EXCLUDES_CONFIG: &str = "etc/dpkg/dpkg.cfg.d/mesos-image-excludes";
/// Set to `1` (recipe `environment:` or `-e`) to keep documentation, man pages and translations.
pub const KEEP_DOCS_VARIABLE: &str = "MESOS_IMAGE_KEEP_DOCS";

/// What no image needs at run time: unpacking it is I/O, shipping it is size. Copyright files
/// stay (the licences ask for them); the man section directories themselves are recreated by
/// debian-common, because Java's update-alternatives needs `/usr/share/man/man1`.
const EXCLUDED_PATHS: [&str; 7] = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
];

/// The dpkg excludes for a build with these variables, or `None` when the build keeps docs.
/// Message catalogues of the image's own language (`DIB_DEBIAN_LOCALE`) are kept.
pub fn dpkg_excludes(env: &std::collections::BTreeMap<String, String>) -> Option<String> {
    if env.get(KEEP_DOCS_VARIABLE).is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let mut text = String::from("# mesos-image: kept out of the image while it is built\n");
    for line in EXCLUDED_PATHS {
        text.push_str(line);
        text.push('\n');
    }
    let language = env.get("DIB_DEBIAN_LOCALE").map(|l| l.split(['_', '.', '@']).next().unwrap_or_default());
    if let Some(language) = language.filter(|l| !l.is_empty() && !matches!(*l, "C" | "POSIX")) {
        text.push_str(&format!("path-include=/usr/share/locale/{language}/*\n"));
    }
    Some(text)
}

fn policy_rc_d(target: &Path) -> PathBuf {
    target.join("usr/sbin/policy-rc.d")
}

fn resolv(target: &Path) -> PathBuf {
    target.join("etc/resolv.conf")
}

fn resolv_saved(target: &Path) -> PathBuf {
    target.join("etc/resolv.conf.ORIG")
}

/// Present while the tree holds our build-time resolv.conf. Without it a second [`enter`]
/// could not tell our copy from the tree's own and would save ours as the original.
fn resolv_swapped(target: &Path) -> PathBuf {
    target.join("etc/resolv.conf.mesos-image-build")
}

/// Block services, give the chroot the host's resolver, make dpkg skip fsync.
pub fn enter(ctx: &BuildContext) -> anyhow::Result<()> {
    let target = &ctx.target;
    block_services(target)?;
    use_host_resolver(target)?;
    write_unsafe_io(target)?;
    write_excludes(target, &ctx.plan.env)
}

/// Undo [`enter`]: unblock services, restore resolv.conf, remove the dpkg setting.
pub fn leave(ctx: &BuildContext) -> anyhow::Result<()> {
    let target = &ctx.target;
    let policy = policy_rc_d(target);
    if fs::read_to_string(&policy).map(|text| text.contains(POLICY_MARKER)).unwrap_or(false) {
        fs::remove_file(&policy).with_context(|| format!("cannot remove {}", policy.display()))?;
    }
    restore_resolver(target)?;
    remove_if_present(&target.join(EXCLUDES_CONFIG))?;
    remove_if_present(&target.join(UNSAFE_IO_CONFIG))
}

fn block_services(target: &Path) -> anyhow::Result<()> {
    let policy = policy_rc_d(target);
    if fs::symlink_metadata(&policy).is_ok() {
        return Ok(());
    }
    if let Some(dir) = policy.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&policy, format!("#!/bin/sh\n{POLICY_MARKER}\nexit 101\n"))
        .with_context(|| format!("cannot write {}", policy.display()))?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", policy.display()))
}

/// DIB: move the tree's resolv.conf (file or symlink) aside to `resolv.conf.ORIG` and put the
/// host's content in its place.
fn use_host_resolver(target: &Path) -> anyhow::Result<()> {
    let current = resolv(target);
    let swapped = resolv_swapped(target);
    if fs::symlink_metadata(&swapped).is_ok() {
        return Ok(());
    }
    if let Some(dir) = current.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if fs::symlink_metadata(&current).is_ok() {
        let saved = resolv_saved(target);
        fs::rename(&current, &saved).with_context(|| format!("cannot move {} aside", current.display()))?;
    }
    let host = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(&current, host).with_context(|| format!("cannot write {}", current.display()))?;
    fs::write(&swapped, "").with_context(|| format!("cannot write {}", swapped.display()))
}

/// DIB: if an element turned resolv.conf into a symlink, keep it; otherwise put the original
/// back (or leave none if the tree had none).
fn restore_resolver(target: &Path) -> anyhow::Result<()> {
    let current = resolv(target);
    let saved = resolv_saved(target);
    let swapped = resolv_swapped(target);
    if fs::symlink_metadata(&swapped).is_err() {
        return Ok(());
    }
    remove_if_present(&swapped)?;
    let element_made_symlink = fs::symlink_metadata(&current).map(|m| m.file_type().is_symlink()).unwrap_or(false);
    if element_made_symlink {
        return remove_if_present(&saved);
    }
    remove_if_present(&current)?;
    if fs::symlink_metadata(&saved).is_ok() {
        fs::rename(&saved, &current).with_context(|| format!("cannot restore {}", current.display()))?;
    }
    Ok(())
}

fn write_unsafe_io(target: &Path) -> anyhow::Result<()> {
    let path = target.join(UNSAFE_IO_CONFIG);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, "force-unsafe-io\n").with_context(|| format!("cannot write {}", path.display()))
}

fn write_excludes(target: &Path, env: &std::collections::BTreeMap<String, String>) -> anyhow::Result<()> {
    let Some(text) = dpkg_excludes(env) else {
        return Ok(());
    };
    let path = target.join(EXCLUDES_CONFIG);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with_resolv(text: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        if let Some(text) = text {
            fs::write(resolv(root.path()), text).unwrap();
        }
        root
    }

    #[test]
    fn excludes_keep_copyright_and_the_image_language_and_can_be_turned_off() {
        let mut env = std::collections::BTreeMap::new();
        let text = dpkg_excludes(&env).unwrap();
        assert!(text.contains("path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"));
        assert!(!text.contains("/usr/share/locale/C"));
        env.insert("DIB_DEBIAN_LOCALE".to_owned(), "de_DE.UTF-8".to_owned());
        assert!(dpkg_excludes(&env).unwrap().ends_with("path-include=/usr/share/locale/de/*\n"));
        env.insert(KEEP_DOCS_VARIABLE.to_owned(), "0".to_owned());
        assert!(dpkg_excludes(&env).is_some());
        env.insert(KEEP_DOCS_VARIABLE.to_owned(), "1".to_owned());
        assert_eq!(dpkg_excludes(&env), None);
    }

    #[test]
    fn repeated_swaps_restore_the_original_resolv_conf() {
        let tree = tree_with_resolv(Some("nameserver 192.0.2.1\n"));
        for _ in 0..3 {
            use_host_resolver(tree.path()).unwrap();
        }
        restore_resolver(tree.path()).unwrap();
        assert_eq!(fs::read_to_string(resolv(tree.path())).unwrap(), "nameserver 192.0.2.1\n");
        assert!(!resolv_saved(tree.path()).exists() && !resolv_swapped(tree.path()).exists());
    }

    #[test]
    fn a_tree_without_resolv_conf_ends_without_one() {
        let tree = tree_with_resolv(None);
        use_host_resolver(tree.path()).unwrap();
        use_host_resolver(tree.path()).unwrap();
        assert!(resolv(tree.path()).exists(), "the build gets the host's resolver");
        restore_resolver(tree.path()).unwrap();
        assert!(!resolv(tree.path()).exists());
        assert!(!resolv_saved(tree.path()).exists());
    }

    #[test]
    fn a_symlink_made_by_an_element_is_kept() {
        let tree = tree_with_resolv(Some("original\n"));
        use_host_resolver(tree.path()).unwrap();
        fs::remove_file(resolv(tree.path())).unwrap();
        std::os::unix::fs::symlink("/run/systemd/resolve/stub-resolv.conf", resolv(tree.path())).unwrap();
        restore_resolver(tree.path()).unwrap();
        assert!(fs::symlink_metadata(resolv(tree.path())).unwrap().file_type().is_symlink());
        assert!(!resolv_saved(tree.path()).exists());
    }
}
