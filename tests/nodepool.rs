//! A real nodepool-builder fleet building through mesos-image (issue #22): nodepool 11.0.0 from
//! PyPI (tests/nodepool/venv.sh, a cached venv), ZooKeeper from Debian serving TLS on 127.0.0.1
//! (tests/nodepool/zookeeper.sh), Keystone with two regions, each with its own Glance
//! (tests/openstack/services.sh). Two builder hosts, each its own nodepool-builder (its own
//! builder id, images-dir, build log dir and TMPDIR), share ZooKeeper and one mesos-image cache
//! (as builders sharing a cache volume: the survivor of a killed build resumes from the base
//! snapshot the killed one stored; fresh for each run, so every run really builds); both
//! providers (the two regions) take the diskimage. nodepool calls our binary as
//! `disk-image-create` (`dib-cmd`), from tests/nodepool/nodepool.yaml, the file README's
//! "Running at scale" shows.
//!
//! The story, one test because every step needs the fleet of the step before:
//! 1. host A starts building; host B joins while A holds the build lock;
//! 2. A's builder is killed with SIGKILL (its whole process group, as a host losing power or
//!    `systemctl kill -s KILL` does) while an element script runs chrooted: nothing of the
//!    build is left on A (no process, no mount, no image file), and B takes the build over;
//! 3. B's build (which sweeps the work directory the killed build left) is `ready`, uploaded
//!    to both regions: Glance images active, with the build's md5 and sha256 as nodepool and
//!    openstacksdk record them;
//! 4. B stops for maintenance; A comes back and builds the next build on request (restored
//!    from the cache B's build filled), uploaded to both regions;
//! 5. `nodepool dib-image-delete` of B's build while B is down; when B comes back, every file
//!    of that build is gone from B's images-dir and both its Glance images are gone; A's build
//!    stays.

#[path = "fault_support/mod.rs"]
mod support;

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::Md5;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256, Sha512};

/// Ports of this binary's services: none shared with tests/upload.rs or bench/upload.sh, which
/// may run beside it.
const KS_PORT: u16 = 25750;
/// RegionOne's Glance.
const GL_PORT: u16 = 29750;
/// RegionTwo's Glance, in the catalog of the same Keystone.
const GL2_PORT: u16 = 29751;
const ZK_PORT: u16 = 22281;

const IMAGE: &str = "fleet-debian";
/// (nodepool provider, Keystone region) of the two providers in tests/nodepool/nodepool.yaml.
const PROVIDERS: [(&str, &str); 2] = [("region-one", "RegionOne"), ("region-two", "RegionTwo")];
/// A cold build of the diskimage on a loaded 2-core machine, with room.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// nodepool's cleanup worker runs every 60 s on each builder; deleting takes up to two rounds.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(200);

