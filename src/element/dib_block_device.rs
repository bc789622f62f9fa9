//! diskimage-builder's block-device YAML (`DIB_BLOCK_DEVICE_CONFIG`; its `block-device-*`
//! elements ship the same YAML as `block-device-default.yaml`) mapped onto the disk stage.
//!
//! DIB hands the YAML to its block-device layer, which attaches a loop device, partitions it,
//! runs mkfs and mounts each filesystem. The disk stage writes one family of layouts straight
//! into a file instead: MBR with one root partition, or GPT with a BIOS boot partition, an
//! optional ESP and root last (src/disk/layout.rs). So the config is read when the build is
//! planned, its tree form expanded into DIB's flat graph (with the names DIB makes up), and every
//! node either maps onto the disk stage's settings, with a note for each value the disk stage
//! writes differently, or is refused with one line naming the node and the key.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::disk::layout::{BIOS_BOOT_BYTES, ESP_BYTES, MIB};
use crate::recipe::{check_root_label, ImageSpec, Partitioning};
use crate::settings::ByteSize;

/// The variable disk-image-create reads the YAML from (inline, or `file://PATH`).
pub const CONFIG_VAR: &str = "DIB_BLOCK_DEVICE_CONFIG";

/// What the disk stage is told about the table: which one, and whether an ESP is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskChoice {
    pub partitioning: Partitioning,
    pub uefi: bool,
}

/// DIB's `block-device-*` elements the disk stage stands in for, and the layout each gets. With
/// several requested the first listed wins.
pub const ELEMENT_LAYOUTS: &[(&str, DiskChoice)] = &[
    ("block-device-efi", DiskChoice { partitioning: Partitioning::Gpt, uefi: true }),
    ("block-device-gpt", DiskChoice { partitioning: Partitioning::Gpt, uefi: false }),
    ("block-device-mbr", DiskChoice { partitioning: Partitioning::Mbr, uefi: false }),
];

/// A config the disk stage cannot build, or cannot read.
#[derive(Debug, thiserror::Error)]
pub enum BlockDeviceError {
    #[error("{CONFIG_VAR}: node `{node}` ({kind}): {problem}")]
    Node { node: String, kind: &'static str, problem: String },
    #[error("{CONFIG_VAR}: {problem}")]
    Config { problem: String },
}

fn refuse<T>(node: &str, kind: &'static str, problem: impl Into<String>) -> Result<T, BlockDeviceError> {
    Err(BlockDeviceError::Node { node: node.to_owned(), kind, problem: problem.into() })
}

fn refuse_config<T>(problem: impl Into<String>) -> Result<T, BlockDeviceError> {
    Err(BlockDeviceError::Config { problem: problem.into() })
}

/// What one node of the config became: printed by `--dry-run` and logged by `build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeMapping {
    pub node: String,
    pub kind: &'static str,
    pub becomes: String,
    /// This node's `opts` are the root filesystem's mkfs options (preflight names it when
    /// mkfs.ext4 rejects them).
    #[serde(skip)]
    pub sets_mkfs_options: bool,
}

impl NodeMapping {
    /// The one line `build` logs.
    pub fn note(&self) -> String {
        format!("{CONFIG_VAR}: node `{}` ({}): {}", self.node, self.kind, self.becomes)
    }
}

/// The disk settings a config maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDeviceLayout {
    pub disk: DiskChoice,
    /// `local_loop`'s `size`, written in our size syntax (`4096M`).
    pub size: Option<ByteSize>,
    pub root_label: String,
    /// The root `mkfs` node's `opts`; `None` keeps `--mkfs-options`, as DIB does.
    pub mkfs_options: Option<String>,
    pub mapping: Vec<NodeMapping>,
}

impl BlockDeviceLayout {
    pub fn apply_to(&self, image: &mut ImageSpec) {
        image.partitioning = self.disk.partitioning;
        image.uefi = self.disk.uefi;
        image.root_label = self.root_label.clone();
        if let Some(size) = &self.size {
            image.size = Some(size.clone());
        }
        if let Some(options) = &self.mkfs_options {
            image.mkfs_options = Some(options.clone());
        }
    }
}

/// What disk-image-create passes its block-device layer besides the YAML (its params file).
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    /// `--root-label`, given to the `mkfs_root` node when it names no label.
    pub root_label: &'a str,
    /// `FS_TYPE`, given to the `mkfs_root` node when it names no type.
    pub fs_type: &'a str,
}

/// A block-device config is a few dozen lines; anything this large is the wrong file
/// (`file:///dev/zero` would otherwise be read forever).
const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// The YAML text of the variable's value: inline, or the file a `file://` value names.
pub fn config_text(value: &str) -> Result<String, BlockDeviceError> {
    match value.strip_prefix("file://") {
        Some(path) => crate::io::read_bounded(std::path::Path::new(path), CONFIG_MAX_BYTES)
            .or_else(|err| refuse_config(format!("cannot read {value}: {err}"))),
        None => Ok(value.to_owned()),
    }
}

/// Parse a config and map it onto the disk stage.
pub fn map(yaml: &str, defaults: &Defaults) -> Result<BlockDeviceLayout, BlockDeviceError> {
    let entries: Vec<BTreeMap<String, Value>> = serde_yaml_ng::from_str(yaml).or_else(|err| {
        refuse_config(format!("not DIB block-device YAML (a list of one-key maps): {}", one_line(&err.to_string())))
    })?;
    let mut nodes = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let mut pairs = entry.into_iter();
        let (Some((key, value)), None) = (pairs.next(), pairs.next()) else {
            return refuse_config(format!("entry {} is not a map with one key (the node type)", index + 1));
        };
        let entry = RawEntry::parse(&key, value)
            .or_else(|problem| refuse_config(format!("entry {} (`{key}`): {problem}", index + 1)))?;
        expand(entry, None, &mut nodes)?;
    }
    Mapper::new(&nodes, defaults)?.map()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// The YAML as written. Every node keeps the keys it does not know in `other`: in the tree
