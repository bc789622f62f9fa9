//! `DIB_BLOCK_DEVICE_CONFIG` against the real binary: a layout the disk stage builds is mapped
//! and `--dry-run` prints the mapping; one it cannot build fails at planning time, before any
//! work, with one line naming the node and the key. The last test feeds DIB 3.43's own
//! `block-device-*` YAML (fetched by tests/upstream/fetch.sh, never committed).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::upstream::UpstreamTrees;

/// A refusal must come before any work: well within this.
const LIMIT: Duration = Duration::from_secs(2);
/// The exit status of a request that cannot be planned.
const USAGE: i32 = 2;

/// `mesos-image ARGS` in `dir`, hermetic, for bookworm.
fn run_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, Duration) {
    let mut env = env.to_vec();
    env.insert(0, ("DIB_RELEASE", "bookworm"));
    common::run_hermetic(dir, &env, args)
}

/// A scratch directory with the HOME and TMPDIR `run_in` points at (preflight makes scratch
/// files there).
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

fn listing(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir).into_iter().map(|e| e.unwrap().path().display().to_string()).collect()
}

/// A custom layout of the kind users pass: ESP, BIOS boot, and a root of 100% with its own label
/// and mkfs options.
const CUSTOM_GPT: &str = "
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: EF00
        size: 550MiB
        mkfs:
          type: vfat
          mount:
            mount_point: /boot/efi
      - name: BSP
        type: EF02
        size: 8MiB
      - name: root
        type: 8300
        size: 100%
        mkfs:
          type: ext4
          label: mesos-root
          opts: -i 16384
          mount:
            mount_point: /
            fstab:
              options: defaults
              fsck-passno: 1
";

