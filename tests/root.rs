//! The root stage's base trees: the cloud-image path against a local HTTP server (fixture
//! tarball + SHA256SUMS on 127.0.0.1), mirror errors, and (root + network) a real mmdebstrap.

#[path = "phases_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use mesos_image::progress::Reporter;
use mesos_image::recipe::{BaseMethod, Overrides};
use mesos_image::stage::root;

/// A tiny HTTP/1.0 file server on 127.0.0.1 for `dir`; records the paths it was asked for.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(dir: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            seen.lock().unwrap().push(path.clone());
            let response = match fs::read(dir.join(path.trim_start_matches('/'))) {
                Ok(body) => {
                    let mut head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                    head.extend(body);
                    head
                }
                Err(_) => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    Server { base, requests }
}

/// Pack the fixture root into `<served>/releases/fixture-root.tar.gz`; returns its sha256.
fn publish_fixture(served: &Path) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloud-image/root");
    let releases = served.join("releases");
    fs::create_dir_all(&releases).unwrap();
    let tarball = releases.join("fixture-root.tar.gz");
    let status = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&fixture).arg(".").status().unwrap();
    assert!(status.success());
    mesos_image::io::sha256_file(&tarball).unwrap().0
}

/// Ubuntu trusty from a cloud image, as `--base cloud-image -e DIB_CLOUD_IMAGES=... -e
/// BASE_IMAGE_FILE=...` plans it; elements go under `work/elements`.
fn cloud_plan(server: &Server, work: &Path, image_file: &str) -> mesos_image::plan::Plan {
    let environment = BTreeMap::from([
        ("DIB_CLOUD_IMAGES".to_owned(), format!("{}/releases", server.base)),
        ("BASE_IMAGE_FILE".to_owned(), image_file.to_owned()),
    ]);
    let overrides = Overrides {
        release: Some("trusty".into()),
        base: Some(BaseMethod::CloudImage),
        environment,
        ..Overrides::default()
    };
    support::plan_on(&work.join("elements"), &[], "ubuntu", overrides)
}

#[test]
fn cloud_image_is_downloaded_verified_cached_and_extracted() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    let sum = publish_fixture(&served);
    fs::write(served.join("releases/SHA256SUMS"), format!("0000 *other.img\n{sum} *fixture-root.tar.gz\n")).unwrap();
    let server = serve(served);
    let plan = cloud_plan(&server, work.path(), "fixture-root.tar.gz");
    let reporter = Reporter::silent();

    let first = support::Dirs::new(&work.path().join("one"));
    let mut ctx = first.context(&plan, &reporter);
    ctx.cache_dir = work.path().join("cache");
    root::run(&ctx).unwrap();
    assert_eq!(fs::read_to_string(first.target.join("etc/hostname")).unwrap(), "fixture\n");
    assert!(work.path().join("cache/cloud-images/fixture-root.tar.gz").is_file());

    // A second build reuses the verified cached image and only re-reads SHA256SUMS.
    let second = support::Dirs::new(&work.path().join("two"));
    let mut ctx = second.context(&plan, &reporter);
    ctx.cache_dir = work.path().join("cache");
    root::run(&ctx).unwrap();
    assert!(second.target.join("etc/os-release").is_file());
    let requests = server.requests.lock().unwrap().clone();
    let image_fetches = requests.iter().filter(|p| p.ends_with("fixture-root.tar.gz")).count();
    assert_eq!(image_fetches, 1, "{requests:?}");
}

#[test]
fn squashfs_cloud_image_is_unsquashed() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served/releases");
    fs::create_dir_all(&served).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloud-image/root");
    let image = served.join("fixture.squashfs");
    let status =
        Command::new("mksquashfs").arg(&fixture).arg(&image).args(["-quiet", "-no-progress"]).status().unwrap();
    assert!(status.success());
    let sum = mesos_image::io::sha256_file(&image).unwrap().0;
    fs::write(served.join("SHA256SUMS"), format!("{sum} *fixture.squashfs\n")).unwrap();
    let server = serve(work.path().join("served"));
    let plan = cloud_plan(&server, work.path(), "fixture.squashfs");
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work.path().join("build"));
    root::run(&dirs.context(&plan, &reporter)).unwrap();
    assert_eq!(fs::read_to_string(dirs.target.join("etc/hostname")).unwrap(), "fixture\n");
}

#[test]
fn corrupted_cloud_image_fails_naming_the_file_and_is_not_cached() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    publish_fixture(&served);
    let wrong = "ab".repeat(32);
    fs::write(served.join("releases/SHA256SUMS"), format!("{wrong}  fixture-root.tar.gz\n")).unwrap();
    let server = serve(served);
    let plan = cloud_plan(&server, work.path(), "fixture-root.tar.gz");
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(work.path());
    let err = root::run(&dirs.context(&plan, &reporter)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("fixture-root.tar.gz") && message.contains("sha256 mismatch"), "{message}");
    assert!(!dirs.cache.join("cloud-images/fixture-root.tar.gz").exists());
    assert!(!dirs.target.join("etc/hostname").exists(), "nothing may be extracted");
}

#[test]
fn cloud_image_missing_from_sums_fails_naming_the_file() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    publish_fixture(&served);
    fs::write(served.join("releases/SHA256SUMS"), "0000 *other.img\n").unwrap();
    let server = serve(served);
    let plan = cloud_plan(&server, work.path(), "fixture-root.tar.gz");
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(work.path());
    let message = format!("{:#}", root::run(&dirs.context(&plan, &reporter)).unwrap_err());
    assert!(message.contains("fixture-root.tar.gz: not listed in"), "{message}");
}

#[test]
fn bootstrap_without_a_mirror_names_the_options() {
    let work = tempfile::tempdir().unwrap();
    let overrides = Overrides { base: Some(BaseMethod::Debootstrap), ..Overrides::default() };
    let plan = support::plan(&work.path().join("elements"), &[], overrides);
    assert_eq!(plan.mirror, None, "no flag, no variable, no host distro: no mirror");
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(work.path());
    let message = format!("{:#}", root::run(&dirs.context(&plan, &reporter)).unwrap_err());
    assert!(message.contains("--mirror") && message.contains("DIB_DISTRIBUTION_MIRROR"), "{message}");
}

#[test]
#[ignore = "needs root and network: debootstrap of Debian bookworm from the host's mirror (~40 s)"]
fn debootstrap_fallback_makes_a_bookworm_tree() {
    let Some(mirror) = support::host_mirror() else { panic!("no Debian mirror in the host's apt sources") };
    let work = PathBuf::from(format!("/var/tmp/stages-debootstrap-{}", std::process::id()));
    let overrides = Overrides { base: Some(BaseMethod::Debootstrap), mirror: Some(mirror), ..Overrides::default() };
    let plan = support::plan(&work.join("elements"), &[], overrides);
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work);
    root::run(&dirs.context(&plan, &reporter)).unwrap();
    let os_release = fs::read_to_string(dirs.target.join("etc/os-release")).unwrap();
    assert!(os_release.contains("bookworm"), "{os_release}");
    assert!(fs::read_dir(&dirs.apt_cache).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".deb")));
    mesos_image::sandbox::remove_tree(&work).unwrap();
}