// form these hold child nodes (a key naming a node type), anything else is refused.

#[derive(Debug)]
enum RawEntry {
    LocalLoop(RawLoop),
    Partitioning(RawPartitioning),
    Lvm(RawCommon),
    Mkfs(RawMkfs),
    Mount(RawMount),
    Fstab(RawFstab),
}

const NODE_TYPES: &[&str] = &["local_loop", "partitioning", "lvm", "mkfs", "mount", "fstab"];

impl RawEntry {
    /// The node of type `key` (DIB's plugin name) from its body.
    fn parse(key: &str, body: Value) -> Result<RawEntry, String> {
        fn body_of<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
            serde_yaml_ng::from_value(body).map_err(|err| one_line(&err.to_string()))
        }
        match key {
            "local_loop" => body_of(body).map(RawEntry::LocalLoop),
            "partitioning" => body_of(body).map(RawEntry::Partitioning),
            // Refused whatever it holds (its `base` may be a list), so only its name is read.
            "lvm" => body_of::<BTreeMap<String, Value>>(body).map(|body| {
                let name = body.get("name").map(scalar).unwrap_or_else(|| "lvm".to_owned());
                RawEntry::Lvm(RawCommon { name: Some(name), base: None, other: BTreeMap::new() })
            }),
            "mkfs" => body_of(body).map(RawEntry::Mkfs),
            "mount" => body_of(body).map(RawEntry::Mount),
            "fstab" => body_of(body).map(RawEntry::Fstab),
            other => Err(format!("`{other}` is not a block-device node type ({})", NODE_TYPES.join(", "))),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawCommon {
    name: Option<String>,
    base: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RawLoop {
    size: Option<Value>,
    directory: Option<String>,
    block_size: Option<Value>,
    #[serde(flatten)]
    common: RawCommon,
}

#[derive(Debug, Deserialize)]
struct RawPartitioning {
    label: Option<String>,
    align: Option<Value>,
    #[serde(default)]
    partitions: Vec<RawPartition>,
    #[serde(flatten)]
    common: RawCommon,
}

#[derive(Debug, Deserialize)]
struct RawPartition {
    name: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    size: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RawMkfs {
    #[serde(rename = "type")]
    fs_type: Option<String>,
    label: Option<Value>,
    opts: Option<String>,
    uuid: Option<String>,
    #[serde(flatten)]
    common: RawCommon,
}

#[derive(Debug, Deserialize)]
struct RawMount {
    mount_point: Option<String>,
    #[serde(flatten)]
    common: RawCommon,
}

#[derive(Debug, Deserialize)]
struct RawFstab {
    options: Option<String>,
    #[serde(rename = "dump-freq")]
    dump_freq: Option<Value>,
    #[serde(rename = "fsck-passno")]
    fsck_passno: Option<Value>,
    #[serde(flatten)]
    common: RawCommon,
}

// The flat graph, as DIB's `config_tree_to_graph` makes it.

#[derive(Debug, Clone)]
struct Node {
    name: String,
    base: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    LocalLoop { size: Option<String>, directory: Option<String>, block_size: Option<String> },
    Partitioning { label: Option<String>, align: Option<String>, partitions: Vec<Partition> },
    Lvm,
    Mkfs { fs_type: Option<String>, label: Option<String>, opts: Option<String>, uuid: Option<String> },
    Mount { mount_point: Option<String> },
    Fstab { options: Option<String>, dump_freq: Option<String>, fsck_passno: Option<String> },
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::LocalLoop { .. } => "local_loop",
            Kind::Partitioning { .. } => "partitioning",
            Kind::Lvm => "lvm",
            Kind::Mkfs { .. } => "mkfs",
            Kind::Mount { .. } => "mount",
            Kind::Fstab { .. } => "fstab",
        }
    }
}

#[derive(Debug, Clone)]
struct Partition {
    name: String,
    flags: Vec<String>,
    size: Option<String>,
    kind: Option<String>,
}

/// A YAML scalar as text (`size: 1024`, `type: 8300` come as numbers).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => one_line(&serde_yaml_ng::to_string(other).unwrap_or_default()),
    }
}

