//! `mesos-image upload` against a real Keystone and a real Glance on 127.0.0.1
//! (tests/openstack/services.sh: Python packages in a cached venv, sqlite, file store).
//!
//! The services start once per test binary and stop when it exits. Glance runs with a 16 MiB
//! `image_size_cap` (so "refused mid-upload" is cheap to provoke), a policy denying direct upload
//! to the user `importer` (so the glance-direct fallback is real), and a TLS twin on another port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

use sha2::{Digest, Sha256, Sha512};

const KS_PORT: u16 = 25730;
const GL_PORT: u16 = 29730;
const GL_TLS_PORT: u16 = 29731;
/// RegionTwo's Glance, in the catalog of the same Keystone.
const GL2_PORT: u16 = 29732;
/// The second cloud: its own Keystone and Glance.
const KS2_PORT: u16 = 25731;
const GL3_PORT: u16 = 29733;
const SIZE_CAP: u64 = 16 << 20;

struct Services {
    dir: PathBuf,
    appcred_id: String,
    appcred_secret: String,
}

/// The running services, held by one test at a time: Glance on sqlite answers concurrent writes
/// with "database is locked" (HTTP 500), which would make the tests flaky, not the client.
struct Held {
    services: &'static Services,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Held {
    type Target = Services;
    fn deref(&self) -> &Services {
        self.services
    }
}

fn services() -> Held {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the services are still fine for the next one.
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Held { services: SERVICES.get_or_init(start_services), _turn: turn }
}

fn start_services() -> Services {
    let dir = tempfile::Builder::new().prefix("mesos-image-upload-it-").tempdir().unwrap().keep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstack/services.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .env("OSDIR", &dir)
        .env("KS_PORT", KS_PORT.to_string())
        .env("GL_PORT", GL_PORT.to_string())
        .env("GL_TLS_PORT", GL_TLS_PORT.to_string())
        .env("GL2_PORT", GL2_PORT.to_string())
        .env("KS2_PORT", KS2_PORT.to_string())
        .env("GL3_PORT", GL3_PORT.to_string())
        .env("GL_SIZE_CAP", SIZE_CAP.to_string())
        .env("WATCH_PID", std::process::id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "services.sh start failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let vars = read_env_file(&dir.join("appcred.env"));
    Services { appcred_id: vars["APPCRED_ID"].clone(), appcred_secret: vars["APPCRED_SECRET"].clone(), dir }
}

fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn auth_url() -> String {
    format!("http://127.0.0.1:{KS_PORT}/v3")
}

/// The command with a clean environment: no OS_* from the caller, no clouds.yaml from $HOME.
fn mesos_image(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesos-image"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .current_dir(home);
    cmd
}

/// As the demo user with password auth, like `source openrc`.
fn as_demo(home: &Path) -> Command {
    let mut cmd = mesos_image(home);
    cmd.env("OS_AUTH_URL", auth_url())
        .env("OS_USERNAME", "demo")
        .env("OS_PASSWORD", "demopw")
        .env("OS_PROJECT_NAME", "demo")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_REGION_NAME", "RegionOne")
        .env("OS_INTERFACE", "public");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_output(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "upload failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A scratch dir holding an image of `len` random bytes, starting with `header`; without one, a
/// raw disk holding a file system signature, as upload's format check requires of raw.
fn scratch_image(name: &str, header: &[u8], len: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; len];
    let mut state: u64 = 0x9e3779b97f4a7c15 ^ len as u64;
    for byte in data.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    data[..header.len()].copy_from_slice(header);
    if header.is_empty() && len >= 2048 {
        // An ext2/3/4 superblock magic: upload's own check then takes the file as a raw disk,
        // while Glance (which inspects partition tables, not file systems) sees plain raw data.
        data[0x438..0x43a].copy_from_slice(&[0x53, 0xef]);
    }
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    (dir, path)
}

/// A real qcow2 (Glance inspects uploaded data) holding `len` random bytes.
fn scratch_qcow2(name: &str, len: usize) -> (tempfile::TempDir, PathBuf) {
    let (dir, raw) = scratch_image("data.raw", b"", len);
    let path = dir.path().join(name);
    let status =
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&path).status().unwrap();
    assert!(status.success(), "qemu-img convert");
    (dir, path)
}

fn sha512_hex(path: &Path) -> String {
    hex::encode(Sha512::digest(std::fs::read(path).unwrap()))
}

/// The manifest a build writes beside `image` (src/manifest.rs), recording the file's size and
/// digests as it is now; hashed here independently of the tool.
fn write_build_manifest(image: &Path) {
    let data = std::fs::read(image).unwrap();
    let manifest = serde_json::json!({
        "tool_version": "0.1.0", "recipe": null, "distro": "debian", "release": "bookworm", "arch": "amd64",
        "elements": [], "packages": [], "cache_key": "k",
        "outputs": [{
            "file": image.file_name().unwrap().to_string_lossy(), "format": "raw", "size": data.len(),
            "sha256": hex::encode(Sha256::digest(&data)), "md5": hex::encode(md5::Md5::digest(&data)),
            "sha512": hex::encode(Sha512::digest(&data)),
        }],
    });
    std::fs::write(format!("{}.manifest.json", image.display()), manifest.to_string()).unwrap();
}

/// The figure the tool logs at the end of an upload: every byte it read from the image file.
fn bytes_read(out: &Output) -> u64 {
    let err = stderr(out);
    let line = err.lines().find(|l| l.contains("bytes of image data read in all")).expect("the read figure is logged");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "bytes").unwrap();
    words[at - 1].parse().unwrap()
}

