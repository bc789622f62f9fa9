//! The fixture Mesos repository: its packages mimic the real layout and apt accepts the
//! signed repository when served on 127.0.0.1.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn fixture_dir() -> PathBuf {
    common::fixture("mesos-repo")
}

use common::run;

/// Stops the fixture server even when an assertion fails.
struct Server(PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(fixture_dir().join("serve.sh")).arg("--stop").arg(&self.0).status();
    }
}

use common::free_port;

#[test]
#[ignore = "needs dpkg-dev, apt-utils and gnupg; about 5 s"]
fn fixture_repository_builds_signs_and_serves_mimicking_packages() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    let printed = run(Command::new(fixture_dir().join("build.sh")).arg(dir).env("FIXTURE_SUITES", "bookworm"));
    assert!(printed.contains("--mesos-repo-key"), "{printed}");

    let mesos =
        run(Command::new("sh").arg("-c").arg(format!("dpkg-deb -c {}/repo/pool/main/mesos_*.deb", dir.display())));
    for path in [
        "./usr/sbin/mesos-master",
        "./usr/sbin/mesos-slave",
        "./etc/mesos/zk",
        "./etc/default/mesos",
        "./etc/default/mesos-master",
        "./etc/default/mesos-slave",
        "./etc/mesos-master/",
        "./etc/mesos-slave/",
        "./lib/systemd/system/mesos-master.service",
        "./etc/init/mesos-slave.conf",
    ] {
        assert!(mesos.contains(path), "mesos fixture lacks {path}");
    }
    let marathon =
        run(Command::new("sh").arg("-c").arg(format!("dpkg-deb -c {}/repo/pool/main/marathon_*.deb", dir.display())));
    for path in [
        "./usr/bin/marathon",
        "./etc/marathon/conf/",
        "./lib/systemd/system/marathon.service",
        "./etc/init/marathon.conf",
    ] {
        assert!(marathon.contains(path), "marathon fixture lacks {path}");
    }

    // `Architecture: all` is true only while the packages hold no machine code: one package then
    // serves amd64 and arm64 images alike.
    for package in ["mesos", "marathon"] {
        let deb = format!("{}/repo/pool/main/{package}_*.deb", dir.display());
        let arch = run(Command::new("sh").arg("-c").arg(format!("dpkg-deb -f {deb} Architecture")));
        assert_eq!(arch.trim(), "all", "{package}");
        let tree = dir.join(format!("tree-{package}"));
        run(Command::new("sh").arg("-c").arg(format!("dpkg-deb -x {deb} {}", tree.display())));
        for entry in walkdir::WalkDir::new(&tree).into_iter().map(Result::unwrap).filter(|e| e.file_type().is_file()) {
            let head = fs::read(entry.path()).unwrap();
            assert!(!head.starts_with(b"\x7fELF"), "{package} holds machine code: {}", entry.path().display());
        }
    }

    let port = free_port();
    run(Command::new(fixture_dir().join("serve.sh")).arg(dir).arg(port.to_string()));
    let _server = Server(dir.to_owned());

    // A private apt configuration per architecture: only the fixture source, verified with the
    // fixture key. An arm64 image build's apt must find the same packages as an amd64 one's.
    for arch in ["amd64", "arm64"] {
        let apt = dir.join(format!("apt-{arch}"));
        for sub in
            ["lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d"]
        {
            fs::create_dir_all(apt.join(sub)).unwrap();
        }
        fs::write(apt.join("status"), "").unwrap();
        fs::write(
            apt.join("etc/sources.list"),
            format!("deb [signed-by={}/fixture-key.gpg] http://127.0.0.1:{port} bookworm main\n", dir.display()),
        )
        .unwrap();
        let apt_options = |command: &mut Command| {
            for option in [
                format!("Dir::State::Lists={}", apt.join("lists").display()),
                format!("Dir::State::status={}", apt.join("status").display()),
                format!("Dir::Cache={}", apt.join("cache").display()),
                format!("Dir::Etc={}", apt.join("etc").display()),
                "Dir::Etc::sourceparts=-".to_owned(),
                format!("APT::Architecture={arch}"),
            ] {
                command.arg("-o").arg(option);
            }
        };
        let mut update = Command::new("apt-get");
        apt_options(&mut update);
        let update_out = run(update.arg("update"));
        assert!(!update_out.contains("NO_PUBKEY") && !update_out.contains("not signed"), "{update_out}");
        // The Release file lists the architecture: apt fetches its own index, not only binary-all.
        assert!(update_out.contains(&format!("main {arch} Packages")), "{arch}: {update_out}");
        let mut show = Command::new("apt-cache");
        apt_options(&mut show);
        let shown = run(show.args(["show", "mesos", "marathon"]));
        assert!(shown.contains("Package: mesos") && shown.contains("Package: marathon"), "{arch}: {shown}");
        assert!(shown.contains("fixture"), "{shown}");
    }
}