/// Add `entry` and the nodes nested in it to `out`. As in DIB: a node without `base` takes its
/// parent's name, one without `name` is called `<type>_<base>`, and a partition's children
/// take the partition's name as their base.
fn expand(entry: RawEntry, parent: Option<&str>, out: &mut Vec<Node>) -> Result<(), BlockDeviceError> {
    let type_name = match &entry {
        RawEntry::LocalLoop(_) => "local_loop",
        RawEntry::Partitioning(_) => "partitioning",
        RawEntry::Lvm(_) => "lvm",
        RawEntry::Mkfs(_) => "mkfs",
        RawEntry::Mount(_) => "mount",
        RawEntry::Fstab(_) => "fstab",
    };
    let (common, kind, partitions) = match entry {
        RawEntry::LocalLoop(raw) => {
            let kind = Kind::LocalLoop {
                size: raw.size.as_ref().map(scalar),
                directory: raw.directory,
                block_size: raw.block_size.as_ref().map(scalar),
            };
            (raw.common, kind, Vec::new())
        }
        RawEntry::Partitioning(raw) => {
            let kind =
                Kind::Partitioning { label: raw.label, align: raw.align.as_ref().map(scalar), partitions: Vec::new() };
            (raw.common, kind, raw.partitions)
        }
        RawEntry::Lvm(raw) => (raw, Kind::Lvm, Vec::new()),
        RawEntry::Mkfs(raw) => {
            let kind = Kind::Mkfs {
                fs_type: raw.fs_type,
                label: raw.label.as_ref().map(scalar),
                opts: raw.opts,
                uuid: raw.uuid,
            };
            (raw.common, kind, Vec::new())
        }
        RawEntry::Mount(raw) => (raw.common, Kind::Mount { mount_point: raw.mount_point }, Vec::new()),
        RawEntry::Fstab(raw) => {
            let kind = Kind::Fstab {
                options: raw.options,
                dump_freq: raw.dump_freq.as_ref().map(scalar),
                fsck_passno: raw.fsck_passno.as_ref().map(scalar),
            };
            (raw.common, kind, Vec::new())
        }
    };
    let base = common.base.or_else(|| parent.map(str::to_owned));
    let name = match (common.name, &base) {
        (Some(name), _) => name,
        (None, Some(base)) => format!("{type_name}_{base}"),
        (None, None) => return refuse_config(format!("a `{type_name}` node without `name` or `base`")),
    };
    let mut node = Node { name, base, kind };
    let mut children = Vec::new();
    if let Kind::Partitioning { partitions: planned, .. } = &mut node.kind {
        for raw in partitions {
            let Some(part_name) = raw.name else {
                return refuse(&node.name, "partitioning", "a partition without `name`");
            };
            children
                .extend(child_entries(&part_name, "partition", raw.other)?.into_iter().map(|c| (c, part_name.clone())));
            planned.push(Partition {
                name: part_name,
                flags: raw.flags,
                size: raw.size.as_ref().map(scalar),
                kind: raw.kind.as_ref().map(scalar),
            });
        }
    }
    children.extend(child_entries(&node.name, type_name, common.other)?.into_iter().map(|c| (c, node.name.clone())));
    out.push(node);
    for (child, parent) in children {
        expand(child, Some(&parent), out)?;
    }
    Ok(())
}

/// The nodes nested under `node` (keys naming a node type); any other key is refused.
fn child_entries(
    node: &str,
    kind: &'static str,
    other: BTreeMap<String, Value>,
) -> Result<Vec<RawEntry>, BlockDeviceError> {
    let mut children = Vec::new();
    for (key, value) in other {
        if !NODE_TYPES.contains(&key.as_str()) {
            return refuse(node, kind, format!("key `{key}` is not supported by the disk stage"));
        }
        children
            .push(RawEntry::parse(&key, value).or_else(|problem| refuse(node, kind, format!("`{key}`: {problem}")))?);
    }
    Ok(children)
}

/// What a partition is to the disk stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    BiosBoot,
    Esp,
    Root,
}

struct Mapper<'a> {
    nodes: &'a [Node],
    defaults: &'a Defaults<'a>,
    mapping: Vec<NodeMapping>,
}

const ONE_ROOT: &str = "use a single root partition";

impl<'a> Mapper<'a> {
    fn new(nodes: &'a [Node], defaults: &'a Defaults<'a>) -> Result<Mapper<'a>, BlockDeviceError> {
        let mut names = BTreeSet::new();
        for node in nodes {
            let partitions = match &node.kind {
                Kind::Partitioning { partitions, .. } => partitions.iter().map(|p| p.name.as_str()).collect(),
                _ => vec![node.name.as_str()],
            };
            for name in partitions {
                if !names.insert(name) {
                    return refuse(name, node.kind.name(), "the name is used by two nodes");
                }
            }
        }
        Ok(Mapper { nodes, defaults, mapping: Vec::new() })
    }

    fn note(&mut self, node: &str, kind: &'static str, becomes: impl Into<String>) {
        self.mapping.push(NodeMapping {
            node: node.to_owned(),
            kind,
            becomes: becomes.into(),
            sets_mkfs_options: false,
        });
    }

    /// Nodes whose `base` is `base`, of one type.
    fn children(&self, base: &str, type_name: &str) -> Vec<&'a Node> {
        self.nodes.iter().filter(|n| n.kind.name() == type_name && n.base.as_deref() == Some(base)).collect()
    }

    /// The one child of `type_name` on `base`, if any; two are refused.
    fn only_child(&self, base: &str, type_name: &'static str) -> Result<Option<&'a Node>, BlockDeviceError> {
        match self.children(base, type_name).as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            [_, second, ..] => refuse(&second.name, type_name, format!("a second {type_name} on `{base}`")),
        }
    }