/// A demo token, for looking at Glance independently of the tool under test.
fn demo_token() -> String {
    demo_token_at(KS_PORT)
}

fn demo_token_at(ks_port: u16) -> String {
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"}, "password": "demopw"}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}
    }})
    .to_string();
    let out = Command::new("curl")
        .args(["-sf", "-D", "-", "-o", "/dev/null", "-H", "Content-Type: application/json", "-d", &body])
        .arg(format!("http://127.0.0.1:{ks_port}/v3/auth/tokens"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    headers
        .lines()
        .find_map(|l| l.strip_prefix("X-Subject-Token: ").or_else(|| l.strip_prefix("x-subject-token: ")))
        .unwrap()
        .trim()
        .to_owned()
}

fn glance_get(path: &str) -> Vec<u8> {
    glance_get_at(GL_PORT, KS_PORT, path)
}

/// GET from the Glance on `port`, with a demo token of the Keystone on `ks_port`.
fn glance_get_at(port: u16, ks_port: u16, path: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("X-Auth-Token: {}", demo_token_at(ks_port)))
        .arg(format!("http://127.0.0.1:{port}/v2/{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}");
    out.stdout
}

/// Every image called `name` that demo can see, in any status.
fn images_named(name: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value = serde_json::from_slice(&glance_get(&format!("images?name={name}"))).unwrap();
    list["images"].as_array().unwrap().clone()
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn password_upload_round_trips_properties_and_data() {
    let _services = services();
    let (dir, image) = scratch_qcow2("pw.qcow2", 3 << 20);
    let out = run(as_demo(dir.path())
        .args(["-vv", "upload", "--name", "it-password", "--format", "json"])
        .args(["--property", "hw_rng_model=virtio", "--os-version", "24.04", "--tag", "t1", "--min-disk", "3"])
        .arg(&image));
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!shown.contains("demopw"), "the password was printed");
    assert!(!shown.contains("gAAAAA"), "a Fernet token was printed");
    let record = json_output(&out);
    assert_eq!(record["status"], "active");
    assert_eq!(record["disk_format"], "qcow2");
    assert_eq!(record["container_format"], "bare");
    assert_eq!(record["visibility"], "private");
    assert_eq!(record["min_disk"], 3);
    assert_eq!(record["tags"], serde_json::json!(["t1"]));
    assert_eq!(record["hw_rng_model"], "virtio");
    assert_eq!(record["os_version"], "24.04");
    assert_eq!(record["size"], std::fs::metadata(&image).unwrap().len());
    assert_eq!(record["os_hash_algo"], "sha512");
    assert_eq!(record["os_hash_value"], sha512_hex(&image));
    // The stored bytes, read back independently, are the file's.
    let id = record["id"].as_str().unwrap();
    assert_eq!(glance_get(&format!("images/{id}/file")), std::fs::read(&image).unwrap());
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn the_manifest_sets_glance_properties_and_the_sbom_its_digest() {
    let _services = services();
    let (dir, image) = scratch_qcow2("ubuntu-mesos.qcow2", 1 << 20);
    // The recipe's Glance settings as the build records them in the manifest (the typed handoff):
    // upload reads them from there, so no recipe needs to be on any search path.
    let manifest = r#"{"tool_version": "0.1.0", "recipe": "ubuntu-mesos", "distro": "ubuntu", "release": "trusty",
        "arch": "amd64", "elements": [], "packages": [], "outputs": [], "stages": [], "duration_seconds": 1.0,
        "cache_key": "k", "glance": {"visibility": "public", "min-ram": 512, "tags": ["mesos"],
        "properties": {"os_distro": "ubuntu", "os_admin_user": "ubuntu"}}}"#;
    std::fs::write(dir.path().join("ubuntu-mesos.qcow2.manifest.json"), manifest).unwrap();
    // The build's SPDX document beside the image: its digest becomes an image property.
    let sbom = dir.path().join("ubuntu-mesos.qcow2.spdx.json");
    std::fs::write(&sbom, "{\"spdxVersion\": \"SPDX-2.3\"}\n").unwrap();
    let out = run(as_demo(dir.path())
        .args(["upload", "--name", "it-manifest", "--format", "json", "--visibility", "private"])
        .arg(&image));
    let record = json_output(&out);
    assert_eq!(record["sbom_sha256"], hex::encode(Sha256::digest(std::fs::read(&sbom).unwrap())));
    assert_eq!(record["os_distro"], "ubuntu");
    assert_eq!(record["os_admin_user"], "ubuntu");
    assert_eq!(record["min_ram"], 512);
    assert_eq!(record["tags"], serde_json::json!(["mesos"]));
    assert_eq!(record["visibility"], "private", "flags win over the recipe");
    // The manifest's architecture, as Nova spells it; a BIOS amd64 image sets no firmware type.
    assert_eq!(record["architecture"], "x86_64");
    assert!(record.get("hw_firmware_type").is_none() && record.get("hw_machine_type").is_none(), "{record}");
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn an_arm64_image_gets_what_nova_needs_to_schedule_and_boot_it() {
    let _services = services();
    let (dir, image) = scratch_qcow2("debian-base-arm64.qcow2", 1 << 20);
    let manifest = r#"{"tool_version": "0.1.0", "recipe": "debian-base", "distro": "debian", "release": "bookworm",
        "arch": "arm64", "elements": [], "packages": [], "outputs": [], "cache_key": "k",
        "glance": {"properties": {"os_distro": "debian"}}}"#;
    std::fs::write(dir.path().join("debian-base-arm64.qcow2.manifest.json"), manifest).unwrap();
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-arm64", "--format", "json"]).arg(&image));
    let record = json_output(&out);
    assert_eq!(record["architecture"], "aarch64");
    assert_eq!(record["hw_firmware_type"], "uefi");
    assert_eq!(record["hw_machine_type"], "virt");
    assert_eq!(record["os_distro"], "debian");
    // Read back from Glance independently: stored, not only echoed.
    let id = record["id"].as_str().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&glance_get(&format!("images/{id}"))).unwrap();
    assert_eq!((stored["architecture"].as_str(), stored["hw_machine_type"].as_str()), (Some("aarch64"), Some("virt")));
    // Each is overridable with --property, as any recipe property is.
    let out = run(as_demo(dir.path())
        .args(["upload", "--name", "it-arm64-override", "--format", "json", "--property", "hw_machine_type=virt-7.2"])
        .args(["--property", "hw_firmware_type=bios"])
        .arg(&image));
    let record = json_output(&out);
    assert_eq!(record["hw_machine_type"], "virt-7.2");
    assert_eq!(record["hw_firmware_type"], "bios");
    assert_eq!(record["architecture"], "aarch64");
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn application_credentials_authenticate() {
    let services = services();
    let (dir, image) = scratch_image("ac.raw", b"", 1 << 20);
    let out = run(mesos_image(dir.path())
        .env("OS_AUTH_URL", auth_url())
        .env("OS_AUTH_TYPE", "v3applicationcredential")
        .env("OS_APPLICATION_CREDENTIAL_ID", &services.appcred_id)
        .env("OS_APPLICATION_CREDENTIAL_SECRET", &services.appcred_secret)
        .args(["-vv", "upload", "--name", "it-appcred", "--format", "json"])
        .arg(&image));
    assert!(!stderr(&out).contains(&services.appcred_secret), "the secret was printed");
    let record = json_output(&out);
    assert_eq!(record["status"], "active");
    assert_eq!(record["disk_format"], "raw");
}

fn write_clouds(dir: &Path, cloud: &str) {
    std::fs::write(
        dir.join("clouds.yaml"),
        format!(
            "clouds:\n  {cloud}:\n    region_name: RegionOne\n    interface: public\n    auth:\n      auth_url: {}\n      username: demo\n      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n",
            auth_url()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("secure.yaml"), format!("clouds:\n  {cloud}:\n    auth:\n      password: demopw\n"))
        .unwrap();
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn clouds_yaml_with_secure_yaml_authenticates() {
    let _services = services();
    let (dir, image) = scratch_image("cy.raw", b"", 1 << 20);
    // In the current directory, found by the standard search, chosen by --os-cloud.
    write_clouds(dir.path(), "it");
    let out = run(mesos_image(dir.path())
        .args(["upload", "--os-cloud", "it", "--name", "it-clouds-cwd", "--format", "json"])
        .arg(&image));
    assert_eq!(json_output(&out)["status"], "active");

    // In $XDG_CONFIG_HOME/openstack, chosen by OS_CLOUD.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".config/openstack");
    std::fs::create_dir_all(&config).unwrap();
    write_clouds(&config, "xdg");
    let out = run(mesos_image(home.path())
        .env("OS_CLOUD", "xdg")
        .args(["upload", "--name", "it-clouds-xdg", "--format", "json"])
        .arg(&image));
    assert_eq!(json_output(&out)["status"], "active");

    // A cloud that is not there is named, with the file searched.
    let out =
        run(mesos_image(home.path()).env("OS_CLOUD", "nope").args(["upload", "--name", "it-clouds-none"]).arg(&image));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cloud `nope` is not in") && stderr(&out).contains("xdg"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn import_path_is_used_on_request_and_as_the_fallback_of_a_403() {
    let _services = services();
    let (dir, image) = scratch_image("imp.raw", b"", 2 << 20);
    let out = run(as_demo(dir.path()).args(["upload", "--import", "--name", "it-import"]).arg(&image));
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("glance-direct import") && table.contains("active"), "{table}");
    assert!(table.contains(&sha512_hex(&image)), "{table}");

    // `importer` may not PUT image data (policy), but may stage and import.
    let out = run(as_demo(dir.path())
        .env("OS_USERNAME", "importer")
        .env("OS_PASSWORD", "importerpw")
        .args(["upload", "--name", "it-fallback"])
        .arg(&image));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("glance-direct import"));
    assert!(stderr(&out).contains("403"), "the fallback is explained: {}", stderr(&out));
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn a_wrong_password_is_reported_without_creating_anything() {
    let _services = services();
    let (dir, image) = scratch_image("wp.raw", b"", 4096);
    let out = run(as_demo(dir.path())
        .env("OS_PASSWORD", "not-the-password")
        .args(["upload", "--name", "it-wrong-pw"])
        .arg(&image));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("authentication at") && err.contains("401"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(images_named("it-wrong-pw").is_empty());
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn a_disk_format_contradicting_the_header_is_refused() {
    let _services = services();
    let (dir, image) = scratch_image("df.img", b"QFI\xfb\0\0\0\x03", 4096);
    let out =
        run(as_demo(dir.path()).args(["upload", "--name", "it-wrong-format", "--disk-format", "raw"]).arg(&image));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is qcow2 (detected from its header) but --disk-format says raw"),
        "{}",
        stderr(&out)
    );
    assert!(images_named("it-wrong-format").is_empty());
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn a_refusal_mid_upload_leaves_no_queued_image() {
    let _services = services();
    let (dir, image) = scratch_image("cap.raw", b"", (SIZE_CAP + (4 << 20)) as usize);
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-size-cap"]).arg(&image));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("413") && err.contains("too large"), "Glance's words are reported: {err}");
    assert!(images_named("it-size-cap").is_empty(), "a record was left behind");
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn name_clashes_need_replace_which_swaps_the_image() {
    let _services = services();
    let (dir, image) = scratch_image("rp.raw", b"", 8192);
    let first =
        json_output(&run(as_demo(dir.path()).args(["upload", "--name", "it-replace", "--format", "json"]).arg(&image)));
    // Other data under the same name: refused without --replace (identical data is skipped,
    // see three_targets_at_once_then_all_skipped_as_identical).
    std::fs::write(&image, {
        let mut data = std::fs::read(&image).unwrap();
        data[4096] ^= 1;
        data
    })
    .unwrap();
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-replace"]).arg(&image));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    let second = json_output(&run(as_demo(dir.path())
        .args(["upload", "--name", "it-replace", "--replace", "--format", "json"])
        .arg(&image)));
    let left: Vec<String> = images_named("it-replace").iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(left, vec![second["id"].as_str().unwrap().to_owned()]);
    assert_ne!(first["id"], second["id"]);
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn tls_options_are_honoured() {
    let services = services();
    let (dir, image) = scratch_image("tls.raw", b"", 8192);
    let tls_url = format!("https://127.0.0.1:{GL_TLS_PORT}");
    let ca = services.dir.join("tls/ca.pem");

    // Unknown CA: refused by certificate verification.
    let out = run(as_demo(dir.path())
        .env("OS_IMAGE_URL", &tls_url)
        .args(["upload", "--name", "it-tls-untrusted"])
        .arg(&image));
    assert!(!out.status.success());
    assert!(stderr(&out).to_lowercase().contains("certificate"), "{}", stderr(&out));

    // OS_CACERT trusts it.
    let out = run(as_demo(dir.path())
        .env("OS_IMAGE_URL", &tls_url)
        .env("OS_CACERT", &ca)
        .args(["upload", "--name", "it-tls-cacert", "--format", "json"])
        .arg(&image));
    assert_eq!(json_output(&out)["status"], "active");

    // --insecure skips verification.
    let out = run(as_demo(dir.path())
        .args(["upload", "--insecure", "--os-image-url", &tls_url, "--name", "it-tls-insecure"])
        .arg(&image));
    assert!(out.status.success(), "{}", stderr(&out));

    // A CA file that is not one is named before anything is sent.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "junk\n").unwrap();
    let out = run(as_demo(dir.path())
        .arg("upload")
        .arg("--os-cacert")
        .arg(&junk)
        .args(["--name", "it-tls-junk"])
        .arg(&image));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("junk.pem") && stderr(&out).contains("no PEM certificate"), "{}", stderr(&out));
    assert!(images_named("it-tls-junk").is_empty());
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn an_existing_token_authenticates() {
    let _services = services();
    let (dir, image) = scratch_image("tok.raw", b"", 8192);
    let token = demo_token();
    let out = run(mesos_image(dir.path())
        .env("OS_AUTH_URL", auth_url())
        .env("OS_AUTH_TYPE", "v3token")
        .env("OS_TOKEN", &token)
        .env("OS_PROJECT_NAME", "demo")
        .env("OS_PROJECT_DOMAIN_ID", "default")
        .args(["-vv", "upload", "--name", "it-token", "--format", "json"])
        .arg(&image));
    assert!(!stderr(&out).contains(&token), "the token was printed");
    assert_eq!(json_output(&out)["status"], "active");
}

/// Images called `name` in the Glance on `port` (of the Keystone on `ks_port`), any status.
fn images_named_at(port: u16, ks_port: u16, name: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_slice(&glance_get_at(port, ks_port, &format!("images?name={name}"))).unwrap();
    list["images"].as_array().unwrap().clone()
}

/// Two clouds in clouds.yaml: `one` (Keystone with RegionOne and RegionTwo, each its own Glance)
/// and `two` (another Keystone and Glance).
fn write_two_clouds(dir: &Path) {
    let cloud = |name: &str, port: u16| {
        format!(
            "  {name}:\n    interface: public\n    auth:\n      auth_url: http://127.0.0.1:{port}/v3\n      username: demo\n      password: demopw\n      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n"
        )
    };
    std::fs::write(dir.join("clouds.yaml"), format!("clouds:\n{}{}", cloud("one", KS_PORT), cloud("two", KS2_PORT)))
        .unwrap();
}

/// The three Glances of the two clouds: (target label, Glance port, Keystone port).
const THREE: [(&str, u16, u16); 3] =
    [("one/RegionOne", GL_PORT, KS_PORT), ("one/RegionTwo", GL2_PORT, KS_PORT), ("two/RegionOne", GL3_PORT, KS2_PORT)];

fn upload_to_three(dir: &Path, name: &str, image: &Path) -> Output {
    run(mesos_image(dir)
        .args(["upload", "--os-cloud", "one", "--os-cloud", "two", "--all-regions", "--format", "json"])
        .args(["--name", name, "--property", "hw_rng_model=virtio"])
        .arg(image))
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn three_targets_at_once_then_all_skipped_as_identical() {
    let _services = services();
    let (dir, image) = scratch_qcow2("three.qcow2", 6 << 20);
    write_two_clouds(dir.path());
    let out = upload_to_three(dir.path(), "it-three", &image);
    let results = json_output(&out);
    let results = results.as_array().unwrap();
    let sha256 = hex::encode(Sha256::digest(std::fs::read(&image).unwrap()));
    let labels: Vec<&str> = results.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(labels, THREE.map(|(label, _, _)| label));
    for ((_, port, ks_port), result) in THREE.iter().zip(results) {
        assert_eq!(result["status"], "uploaded", "{result}");
        let found = images_named_at(*port, *ks_port, "it-three");
        assert_eq!(found.len(), 1, "one image in the Glance on {port}");
        let stored = &found[0];
        assert_eq!(stored["id"], result["image"]["id"]);
        assert_eq!(stored["status"], "active");
        assert_eq!(stored["hw_rng_model"], "virtio");
        assert_eq!(stored["size"], std::fs::metadata(&image).unwrap().len());
        assert_eq!(stored["os_hash_value"], sha512_hex(&image));
        assert_eq!(stored["owner_specified.openstack.sha256"], sha256.as_str());
    }
    // The same file again: every target already holds it.
    let again = json_output(&upload_to_three(dir.path(), "it-three", &image));
    for ((_, port, ks_port), result) in THREE.iter().zip(again.as_array().unwrap()) {
        assert_eq!(result["status"], "skipped", "{result}");
        assert_eq!(images_named_at(*port, *ks_port, "it-three").len(), 1);
    }
}

/// SIGKILL a gunicorn (master and workers) by the pid file services.sh wrote.
fn kill_glance(services: &Services, name: &str) {
    let master = std::fs::read_to_string(services.dir.join(format!("{name}.pid"))).unwrap().trim().to_owned();
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
    for pid in children.split_whitespace().chain([master.as_str()]) {
        Command::new("kill").args(["-KILL", pid]).status().unwrap();
    }
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn a_glance_killed_mid_upload_fails_alone_and_leaves_no_record() {
    let services = services();
    let (dir, image) = scratch_image("killed.raw", b"", (SIZE_CAP - (1 << 20)) as usize);
    write_two_clouds(dir.path());
    let store = services.dir.join("glance2/images");
    let before = std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0);
    let child = mesos_image(dir.path())
        .args(["upload", "--os-cloud", "one", "--os-cloud", "two", "--all-regions", "--format", "json"])
        .args(["--name", "it-killed"])
        .arg(&image)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // RegionTwo's Glance writes the data into its store as it arrives: kill it once it does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0) == before {
        assert!(std::time::Instant::now() < deadline, "the upload never reached RegionTwo's store");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    kill_glance(&services, "glance2");
    // An operator's restart; the failed target's record is deleted once Glance answers again.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstack/services.sh");
    let restarted = Command::new("bash")
        .arg(&script)
        .args(["restart-glance", "glance2", &GL2_PORT.to_string()])
        .env("OSDIR", &services.dir)
        .status()
        .unwrap();
    assert!(restarted.success());
    let out = child.wait_with_output().unwrap();
    eprintln!("stderr:\n{}", stderr(&out));
    assert!(!out.status.success(), "a target failed, so the command fails");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status: Vec<&str> = results.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["uploaded", "failed", "uploaded"], "{results}");
    assert!(stderr(&out).contains("one/RegionTwo"), "the failed target is named");
    assert!(images_named_at(GL2_PORT, KS_PORT, "it-killed").is_empty(), "a record was left in RegionTwo");
    assert_eq!(images_named_at(GL_PORT, KS_PORT, "it-killed")[0]["status"], "active");
    assert_eq!(images_named_at(GL3_PORT, KS2_PORT, "it-killed")[0]["status"], "active");
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn all_stores_puts_the_image_in_both_stores() {
    let services = services();
    let (dir, image) = scratch_image("stores.raw", b"", 2 << 20);
    let out = run(as_demo(dir.path())
        .args(["upload", "--all-stores", "--name", "it-stores", "--format", "json"])
        .arg(&image));
    let record = json_output(&out);
    let mut stores: Vec<&str> = record["stores"].as_str().unwrap().split(',').collect();
    stores.sort_unstable();
    assert_eq!(stores, ["local", "second"]);
    let id = record["id"].as_str().unwrap();
    for store in ["images", "second"] {
        let copy = services.dir.join("glance").join(store).join(id);
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&image).unwrap(), "{}", copy.display());
    }
    // A store this Glance does not have is named before anything is created.
    let out = run(as_demo(dir.path()).args(["upload", "--stores", "local,nope", "--name", "it-no-store"]).arg(&image));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("store nope") && stderr(&out).contains("local, second"), "{}", stderr(&out));
    assert!(images_named("it-no-store").is_empty());
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn an_image_with_its_manifest_is_sent_unhashed_and_skipped_unread() {
    let _services = services();
    let (dir, image) = scratch_image("built.raw", b"", 3 << 20);
    write_build_manifest(&image);
    let data = std::fs::read(&image).unwrap();
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-built", "--format", "json"]).arg(&image));
    let record = json_output(&out);
    assert!(stderr(&out).contains("the image is sent without hashing it"), "{}", stderr(&out));
    assert_eq!(bytes_read(&out), data.len() as u64, "read once, to be sent");
    // Glance's own digests of what it received are the manifest's, and so is the sha256 recorded.
    assert_eq!(record["status"], "active");
    assert_eq!(record["os_hash_value"], sha512_hex(&image));
    assert_eq!(record["checksum"], hex::encode(md5::Md5::digest(&data)));
    assert_eq!(record["owner_specified.openstack.sha256"], hex::encode(Sha256::digest(&data)));
    // Again: the image there has the manifest's digests, so it is skipped without reading the file.
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-built", "--format", "json"]).arg(&image));
    let again = json_output(&out);
    assert!(stderr(&out).contains("skipped"), "{}", stderr(&out));
    assert_eq!(again["id"], record["id"]);
    assert_eq!(bytes_read(&out), 0, "the file was read to be compared");
    assert_eq!(images_named("it-built").len(), 1);
}

#[test]
#[ignore = "needs network (PyPI) and starts Keystone+Glance"]
fn an_image_changed_since_its_manifest_fails_and_leaves_no_record() {
    let _services = services();
    let (dir, image) = scratch_image("stale.raw", b"", 2 << 20);
    write_build_manifest(&image);
    // Changed after the build, keeping its size: only Glance's digests can tell.
    let mut data = std::fs::read(&image).unwrap();
    data[1 << 20] ^= 1;
    std::fs::write(&image, &data).unwrap();
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-stale"]).arg(&image));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{} does not match its manifest (", image.display())), "{err}");
    assert!(err.contains(&format!("Glance stored sha512 {}", sha512_hex(&image))), "{err}");
    assert!(images_named("it-stale").is_empty(), "a record was left behind");

    // Another size than the manifest records: refused before anything is created.
    data.push(0);
    std::fs::write(&image, &data).unwrap();
    let out = run(as_demo(dir.path()).args(["upload", "--name", "it-stale-size"]).arg(&image));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("does not match its manifest") && err.contains("the file has 2097153"), "{err}");
    assert!(images_named("it-stale-size").is_empty());
}