#[test]
#[ignore = "root, network (Debian mirror, PyPI), ZooKeeper and Java from Debian: about 10 minutes"]
fn a_nodepool_builder_fleet_builds_through_mesos_image_survives_a_killed_builder_and_deletes_every_file() {
    let _clock = common::TestClock::start();
    let fleet = Fleet::start();
    let [a, b] = &fleet.hosts;

    // 1. A takes the first build; B joins while A holds the build lock.
    let mut a_builder = a.start_builder(&fleet);
    let killed_id = wait_for(&fleet, "host A's disk-image-create", Duration::from_secs(120), || a.running_build());
    let mut b_builder = b.start_builder(&fleet);

    // 2. SIGKILL while an element script runs chrooted, the chroot's mounts active.
    wait_for(&fleet, "host A's install phase, chrooted", BUILD_TIMEOUT, || {
        (a.build_log(&killed_id).contains("==> install phase") && !a.chrooted_processes(&a_builder).is_empty())
            .then_some(())
    });
    let leaked = fleet.build_mounts();
    assert_eq!(leaked, Vec::<String>::new(), "the build's mounts are visible on the host");
    let work_dirs = support::entries(&fleet.cache.join("work"));
    assert_eq!(work_dirs.len(), 1, "A's work dir: {work_dirs:?}");
    let group = a_builder.pgid().unwrap();
    a_builder.kill_group();
    fleet.mark("host A killed mid-build");
    fleet.assert_nothing_left_by_killed_build(a, &killed_id, group, &fleet.cache.join("work").join(&work_dirs[0]));

    // 3. B takes the build over: ready, uploaded to both regions.
    fleet.openstack_up();
    let first = fleet.wait_ready_build(b, &killed_id);
    fleet.assert_uploaded(b, &first);
    // nodepool's `-x`: every element script traced into the build log.
    let log = b.build_log(&first);
    assert!(log.lines().any(|line| line.contains("| + ") || line.starts_with("+ ")), "no -x trace in:\n{log}");
    assert_eq!(support::entries(&fleet.cache.join("work")), Vec::<String>::new(), "work dirs left");
    fleet.mark("host B's build ready in both regions");

    // 4. B down for maintenance; A back, builds the next one on request.
    b_builder.stop();
    a_builder = a.start_builder(&fleet);
    fleet.nodepool(&["image-build", IMAGE]);
    let second = fleet.wait_ready_build(a, &first);
    fleet.assert_uploaded(a, &second);
    fleet.mark("host A's build ready in both regions");

    // 5. B's build deleted while B is away; B back: every file of it and both its Glance images go.
    let deleted_images = fleet.glance_ids_of(&first);
    fleet.nodepool(&["dib-image-delete", &format!("{IMAGE}-{first}")]);
    b_builder = b.start_builder(&fleet);
    wait_for(&fleet, "the deleted build's records, files and Glance images to go", CLEANUP_TIMEOUT, || {
        let builds = fleet.dib_images();
        let gone = !builds.iter().any(|row| row["ID"] == format!("{IMAGE}-{first}"))
            && !fleet.uploads().iter().any(|row| row["Build ID"] == first)
            && !b.image(&first).exists()
            && fleet.glance_ids().iter().all(|id| !deleted_images.contains(id));
        gone.then_some(())
    });
    // nodepool deletes NAME-ID.<fmt>, .md5, .sha256 and NAME-ID.d/: whatever else the build
    // wrote would stay on the builder forever.
    assert_eq!(support::entries(&b.images), vec!["builder_id.txt"], "files of deleted build {first} left on B");
    // The stale record of A's killed build is gone too; A's build is untouched.
    let builds = fleet.dib_images();
    let ids: Vec<&str> = builds.iter().map(|row| row["ID"].as_str()).collect();
    assert_eq!(ids, vec![format!("{IMAGE}-{second}")], "dib-image-list");
    fleet.assert_uploaded(a, &second);
    fleet.mark("dib-image-delete done");

    a_builder.stop();
    b_builder.stop();
}

/// Everything the fleet shares: the scratch directory, the venv, clouds.yaml, the hosts.
struct Fleet {
    dir: PathBuf,
    venv: PathBuf,
    clouds: PathBuf,
    /// The mesos-image cache both hosts share.
    cache: PathBuf,
    hosts: [Host; 2],
    started: Instant,
    /// Keystone and the Glances, starting beside the first build (only uploads need them).
    openstack: RefCell<Option<JoinHandle<()>>>,
}

impl Fleet {
    /// ZooKeeper and the nodepool venv side by side (Keystone and two Glances start in the
    /// background: see [`Self::openstack_up`]); then each host's directories and nodepool.yaml,
    /// and the `disk-image-create` symlink they all call.
    fn start() -> Fleet {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("mesos-image-nodepool-").tempdir_in("/var/tmp").unwrap().keep();
        let openstack_dir = dir.join("openstack");
        let openstack = std::thread::spawn(move || timed("Keystone + 2 Glances", || start_openstack(&openstack_dir)));
        let venv = std::thread::scope(|scope| {
            let venv = scope.spawn(|| timed("nodepool venv", nodepool_venv));
            timed("ZooKeeper (TLS)", || start_zookeeper(&dir.join("zookeeper")));
            venv.join().unwrap()
        });
        let clouds = dir.join("clouds.yaml");
        fs::write(&clouds, clouds_yaml()).unwrap();
        let dib_cmd = common::disk_image_create_in(&dir);
        let hosts = ["a", "b"].map(|name| Host::new(&dir, name, &dib_cmd));
        let cache = dir.join("cache");
        let fleet = Fleet { dir, venv, clouds, cache, hosts, started, openstack: RefCell::new(Some(openstack)) };
        fleet.mark("ZooKeeper and nodepool ready");
        fleet
    }