    fn map(mut self) -> Result<BlockDeviceLayout, BlockDeviceError> {
        if let Some(lvm) = self.nodes.iter().find(|n| matches!(n.kind, Kind::Lvm)) {
            return refuse(&lvm.name, "lvm", format!("LVM is not supported by the loop-free disk stage; {ONE_ROOT}"));
        }
        self.check_bases()?;
        let (size, disk_name) = self.local_loop()?;
        let table = self.nodes.iter().find(|n| matches!(n.kind, Kind::Partitioning { .. })).ok_or(
            BlockDeviceError::Config {
                problem: "no `partitioning` node: the disk stage writes a partitioned disk, not a bare filesystem"
                    .into(),
            },
        )?;
        let Kind::Partitioning { label, align, partitions } = &table.kind else {
            return refuse_config("internal: partitioning node changed kind");
        };
        if let Some(second) = self.nodes.iter().filter(|n| matches!(n.kind, Kind::Partitioning { .. })).nth(1) {
            return refuse(
                &second.name,
                "partitioning",
                "a second partition table is not supported; the disk stage writes one disk",
            );
        }
        if table.base.as_deref() != Some(disk_name.as_str()) {
            let base = table.base.as_deref().unwrap_or("");
            return refuse(
                &table.name,
                "partitioning",
                format!("base `{base}`: partitions go on the disk image `{disk_name}`"),
            );
        }
        let partitioning = match label.as_deref() {
            Some("mbr") => Partitioning::Mbr,
            Some("gpt") => Partitioning::Gpt,
            Some(other) => return refuse(&table.name, "partitioning", format!("label `{other}`: use mbr or gpt")),
            None => return refuse(&table.name, "partitioning", "no `label` (mbr or gpt)"),
        };
        if let Some(align) = align {
            if dib_size_bytes(align) != Some(MIB) {
                return refuse(
                    &table.name,
                    "partitioning",
                    format!("align `{align}`: the disk stage aligns partitions to 1MiB"),
                );
            }
        }
        let roles = self.partition_roles(partitions, partitioning)?;
        let uefi = roles.iter().any(|(_, role)| *role == Role::Esp);
        let table_text = match (partitioning, uefi) {
            (Partitioning::Mbr, _) => "MBR table: 1 root (the rest of the disk)",
            (Partitioning::Gpt, false) => "GPT table: 1 BIOS boot (1 MiB), 2 root (the rest of the disk)",
            (Partitioning::Gpt, true) => {
                "GPT table: 1 BIOS boot (1 MiB), 2 ESP (64 MiB), 3 root (the rest of the disk)"
            }
        };
        self.note(&table.name, "partitioning", table_text);
        if partitioning == Partitioning::Gpt && !roles.iter().any(|(_, role)| *role == Role::BiosBoot) {
            self.note(
                "-",
                "partition",
                "none is type EF02: the disk stage adds its 1 MiB BIOS boot partition for GRUB's core.img",
            );
        }
        let mut root_label = self.defaults.root_label.to_owned();
        let mut mkfs_options = None;
        for (partition, role) in &roles {
            match role {
                Role::BiosBoot => self.bios_boot(partition)?,
                Role::Esp => self.esp(partition)?,
                Role::Root => (root_label, mkfs_options) = self.root(partition, partitioning)?,
            }
        }
        Ok(BlockDeviceLayout {
            disk: DiskChoice { partitioning, uefi },
            size,
            root_label,
            mkfs_options,
            mapping: self.mapping,
        })
    }

