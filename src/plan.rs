//! The immutable build plan every stage reads: the recipe (or DIB-mode command line) resolved
//! against the element graph. `build --dry-run` prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::element::dib_block_device::{self, BlockDeviceError, NodeMapping};
use crate::element::dib_env::{self, DibSettings};
use crate::element::dib_tree::Substitution;
use crate::element::installtype::InstallTypes;
pub use crate::element::packages::PackageSet;
use crate::element::packages::{self, PackageContext};
use crate::element::pkgmap::PkgMapFile;
use crate::element::request::{self, AddedElement};
use crate::element::{
    environment, merge_environment_d, merge_hooks_typed, runparts, ElementError, ElementLibrary, HookScript, Phase,
};
use crate::mirror::{self, HostDistro, MirrorSources};
use crate::recipe::{BaseMethod, Check, GlanceSpec, ImageSpec, Overrides, Recipe, RecipeSource};
use crate::settings;

/// DIB's variable for the kernel's serial console (its bootloader element's): the user's value
/// wins; otherwise the architecture's (`ttyS0,115200n8`, `ttyAMA0,115200n8` on arm64). Elements
/// read it for the getty and grub defaults, the disk stage for grub.cfg.
pub const SERIAL_CONSOLE_VAR: &str = "DIB_BOOTLOADER_SERIAL_CONSOLE";

/// One element of the resolved set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedElement {
    pub name: String,
    /// The element directory that won on `ELEMENTS_PATH`.
    pub path: PathBuf,
}

/// One hook script, in run order within its phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedScript {
    /// File name, e.g. `50-configure-mesos`.
    pub name: String,
    /// The element that ships it.
    pub element: String,
    /// Absolute path on the host.
    pub path: PathBuf,
}

/// Everything a build needs to know, decided before any work starts.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Recipe name, or `None` in DIB mode (elements on the command line).
    pub recipe: Option<String>,
    /// The recipe file and its digest, when the recipe came from a file.
    pub recipe_source: Option<RecipeSource>,
    pub distro: String,
    pub release: String,
    pub arch: String,
    /// How the Rust root stage makes the base tree; `None` when an element's own `root.d`
    /// builds it (a user's DIB operating-system element). Our OS elements select one by
    /// exporting `MESOS_IMAGE_BASE` (mmdebstrap|debootstrap|cloud-image) in `environment.d`.
    pub base: Option<BaseMethod>,
    /// The mirror the base tree and apt use: `--mirror`, `DIB_DISTRIBUTION_MIRROR`, recipe,
    /// or the host's own apt sources for the host's distro.
    pub mirror: Option<String>,
    /// The resolved element set, sorted by name.
    pub elements: Vec<PlannedElement>,
    /// Elements disk-image-create's rules added to the request (DIB mode), with the rule.
    pub added_elements: Vec<AddedElement>,
    /// diskimage-builder's elements replaced by rule (its tree on `ELEMENTS_PATH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub substitutions: Vec<Substitution>,
    /// `DIB_BLOCK_DEVICE_CONFIG`'s nodes and what each became on the disk stage (DIB mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub block_device_config: Vec<NodeMapping>,
    /// Hook scripts per phase, in run-parts order.
    pub scripts: BTreeMap<Phase, Vec<PlannedScript>>,
    /// `environment.d` files, sourced in this order before every script.
    pub environment_d: Vec<PlannedScript>,
    /// Packages per phase (only pre-install, install and post-install; phases with nothing are
    /// absent). The recipe's `packages` and `-p` are in the install phase's `install`.
    pub packages: BTreeMap<Phase, PackageSet>,
    /// Variables passed to every script (sorted). Runtime paths (`TARGET_ROOT`,
    /// `TMP_MOUNT_PATH`, `TMP_HOOKS_PATH`) are added by the stage that runs the script.
    pub env: BTreeMap<String, String>,
    /// Each element's `pkg-map`, already resolved for this distro/family/release:
    /// element -> (generic name -> distro name). Elements without a pkg-map are absent. A value
    /// may name several packages (space-separated) or be `""` (nothing to install).
    /// The in-chroot `pkg-map` helper reads this, so no Python is needed in the target.
    pub pkg_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub image: ImageSpec,
    pub glance: GlanceSpec,
    pub checks: Vec<Check>,
    /// Build on disk, never in a tmpfs: `--no-tmpfs`, or `DIB_NO_TMPFS=1` from the user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_tmpfs: bool,
}

