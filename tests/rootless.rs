//! Builds without root (issue 20), as an ordinary user this test makes (with a subordinate id
//! range): `debian-base` built rootless with `--check-reproducible` is byte-identical to a root
//! build of the same pins, and boots with `mesos-image test` run by that user; a DIB-mode
//! rootless build of `debian-minimal vm` runs an `extra-data.d` script that stages a file with
//! `sudo`, and the file has a root build's owner and mode; a rootless build SIGKILLed during
//! the install phase leaves no process and no file the user cannot remove. Every file the user's
//! builds left in its cache and outputs belongs to the user.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mesos_image::manifest::Manifest;

/// The test's unprivileged user: made if missing, kept for the next run (its package cache too).
const USER: &str = "mesos-image-rootless";
/// Where the test keeps what the user must read: the binary, elements, recipes, outputs.
const SCRATCH: &str = "/var/tmp/mesos-image-rootless-test";

#[test]
#[ignore = "needs root (to make the unprivileged user), the Debian mirror and qemu; builds three images"]
fn rootless_builds_match_root_builds_boot_and_leave_nothing() {
    let _clock = common::TestClock::start();
    let user = TestUser::ensure();
    let scratch = Scratch::new(&user);
    let pins = scratch.pins();

    // A root build of the same pins (--no-cache: built now, on this host).
    let root_image = scratch.dir.join("root/debian-base.qcow2");
    let started = Instant::now();
    let root = root_build(&scratch, &root_image, &pins);
    assert!(root.status.success(), "root build failed:\n{}", text(&root.stderr));
    let root_seconds = started.elapsed().as_secs_f64();

    // The same rootless, twice (--check-reproducible): its first build is the user's image.
    let image = scratch.out.join("debian-base.qcow2");
    let started = Instant::now();
    let checked = user.mesos_image(
        &scratch,
        &[&["build", "--recipe", "debian-base", "--check-reproducible", "-o"], &[path(&image)], &pins],
    );
    assert!(
        checked.status.success(),
        "rootless --check-reproducible failed:\n{}\n{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    let check_seconds = started.elapsed().as_secs_f64();
    let rootless = Manifest::read_beside(&image).unwrap().expect("manifest beside the rootless image");
    let rooted = Manifest::read_beside(&root_image).unwrap().expect("manifest beside the root image");
    assert_eq!(
        rootless.outputs[0].sha256, rooted.outputs[0].sha256,
        "rootless and root builds of the same pins differ"
    );
    eprintln!(
        "root build {root_seconds:.1} s; rootless build {:.1} s (in --check-reproducible, {check_seconds:.1} s for both); sha256 {}",
        rootless.run.duration_seconds, rootless.outputs[0].sha256
    );
    assert_owned_by(&user, &image);

    let tested = user.mesos_image(&scratch, &[&["test", "--accel", "tcg", "--format", "json"], &[path(&image)]]);
    let report = text(&tested.stdout);
    assert!(tested.status.success(), "mesos-image test as {USER} failed:\n{report}\n{}", text(&tested.stderr));
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert!(
        json["results"].as_array().is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["result"] == "pass")),
        "{report}"
    );

    dib_mode_with_sudo(&user, &scratch);
    sigkill_leaves_nothing(&user, &scratch);
    user.assert_owns_everything_it_made(&scratch);
}

/// DIB mode, rootless: `debian-minimal vm` plus an element whose extra-data.d uses `sudo`.
fn dib_mode_with_sudo(user: &TestUser, scratch: &Scratch) {
    let image = scratch.out.join("dib.qcow2");
    let listing = scratch.out.join("dib.listing");
    let elements = scratch.dir.join("rootless-elements");
    let built = user.mesos_image_env(
        scratch,
        &[("DIB_RELEASE", "bookworm"), ("ELEMENTS_PATH", path(&elements))],
        &[&[
            "build",
            "--no-cache",
            "--tree-listing",
            path(&listing),
            "-o",
            path(&image),
            "debian-minimal",
            "vm",
            "rootless-sudo",
        ]],
    );
    assert!(built.status.success(), "rootless DIB-mode build failed:\n{}", text(&built.stderr));
    let listing = fs::read_to_string(&listing).unwrap();
    let staged =
        listing.lines().find(|line| line.starts_with("/opt/rootless/staged\t")).expect("the staged file in the tree");
    let fields: Vec<&str> = staged.split('\t').collect();
    // kind, mode (octal), uid, gid: what `sudo chown 1000:4` and `chmod 0640` give as root.
    assert_eq!(&fields[1..5], ["file", "640", "1000", "4"], "{staged}");
    assert!(Command::new("qemu-img").arg("check").arg(&image).status().unwrap().success());
    assert_owned_by(user, &image);
}

