//! The base step: the base tree (mmdebstrap or debootstrap from a mirror, or an Ubuntu
//! cloud-image root tarball / squashfs, sha256-verified and cached). Element `root.d` is the
//! pipeline's next step.

use std::collections::BTreeMap;
use std::fs;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::{target_config, BuildContext};
use crate::io;
use crate::recipe::BaseMethod;

/// Errors a user can fix, each naming the culprit.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error(
        "no mirror for {distro} {release}: pass --mirror, set DIB_DISTRIBUTION_MIRROR or set `mirror:` in the recipe"
    )]
    NoMirror { distro: String, release: String },
    #[error("{file}: not listed in {sums}")]
    NotInSums { file: String, sums: String },
    #[error("{file}: sha256 mismatch (expected {expected}, got {actual}) against {sums}")]
    ChecksumMismatch { file: String, expected: String, actual: String, sums: String },
}

/// Make the base tree in `ctx.target` as `ctx.plan.base` says (nothing when the elements'
/// `root.d`, the pipeline's next step, makes it).
pub fn run(ctx: &BuildContext) -> anyhow::Result<()> {
    fs::create_dir_all(&ctx.target).with_context(|| format!("cannot create {}", ctx.target.display()))?;
    match ctx.plan.base {
        Some(BaseMethod::Mmdebstrap) if program_exists("mmdebstrap") => mmdebstrap(ctx)?,
        Some(BaseMethod::Mmdebstrap | BaseMethod::Debootstrap) => debootstrap(ctx)?,
        Some(BaseMethod::CloudImage) => cloud_image(ctx)?,
        None => {}
    }
    if matches!(ctx.plan.base, Some(BaseMethod::Mmdebstrap | BaseMethod::Debootstrap)) {
        forget_build_host(&ctx.target)?;
    }
    empty_dev(&ctx.target)
}

/// The tree's `/dev` is left empty, as a rootless build must leave it (a user namespace cannot
/// create device nodes: mmdebstrap then makes none), so root and rootless builds hold the same
/// bytes. Nothing needs them there: the chroot gets its own `/dev` (`sandbox::ChrootMounts`)
/// and the booted guest a devtmpfs, which its initramfs mounts.
fn empty_dev(target: &Path) -> anyhow::Result<()> {
    let dev = target.join("dev");
    let Ok(entries) = fs::read_dir(&dev) else { return Ok(()) };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dev.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            crate::sandbox::remove_tree(&path)?;
        } else {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Both bootstrap tools copy the build host's resolv.conf and hostname into the tree; neither
/// belongs in an image (cloud-init sets the guest's own at boot).
fn forget_build_host(target: &Path) -> anyhow::Result<()> {
    let same_as_host = |file: &str| {
        let host = fs::read(Path::new("/").join(file)).ok();
        host.is_some() && fs::read(target.join(file)).ok() == host
    };
    if same_as_host("etc/resolv.conf") {
        fs::remove_file(target.join("etc/resolv.conf"))
            .context("cannot remove the build host's resolv.conf from the tree")?;
    }
    if same_as_host("etc/hostname") {
        fs::write(target.join("etc/hostname"), "localhost\n").context("cannot reset the tree's hostname")?;
    }
    Ok(())
}

fn mirror<'a>(ctx: &BuildContext<'a>) -> Result<&'a str, RootError> {
    ctx.plan
        .mirror
        .as_deref()
        .ok_or_else(|| RootError::NoMirror { distro: ctx.plan.distro.clone(), release: ctx.plan.release.clone() })
}

/// Ubuntu's archive keys come from the host's ubuntu-keyring; Debian's are the tools' default.
fn keyring(distro: &str) -> Option<&'static str> {
    (distro == "ubuntu").then_some("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
}

/// Ubuntu's server packages (mesos' dependencies among them) live in universe.
pub fn components(distro: &str) -> &'static str {
    if distro == "ubuntu" {
        "main,universe"
    } else {
        "main"
    }
}

/// Packages beyond minbase the later stages need: CA certificates when apt talks https.
fn extra_includes(mirror: &str) -> Vec<&'static str> {
    if mirror.starts_with("https:") {
        vec!["ca-certificates"]
    } else {
        Vec::new()
    }
}