/// Errors at the planner's edge; element errors pass through unchanged (they name the culprit).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Element(#[from] ElementError),
    #[error("no DISTRO_NAME: none of the elements' environment.d files ({elements}) exports it")]
    NoDistro { elements: String },
    #[error("no release: pass --release or set DIB_RELEASE (the {distro} element sets no default)")]
    NoRelease { distro: String },
    #[error(transparent)]
    BlockDeviceConfig(#[from] BlockDeviceError),
    #[error("MESOS_IMAGE_BASE=`{value}` (from environment.d) is not mmdebstrap, debootstrap or cloud-image")]
    BadBase { value: String },
    /// DIB runs block-device.d outside the chroot on the image's loop device; our disk stage
    /// writes the image file directly and never has one, so such a hook is refused up front
    /// instead of being skipped (docs/dib-compat.md).
    #[error("element `{element}`: block-device.d/{script} cannot run: mesos-image writes the disk without a block device (no loop device, no IMAGE_BLOCK_DEVICE); drop the element or the script")]
    BlockDeviceHook { element: String, script: String },
}

/// What the planner needs to know about the machine it runs on. Tests build one by hand.
#[derive(Debug, Clone, Default)]
pub struct HostContext {
    /// The host's environment: `DIB_*` variables and `ARCH` are taken from it.
    pub env: BTreeMap<String, String>,
    pub distro: HostDistro,
}

impl HostContext {
    pub fn detect() -> HostContext {
        HostContext { env: std::env::vars().collect(), distro: HostDistro::detect() }
    }
}

/// Everything besides the recipe or the element list that shapes a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The effective element search path (see [`crate::element::search_path`]).
    pub elements_path: Vec<PathBuf>,
    /// Command-line values. `mirror` is `--mirror`; `packages` is `-p`; `environment` is `-e`
    /// (plus `DIB_MESOS_REPO*`).
    pub overrides: Overrides,
    /// `IMAGE_NAME`: the output file's stem; defaults to the recipe name, or `image`.
    pub image_name: Option<String>,
    /// How many `-x` were given.
    pub trace: u8,
    /// `-n`: do not add `base` in DIB mode.
    pub skip_base: bool,
    pub host: HostContext,
}

impl Plan {
    /// Recipe mode: the recipe's distro, release, arch and base win over what elements export;
    /// command-line overrides win over the recipe.
    pub fn from_recipe(recipe: &Recipe, options: &PlanOptions) -> Result<Plan, PlanError> {
        let mut recipe = recipe.clone();
        // The mirror has its own precedence (see `mirror`), so it is not merged here.
        recipe.apply(&Overrides { mirror: None, ..options.overrides.clone() });
        plan(Some(&recipe), &recipe.elements, options)
    }

    /// DIB mode: distro and release come from sourcing the elements' `environment.d`.
    pub fn from_elements(names: &[String], options: &PlanOptions) -> Result<Plan, PlanError> {
        plan(None, names, options)
    }

    /// A phase's scripts in run-parts order (empty when no element ships any).
    pub fn scripts_for(&self, phase: Phase) -> &[PlannedScript] {
        self.scripts.get(&phase).map(Vec::as_slice).unwrap_or_default()
    }

    /// A phase's steps in the order the build runs them: its scripts in run-parts order, with
    /// the package step at the phase's slot. The build and `--dry-run` both walk this list.
    pub fn phase_steps(&self, phase: Phase) -> Vec<PhaseStep<'_>> {
        phase_steps(phase, self.scripts_for(phase))
    }
}

