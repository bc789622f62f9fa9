//! `build -p NAME` / a recipe's `packages` naming something the target's archive lacks is
//! refused before any work, against a FIXTURE archive served on 127.0.0.1: a `Packages.xz`
//! index (no .deb files: only the index is read) listed in an InRelease, as a Debian mirror
//! publishes them. No root needed.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesos_image::archive_index::{self, Archive};
use sha2::{Digest, Sha256};

/// The fixture archive: `dists/bookworm/{InRelease, main/binary-amd64/Packages.xz}` served by
/// python3's http.server until dropped.
struct FixtureArchive {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

const PACKAGES: &str = "Package: fixture-tool\nVersion: 1.0\nArchitecture: amd64\n\n\
Package: fixture-daemon\nVersion: 2.0\nArchitecture: all\nProvides: fixture-service (= 2.0), fixture-virtual\n";

impl FixtureArchive {
    fn start() -> FixtureArchive {
        let dir = tempfile::tempdir().unwrap();
        let dist = dir.path().join("dists/bookworm");
        let index_dir = dist.join("main/binary-amd64");
        std::fs::create_dir_all(&index_dir).unwrap();
        let xz = Command::new("sh")
            .arg("-c")
            .arg("xz -c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(PACKAGES.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(xz.status.success(), "xz");
        std::fs::write(index_dir.join("Packages.xz"), &xz.stdout).unwrap();
        let sum = hex::encode(Sha256::digest(&xz.stdout));
        let release = format!(
            "Origin: mesos-image fixture\nSuite: bookworm\nDate: Sat, 09 Nov 2024 10:44:43 UTC\n\
             Architectures: amd64\nComponents: main\nSHA256:\n {sum} {} main/binary-amd64/Packages.xz\n",
            xz.stdout.len()
        );
        std::fs::write(dist.join("InRelease"), release).unwrap();
        let port = common::free_port();
        let server = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "the fixture archive's server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        FixtureArchive { dir, server, port }
    }

    fn mirror(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn index(&self) -> PathBuf {
        self.dir.path().join("dists/bookworm/main/binary-amd64/Packages.xz")
    }
}

impl Drop for FixtureArchive {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn cached_indexes(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("archive-index")).map_or(0, |dir| dir.count())
}

#[test]
fn names_and_provides_are_read_verified_and_cached_by_the_inrelease_digest() {
    let archive = FixtureArchive::start();
    let cache = tempfile::tempdir().unwrap();
    let mirror = archive.mirror();
    let target = Archive { mirror: &mirror, release: "bookworm", components: &["main"], arch: "amd64" };
    let names = archive_index::load(&target, cache.path()).unwrap();
    for name in ["fixture-tool", "fixture-daemon", "fixture-service", "fixture-virtual", "fixture-tool=1.0"] {
        assert!(names.has(name), "{name}");
    }
    assert!(!names.has("no-such-fixture"));
    assert_eq!(cached_indexes(cache.path()), 1);

    // The same InRelease: the cached names, without reading the index again.
    std::fs::remove_file(archive.index()).unwrap();
    assert_eq!(archive_index::load(&target, cache.path()).unwrap(), names);

    // An index that does not match the InRelease's sha256 is not believed.
    std::fs::write(archive.index(), b"not the index").unwrap();
    let err = archive_index::load(&target, tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
    assert!(err.contains("Packages.xz: sha256") && err.contains("the InRelease says"), "{err}");
}

/// `build ARGS -o x.qcow2` in a scratch dir with its own cache: (exit code, stderr, wall time).
fn build(dir: &Path, args: &[&str]) -> (Option<i32>, String, Duration) {
    let mut all = vec!["build", "--recipe", "debian-base", "-o", "x.qcow2"];
    all.extend_from_slice(args);
    let (output, elapsed) = common::run_hermetic(dir, &[], &all);
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), elapsed)
}

#[test]
fn a_package_the_archive_lacks_is_refused_before_any_work() {
    let archive = FixtureArchive::start();
    let scratch = tempfile::tempdir().unwrap();
    let mirror = archive.mirror();
    let (code, stderr, elapsed) =
        build(scratch.path(), &["--mirror", &mirror, "-p", "fixture-tool", "-p", "no-such-fixture=1.0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let expected = format!("-p no-such-fixture=1.0: no such package (or Provides) in {mirror} bookworm main amd64");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(!scratch.path().join("x.qcow2").exists());
    assert_eq!(cached_indexes(&scratch.path().join("cache")), 1);
}

#[test]
fn an_unreadable_mirror_leaves_the_build_as_it_was() {
    // A closed port: the check cannot tell, so `-p` changes nothing about how the build fails.
    let scratch = tempfile::tempdir().unwrap();
    let mirror = format!("http://127.0.0.1:{}", common::free_port());
    let (code_without, without, _) = build(scratch.path(), &["--mirror", &mirror]);
    let (code_with, with, _) = build(scratch.path(), &["--mirror", &mirror, "-p", "no-such-fixture"]);
    assert_eq!((code_with, with.trim()), (code_without, without.trim()));
    assert!(with.contains("cannot date the build from the mirror"), "the existing error: {with}");
    assert!(!with.contains("no-such-fixture"), "{with}");
    assert_ne!(code_with, Some(0), "{with}");
}