/// mmdebstrap (measured: minbase 20 s vs debootstrap 29 s). dpkg gets `force-unsafe-io`
/// through our own config file (removed in cleanup). The shared package cache is bound onto
/// the tree's archives for the run; mmdebstrap must then keep its hands off the archives
/// (`cleanup/apt/cache`, `essential/unlink`), or it would delete through into the cache.
/// Lists are kept so the first package phase needs no `apt-get update`.
fn mmdebstrap(ctx: &BuildContext) -> anyhow::Result<()> {
    let plan = ctx.plan;
    let mirror = mirror(ctx)?;
    let _step = ctx.reporter.step(format!("base: mmdebstrap {} {} {}", plan.distro, plan.release, plan.arch));
    let mut command = Command::new("mmdebstrap");
    command
        .args(["--mode=root", "--format=directory", "--variant=minbase"])
        .arg(format!("--architectures={}", plan.arch))
        .arg(format!("--components={}", components(&plan.distro)))
        .arg(format!("--skip={}", MMDEBSTRAP_SKIPS.join(",")))
        .arg(format!(
            "--setup-hook=mkdir -p \"$1/etc/dpkg/dpkg.cfg.d\" && echo force-unsafe-io > \"$1/{}\"",
            target_config::UNSAFE_IO_CONFIG
        ))
        .args(excludes_hook(&plan.env));
    add_suite_arguments(&mut command, ctx, mirror);
    let cache = super::packages::ArchiveCache::bind(ctx)?;
    let result = ctx.reporter.run("mmdebstrap", &mut command);
    cache.release()?;
    result
}

/// What mmdebstrap leaves undone: the lists stay (the package stage needs no update), the
/// archives are the bound cache's, and the target is not empty (it holds the mount point).
const MMDEBSTRAP_SKIPS: [&str; 4] = ["cleanup/apt/lists", "cleanup/apt/cache", "essential/unlink", "check/empty"];

/// The dpkg excludes go in before the first package is unpacked, so the essential set is
/// unpacked without its documentation too.
fn excludes_hook(env: &BTreeMap<String, String>) -> Option<String> {
    let text = target_config::dpkg_excludes(env)?;
    let path = target_config::EXCLUDES_CONFIG;
    Some(format!("--setup-hook=printf %s {} > \"$1/{path}\"", crate::shell::quote(&text)))
}

/// debootstrap, when mmdebstrap is missing or asked for; its `--cache-dir` is the shared cache.
fn debootstrap(ctx: &BuildContext) -> anyhow::Result<()> {
    let plan = ctx.plan;
    let mirror = mirror(ctx)?;
    let _step = ctx.reporter.step(format!("base: debootstrap {} {} {}", plan.distro, plan.release, plan.arch));
    fs::create_dir_all(&ctx.apt_cache).with_context(|| format!("cannot create {}", ctx.apt_cache.display()))?;
    let mut command = Command::new("debootstrap");
    command
        .arg("--variant=minbase")
        .arg(format!("--arch={}", plan.arch))
        .arg(format!("--components={}", components(&plan.distro)))
        .arg(format!("--cache-dir={}", ctx.apt_cache.display()));
    add_suite_arguments(&mut command, ctx, mirror);
    let _exclusive = super::packages::lock_cache(ctx)?;
    ctx.reporter.run("debootstrap", &mut command)
}

/// What mmdebstrap and debootstrap take alike: keyring, extra packages, then suite, target, mirror.
fn add_suite_arguments(command: &mut Command, ctx: &BuildContext, mirror: &str) {
    let plan = ctx.plan;
    if let Some(keyring) = keyring(&plan.distro) {
        command.arg(format!("--keyring={keyring}"));
    }
    let includes = extra_includes(mirror);
    if !includes.is_empty() {
        command.arg(format!("--include={}", includes.join(",")));
    }
    command.arg(&plan.release).arg(&ctx.target).arg(mirror);
}

fn program_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// Where DIB's `ubuntu` element looks for the cloud image, from the plan's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudImageSource {
    /// `BASE_IMAGE_FILE`, e.g. `trusty-server-cloudimg-amd64-root.tar.gz`.
    pub file: String,
    /// `<DIB_CLOUD_IMAGES>/<file>`.
    pub url: String,
    /// `SHA256SUMS` URL.
    pub sums_url: String,
}

impl CloudImageSource {
    /// DIB's variables: `DIB_CLOUD_IMAGES`, `BASE_IMAGE_FILE`, `SHA256SUMS`.
    pub fn from_env(env: &BTreeMap<String, String>, release: &str, arch: &str) -> CloudImageSource {
        let base = env
            .get("DIB_CLOUD_IMAGES")
            .cloned()
            .unwrap_or_else(|| format!("https://cloud-images.ubuntu.com/releases/{release}/release"));
        let base = base.trim_end_matches('/').to_owned();
        let file = env
            .get("BASE_IMAGE_FILE")
            .cloned()
            .unwrap_or_else(|| format!("{release}-server-cloudimg-{arch}-root.tar.gz"));
        let sums_url = env.get("SHA256SUMS").cloned().unwrap_or_else(|| format!("{base}/SHA256SUMS"));
        CloudImageSource { url: format!("{base}/{file}"), file, sums_url }
    }
}

