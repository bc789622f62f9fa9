//! Issue 13 end to end: two cold `mesos-image build --no-cache` runs of debian-base, in separate
//! work and cache directories, the second under another time zone, umask and host name (its own
//! UTS namespace), write the same bytes in every format and the same manifest apart from the
//! run fields; the SPDX document beside the image is valid for a validator from PyPI and lists
//! exactly the packages dpkg has installed in the image, read out of the built disk itself.
//! Root and the Debian mirror needed; the host's apt sources name the mirror.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mesos_image::cli::check_reproducible as check;
use mesos_image::disk::{ext4, layout::Layout};
use mesos_image::manifest::Manifest;
use mesos_image::progress::Reporter;
use mesos_image::recipe::{ImageFormat, ImageSpec, Partitioning};
use mesos_image::reproducible::Pins;

const IMAGE: &str = "debian-base.qcow2";
/// What the second build changes about its surroundings; none of it may reach the image.
const SECOND_TZ: &str = "Pacific/Chatham";
const SECOND_HOSTNAME: &str = "mesos-image-repro-b";
const SECOND_UMASK: &str = "077";
/// The SPDX validator, in a venv reused across runs (never committed).
const SPDX_TOOLS: &str = "spdx-tools==0.8.5";

/// One cold build's directories.
struct Run {
    out: PathBuf,
    cache: PathBuf,
    work: PathBuf,
    listing: PathBuf,
}

impl Run {
    fn new(scratch: &Path, name: &str) -> Run {
        let dir = scratch.join(name);
        let run = Run {
            out: dir.join("out"),
            cache: dir.join("cache"),
            work: dir.join("work"),
            listing: dir.join("tree-listing.txt"),
        };
        for path in [&run.out, &run.cache, &run.work] {
            std::fs::create_dir_all(path).unwrap();
        }
        run
    }

    fn image(&self) -> PathBuf {
        self.out.join(IMAGE)
    }