#[test]
fn configs_the_disk_stage_cannot_build_fail_before_any_work_in_one_line() {
    let lvm = "- local_loop: {name: image0}\n- partitioning:\n    base: image0\n    label: gpt\n    partitions:\n      - {name: root, type: 8E00, size: 100%}\n- lvm: {name: lvm, base: [root], pvs: [{name: pv, base: root}]}\n";
    let var = CUSTOM_GPT.replace(
        "      - name: root\n",
        "      - name: var\n        size: 4GiB\n        mkfs: {type: ext4, mount: {mount_point: /var}}\n      - name: root\n",
    );
    let xfs = CUSTOM_GPT.replace("type: ext4", "type: xfs");
    let sized = CUSTOM_GPT.replace("size: 100%", "size: 20GiB");
    let bad_opts = CUSTOM_GPT.replace("opts: -i 16384", "opts: -O no_such_feature");
    let cases: [(&str, String, &str); 6] = [
        ("lvm", lvm.to_owned(), "node `lvm` (lvm): LVM is not supported by the loop-free disk stage; use a single root partition"),
        ("/var", var, "node `mount_mkfs_var` (mount): mount_point `/var`: filesystems mounted elsewhere than `/` are not supported by the loop-free disk stage; use a single root partition"),
        ("xfs", xfs, "node `mkfs_root` (mkfs): type `xfs`: the loop-free disk stage writes ext4 root filesystems only"),
        ("root size", sized, "node `root` (partition): size `20GiB`: the root partition takes the rest of the disk"),
        // Judged by mkfs.ext4 itself, like --mkfs-options, and named as the node.
        ("mkfs opts", bad_opts, "node `mkfs_root` (mkfs): opts -O no_such_feature: mkfs.ext4 rejects them"),
        ("missing file", "file:///nonexistent/block-device.yaml".to_owned(), "cannot read file:///nonexistent/block-device.yaml"),
    ];
    for (what, config, wanted) in cases {
        let scratch = scratch();
        let before = listing(scratch.path());
        // Not --dry-run: a config that got through would start the build.
        let (output, elapsed) = run_in(
            scratch.path(),
            &[("DIB_BLOCK_DEVICE_CONFIG", &config)],
            &["build", "-o", "x.qcow2", "debian-minimal", "vm"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(USAGE), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}");
        assert!(
            lines[0].starts_with("error: DIB_BLOCK_DEVICE_CONFIG: ") && lines[0].contains(wanted),
            "{what}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{what}: {}", String::from_utf8_lossy(&output.stdout));
        assert!(elapsed < LIMIT, "{what}: took {elapsed:?}");
        assert_eq!(listing(scratch.path()), before, "{what}: something was written");
    }
}

#[test]
fn dry_run_prints_the_mapped_layout_and_plans_it() {
    let scratch = scratch();
    let env = [("DIB_BLOCK_DEVICE_CONFIG", CUSTOM_GPT)];
    let (text, _) = run_in(scratch.path(), &env, &["build", "--dry-run", "debian-minimal", "vm"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let section: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("block-device config (DIB_BLOCK_DEVICE_CONFIG)"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        section.first(),
        Some(&"disk: gpt with an ESP, root ext4 label `mesos-root`, mkfs options `-i 16384`"),
        "{stdout}"
    );
    let line = |node: &str| {
        section
            .iter()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("no `{node}` line:\n{stdout}"))
            .to_string()
    };
    assert!(
        line("ESP").ends_with("partition: the disk stage's ESP, 64 MiB (not 550MiB): it holds GRUB's EFI image only")
    );
    assert!(line("BSP").contains("BIOS boot partition, 1 MiB (not 8MiB)"));
    assert!(line("partitioning_image0").contains("1 BIOS boot (1 MiB), 2 ESP (64 MiB), 3 root (the rest of the disk)"));
    assert!(line("mkfs_root").contains("label `mesos-root`, mkfs options `-i 16384`"));

    let (json, _) = run_in(scratch.path(), &env, &["build", "--dry-run", "--json", "debian-minimal", "vm"]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let image = &plan["image"];
    assert_eq!((image["partitioning"].as_str(), image["uefi"].as_bool()), (Some("gpt"), Some(true)), "{image}");
    assert_eq!(image["root-label"], "mesos-root");
    assert_eq!(image["mkfs-options"], "-i 16384");
    assert_eq!(plan["env"]["DIB_ROOT_LABEL"], "mesos-root", "scripts see the config's label");
    assert_eq!(plan["block_device_config"].as_array().map(Vec::len), Some(section.len() - 1));
}

/// `build --dry-run --json` with diskimage-builder's tree on ELEMENTS_PATH.
fn dib_tree_plan(trees: &UpstreamTrees, elements: &[&str], config: Option<&str>) -> serde_json::Value {
    let scratch = scratch();
    let dib = trees.dib.display().to_string();
    let mut env = vec![("ELEMENTS_PATH", dib.as_str())];
    if let Some(config) = config {
        env.push(("DIB_BLOCK_DEVICE_CONFIG", config));
    }
    let args: Vec<&str> = ["build", "--dry-run", "--json"].iter().chain(elements).copied().collect();
    let (output, _) = run_in(scratch.path(), &env, &args);
    assert!(output.status.success(), "{elements:?} {config:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
#[ignore = "downloads the upstream element sdists with pip (network)"]
fn dibs_own_block_device_yaml_plans_the_layout_of_its_element() {
    let trees = UpstreamTrees::fetch();
    for element in ["block-device-mbr", "block-device-gpt", "block-device-efi"] {
        let yaml_path = trees.dib.join(element).join("block-device-default.yaml");
        let yaml = std::fs::read_to_string(&yaml_path).unwrap();
        let by_element = dib_tree_plan(&trees, &["debian", "vm", element], None);
        // Inline, as DIB reads the variable, beside another block-device-* element (the config
        // wins over that element's own YAML, as in DIB), and as a file:// URL.
        let inline = dib_tree_plan(&trees, &["debian", "vm", "block-device-gpt"], Some(&yaml));
        let url = format!("file://{}", yaml_path.display());
        let by_url = dib_tree_plan(&trees, &["debian", "vm"], Some(&url));
        assert_eq!(inline["image"], by_element["image"], "{element}: its YAML planned another layout");
        assert_eq!(by_url["image"], by_element["image"], "{element}: file:// planned another layout");
        let notes = inline["block_device_config"].as_array().unwrap();
        let added = notes.iter().find(|n| n["node"] == "block-device-gpt").expect("a note on block-device-gpt");
        assert!(added["becomes"].as_str().unwrap().contains("DIB_BLOCK_DEVICE_CONFIG wins"), "{added}");
    }
}