/// SIGKILL during the install phase, tree on disk (--no-tmpfs): no process of the user is left,
/// the janitor removes the work dir, and the user can remove the cache's work root.
fn sigkill_leaves_nothing(user: &TestUser, scratch: &Scratch) {
    let log = scratch.dir.join("killed.log");
    let killed = scratch.out.join("killed.qcow2");
    let mut command = user.command(
        scratch,
        &[],
        &[&["build", "--recipe", "debian-base", "--no-cache", "--no-tmpfs", "-o"], &[path(&killed)]],
    );
    command.stderr(fs::File::create(&log).unwrap()).stdout(Stdio::null());
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while !fs::read_to_string(&log).unwrap_or_default().contains("==> packages: install") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before its install phase:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(300), "no install phase after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let work_root = user.cache.join("work");
    assert!(
        has_foreign_owner(&work_root, user.uid),
        "the tree holds files of the namespace's other ids while installing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (!user.processes().is_empty() || !dir_entries(&work_root).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(user.processes(), Vec::<String>::new(), "processes of the killed build left");
    assert_eq!(dir_entries(&work_root), Vec::<String>::new(), "the janitor left the work dir");
    // The host's other mounts come and go with other work: only the user's places count.
    let own = [user.home.clone(), PathBuf::from(SCRATCH)];
    let left: Vec<String> =
        mount_points().into_iter().filter(|point| own.iter().any(|dir| Path::new(point).starts_with(dir))).collect();
    assert_eq!(left, Vec::<String>::new(), "mounts left");
    assert!(!killed.exists());
    let removed = user.shell(&format!("rm -rf {}", path(&work_root))).status().unwrap();
    assert!(removed.success(), "{USER} cannot remove its work dir");
}

fn root_build(scratch: &Scratch, image: &Path, pins: &[&str]) -> Output {
    fs::create_dir_all(image.parent().unwrap()).unwrap();
    let mut command = Command::new(common::binary());
    command
        .args(["build", "--recipe", "debian-base", "--no-cache", "-o"])
        .arg(image)
        .args(pins)
        .env("MESOS_IMAGE_CACHE_DIR", common::cache_dir())
        .env("MESOS_IMAGE_DATA_DIR", &scratch.dir);
    command.output().unwrap()
}

/// The unprivileged user, with a subordinate range and a home of its own.
struct TestUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
    cache: PathBuf,
}

