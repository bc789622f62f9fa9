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

    let port = free_port();
    run(Command::new(fixture_dir().join("serve.sh")).arg(dir).arg(port.to_string()));
    let _server = Server(dir.to_owned());

    // A private apt configuration: only the fixture source, verified with the fixture key.
    let apt = dir.join("apt");
    for sub in ["lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d"] {
        fs::create_dir_all(apt.join(sub)).unwrap();
    }
    fs::write(apt.join("status"), "").unwrap();
    fs::write(
        apt.join("etc/sources.list"),
        format!("deb [signed-by={}/fixture-key.gpg] http://127.0.0.1:{port} bookworm main\n", dir.display()),
    )
    .unwrap();
    let apt_options = |command: &mut Command| {
        command
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", apt.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::State::status={}", apt.join("status").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            .arg("-o")
            .arg(format!("Dir::Etc={}", apt.join("etc").display()))
            .arg("-o")
            .arg("Dir::Etc::sourceparts=-")
            .arg("-o")
            .arg("APT::Architecture=amd64");
    };
    let mut update = Command::new("apt-get");
    apt_options(&mut update);
    let update_out = run(update.arg("update"));
    assert!(!update_out.contains("NO_PUBKEY") && !update_out.contains("not signed"), "{update_out}");
    let mut show = Command::new("apt-cache");
    apt_options(&mut show);
    let shown = run(show.args(["show", "mesos", "marathon"]));
    assert!(shown.contains("Package: mesos") && shown.contains("Package: marathon"), "{shown}");
    assert!(shown.contains("fixture"), "{shown}");
}