/// One step of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseStep<'a> {
    Script(&'a PlannedScript),
    /// The phase's one apt transaction (and, in install, the elements' `static/` trees), named
    /// by DIB's `package-installs` script whose slot it takes.
    Packages {
        slot: &'static str,
    },
    /// Every element's `dir/` copied into the tree at `into` (relative to its root), elements
    /// in plan order: `bin/` first thing in pre-install, `static/` right after install's
    /// packages, as DIB's install-bin and install-static do.
    ElementFiles {
        dir: &'static str,
        into: &'static str,
    },
}

/// The package step goes before the first script that does not sort before the slot: scripts
/// numbered earlier (repository set-up) take effect for the transaction, and a script named
/// exactly like the slot runs after it, as a second script of that name would in DIB.
fn phase_steps(phase: Phase, scripts: &[PlannedScript]) -> Vec<PhaseStep<'_>> {
    let mut steps: Vec<PhaseStep<'_>> = scripts.iter().map(PhaseStep::Script).collect();
    if let Some(slot) = phase.package_slot() {
        let index = scripts.iter().position(|s| runparts::compare(&s.name, slot).is_ge()).unwrap_or(scripts.len());
        steps.insert(index, PhaseStep::Packages { slot });
        if phase == Phase::Install {
            steps.insert(index + 1, PhaseStep::ElementFiles { dir: "static", into: "" });
        }
    }
    if phase == Phase::PreInstall {
        steps.insert(0, PhaseStep::ElementFiles { dir: "bin", into: "usr/local/bin" });
    }
    steps
}

/// Build a plan. `recipe` is `Some` in recipe mode (overrides already applied); `requested` are
/// the elements to resolve.
fn plan(recipe: Option<&Recipe>, requested: &[String], options: &PlanOptions) -> Result<Plan, PlanError> {
    let arch = target_arch(recipe, options);
    let library = ElementLibrary::scan(&options.elements_path)?;
    let (requested, added_elements) = match recipe {
        Some(_) => (requested.to_vec(), Vec::new()),
        None => request::with_dib_defaults(requested, &library, &arch, !options.skip_base),
    };
    let resolved = library.resolve(&requested)?;
    let substitutions = library.substitutions_for(&resolved, &requested);
    let image_element = resolved.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" ");

    let mirrors = MirrorInputs::new(recipe, options);
    let mut initial = initial_env(
        recipe,
        options,
        &mirrors,
        &[
            ("ARCH", arch.clone()),
            ("IMAGE_ELEMENT", image_element.clone()),
            ("ELEMENTS_PATH", library.elements_path_var()),
        ],
    );
    let platform = crate::arch::platform(&arch);
    if let Some(platform) = platform {
        initial.entry(SERIAL_CONSOLE_VAR.into()).or_insert_with(|| platform.serial_console.to_owned());
    }
    let environment_d = merge_environment_d(&resolved)?;
    let env_files: Vec<PathBuf> = environment_d.iter().map(|s| s.path.clone()).collect();
    let bin_dirs: Vec<PathBuf> = resolved.iter().filter_map(|e| e.bin_dir()).collect();
    // Element code is about to run: secrets of -e and the recipe must be known before it can echo them.
    crate::redact::register_env(initial.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let sourced = environment::source_files(&env_files, &initial, &bin_dirs)?;

    let (distro, release, base) = target_system(recipe, options, &sourced, &image_element)?;
    let mirror = mirrors.resolve(&sourced, &distro, &options.host.distro);
    let mut env = initial;
    add_target_variables(&mut env, &distro, &release, mirror.as_ref());

    let pkg_maps = resolved_pkg_maps(&resolved, &distro, &release)?;
    let mut image = recipe.map(|r| r.image.clone()).unwrap_or_else(|| image_with_overrides(&options.overrides));
    let block_device_config = match recipe {
        None => block_device_layout(&mut image, &requested, &library, &mut env)?,
        Some(_) => Vec::new(),
    };
    if let Some(platform) = platform {
        boot_by_platform(&mut image, platform);
    }
    let element_dirs: Vec<(&str, &std::path::Path)> =
        resolved.iter().map(|e| (e.name.as_str(), e.path.as_path())).collect();
    let settings = dib_settings(recipe, options, &image);
    dib_env::add_plan_variables(&mut env, &element_dirs, &settings);

    // `when:` sees what scripts see: the plan's variables over what environment.d exported.
    let mut when_env = sourced;
    when_env.extend(env.clone());
    let mut packages = packages::collect(&resolved, &pkg_maps, PackageContext { arch: &arch, env: &when_env })?;
    let extra = match recipe {
        Some(recipe) => recipe.packages.clone(),
        None => options.overrides.packages.clone(),
    };
    add_install_packages(&mut packages, Phase::Install, extra);
    let scripts = planned_scripts(&resolved, &when_env)?;
    Ok(Plan {
        recipe: recipe.map(|r| r.name.clone()),
        recipe_source: None,
        distro,
        release,
        arch,
        base,
        mirror,
        elements: resolved.iter().map(|e| PlannedElement { name: e.name.clone(), path: e.path.clone() }).collect(),
        added_elements,
        substitutions,
        block_device_config,
        scripts,
        environment_d: environment_d.into_iter().map(planned_script).collect(),
        packages,
        env,
        pkg_maps,
        image,
        glance: recipe.map(|r| r.glance.clone()).unwrap_or_default(),
        checks: recipe.map(|r| r.checks.clone()).unwrap_or_default(),
        no_tmpfs: settings.no_tmpfs,
    })
}