    fn build_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        [
            "--quiet",
            "build",
            "--recipe",
            "debian-base",
            "--no-cache",
            "-t",
            "qcow2,raw,vmdk,vhd",
            "--checksum",
            "--cache-dir",
            &path(&self.cache),
            "--work-dir",
            &path(&self.work),
            "--tree-listing",
            &path(&self.listing),
            "-o",
            &path(&self.image()),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn run_build(mut command: Command, what: &str) -> f64 {
    let started = Instant::now();
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed().as_secs_f64()
}

fn sha256(path: &Path) -> String {
    mesos_image::io::sha256_file(path).unwrap().0
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs root and the Debian mirror: two cold debian-base builds, then a venv from PyPI"]
fn debian_base_built_twice_is_identical_and_its_sbom_lists_dpkgs_packages() {
    assert!(
        Path::new("/usr/share/zoneinfo").join(SECOND_TZ).exists(),
        "tzdata lacks {SECOND_TZ}: the second build would silently run in UTC"
    );
    let scratch = tempfile::Builder::new().prefix("reproducible-").tempdir_in("/var/tmp").unwrap();
    let (first, second) = (Run::new(scratch.path(), "a"), Run::new(scratch.path(), "b"));

    let build_first = || {
        let mut command = Command::new(common::binary());
        command.args(first.build_args()).env_remove("MESOS_IMAGE_CACHE_DIR");
        run_build(command, "the first build")
    };
    let mut first_seconds = build_first();
    // The second: its own host name in a new UTS namespace, another umask and time zone.
    let mut command = Command::new("unshare");
    command
        .args(["--uts", "sh", "-c", r#"hostname "$0" && umask "$1" && shift && exec "$@""#])
        .args([SECOND_HOSTNAME, SECOND_UMASK, common::binary()])
        .args(second.build_args())
        .env("TZ", SECOND_TZ)
        .env_remove("MESOS_IMAGE_CACHE_DIR");
    let second_seconds = run_build(command, "the second build");
    let epoch = |run: &Run| {
        let manifest = Manifest::read_beside(&run.image()).unwrap().unwrap();
        manifest.reproducible.expect("the manifest records the pins").source_date_epoch
    };
    // A live mirror publishes a new state a few times a day; builds on either side of that are
    // not "the same inputs". The epoch is the mirror state's date, so a changed epoch means the
    // mirror moved between the builds: build the first again, now after the move.
    if epoch(&first) != epoch(&second) {
        eprintln!(
            "the mirror moved between the builds ({} then {}): building the first again",
            epoch(&first),
            epoch(&second)
        );
        first_seconds = build_first();
    }
    eprintln!("timing: cold debian-base builds {first_seconds:.1}s and {second_seconds:.1}s");

    // The variations really happened (the manifest records the host), and both builds were cold.
    let (manifest_a, manifest_b) = (
        Manifest::read_beside(&first.image()).unwrap().unwrap(),
        Manifest::read_beside(&second.image()).unwrap().unwrap(),
    );
    assert_eq!(
        manifest_a.reproducible.as_ref().map(|r| &r.source_date_epoch),
        manifest_b.reproducible.as_ref().map(|r| &r.source_date_epoch),
        "both builds are dated from the same mirror state"
    );
    assert_eq!(manifest_b.run.host, SECOND_HOSTNAME);
    assert_ne!(manifest_a.run.host, SECOND_HOSTNAME);
    for manifest in [&manifest_a, &manifest_b] {
        assert!(manifest.run.stages.iter().all(|s| !s.cached), "a stage came from a cache: {:?}", manifest.run.stages);
    }

    // Every output byte for byte, hashed here rather than taken from the manifests; on any
    // difference, our own comparison names the differing files inside the trees.
    let comparison = check::compare_builds(&first.image(), &second.image(), &first.listing, &second.listing).unwrap();
    let names = file_names(&first.out);
    assert_eq!(names, file_names(&second.out), "the two builds wrote different files");
    let mut differing = Vec::new();
    for name in names.iter().filter(|n| !n.ends_with(".manifest.json")) {
        let (a, b) = (sha256(&first.out.join(name)), sha256(&second.out.join(name)));
        eprintln!("{} {name}", if a == b { "same   " } else { "DIFFERS" });
        if a != b {
            differing.push(name.clone());
        }
    }
    for format in ["qcow2", "raw", "vmdk", "vhd"] {
        assert!(names.contains(&format!("debian-base.{format}")), "no {format} output: {names:?}");
    }
    assert!(names.contains(&format!("{IMAGE}.spdx.json")), "{names:?}");
    // Printed before the SBOM is checked, so a failure there still shows this verdict.
    eprint!("{}", comparison.render());
    check_sbom(&first.image(), &first.out.join("debian-base.raw"));
    assert!(differing.is_empty() && comparison.identical(), "{differing:?} differ\n{}", comparison.render());

    // The uncompressed qcow2 (-u): one build writes one qcow2, so rather than two more cold
    // builds, the build's own convert stage turns each build's raw disk into one.
    let spec = ImageSpec { formats: vec![ImageFormat::Qcow2], compress: false, ..ImageSpec::default() };
    // qcow2 takes nothing from the pins (only VHD and VMDK stamps do).
    let pins = Pins::fixed(0, "unused by qcow2");
    let uncompressed: Vec<String> = [&first, &second]
        .iter()
        .map(|run| {
            let path = run.out.join("uncompressed.qcow2");
            let raw = run.out.join("debian-base.raw");
            mesos_image::stage::convert::run(
                &raw,
                &[(ImageFormat::Qcow2, path.clone())],
                &spec,
                &pins,
                &Reporter::silent(),
            )
            .unwrap();
            sha256(&path)
        })
        .collect();
    assert_eq!(uncompressed[0], uncompressed[1], "the uncompressed qcow2s differ");
    assert!(
        std::fs::metadata(first.out.join("uncompressed.qcow2")).unwrap().len()
            > std::fs::metadata(first.image()).unwrap().len(),
        "the -u qcow2 is larger than the compressed one"
    );
}

/// The SPDX document validates, and its debs are exactly dpkg's installed packages in the image.
fn check_sbom(image: &Path, raw: &Path) {
    let sbom = mesos_image::sbom::path_for(image);
    let validator = spdx_validator();
    let output = Command::new(&validator).arg("--infile").arg(&sbom).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && !report.contains("invalid"), "pyspdxtools: {report}");

    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    let from_sbom: BTreeSet<(String, String, String)> = document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|package| {
            let purl = package["externalRefs"].as_array()?.iter().find(|r| r["referenceType"] == "purl")?;
            let locator = purl["referenceLocator"].as_str()?;
            locator.starts_with("pkg:deb/").then_some(())?;
            let arch = locator.split("arch=").nth(1)?.split('&').next()?.to_owned();
            Some((package["name"].as_str()?.to_owned(), package["versionInfo"].as_str()?.to_owned(), arch))
        })
        .collect();

    // dpkg's own record, out of the image's root filesystem (not the build's tree, and not
    // through the SBOM code): every package whose status is `installed`.
    let disk_bytes = std::fs::metadata(raw).unwrap().len();
    let layout = Layout::for_disk(Partitioning::Mbr, false, disk_bytes).unwrap();
    let device = ext4::offset_device(raw, &layout.root());
    let output = Command::new("debugfs").args(["-R", "cat /var/lib/dpkg/status", &device]).output().unwrap();
    assert!(output.status.success(), "debugfs: {}", String::from_utf8_lossy(&output.stderr));
    let status = String::from_utf8(output.stdout).unwrap();
    let from_dpkg: BTreeSet<(String, String, String)> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_owned()))
            };
            (field("Status")?.split(' ').nth(2)? == "installed").then_some(())?;
            Some((field("Package")?, field("Version")?, field("Architecture")?))
        })
        .collect();
    assert!(from_dpkg.len() > 100, "only {} installed packages read from the image", from_dpkg.len());
    let missing: Vec<_> = from_dpkg.difference(&from_sbom).collect();
    let extra: Vec<_> = from_sbom.difference(&from_dpkg).collect();
    assert!(missing.is_empty() && extra.is_empty(), "not in the SBOM: {missing:?}\nnot installed: {extra:?}");
    eprintln!("sbom: valid ({SPDX_TOOLS}), {} debs, equal to dpkg's list in the image", from_sbom.len());
}

/// pyspdxtools from a cached venv (`MESOS_IMAGE_SPDX_VENV`, default under /var/tmp), created on
/// first use and reused; the marker is written last, so an interrupted install is redone.
fn spdx_validator() -> PathBuf {
    let venv = std::env::var_os("MESOS_IMAGE_SPDX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mesos-image-spdx-venv"));
    let marker = venv.join(".complete");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(made.success(), "python3 -m venv {} failed (python3-venv installed?)", venv.display());
        let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", SPDX_TOOLS]).output().unwrap();
        assert!(pip.status.success(), "pip install {SPDX_TOOLS}: {}", String::from_utf8_lossy(&pip.stderr));
        std::fs::write(&marker, "").unwrap();
    }
    venv.join("bin/pyspdxtools")
}