impl TestUser {
    /// Make the user (and its subordinate ranges) unless this host already has it.
    fn ensure() -> TestUser {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root, to make its unprivileged user");
        if nix::unistd::User::from_name(USER).unwrap().is_none() {
            let made = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]).output().unwrap();
            assert!(made.status.success(), "useradd: {}", text(&made.stderr));
        }
        for (file, flag) in [("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")] {
            let listed = fs::read_to_string(file).unwrap_or_default();
            if !listed.lines().any(|line| line.starts_with(&format!("{USER}:"))) {
                let start = free_range_start(&listed);
                let range = format!("{start}-{}", start + 65535);
                let added = Command::new("usermod").args([flag, &range, USER]).output().unwrap();
                assert!(added.status.success(), "usermod {flag}: {}", text(&added.stderr));
            }
        }
        let entry = nix::unistd::User::from_name(USER).unwrap().expect("the test user");
        let home = entry.dir.clone();
        TestUser { uid: entry.uid.as_raw(), gid: entry.gid.as_raw(), cache: home.join(".cache/mesos-image"), home }
    }

    /// `mesos-image ARGS` as the user, in the scratch directory.
    fn mesos_image(&self, scratch: &Scratch, args: &[&[&str]]) -> Output {
        self.mesos_image_env(scratch, &[], args)
    }

    fn mesos_image_env(&self, scratch: &Scratch, env: &[(&str, &str)], args: &[&[&str]]) -> Output {
        let mut command = self.command(scratch, env, args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.output().unwrap()
    }

    fn command(&self, scratch: &Scratch, env: &[(&str, &str)], args: &[&[&str]]) -> Command {
        let mut command = Command::new(scratch.dir.join("bin/mesos-image"));
        command.args(args.iter().flat_map(|part| part.iter()));
        self.login(&mut command, scratch);
        command.envs(env.iter().copied());
        command
    }

    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]).current_dir("/").env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        command.uid(self.uid).gid(self.gid);
        command
    }

    /// The user's own environment: nothing of root's but PATH; its home, its default cache.
    fn login(&self, command: &mut Command, scratch: &Scratch) {
        command
            .current_dir(&scratch.out)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", USER)
            .env("LOGNAME", USER)
            .env("MESOS_IMAGE_DATA_DIR", &scratch.dir)
            .stdin(Stdio::null());
        if let Some(proxy) = std::env::var_os("http_proxy") {
            command.env("http_proxy", proxy);
        }
        // std drops root's supplementary groups when it sets the uid.
        command.uid(self.uid).gid(self.gid);
    }

    /// Processes running as the user or as one of its subordinate ids.
    fn processes(&self) -> Vec<String> {
        let ranges = subordinate_uids();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let uid = meta.uid();
            if name.bytes().all(|b| b.is_ascii_digit())
                && (uid == self.uid || ranges.iter().any(|(s, n)| (*s..s + n).contains(&uid)))
            {
                let comm = fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default().replace('\0', " ");
                found.push(format!("{name} (uid {uid}): {comm}"));
            }
        }
        found
    }

    fn assert_owns_everything_it_made(&self, scratch: &Scratch) {
        for dir in [&self.cache, &scratch.out] {
            for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
                let meta = entry.path().symlink_metadata().unwrap();
                assert_eq!(meta.uid(), self.uid, "{} is not the user's", entry.path().display());
            }
        }
    }
}

/// Where the user's files live; the binary, elements and recipes copied where the user can read
/// them (the checkout and cargo's target directory may not be traversable by other users).
struct Scratch {
    dir: PathBuf,
    out: PathBuf,
}

impl Scratch {
    fn new(user: &TestUser) -> Scratch {
        let dir = PathBuf::from(SCRATCH);
        if dir.exists() {
            // The previous run's files, the user's among them (outputs, never subordinate ids').
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::copy(common::binary(), dir.join("bin/mesos-image")).unwrap();
        for (from, to) in [
            (common::repo_root().join("elements"), dir.join("elements")),
            (common::repo_root().join("recipes"), dir.join("recipes")),
            (common::fixture("rootless-elements"), dir.join("rootless-elements")),
        ] {
            let copied = Command::new("cp").arg("-a").arg(&from).arg(&to).status().unwrap();
            assert!(copied.success(), "cp -a {}", from.display());
        }
        let tree = Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status().unwrap();
        assert!(tree.success());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.join("out");
        fs::create_dir(&out).unwrap();
        std::os::unix::fs::chown(&out, Some(user.uid), Some(user.gid)).unwrap();
        Scratch { dir, out }
    }

    /// The same pins for every build here: a given SOURCE_DATE_EPOCH (the seed follows from the
    /// inputs), so a mirror update between the builds cannot split them.
    fn pins(&self) -> Vec<&'static str> {
        vec!["--source-date-epoch", "1767225600"]
    }
}

/// The first id after every range in a subuid/subgid file (or 100000).
fn free_range_start(listed: &str) -> u32 {
    listed
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':').skip(1);
            Some(fields.next()?.parse::<u32>().ok()? + fields.next()?.parse::<u32>().ok()?)
        })
        .max()
        .unwrap_or(100_000)
        .max(100_000)
}

fn subordinate_uids() -> Vec<(u32, u32)> {
    fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(&format!("{USER}:")))
        .filter_map(|line| {
            let mut fields = line.split(':').skip(1);
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

fn has_foreign_owner(dir: &Path, uid: u32) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .any(|e| e.path().symlink_metadata().is_ok_and(|m| m.uid() != uid))
}

fn assert_owned_by(user: &TestUser, image: &Path) {
    for file in [image.to_owned(), Manifest::path_for(image)] {
        assert_eq!(fs::metadata(&file).unwrap().uid(), user.uid, "{} is not the user's", file.display());
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn mount_points() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut points: Vec<String> = text.lines().filter_map(|line| line.split(' ').nth(4)).map(str::to_owned).collect();
    points.sort();
    points
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