/// What the target system decided: distro, release, init system and mirror.
fn add_target_variables(env: &mut BTreeMap<String, String>, distro: &str, release: &str, mirror: Option<&String>) {
    env.insert("DISTRO_NAME".into(), distro.to_owned());
    env.insert("DIB_RELEASE".into(), release.to_owned());
    env.entry("DIB_INIT_SYSTEM".into()).or_insert_with(|| init_system(distro, release).to_owned());
    if let Some(mirror) = mirror {
        env.insert("DIB_DISTRIBUTION_MIRROR".into(), mirror.clone());
    }
}

/// The plan's values DIB exports: `--no-tmpfs` (or the user's own `DIB_NO_TMPFS=1`), the root
/// label and the first output format.
fn dib_settings(recipe: Option<&Recipe>, options: &PlanOptions, image: &ImageSpec) -> DibSettings {
    let users = settings::NO_TMPFS.exports.and_then(|name| user_env(recipe, options).remove(name));
    DibSettings {
        no_tmpfs: options.overrides.no_tmpfs || users.is_some_and(|v| v == "1"),
        root_label: image.root_label.clone(),
        image_type: image.formats.first().map(|f| f.name().to_owned()).unwrap_or_default(),
    }
}

/// Each element's `pkg-map`, resolved for the target (elements without one are absent).
fn resolved_pkg_maps(
    resolved: &[&crate::element::Element],
    distro: &str,
    release: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, PlanError> {
    let mut pkg_maps = BTreeMap::new();
    for element in resolved {
        if let Some(map) = PkgMapFile::load(&element.path)? {
            pkg_maps.insert(element.name.clone(), map.resolve(distro, release));
        }
    }
    Ok(pkg_maps)
}

/// The hook scripts per phase, in run-parts order; a `block-device.d` hook is refused.
fn planned_scripts(
    resolved: &[&crate::element::Element],
    when_env: &BTreeMap<String, String>,
) -> Result<BTreeMap<Phase, Vec<PlannedScript>>, PlanError> {
    let scripts: BTreeMap<Phase, Vec<PlannedScript>> = merge_hooks_typed(resolved, &InstallTypes::from_env(when_env))?
        .into_iter()
        .map(|(phase, list)| (phase, list.into_iter().map(planned_script).collect()))
        .collect();
    if let Some(hook) = scripts.get(&Phase::BlockDevice).and_then(|list| list.first()) {
        return Err(PlanError::BlockDeviceHook { element: hook.element.clone(), script: hook.name.clone() });
    }
    Ok(scripts)
}

/// The recipe's arch (flags already applied); in DIB mode `--arch`, then `$ARCH`, then the host's.
fn target_arch(recipe: Option<&Recipe>, options: &PlanOptions) -> String {
    match recipe {
        Some(recipe) => crate::arch::normalize(&recipe.arch),
        None => crate::arch::normalize(
            options
                .overrides
                .arch
                .as_deref()
                .or(options.host.env.get("ARCH").map(String::as_str))
                .unwrap_or(std::env::consts::ARCH),
        ),
    }
}

/// The mirrors named before any element is consulted.
struct MirrorInputs {
    flag: Option<String>,
    env: Option<String>,
    recipe: Option<String>,
}

impl MirrorInputs {
    fn new(recipe: Option<&Recipe>, options: &PlanOptions) -> MirrorInputs {
        MirrorInputs {
            flag: options.overrides.mirror.clone(),
            env: user_env(recipe, options).remove("DIB_DISTRIBUTION_MIRROR"),
            recipe: recipe.and_then(|r| r.mirror.clone()),
        }
    }

    fn first(&self) -> Option<&String> {
        self.flag.as_ref().or(self.env.as_ref()).or(self.recipe.as_ref())
    }

    /// The mirror, once environment.d has given the elements' default.
    fn resolve(&self, sourced: &BTreeMap<String, String>, distro: &str, host: &HostDistro) -> Option<String> {
        let sources = MirrorSources {
            flag: self.flag.as_deref(),
            env: self.env.as_deref(),
            recipe: self.recipe.as_deref(),
            element_default: sourced.get("DIB_DISTRIBUTION_MIRROR").map(String::as_str),
        };
        mirror::resolve(&sources, distro, host)
    }
}

/// Variables the user chose: host `DIB_*`, then the recipe's environment (which holds `-e` in
/// recipe mode), or `-e` in DIB mode.
fn user_env(recipe: Option<&Recipe>, options: &PlanOptions) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = options
        .host
        .env
        .iter()
        // An empty DIB_RELEASE means unset, as in DIB (its elements use ${DIB_RELEASE:-...}).
        .filter(|(k, v)| k.starts_with("DIB_") && !(k.as_str() == "DIB_RELEASE" && v.is_empty()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match recipe {
        Some(recipe) => env.extend(recipe.environment.clone()),
        None => env.extend(options.overrides.environment.clone()),
    }
    env
}

/// The environment `environment.d` is sourced with: the user's variables plus everything known
/// before sourcing (`known`, `IMAGE_NAME`, `DIB_DEBUG_TRACE`, and the release, distro and
/// mirror when the recipe or flags name them).
fn initial_env(
    recipe: Option<&Recipe>,
    options: &PlanOptions,
    mirrors: &MirrorInputs,
    known: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut env = user_env(recipe, options);
    // As disk-image-create: `DIB_DEBUG_TRACE=${DIB_DEBUG_TRACE:-0}`, plus one for each `-x`.
    let given = env.get("DIB_DEBUG_TRACE").and_then(|value| value.trim().parse::<u32>().ok()).unwrap_or(0);
    env.insert("DIB_DEBUG_TRACE".into(), (given + u32::from(options.trace)).to_string());
    for (key, value) in known {
        env.insert((*key).to_owned(), value.clone());
    }
    let image_name = options.image_name.clone().or_else(|| recipe.map(|r| r.name.clone()));
    env.insert("IMAGE_NAME".into(), image_name.unwrap_or_else(|| "image".to_owned()));
    let release = match recipe {
        Some(recipe) => Some(recipe.release.clone()),
        None => options.overrides.release.clone(),
    };
    if let Some(release) = release {
        env.insert("DIB_RELEASE".into(), release);
    }
    if let Some(recipe) = recipe {
        env.insert("DISTRO_NAME".into(), recipe.distro.clone());
    }
    if let Some(mirror) = mirrors.first() {
        env.insert("DIB_DISTRIBUTION_MIRROR".into(), mirror.clone());
    }
    env
}

/// Distro, release and base method: the recipe's (flags applied), or in DIB mode what
/// environment.d exported (`DISTRO_NAME`, `DIB_RELEASE`, `MESOS_IMAGE_BASE`), `--base` winning.
fn target_system(
    recipe: Option<&Recipe>,
    options: &PlanOptions,
    sourced: &BTreeMap<String, String>,
    image_element: &str,
) -> Result<(String, String, Option<BaseMethod>), PlanError> {
    if let Some(recipe) = recipe {
        return Ok((recipe.distro.clone(), recipe.release.clone(), Some(recipe.base)));
    }
    let distro = sourced
        .get("DISTRO_NAME")
        .filter(|d| !d.is_empty())
        .cloned()
        .ok_or_else(|| PlanError::NoDistro { elements: image_element.to_owned() })?;
    let release = sourced
        .get("DIB_RELEASE")
        .filter(|r| !r.is_empty())
        .cloned()
        .ok_or_else(|| PlanError::NoRelease { distro: distro.clone() })?;
    let base = match options.overrides.base {
        Some(base) => Some(base),
        None => sourced
            .get("MESOS_IMAGE_BASE")
            .map(|value| value.parse().map_err(|_| PlanError::BadBase { value: value.clone() }))
            .transpose()?,
    };
    Ok((distro, release, base))
}

fn planned_script(script: HookScript) -> PlannedScript {
    PlannedScript { name: script.name, element: script.element, path: script.path }
}

/// Add literal packages (recipe `packages`, `-p`) to a phase's install list, kept sorted.
fn add_install_packages(packages: &mut BTreeMap<Phase, PackageSet>, phase: Phase, extra: Vec<String>) {
    let extra: Vec<String> = extra.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    if extra.is_empty() {
        return;
    }
    let set = packages.entry(phase).or_default();
    set.install.extend(extra);
    set.install.sort();
    set.install.dedup();
}

/// DIB mode: `DIB_BLOCK_DEVICE_CONFIG` chooses the disk stage's layout when set (it wins over the
/// `block-device-*` elements' own YAML, as in DIB); otherwise the `block-device-*` element
/// requested does. Returns what each node of the config became.
fn block_device_layout(
    image: &mut ImageSpec,
    requested: &[String],
    library: &ElementLibrary,
    env: &mut BTreeMap<String, String>,
) -> Result<Vec<NodeMapping>, PlanError> {
    let wants = |name: &str| library.is_absorbed(name) && requested.iter().any(|n| n == name);
    if let Some(value) = env.get(dib_block_device::CONFIG_VAR).filter(|v| !v.trim().is_empty()) {
        let text = dib_block_device::config_text(value)?;
        let defaults = dib_block_device::Defaults {
            root_label: &image.root_label,
            fs_type: env.get("FS_TYPE").map(String::as_str).unwrap_or("ext4"),
        };
        let layout = dib_block_device::map(&text, &defaults)?;
        layout.apply_to(image);
        // disk-image-create exports the root label its block-device layer settled on.
        env.insert("DIB_ROOT_LABEL".into(), layout.root_label.clone());
        let mut mapping = layout.mapping;
        for (name, _) in dib_block_device::ELEMENT_LAYOUTS.iter().filter(|(name, _)| wants(name)) {
            let becomes = "its block-device-default.yaml is not read: DIB_BLOCK_DEVICE_CONFIG wins, as in DIB";
            mapping.push(NodeMapping {
                node: (*name).to_owned(),
                kind: "element",
                becomes: becomes.to_owned(),
                sets_mkfs_options: false,
            });
        }
        return Ok(mapping);
    }
    if let Some((_, choice)) = dib_block_device::ELEMENT_LAYOUTS.iter().find(|(name, _)| wants(name)) {
        image.partitioning = choice.partitioning;
        image.uefi = choice.uefi;
    }
    Ok(Vec::new())
}

/// An architecture that boots only by UEFI (arm64) gets a GPT with an ESP whatever the recipe
/// or the block-device element chose: an MBR/BIOS disk could never boot there.
fn boot_by_platform(image: &mut ImageSpec, platform: &crate::arch::Platform) {
    if platform.uefi_only {
        image.partitioning = crate::recipe::Partitioning::Gpt;
        image.uefi = true;
    }
}

/// The image settings of DIB mode: defaults plus command-line flags.
fn image_with_overrides(overrides: &Overrides) -> ImageSpec {
    let mut image = ImageSpec::default();
    overrides.apply_to_image(&mut image);
    image
}

/// Ubuntu trusty boots with upstart; everything we build since uses systemd.
fn init_system(distro: &str, release: &str) -> &'static str {
    if distro == "ubuntu" && release == "trusty" {
        "upstart"
    } else {
        "systemd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripts(names: &[&str]) -> Vec<PlannedScript> {
        names
            .iter()
            .map(|name| PlannedScript { name: (*name).into(), element: "e".into(), path: PathBuf::from("/x") })
            .collect()
    }

    fn order(phase: Phase, names: &[&str]) -> Vec<String> {
        let scripts = scripts(names);
        phase_steps(phase, &scripts)
            .into_iter()
            .filter_map(|step| match step {
                PhaseStep::Script(script) => Some(script.name.clone()),
                PhaseStep::Packages { .. } => Some("<packages>".into()),
                PhaseStep::ElementFiles { .. } => None,
            })
            .collect()
    }

    #[test]
    fn bin_is_copied_first_in_pre_install_and_static_right_after_the_install_packages() {
        let scripts = scripts(&["00-a", "50-b"]);
        let files = |phase| {
            let steps = phase_steps(phase, &scripts);
            steps.iter().position(|step| matches!(step, PhaseStep::ElementFiles { .. })).map(|at| (at, steps[at]))
        };
        assert_eq!(files(Phase::PreInstall), Some((0, PhaseStep::ElementFiles { dir: "bin", into: "usr/local/bin" })));
        // 00-a, the packages at 01-package-installs, then static/, then 50-b.
        assert_eq!(files(Phase::Install), Some((2, PhaseStep::ElementFiles { dir: "static", into: "" })));
        assert_eq!(files(Phase::PostInstall), None);
    }

    #[test]
    fn packages_go_after_scripts_named_before_the_slot() {
        // pre-install slot is 10-package-installs: 05 runs first, then the transaction.
        assert_eq!(
            order(Phase::PreInstall, &["05-add-repo", "10-package-installs-z", "50-configure"]),
            ["05-add-repo", "<packages>", "10-package-installs-z", "50-configure"]
        );
        // post-install slot 00-package-installs sorts before everything.
        assert_eq!(order(Phase::PostInstall, &["05-a"]), ["<packages>", "05-a"]);
        assert_eq!(order(Phase::Root, &["05-a"]), ["05-a"]);
        assert_eq!(order(Phase::Install, &["00-a"]), ["00-a", "<packages>"]);
    }

    #[test]
    fn a_script_named_like_the_slot_runs_after_the_packages() {
        // DIB's own package-installs element ships install.d/01-package-installs.
        assert_eq!(
            order(Phase::Install, &["00-a", "01-package-installs", "02-b"]),
            ["00-a", "<packages>", "01-package-installs", "02-b"]
        );
    }

    #[test]
    fn digit_prefixes_longer_than_u64_still_sort_after_the_slot() {
        let huge = "99999999999999999999999-late";
        assert_eq!(order(Phase::Install, &["00-a", huge]), ["00-a", "<packages>", huge]);
    }
}