fn cloud_image(ctx: &BuildContext) -> anyhow::Result<()> {
    let source = CloudImageSource::from_env(&ctx.plan.env, &ctx.plan.release, &ctx.plan.arch);
    let _step = ctx.reporter.step(format!("base: cloud image {}", source.file));
    let image = fetch_verified(ctx, &source)?;
    extract(ctx, &image, &source.file)
}

/// Download (or reuse from the cache) the image and check it against SHA256SUMS, which is
/// fetched every time so a changed `current` image is noticed.
pub fn fetch_verified(ctx: &BuildContext, source: &CloudImageSource) -> anyhow::Result<PathBuf> {
    let dir = ctx.cache_dir.join("cloud-images");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sums_path = dir.join(format!("{}.SHA256SUMS", source.file));
    download(ctx, &source.sums_url, &sums_path)?;
    let sums = fs::read_to_string(&sums_path).with_context(|| format!("cannot read {}", sums_path.display()))?;
    let expected = expected_sum(&sums, &source.file)
        .ok_or_else(|| RootError::NotInSums { file: source.file.clone(), sums: source.sums_url.clone() })?;
    let image = dir.join(&source.file);
    if image.is_file() && sha256_file(&image)? == expected {
        return Ok(image);
    }
    download(ctx, &source.url, &image)?;
    let actual = sha256_file(&image)?;
    if actual != expected {
        // Never leave a file in the cache that failed its check.
        let _ = fs::remove_file(&image);
        return Err(RootError::ChecksumMismatch {
            file: source.file.clone(),
            expected,
            actual,
            sums: source.sums_url.clone(),
        }
        .into());
    }
    Ok(image)
}

/// curl to a temporary name, renamed on success (curl handles http, https, file and proxies).
fn download(ctx: &BuildContext, url: &str, dest: &Path) -> anyhow::Result<()> {
    let partial = dest.with_extension("part");
    let mut command = Command::new("curl");
    command
        .args(["--fail", "--silent", "--show-error", "--location", "--retry", "3", "--output"])
        .arg(&partial)
        .arg(url);
    if let Err(err) = ctx.reporter.run(&format!("download {url}"), &mut command) {
        let _ = fs::remove_file(&partial);
        return Err(err);
    }
    fs::rename(&partial, dest).with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))
}

/// The hash SHA256SUMS lists for `file` (`HASH *FILE` or `HASH  FILE` lines).
pub fn expected_sum(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (hash, name) = line.split_once(char::is_whitespace)?;
        let name = name.trim_start().trim_start_matches('*');
        (name == file).then(|| hash.to_ascii_lowercase())
    })
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let (digest, _) = io::sha256_file(path).with_context(|| format!("cannot hash {}", path.display()))?;
    Ok(digest)
}

/// Unpack a root tarball (owners, modes, xattrs kept) or a squashfs into the target.
fn extract(ctx: &BuildContext, image: &Path, file: &str) -> anyhow::Result<()> {
    let mut command = if file.ends_with(".squashfs") {
        let mut unsquash = Command::new("unsquashfs");
        unsquash.args(["-force", "-no-progress", "-dest"]).arg(&ctx.target).arg(image);
        unsquash
    } else {
        let mut tar = Command::new("tar");
        tar.arg("--extract").arg("--numeric-owner").arg("--xattrs").arg("--xattrs-include=*");
        // Device nodes cannot be made in a rootless build's namespace; `/dev` stays empty in
        // every build (see `empty_dev`).
        tar.args(["--exclude=./dev/*", "--exclude=dev/*"]);
        tar.arg("--directory").arg(&ctx.target).arg("--file").arg(image);
        tar
    };
    ctx.reporter.run(&format!("extract {file}"), &mut command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_lines_in_both_styles_are_found() {
        let sums = "abc *trusty-root.tar.gz\nDEF  other.img\n";
        assert_eq!(expected_sum(sums, "trusty-root.tar.gz").as_deref(), Some("abc"));
        assert_eq!(expected_sum(sums, "other.img").as_deref(), Some("def"));
        assert_eq!(expected_sum(sums, "missing"), None);
    }

    #[test]
    fn dib_variables_choose_the_image() {
        let mut env = BTreeMap::new();
        let default = CloudImageSource::from_env(&env, "trusty", "amd64");
        assert_eq!(default.file, "trusty-server-cloudimg-amd64-root.tar.gz");
        assert!(default.url.ends_with("/releases/trusty/release/trusty-server-cloudimg-amd64-root.tar.gz"));
        env.insert("DIB_CLOUD_IMAGES".into(), "http://127.0.0.1:1/images/".into());
        env.insert("BASE_IMAGE_FILE".into(), "noble.squashfs".into());
        let custom = CloudImageSource::from_env(&env, "noble", "amd64");
        assert_eq!(custom.url, "http://127.0.0.1:1/images/noble.squashfs");
        assert_eq!(custom.sums_url, "http://127.0.0.1:1/images/SHA256SUMS");
    }
}