    /// Wait until Keystone and both Glances answer (a failure to start fails the test here).
    fn openstack_up(&self) {
        if let Some(starting) = self.openstack.borrow_mut().take() {
            if let Err(panic) = starting.join() {
                std::panic::resume_unwind(panic);
            }
            self.mark("Keystone and both Glances up");
        }
    }

    /// A line in the test's output with the time since the fleet started.
    fn mark(&self, what: &str) {
        eprintln!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// `nodepool -c A's config ARGS`: stdout; fails the test when it fails.
    fn nodepool(&self, args: &[&str]) -> String {
        let mut command = Command::new(self.venv.join("bin/nodepool"));
        command.arg("-c").arg(&self.hosts[0].config).args(args).env("OS_CLIENT_CONFIG_FILE", &self.clouds);
        common::run(&mut command)
    }

    fn dib_images(&self) -> Vec<BTreeMap<String, String>> {
        parse_table(&self.nodepool(&["dib-image-list"]))
    }

    fn uploads(&self) -> Vec<BTreeMap<String, String>> {
        parse_table(&self.nodepool(&["image-list"]))
    }

    /// The id of the first `ready` build other than `not`, once its files are on `host` and both
    /// providers' uploads are `ready`.
    fn wait_ready_build(&self, host: &Host, not: &str) -> String {
        let id = wait_for(self, "a ready build", BUILD_TIMEOUT, || {
            self.dib_images()
                .into_iter()
                .filter(|row| row["State"] == "ready" && row["ID"] != format!("{IMAGE}-{not}"))
                .find_map(|row| row["ID"].strip_prefix(&format!("{IMAGE}-")).map(str::to_owned))
        });
        assert!(
            host.image(&id).is_file(),
            "build {id} is not on the expected host: {:?}",
            support::entries(&host.images)
        );
        wait_for(self, "uploads to both regions", BUILD_TIMEOUT, || {
            let uploads = self.uploads();
            PROVIDERS
                .iter()
                .all(|(provider, _)| {
                    uploads
                        .iter()
                        .any(|row| row["Build ID"] == id && row["Provider"] == *provider && row["State"] == "ready")
                })
                .then_some(())
        });
        id
    }

    /// Build `id` on `host` as nodepool's contract has it (image, .md5, .sha256 with the image's
    /// digests; the build log's exit code 0), and in each region one active Glance image with
    /// that data: size, Glance's own md5 `checksum` and sha512, and the md5 and sha256 nodepool
    /// handed openstacksdk.
    fn assert_uploaded(&self, host: &Host, id: &str) {
        let image = host.image(id);
        let data = fs::read(&image).unwrap();
        let md5 = hex::encode(Md5::digest(&data));
        let sha256 = hex::encode(Sha256::digest(&data));
        let sha512 = hex::encode(Sha512::digest(&data));
        let sidecar = |ext: &str| fs::read_to_string(format!("{}.{ext}", image.display())).unwrap_or_default();
        assert!(sidecar("md5").starts_with(&md5), "{}.md5 does not hold the image's md5 {md5}", image.display());
        assert!(sidecar("sha256").starts_with(&sha256), "{}.sha256 does not hold {sha256}", image.display());
        let log = host.build_log(id);
        assert!(log.trim_end().ends_with("Exit code: 0"), "build log of {id}:\n{log}");
        // DIB's files and nothing else beside them: the rest (manifest, SBOM) in NAME-ID.d/.
        let base = format!("{IMAGE}-{id}");
        let files: Vec<String> = support::entries(&host.images).into_iter().filter(|name| name.contains(id)).collect();
        let dib = [".d", ".qcow2", ".qcow2.md5", ".qcow2.sha256"].map(|suffix| format!("{base}{suffix}"));
        assert_eq!(files, dib, "build {id}'s files in {}", host.images.display());
        let manifest = host.images.join(format!("{base}.d/{base}.qcow2.manifest.json"));
        assert!(manifest.is_file(), "no {}", manifest.display());
        let uploads = self.uploads();
        for (provider, region) in PROVIDERS {
            let upload = uploads
                .iter()
                .find(|row| row["Build ID"] == id && row["Provider"] == provider)
                .unwrap_or_else(|| panic!("no upload of {id} to {provider}: {uploads:?}"));
            let records = self.glance(region);
            let record = records
                .iter()
                .find(|record| record["id"] == upload["Provider Image ID"].as_str())
                .unwrap_or_else(|| panic!("{region}: no Glance image {}: {records:?}", upload["Provider Image ID"]));
            let expect = [
                ("status", "active".to_owned()),
                ("disk_format", "qcow2".to_owned()),
                ("checksum", md5.clone()),
                ("os_hash_algo", "sha512".to_owned()),
                ("os_hash_value", sha512.clone()),
                ("owner_specified.openstack.md5", md5.clone()),
                ("owner_specified.openstack.sha256", sha256.clone()),
                ("nodepool_build_id", id.to_owned()),
            ];
            for (key, value) in expect {
                assert_eq!(
                    record[key].as_str(),
                    Some(value.as_str()),
                    "{region}: Glance {key} of build {id}: {record}"
                );
            }
            assert_eq!(record["size"].as_u64(), Some(data.len() as u64), "{region}: size: {record}");
        }
    }

    /// The raw Glance records of `region`, through openstacksdk and clouds.yaml.
    fn glance(&self, region: &str) -> Vec<serde_json::Value> {
        let script = common::repo_root().join("tests/nodepool/glance_images.py");
        let mut command = Command::new(self.venv.join("bin/python"));
        command.arg(script).args(["fleet", region]).env("OS_CLIENT_CONFIG_FILE", &self.clouds);
        serde_json::from_str(&common::run(&mut command)).unwrap()
    }

    /// Ids of every Glance image in both regions.
    fn glance_ids(&self) -> Vec<String> {
        PROVIDERS
            .iter()
            .flat_map(|(_, region)| self.glance(region))
            .filter_map(|record| record["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Ids of the Glance images of build `id` in both regions: one per region.
    fn glance_ids_of(&self, id: &str) -> Vec<String> {
        let ids: Vec<String> = PROVIDERS
            .iter()
            .flat_map(|(_, region)| self.glance(region))
            .filter(|record| record["nodepool_build_id"] == id)
            .filter_map(|record| record["id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids.len(), 2, "Glance images of build {id}: {ids:?}");
        ids
    }

    /// After the SIGKILL of `host`'s builder group `group`: no process of the build (in the
    /// group, naming the host's directories, or chrooted into or working in its work dir
    /// `work`), no mount, no file of the build in the images-dir (not even a hidden temporary
    /// one). The work dir itself is for the next build to sweep.
    fn assert_nothing_left_by_killed_build(&self, host: &Host, id: &str, group: i32, work: &Path) {
        let dir = host.dir.display().to_string();
        let started = Instant::now();
        loop {
            let left: Vec<(i32, Vec<String>)> = support::pids()
                .into_iter()
                .filter(|pid| {
                    process_group(*pid) == Some(group)
                        || support::cmdline_contains(*pid, &dir)
                        || ["root", "cwd"].iter().any(|link| {
                            fs::read_link(format!("/proc/{pid}/{link}")).is_ok_and(|path| path.starts_with(work))
                        })
                })
                .map(|pid| (pid, cmdline(pid)))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "processes of the killed build: {left:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(self.build_mounts(), Vec::<String>::new(), "mounts left by the killed build");
        assert_eq!(support::loop_devices_on(&self.dir), Vec::<String>::new(), "loop devices left");
        assert_eq!(support::entries(&host.images), vec!["builder_id.txt"], "files of killed build {id} left");
        assert_eq!(support::entries(&host.dir.join("tmp")), Vec::<String>::new(), "temp files left in TMPDIR");
    }

    /// Mount points on the host below the fleet's directory (builds mount only in their own
    /// namespaces, so there must never be one).
    fn build_mounts(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        support::mount_points().into_iter().filter(|point| point.contains(&dir)).collect()
    }

    /// Both builders' logs' last lines, for a failure message.
    fn logs_tail(&self) -> String {
        self.hosts
            .iter()
            .map(|host| format!("--- builder {}:\n{}", host.name, tail(&host.dir.join("builder.log"), 30)))
            .collect()
    }
}

impl Drop for Fleet {
    /// Stop ZooKeeper, Keystone and the Glances now (their watchers would only once this
    /// process is gone, and read pid files from the directory removed here); the scratch
    /// directory stays after a failure, for its logs.
    fn drop(&mut self) {
        if let Some(starting) = self.openstack.borrow_mut().take() {
            let _ = starting.join();
        }
        let scripts = common::repo_root().join("tests");
        let _ = Command::new(scripts.join("nodepool/zookeeper.sh"))
            .arg("stop")
            .env("ZKDIR", self.dir.join("zookeeper"))
            .status();
        let _ = Command::new("bash")
            .arg(scripts.join("openstack/services.sh"))
            .arg("stop")
            .env("OSDIR", self.dir.join("openstack"))
            .status();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One builder host: its own images-dir, build logs and TMPDIR.
struct Host {
    name: &'static str,
    dir: PathBuf,
    config: PathBuf,
    images: PathBuf,
    logs: PathBuf,
}

impl Host {
    fn new(fleet_dir: &Path, name: &'static str, dib_cmd: &Path) -> Host {
        let dir = fleet_dir.join(format!("host-{name}"));
        let host = Host {
            name,
            config: dir.join("nodepool.yaml"),
            images: dir.join("images"),
            logs: dir.join("build-logs"),
            dir,
        };
        for sub in [&host.images, &host.logs, &host.dir.join("tmp"), &host.dir.join("home")] {
            fs::create_dir_all(sub).unwrap();
        }
        fs::write(&host.config, host.nodepool_yaml(fleet_dir, dib_cmd)).unwrap();
        host
    }

    /// tests/nodepool/nodepool.yaml filled in for this host.
    fn nodepool_yaml(&self, fleet_dir: &Path, dib_cmd: &Path) -> String {
        let template = fs::read_to_string(common::repo_root().join("tests/nodepool/nodepool.yaml")).unwrap();
        let mirror = mesos_image::mirror::host_archive_uri(Path::new("/etc/apt"))
            .expect("a Debian mirror in the host's apt sources");
        let values = [
            ("@ZK_PORT@", ZK_PORT.to_string()),
            ("@ZK_TLS@", fleet_dir.join("zookeeper/tls").display().to_string()),
            ("@IMAGES_DIR@", self.images.display().to_string()),
            ("@BUILD_LOG_DIR@", self.logs.display().to_string()),
            ("@DIB_CMD@", dib_cmd.display().to_string()),
            ("@MIRROR@", mirror),
        ];
        let text = values.iter().fold(template, |text, (name, value)| text.replace(name, value));
        assert!(!text.contains('@'), "a placeholder of tests/nodepool/nodepool.yaml is not filled in:\n{text}");
        text
    }

    /// `nodepool-builder -f` for this host in its own process group, its log in builder.log.
    fn start_builder(&self, fleet: &Fleet) -> Builder {
        let log = fs::File::create(self.dir.join("builder.log")).unwrap();
        let child = Command::new(fleet.venv.join("bin/nodepool-builder"))
            .arg("-c")
            .arg(&self.config)
            .args(["-f", "-d", "--build-workers", "1", "--upload-workers", "2"])
            .env("OS_CLIENT_CONFIG_FILE", &fleet.clouds)
            .env("MESOS_IMAGE_CACHE_DIR", &fleet.cache)
            .env("TMPDIR", self.dir.join("tmp"))
            .env("HOME", self.dir.join("home"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        fleet.mark(&format!("builder {} started (pid {})", self.name, child.id()));
        Builder { child: Some(child) }
    }

    fn image(&self, id: &str) -> PathBuf {
        self.images.join(format!("{IMAGE}-{id}.qcow2"))
    }

    fn build_log(&self, id: &str) -> String {
        fs::read_to_string(self.logs.join(format!("{IMAGE}-{id}.log"))).unwrap_or_default()
    }

    /// The build id of the disk-image-create running on this host, if one is.
    fn running_build(&self) -> Option<String> {
        let prefix = format!("{}/{IMAGE}-", self.images.display());
        support::pids().into_iter().find_map(|pid| {
            let args = cmdline(pid);
            let output = args.iter().skip_while(|arg| *arg != "-o").nth(1)?;
            output.strip_prefix(&prefix).map(str::to_owned)
        })
    }

    /// Processes of the builder's group whose root is not the host's: a chrooted element script.
    fn chrooted_processes(&self, builder: &Builder) -> Vec<i32> {
        let Some(pgid) = builder.pgid() else { return Vec::new() };
        support::pids()
            .into_iter()
            .filter(|pid| process_group(*pid) == Some(pgid))
            .filter(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|root| root != Path::new("/")))
            .collect()
    }
}

/// A running nodepool-builder, the leader of its own process group.
struct Builder {
    child: Option<Child>,
}

impl Builder {
    fn pgid(&self) -> Option<i32> {
        self.child.as_ref().map(|child| child.id() as i32)
    }

    /// SIGKILL to the builder and everything it started (its process group).
    fn kill_group(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
            child.wait().unwrap();
        }
    }

    /// SIGINT, nodepool-builder's orderly stop (its workers finish), then wait for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(60) {
                    let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
                    child.wait().unwrap();
                    panic!("nodepool-builder did not stop within 60 s of SIGINT");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for Builder {
    /// A failed test must not leave a builder (or a build) running.
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Poll `ready` every 2 s until it gives a value; past `timeout`, fail with the builders' logs.
fn wait_for<T>(fleet: &Fleet, what: &str, timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = ready() {
            fleet.mark(&format!("{what}: after {:.0?}", started.elapsed()));
            return value;
        }
        assert!(started.elapsed() < timeout, "timeout waiting for {what}\n{}", fleet.logs_tail());
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn timed<T>(what: &str, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = work();
    eprintln!("{what}: {:.1?}", started.elapsed());
    value
}

/// tests/nodepool/venv.sh: the venv's path.
fn nodepool_venv() -> PathBuf {
    let out = Command::new(common::repo_root().join("tests/nodepool/venv.sh")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr).trim());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn start_openstack(dir: &Path) {
    let out = Command::new("bash")
        .arg(common::repo_root().join("tests/openstack/services.sh"))
        .arg("start")
        .env("OSDIR", dir)
        .env("KS_PORT", KS_PORT.to_string())
        .env("GL_PORT", GL_PORT.to_string())
        .env("GL2_PORT", GL2_PORT.to_string())
        .env("WATCH_PID", std::process::id().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "services.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn start_zookeeper(dir: &Path) {
    let out = Command::new(common::repo_root().join("tests/nodepool/zookeeper.sh"))
        .arg("start")
        .env("ZKDIR", dir)
        .env("ZK_PORT", ZK_PORT.to_string())
        .env("WATCH_PID", std::process::id().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "zookeeper.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The `fleet` cloud: the demo user of services.sh's Keystone, both regions.
fn clouds_yaml() -> String {
    format!(
        "clouds:\n  fleet:\n    auth:\n      auth_url: http://127.0.0.1:{KS_PORT}/v3\n      username: demo\n      \
         password: demopw\n      project_name: demo\n      user_domain_name: Default\n      \
         project_domain_name: Default\n    identity_api_version: 3\n    regions: [RegionOne, RegionTwo]\n"
    )
}

/// Rows of a table nodepool prints (`| ID | Image | ... |`), each keyed by the header.
fn parse_table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows = text
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect::<Vec<String>>());
    let Some(header) = rows.next() else { return Vec::new() };
    rows.map(|cells| header.iter().cloned().zip(cells).collect()).collect()
}

fn cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|byte| *byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Field 5 of /proc/PID/stat (after the parenthesised command name).
fn process_group(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// README's "Running at scale" shows the nodepool.yaml this test runs: the file itself, as an
/// indented block, so the two cannot drift apart.
#[test]
fn readme_shows_the_nodepool_yaml_the_fleet_runs() {
    let template = fs::read_to_string(common::repo_root().join("tests/nodepool/nodepool.yaml")).unwrap();
    let indented: String =
        template.lines().map(|line| if line.is_empty() { "\n".to_owned() } else { format!("    {line}\n") }).collect();
    let readme = fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&indented),
        "README.md's \"Running at scale\" must show tests/nodepool/nodepool.yaml verbatim (indented 4 spaces)"
    );
}

#[test]
fn nodepool_tables_parse_by_header() {
    let text = "+----+-------+\n| ID | State |\n+----+-------+\n| fleet-debian-0a1 | ready |\n+----+-------+\n";
    let rows = parse_table(text);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ID"], "fleet-debian-0a1");
    assert_eq!(rows[0]["State"], "ready");
    assert_eq!(parse_table("no table\n"), Vec::<BTreeMap<String, String>>::new());
}