    /// Every `base` names a node that exists and can carry that node.
    fn check_bases(&self) -> Result<(), BlockDeviceError> {
        let partition_names: BTreeSet<&str> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::Partitioning { partitions, .. } => Some(partitions.iter().map(|p| p.name.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        let kind_of = |name: &str| self.nodes.iter().find(|n| n.name == name).map(|n| n.kind.name());
        for node in self.nodes {
            let (wanted, what) = match node.kind {
                Kind::Mkfs { .. } => ("partition", "a filesystem goes on a partition"),
                Kind::Mount { .. } => ("mkfs", "a mount names a mkfs node"),
                Kind::Fstab { .. } => ("mount", "an fstab entry names a mount node"),
                _ => continue,
            };
            let base = node.base.as_deref().unwrap_or("");
            let found = if partition_names.contains(base) { Some("partition") } else { kind_of(base) };
            if found != Some(wanted) {
                let is = found.map(|k| format!("a {k} node")).unwrap_or_else(|| "not a node of this config".into());
                let problem = format!("base `{base}` is {is}: {what}");
                let problem = if found == Some("local_loop") {
                    format!("{problem} (a filesystem straight on the disk image is not supported by the disk stage)")
                } else {
                    problem
                };
                return refuse(&node.name, node.kind.name(), problem);
            }
        }
        Ok(())
    }

    /// The one disk image: its size (our syntax) and name.
    fn local_loop(&mut self) -> Result<(Option<ByteSize>, String), BlockDeviceError> {
        let mut loops = self.nodes.iter().filter(|n| matches!(n.kind, Kind::LocalLoop { .. }));
        let Some(disk) = loops.next() else {
            return refuse_config("no `local_loop` node: nothing names the disk image");
        };
        if let Some(second) = loops.next() {
            return refuse(
                &second.name,
                "local_loop",
                "a second disk image is not supported; the disk stage writes one disk",
            );
        }
        let Kind::LocalLoop { size, directory, block_size } = &disk.kind else {
            return refuse_config("internal: local_loop node changed kind");
        };
        if let Some(block_size) = block_size.as_deref().filter(|b| *b != "512") {
            return refuse(
                &disk.name,
                "local_loop",
                format!("block_size `{block_size}`: the disk stage writes 512-byte sectors only"),
            );
        }
        let size = match size {
            Some(text) => match dib_size_bytes(text) {
                Some(bytes) if bytes > 0 && bytes % MIB == 0 => Some(ByteSize::from_mib(bytes / MIB)),
                Some(_) => {
                    return refuse(&disk.name, "local_loop", format!("size `{text}` is not a whole number of MiB"))
                }
                None => return refuse(&disk.name, "local_loop", format!("size `{text}` is not a size (e.g. 4GiB)")),
            },
            None => None,
        };
        let mut becomes = match &size {
            Some(ours) => format!("the disk image, size {ours} (wins over --image-size, as in DIB)"),
            None => "the disk image, size from --image-size or computed from the tree".to_owned(),
        };
        if let Some(directory) = directory {
            becomes.push_str(&format!("; directory `{directory}` is not used (the image is written where -o says)"));
        }
        let name = disk.name.clone();
        self.note(&name, "local_loop", becomes);
        Ok((size, name))
    }

    /// Each partition's role, checked against what the disk stage lays out.
    fn partition_roles(
        &self,
        partitions: &'a [Partition],
        table: Partitioning,
    ) -> Result<Vec<(&'a Partition, Role)>, BlockDeviceError> {
        let mut roles: Vec<(&'a Partition, Role)> = Vec::new();
        for partition in partitions {
            for flag in &partition.flags {
                match (flag.as_str(), table) {
                    ("boot", _) | ("primary", Partitioning::Mbr) => {}
                    _ => {
                        return refuse(
                            &partition.name,
                            "partition",
                            format!("flag `{flag}` is not supported on {table:?}").to_lowercase(),
                        )
                    }
                }
            }
            let role = self.role(partition, table)?;
            if let Some((first, _)) = roles.iter().find(|(_, r)| *r == role) {
                return refuse(
                    &partition.name,
                    "partition",
                    format!("a second {} partition (after `{}`): {ONE_ROOT}", role_name(role), first.name),
                );
            }
            roles.push((partition, role));
        }
        match roles.last() {
            Some((partition, Role::Root)) => {
                let size = partition.size.as_deref().unwrap_or("");
                if size != "100%" {
                    return refuse(
                        &partition.name,
                        "partition",
                        format!("size `{size}`: the root partition takes the rest of the disk; give `100%` and size the disk with local_loop `size` or --image-size"),
                    );
                }
            }
            Some((partition, _)) if roles.iter().any(|(_, r)| *r == Role::Root) => {
                return refuse(
                    &partition.name,
                    "partition",
                    "comes after the root partition: the disk stage puts root last, so it can grow",
                );
            }
            _ => return refuse_config("no partition is mounted at `/`: the disk stage needs a root partition"),
        }
        Ok(roles)
    }

    fn role(&self, partition: &Partition, table: Partitioning) -> Result<Role, BlockDeviceError> {
        let kind = partition.kind.as_deref().map(|k| k.trim_start_matches("0x").to_ascii_uppercase());
        let mkfs = self.only_child(&partition.name, "mkfs")?;
        let mount = match mkfs {
            Some(mkfs) => self.only_child(&mkfs.name, "mount")?,
            None => None,
        };
        let mount_point = mount.and_then(|m| match &m.kind {
            Kind::Mount { mount_point } => mount_point.clone(),
            _ => None,
        });
        let role = match (table, kind.as_deref()) {
            (Partitioning::Gpt, Some("EF02")) => Role::BiosBoot,
            (Partitioning::Gpt, Some("EF00")) => Role::Esp,
            (_, Some("EF02" | "EF00")) => {
                return refuse(
                    &partition.name,
                    "partition",
                    format!("type `{}` needs a gpt table", kind.unwrap_or_default()),
                )
            }
            _ if mount_point.as_deref() == Some("/") => Role::Root,
            _ => {
                return match (mkfs, mount, mount_point) {
                    (_, Some(mount), Some(point)) => refuse(
                        &mount.name,
                        "mount",
                        format!("mount_point `{point}`: filesystems mounted elsewhere than `/` are not supported by the loop-free disk stage; {ONE_ROOT}"),
                    ),
                    (Some(mkfs), _, _) => refuse(&mkfs.name, "mkfs", format!("a filesystem that is not mounted at `/` is not supported by the loop-free disk stage; {ONE_ROOT}")),
                    _ => refuse(
                        &partition.name,
                        "partition",
                        format!(
                            "type `{}` without a filesystem: the disk stage writes only BIOS boot (EF02), ESP (EF00) and root partitions",
                            partition.kind.as_deref().unwrap_or("default")
                        ),
                    ),
                };
            }
        };
        if role == Role::Root {
            let ours: &[&str] = match table {
                Partitioning::Gpt => &["8300"],
                Partitioning::Mbr => &["83"],
            };
            if let Some(kind) = kind.filter(|k| !ours.contains(&k.as_str())) {
                return refuse(
                    &partition.name,
                    "partition",
                    format!("type `{kind}`: the root partition is Linux ({})", ours[0]),
                );
            }
        }
        Ok(role)
    }

    fn bios_boot(&mut self, partition: &Partition) -> Result<(), BlockDeviceError> {
        if let Some(mkfs) = self.only_child(&partition.name, "mkfs")? {
            return refuse(
                &mkfs.name,
                "mkfs",
                "a filesystem on the BIOS boot partition (EF02): GRUB's core.img goes there",
            );
        }
        let size = partition.size.as_deref().unwrap_or("");
        let becomes = format!(
            "the disk stage's BIOS boot partition, {} MiB (not {size}): it holds GRUB's core.img",
            BIOS_BOOT_BYTES / MIB
        );
        self.note(&partition.name, "partition", becomes);
        Ok(())
    }

    fn esp(&mut self, partition: &Partition) -> Result<(), BlockDeviceError> {
        let size = partition.size.as_deref().unwrap_or("");
        let becomes =
            format!("the disk stage's ESP, {} MiB (not {size}): it holds GRUB's EFI image only", ESP_BYTES / MIB);
        self.note(&partition.name, "partition", becomes);
        let Some(mkfs) = self.only_child(&partition.name, "mkfs")? else { return Ok(()) };
        let Kind::Mkfs { fs_type, opts, uuid, .. } = &mkfs.kind else { return Ok(()) };
        match fs_type.as_deref() {
            Some("vfat" | "fat") => {}
            other => {
                return refuse(&mkfs.name, "mkfs", format!("type `{}`: the ESP is FAT (vfat)", other.unwrap_or("")))
            }
        }
        if let Some(opts) = opts {
            return refuse(&mkfs.name, "mkfs", format!("opts `{opts}`: the disk stage formats the ESP itself"));
        }
        if let Some(uuid) = uuid {
            return refuse(&mkfs.name, "mkfs", format!("uuid `{uuid}`: volume ids come from --seed"));
        }
        self.note(&mkfs.name, "mkfs", "FAT written by the disk stage, volume label ESP");
        let Some(mount) = self.only_child(&mkfs.name, "mount")? else { return Ok(()) };
        let Kind::Mount { mount_point } = &mount.kind else { return Ok(()) };
        let point = mount_point.as_deref().unwrap_or("");
        if point != "/boot/efi" {
            return refuse(&mount.name, "mount", format!("mount_point `{point}`: the ESP's place is /boot/efi"));
        }
        self.note(
            &mount.name,
            "mount",
            "/boot/efi is not mounted in the image: the disk stage writes GRUB's EFI image onto the ESP itself",
        );
        if let Some(fstab) = self.only_child(&mount.name, "fstab")? {
            self.note(
                &fstab.name,
                "fstab",
                "no /boot/efi line in /etc/fstab: the disk stage does not mount the ESP (as for block-device-efi)",
            );
        }
        Ok(())
    }

    /// The root filesystem's label and mkfs options.
    fn root(
        &mut self,
        partition: &Partition,
        table: Partitioning,
    ) -> Result<(String, Option<String>), BlockDeviceError> {
        let number = match table {
            Partitioning::Mbr => "partition 1, bootable",
            Partitioning::Gpt => "last partition",
        };
        self.note(&partition.name, "partition", format!("the root partition ({number}), the rest of the disk"));
        let Some(mkfs) = self.only_child(&partition.name, "mkfs")? else {
            return refuse_config("internal: root partition without mkfs");
        };
        let Kind::Mkfs { fs_type, label, opts, uuid } = &mkfs.kind else {
            return refuse_config("internal: mkfs node changed kind");
        };
        // disk-image-create's params fill in `type` and `label` for the node named mkfs_root
        // only; DIB refuses any other mkfs without a type.
        let is_mkfs_root = mkfs.name == "mkfs_root";
        let fs_type = match (fs_type, is_mkfs_root) {
            (Some(fs_type), _) => fs_type.clone(),
            (None, true) => self.defaults.fs_type.to_owned(),
            (None, false) => {
                return refuse(&mkfs.name, "mkfs", "no `type` (DIB fills it in only for the node named mkfs_root)")
            }
        };
        if fs_type != "ext4" {
            return refuse(
                &mkfs.name,
                "mkfs",
                format!("type `{fs_type}`: the loop-free disk stage writes ext4 root filesystems only"),
            );
        }
        let label = match (label, is_mkfs_root) {
            (Some(label), _) => label.clone(),
            (None, true) => self.defaults.root_label.to_owned(),
            (None, false) => mkfs.name.clone(),
        };
        if let Err(problem) = check_root_label(&label) {
            return refuse(&mkfs.name, "mkfs", format!("label {problem}"));
        }
        if let Some(uuid) = uuid {
            return refuse(&mkfs.name, "mkfs", format!("uuid `{uuid}`: the root filesystem's UUID comes from --seed"));
        }
        let options = opts.as_ref().map(|o| one_line(o)).filter(|o| !o.is_empty());
        let shown = match &options {
            Some(options) => format!(", mkfs options `{options}` (win over --mkfs-options, as in DIB)"),
            None => String::new(),
        };
        self.note(&mkfs.name, "mkfs", format!("the root filesystem: ext4, label `{label}`{shown}"));
        if let Some(note) = self.mapping.last_mut() {
            note.sets_mkfs_options = options.is_some();
        }
        let Some(mount) = self.only_child(&mkfs.name, "mount")? else {
            return refuse_config("internal: root mkfs without mount");
        };
        self.note(&mount.name, "mount", "/");
        if let Some(fstab) = self.only_child(&mount.name, "fstab")? {
            self.root_fstab(fstab)?;
        }
        Ok((label, options))
    }

    fn root_fstab(&mut self, fstab: &Node) -> Result<(), BlockDeviceError> {
        let Kind::Fstab { options, dump_freq, fsck_passno } = &fstab.kind else { return Ok(()) };
        let ours = "the disk stage's line `UUID=<root> / ext4 defaults,errors=remount-ro 0 1`";
        if let Some(options) = options.as_deref().filter(|o| *o != "defaults") {
            return refuse(&fstab.name, "fstab", format!("options `{options}`: the root's fstab line is {ours}"));
        }
        if let Some(dump) = dump_freq.as_deref().filter(|d| *d != "0") {
            return refuse(&fstab.name, "fstab", format!("dump-freq `{dump}`: the root's fstab line is {ours}"));
        }
        if let Some(pass) = fsck_passno.as_deref().filter(|p| *p != "1") {
            return refuse(&fstab.name, "fstab", format!("fsck-passno `{pass}`: the root's fstab line is {ours}"));
        }
        self.note(&fstab.name, "fstab", ours);
        Ok(())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::BiosBoot => "BIOS boot",
        Role::Esp => "ESP",
        Role::Root => "root",
    }
}

/// A size as DIB's block-device layer reads one (`utils.parse_abs_size_spec`): a decimal
/// number and a unit, `KiB`..`TiB` binary, `KB`..`TB` and `K`..`T` decimal, `B` or none bytes.
fn dib_size_bytes(text: &str) -> Option<u64> {
    const UNITS: &[(&str, f64)] = &[
        ("TiB", 1099511627776.0),
        ("GiB", 1073741824.0),
        ("MiB", 1048576.0),
        ("KiB", 1024.0),
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("KB", 1e3),
        ("T", 1e12),
        ("G", 1e9),
        ("M", 1e6),
        ("K", 1e3),
        ("B", 1.0),
        ("", 1.0),
    ];
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let count: f64 = if number.is_empty() { 1.0 } else { number.parse().ok()? };
    let factor = UNITS.iter().find(|(name, _)| *name == unit)?.1;
    let bytes = count * factor;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults { root_label: "cloudimg-rootfs", fs_type: "ext4" };

    fn layout(yaml: &str) -> BlockDeviceLayout {
        map(yaml, &DEFAULTS).unwrap_or_else(|err| panic!("{err}"))
    }

    fn refused(yaml: &str) -> String {
        match map(yaml, &DEFAULTS) {
            Ok(layout) => panic!("mapped: {layout:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn element(name: &str) -> DiskChoice {
        ELEMENT_LAYOUTS.iter().find(|(n, _)| *n == name).map(|(_, choice)| *choice).unwrap()
    }

    /// A GPT on the loop image `image0`, with `partitions` (the indented list, and whatever
    /// nodes follow it).
    fn gpt_image0(partitions: &str) -> String {
        format!("- local_loop: {{name: image0}}\n- partitioning:\n    base: image0\n    label: gpt\n    partitions:\n{partitions}")
    }

    /// One MBR partition holding root, as block-device-mbr lays it out.
    const MBR_ROOT: &str = "
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: mbr
    partitions:
      - name: root
        flags: [boot, primary]
        size: 100%
        mkfs:
          mount:
            mount_point: /
            fstab: {options: defaults, fsck-passno: 1}
";

    /// The custom layout users pass most: ESP, BIOS boot, root with its own label and options.
    const GPT_CUSTOM: &str = "
- local_loop: {name: image0, size: 6GiB}
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: EF00
        size: 550MiB
        mkfs:
          type: vfat
          mount: {mount_point: /boot/efi}
      - name: BSP
        type: EF02
        size: 8MiB
      - name: root
        type: 8300
        size: 100%
        mkfs:
          type: ext4
          label: cloudimg-rootfs
          opts: '-i 16384'
          mount:
            mount_point: /
";

    #[test]
    fn an_mbr_root_is_the_mbr_elements_layout_with_the_default_label() {
        let mapped = layout(MBR_ROOT);
        assert_eq!(mapped.disk, element("block-device-mbr"));
        assert_eq!((mapped.root_label.as_str(), &mapped.mkfs_options, &mapped.size), ("cloudimg-rootfs", &None, &None));
        let nodes: Vec<(&str, &str)> = mapped.mapping.iter().map(|m| (m.node.as_str(), m.kind)).collect();
        assert_eq!(
            nodes,
            [
                ("image0", "local_loop"),
                ("partitioning_image0", "partitioning"),
                ("root", "partition"),
                ("mkfs_root", "mkfs"),
                ("mount_mkfs_root", "mount"),
                ("fstab_mount_mkfs_root", "fstab")
            ]
        );
    }

    #[test]
    fn a_custom_gpt_layout_maps_label_options_esp_and_size() {
        let mapped = layout(GPT_CUSTOM);
        assert_eq!(mapped.disk, element("block-device-efi"));
        assert_eq!(mapped.root_label, "cloudimg-rootfs");
        assert_eq!(mapped.mkfs_options.as_deref(), Some("-i 16384"));
        assert_eq!(mapped.size.as_ref().map(ByteSize::as_str), Some("6144M"));
        let esp = mapped.mapping.iter().find(|m| m.node == "ESP").unwrap();
        assert!(esp.becomes.contains("64 MiB (not 550MiB)"), "{}", esp.becomes);
        let bsp = mapped.mapping.iter().find(|m| m.node == "BSP").unwrap();
        assert!(bsp.becomes.contains("1 MiB (not 8MiB)"), "{}", bsp.becomes);

        let mut image = ImageSpec::default();
        mapped.apply_to(&mut image);
        assert_eq!((image.partitioning, image.uefi), (Partitioning::Gpt, true));
        assert_eq!(image.mkfs_options.as_deref(), Some("-i 16384"));
        assert_eq!(image.size.as_ref().map(ByteSize::as_str), Some("6144M"));
    }

    #[test]
    fn the_flat_form_maps_like_the_tree_form() {
        let flat = "
- local_loop: {name: disk}
- partitioning:
    base: disk
    label: gpt
    partitions:
      - {name: bios, type: EF02, size: 1MiB}
      - {name: rootpart, size: 100%}
- mkfs: {name: rootfs, base: rootpart, type: ext4, label: my-root}
- mount: {name: rootmnt, base: rootfs, mount_point: /}
- fstab: {name: roottab, base: rootmnt, options: defaults}
";
        let mapped = layout(flat);
        assert_eq!(mapped.disk, element("block-device-gpt"));
        assert_eq!(mapped.root_label, "my-root");
        let kinds: Vec<&str> = mapped.mapping.iter().map(|m| m.node.as_str()).collect();
        assert_eq!(kinds, ["disk", "partitioning_disk", "bios", "rootpart", "rootfs", "rootmnt", "roottab"]);
    }

    #[test]
    fn a_gpt_layout_without_bios_boot_gets_ours_with_a_note() {
        let yaml = gpt_image0(
            "      - name: root\n        size: 100%\n        mkfs: {name: mkfs_root, mount: {mount_point: /}}\n",
        );
        let mapped = layout(&yaml);
        assert_eq!(mapped.disk, element("block-device-gpt"));
        assert!(mapped.mapping.iter().any(|m| m.becomes.contains("adds its 1 MiB BIOS boot partition")));
        // mkfs_root with no label takes --root-label; FS_TYPE decides its type.
        let xfs = map(&yaml, &Defaults { root_label: "r", fs_type: "xfs" }).unwrap_err().to_string();
        assert_eq!(
            xfs,
            "DIB_BLOCK_DEVICE_CONFIG: node `mkfs_root` (mkfs): type `xfs`: the loop-free disk stage writes ext4 root filesystems only"
        );
    }

    #[test]
    fn lvm_is_refused_naming_the_node() {
        let yaml = gpt_image0(
            "      - {name: root, type: 8E00, size: 100%}\n- lvm:\n    name: lvm\n    base: [root]\n    pvs: [{name: pv, base: root}]\n",
        );
        assert_eq!(
            refused(&yaml),
            "DIB_BLOCK_DEVICE_CONFIG: node `lvm` (lvm): LVM is not supported by the loop-free disk stage; use a single root partition"
        );
    }

    #[test]
    fn a_second_filesystem_mounted_elsewhere_is_refused_naming_the_mount() {
        let yaml = MBR_ROOT.replace(
            "      - name: root\n",
            "      - name: var\n        size: 2GiB\n        mkfs: {type: ext4, mount: {mount_point: /var}}\n      - name: root\n",
        );
        assert_eq!(
            refused(&yaml),
            "DIB_BLOCK_DEVICE_CONFIG: node `mount_mkfs_var` (mount): mount_point `/var`: filesystems mounted elsewhere than `/` are not supported by the loop-free disk stage; use a single root partition"
        );
    }

    #[test]
    fn sizes_types_and_keys_the_disk_stage_cannot_honour_are_refused() {
        let cases = [
            (
                MBR_ROOT.replace("size: 100%", "size: 10GiB"),
                "node `root` (partition): size `10GiB`: the root partition takes the rest",
            ),
            (MBR_ROOT.replace("mkfs:\n", "mkfs:\n          type: xfs\n"), "node `mkfs_root` (mkfs): type `xfs`"),
            (MBR_ROOT.replace("label: mbr", "label: dos"), "node `partitioning_image0` (partitioning): label `dos`"),
            (
                MBR_ROOT.replace("name: image0\n", "name: image0\n    block_size: 4096\n"),
                "node `image0` (local_loop): block_size `4096`",
            ),
            (
                MBR_ROOT.replace("options: defaults", "options: noatime"),
                "node `fstab_mount_mkfs_root` (fstab): options `noatime`",
            ),
            (
                MBR_ROOT.replace("size: 100%", "size: 100%\n        bogus: 1"),
                "node `root` (partition): key `bogus` is not supported",
            ),
            (
                MBR_ROOT.replace("flags: [boot, primary]", "flags: [boot, primary]\n        type: '8e'"),
                "node `root` (partition): type `8E`",
            ),
            (GPT_CUSTOM.replace("type: vfat", "type: ext4"), "node `mkfs_ESP` (mkfs): type `ext4`: the ESP is FAT"),
            (
                GPT_CUSTOM.replace("size: 6GiB", "size: 2.5GB"),
                "node `image0` (local_loop): size `2.5GB` is not a whole number of MiB",
            ),
            (
                GPT_CUSTOM.replace("label: cloudimg-rootfs", "label: a-label-far-too-long"),
                "label `a-label-far-too-long` is not an ext4 label",
            ),
            (
                "- local_loop: {name: image0}\n- mkfs: {name: fs, base: image0, type: ext4}".to_owned(),
                "node `fs` (mkfs): base `image0` is a local_loop node",
            ),
            ("- mdraid: {name: md0}".to_owned(), "entry 1 (`mdraid`): `mdraid` is not a block-device node type"),
            ("local_loop: {name: x}".to_owned(), "not DIB block-device YAML (a list of one-key maps)"),
        ];
        for (yaml, wanted) in cases {
            let err = refused(&yaml);
            assert!(err.starts_with("DIB_BLOCK_DEVICE_CONFIG: ") && err.contains(wanted), "{err}\nwanted: {wanted}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn a_file_url_is_read_and_a_missing_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bd.yaml");
        std::fs::write(&path, MBR_ROOT).unwrap();
        assert_eq!(config_text(&format!("file://{}", path.display())).unwrap(), MBR_ROOT);
        let err = config_text("file:///nonexistent/bd.yaml").unwrap_err().to_string();
        assert!(err.starts_with("DIB_BLOCK_DEVICE_CONFIG: cannot read file:///nonexistent/bd.yaml: "), "{err}");
        assert_eq!(config_text("- local_loop: {name: x}").unwrap(), "- local_loop: {name: x}");
    }

    #[test]
    fn dib_sizes_read_as_dib_reads_them() {
        assert_eq!(dib_size_bytes("8MiB"), Some(8 << 20));
        assert_eq!(dib_size_bytes("2.5GiB"), Some(5 << 29));
        assert_eq!(dib_size_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(dib_size_bytes("4 G"), Some(4_000_000_000));
        assert_eq!(dib_size_bytes("1024"), Some(1024));
        assert_eq!(dib_size_bytes("4Q"), None);
    }
}
