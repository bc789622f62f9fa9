//! `mesos-image build`: make a plan from a recipe or from elements (DIB mode), print it with
//! `--dry-run`, or hand it to [`execute`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub use super::args::build::{BuildArgs, DEFAULT_RECIPE};
use super::args::GlobalOpts;
use crate::build::{self, BuildOptions};
use crate::element::Phase;
use crate::layout::OutputLayout;
use crate::paths;
use crate::plan::{HostContext, Plan, PlanOptions};
use crate::progress::LogStyle;
use crate::recipe::{Overrides, Recipe, RecipeSource};
use crate::settings::{
    Setting, CHECKSUM, IMAGE_CACHE, IMAGE_EXTRA_SIZE, IMAGE_SIZE, INSTALL_TYPE, MESOS_REPO, MESOS_REPO_KEY, MIN_TMPFS,
    OFFLINE,
};
use anyhow::Context;

pub fn run(args: BuildArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let arches = requested_arches(&args, &HostContext::detect());
    if arches.len() > 1 {
        return run_each_arch(&args, &arches, global);
    }
    run_one(args, global)
}

/// The architectures `-a` (or, in DIB mode, `ARCH`) lists: `amd64,arm64` is two builds.
fn requested_arches(args: &BuildArgs, host: &HostContext) -> Vec<String> {
    let dib_arch = || host.env.get("ARCH").filter(|_| !args.elements.is_empty());
    args.arch.as_ref().or_else(dib_arch).map(|list| crate::arch::parse_list(list)).unwrap_or_default()
}

/// `-a amd64,arm64 -o NAME.qcow2`: one build per architecture, one after the other, into
/// `NAME-amd64.qcow2` and `NAME-arm64.qcow2`, each with its own manifest, sharing the cache
/// (downloads, stage snapshots). Every plan is made and checked before the first build starts,
/// so a request one architecture cannot build fails before any work.
fn run_each_arch(args: &BuildArgs, arches: &[String], global: &GlobalOpts) -> anyhow::Result<()> {
    let mut builds = Vec::new();
    for arch in arches {
        let mut one = args.clone();
        one.arch = Some(arch.clone());
        one.output = args.output.as_deref().map(|output| output_for_arch(output, arch));
        let plan = make_plan(&one, HostContext::detect()).with_context(|| format!("--arch {arch}"))?;
        crate::redact::register_env(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        super::preflight::build(&one, &plan)?;
        builds.push((one, plan));
    }
    if args.dry_run {
        let mut texts = Vec::new();
        for (one, plan) in &builds {
            texts.push(dry_run_text(one, plan)?);
        }
        let text = match args.json {
            true => format!("[\n{}\n]\n", texts.iter().map(|t| t.trim_end()).collect::<Vec<_>>().join(",\n")),
            false => {
                let heads = builds.iter().map(|(one, plan)| match &one.output {
                    Some(output) => format!("=== {}: {} ===", plan.arch, output.display()),
                    None => format!("=== {} ===", plan.arch),
                });
                heads.zip(&texts).map(|(head, text)| format!("{head}\n{text}")).collect::<Vec<_>>().join("\n")
            }
        };
        print!("{}", crate::redact::text(&text));
        return Ok(());
    }
    for (one, plan) in builds {
        execute(plan, &one, global)?;
    }
    Ok(())
}

/// `out/x.qcow2` for arm64 -> `out/x-arm64.qcow2` (DIB's own naming: the architecture after the
/// image name, before the format's extension).
pub fn output_for_arch(output: &Path, arch: &str) -> std::path::PathBuf {
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match output.extension() {
        Some(ext) => format!("{stem}-{arch}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{arch}"),
    };
    output.with_file_name(name)
}

/// The plan as `--dry-run` prints it: text, or `--json`'s document.
fn dry_run_text(args: &BuildArgs, plan: &Plan) -> anyhow::Result<String> {
    // The steps the build would run: the same list `build::execute` walks.
    let pipeline = build::pipeline(plan, !args.no_cache, false);
    Ok(if args.json { pipeline.dry_run_json(plan)? } else { render_plan(plan) + &pipeline.render(plan) })
}

/// One build: plan, check, then print the plan or run it.
fn run_one(args: BuildArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let plan = make_plan(&args, HostContext::detect())?;
    // -e and the recipe's environment may hold secrets (DIB_REPO_PASSWORD=...).
    crate::redact::register_env(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    super::preflight::build(&args, &plan)?;
    if args.dry_run {
        print!("{}", crate::redact::text(&dry_run_text(&args, &plan)?));
        return Ok(());
    }
    // Logged once planning has succeeded, so a bad request still fails with one line.
    for added in &plan.added_elements {
        tracing::info!("adding element {}: {}", added.name, added.reason);
    }
    for substitution in &plan.substitutions {
        tracing::info!("{}", substitution.note());
    }
    for node in &plan.block_device_config {
        tracing::info!("{}", node.note());
    }
    execute(plan, &args, global)
}

/// Run the build the plan describes.
pub fn execute(plan: Plan, args: &BuildArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let output = args.output.clone().context("--output is required (or use --dry-run)")?;
    let options = BuildOptions {
        output,
        cache_dir: args.cache_dir.clone().unwrap_or_else(paths::default_cache_dir),
        use_cache: !args.no_cache,
        log_file: args.log_file.clone(),
        break_at: args.break_at,
        trace: args.trace > 0,
        checksum: args.checksum,
        work_dir: args.work_dir.clone(),
        no_tmpfs: plan.no_tmpfs,
        min_tmpfs_bytes: args.min_tmpfs.map(|gb| gb << 30),
        quiet: global.quiet,
        verbose: global.verbose > 0,
        seed: args.seed.clone(),
        source_date_epoch: args.source_date_epoch,
        tree_listing: args.tree_listing.clone(),
        keep_tree: None,
        layout: args.layout,
        log_style: match args.layout {
            OutputLayout::Beside => LogStyle::Steps,
            OutputLayout::Dib => LogStyle::dib(args.log_file.is_some(), |name| std::env::var(name).ok()),
        },
    };
    if args.check_reproducible {
        let comparison = super::check_reproducible::build_twice(&plan, &options)?;
        print!("{}", comparison.render());
        if !comparison.identical() {
            anyhow::bail!("the two builds differ (see above)");
        }
        return Ok(());
    }
    build::execute(&plan, &options)?;
    Ok(())
}

/// The plan the arguments describe: DIB mode with elements, else the given or default recipe.
pub fn make_plan(args: &BuildArgs, host: HostContext) -> anyhow::Result<Plan> {
    let options = plan_options(args, host)?;
    if !args.elements.is_empty() {
        return Ok(Plan::from_elements(&args.elements, &options)?);
    }
    let name = args.recipe.as_deref().unwrap_or(DEFAULT_RECIPE);
    let (recipe, path) = Recipe::find(name, &args.recipes_dir.search_path())?;
    let source = RecipeSource::read(&path).with_context(|| format!("cannot read recipe {}", path.display()))?;
    let mut plan = Plan::from_recipe(&recipe, &options).with_context(|| format!("recipe {}", path.display()))?;
    plan.recipe_source = Some(source);
    Ok(plan)
}

fn plan_options(args: &BuildArgs, host: HostContext) -> anyhow::Result<PlanOptions> {
    let mut environment: BTreeMap<String, String> = args.env.iter().cloned().collect();
    // DIB exports its own command line as DIB_ARGS; some elements log or parse it.
    environment.entry("DIB_ARGS".into()).or_insert_with(|| {
        std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    });
    for (key, value) in dib_flag_variables(args)? {
        environment.insert(key.into(), value);
    }
    // These two win over `-e`, unlike the flags above.
    let repo_key = args.mesos_repo_key.as_deref().map(|key| existing_absolute(key, &MESOS_REPO_KEY)).transpose()?;
    for (setting, value) in [(&MESOS_REPO, args.mesos_repo.clone()), (&MESOS_REPO_KEY, repo_key)] {
        if let (Some(name), Some(value)) = (setting.exports, value) {
            environment.insert(name.to_owned(), value);
        }
    }
    let overrides = Overrides {
        // An empty DIB_RELEASE or `--release ''` means unset, as in DIB.
        release: args.release.clone().filter(|r| !r.trim().is_empty()),
        arch: args.arch.clone(),
        mirror: args.mirror.clone(),
        base: args.base,
        image_size: args.image_size.clone(),
        formats: (!args.format.is_empty()).then(|| args.format.clone()),
        qemu_img_options: args.qemu_img_options.clone(),
        extra_size: args.image_extra_size.clone(),
        mkfs_options: args.mkfs_options.clone(),
        compress: if args.no_compress { Some(false) } else { args.compress.then_some(true) },
        compression: args.compression,
        root_label: args.root_label.clone(),
        no_tmpfs: args.no_tmpfs,
        packages: args.packages.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
        environment,
    };
    Ok(PlanOptions {
        elements_path: args.elements_path.search_path(),
        overrides,
        image_name: args.output.as_deref().and_then(output_stem),
        trace: args.trace,
        skip_base: args.skip_base,
        host,
    })
}

/// `out/ubuntu-mesos.qcow2` -> `ubuntu-mesos`.
fn output_stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

fn existing_absolute(path: &Path, setting: &Setting) -> anyhow::Result<String> {
    let culprit = format!("{} {}", setting.option(), path.display());
    if !path.is_file() {
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => "is a directory, not a key file",
            Ok(_) => "is not a regular file",
            Err(_) => "no such file",
        };
        return Err(super::preflight::PreflightError { culprit, problem: problem.into() }.into());
    }
    let absolute = std::path::absolute(path).context(culprit)?;
    Ok(absolute.display().to_string())
}

/// The variables disk-image-create's own flags set, each named by its setting; an explicit `-e`
/// of the same name wins. (`--no-tmpfs` is typed in the plan, which exports it.)
fn dib_flag_variables(args: &BuildArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let image_cache = match &args.image_cache {
        Some(dir) => Some(std::path::absolute(dir).with_context(|| format!("--image-cache {}", dir.display()))?),
        None => None,
    };
    let switch = |on: bool| on.then(|| "1".to_owned());
    let given = [
        (&IMAGE_CACHE, image_cache.map(|dir| dir.display().to_string())),
        (&INSTALL_TYPE, args.install_type.clone()),
        (&OFFLINE, switch(args.offline)),
        (&CHECKSUM, switch(args.checksum)),
        (&MIN_TMPFS, args.min_tmpfs.map(|gb| gb.to_string())),
        (&IMAGE_SIZE, args.image_size.as_ref().map(ToString::to_string)),
        (&IMAGE_EXTRA_SIZE, args.image_extra_size.as_ref().map(ToString::to_string)),
    ];
    let vars = given.into_iter().filter_map(|(setting, value)| Some((setting.exports?, value?)));
    Ok(vars.filter(|(key, _)| !args.env.iter().any(|(k, _)| k == key)).collect())
}

/// The plan as people read it.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    render_summary(&mut out, plan);
    render_element_changes(&mut out, plan);
    render_block_device(&mut out, plan);
    render_elements(&mut out, plan);
    render_phases(&mut out, plan);
    render_packages(&mut out, plan);
    render_settings(&mut out, plan);
    out
}

/// The plan's head: mode, target, base, mirror and image.
fn render_summary(out: &mut String, plan: &Plan) {
    let mode = match &plan.recipe {
        Some(name) => format!("recipe {name}"),
        None => "elements (DIB mode)".to_owned(),
    };
    let base = plan.base.map(|b| b.to_string()).unwrap_or_else(|| "from the elements' root.d".to_owned());
    let _ = writeln!(out, "plan:     {mode}");
    let _ = writeln!(out, "target:   {} {} {}", plan.distro, plan.release, plan.arch);
    let _ = writeln!(out, "base:     {base}");
    let _ = writeln!(out, "mirror:   {}", plan.mirror.as_deref().unwrap_or("(none)"));
    let formats: Vec<String> = plan.image.formats.iter().map(|f| f.to_string()).collect();
    let _ = writeln!(
        out,
        "image:    size {}, formats {}{}",
        plan.image.size.as_ref().map_or("auto", |size| size.as_str()),
        formats.join(","),
        plan.image.qemu_img_options.as_deref().map(|o| format!(", qemu-img -o {o}")).unwrap_or_default()
    );
    let _ = writeln!(out, "boot:     {}", boot_summary(plan));
}

/// How the disk boots, from the architecture's table: `gpt, UEFI (GRUB arm64-efi at
/// EFI/BOOT/BOOTAA64.EFI), console ttyAMA0,115200n8`.
fn boot_summary(plan: &Plan) -> String {
    let Some(boot) = crate::disk::Boot::for_arch(&plan.arch) else {
        return format!("no bootable disk for {} (tree formats only)", plan.arch);
    };
    let (image, platform) = (&plan.image, boot.platform);
    let wanted = boot.firmware(image);
    let mut firmware = Vec::new();
    if wanted.bios {
        firmware.push("BIOS (GRUB i386-pc)".to_owned());
    }
    if wanted.uefi {
        let efi = platform.efi;
        firmware.push(format!("UEFI (GRUB {} at EFI/BOOT/{})", efi.grub_target, efi.removable_name));
    }
    let table = format!("{:?}", image.partitioning).to_lowercase();
    let console = plan.env.get(crate::plan::SERIAL_CONSOLE_VAR).map_or(platform.serial_console, String::as_str);
    format!("{table}, {}, console {console}", firmware.join(" + "))
}

/// Elements the plan added and diskimage-builder elements it replaced, each with its reason.
fn render_element_changes(out: &mut String, plan: &Plan) {
    if !plan.added_elements.is_empty() {
        let _ = writeln!(out, "\nadded elements:");
        for added in &plan.added_elements {
            let _ = writeln!(out, "  {:20} {}", added.name, added.reason);
        }
    }
    if !plan.substitutions.is_empty() {
        let _ = writeln!(out, "\nreplaced elements (diskimage-builder's):");
        for substitution in &plan.substitutions {
            let _ = writeln!(out, "  {:20} {}: {}", substitution.name, substitution.by, substitution.why);
        }
    }
}

/// What DIB_BLOCK_DEVICE_CONFIG becomes on the disk stage, when one was given.
fn render_block_device(out: &mut String, plan: &Plan) {
    if plan.block_device_config.is_empty() {
        return;
    }
    let image = &plan.image;
    let table = format!("{:?}", image.partitioning).to_lowercase();
    let esp = if image.uefi { " with an ESP" } else { "" };
    let options = image.mkfs_options.as_deref().map(|o| format!(", mkfs options `{o}`")).unwrap_or_default();
    let _ = writeln!(out, "\nblock-device config (DIB_BLOCK_DEVICE_CONFIG) on the disk stage:");
    let _ = writeln!(out, "  disk: {table}{esp}, root ext4 label `{}`{options}", image.root_label);
    for node in &plan.block_device_config {
        let _ = writeln!(out, "  {:24} {}: {}", node.node, node.kind, node.becomes);
    }
}

/// The elements with their folders, then the environment.d files they source.
fn render_elements(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "\nelements:");
    let width = plan.elements.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for element in &plan.elements {
        let _ = writeln!(out, "  {:width$}  {}", element.name, element.path.display());
    }
    if !plan.environment_d.is_empty() {
        let _ = writeln!(out, "\nenvironment.d:");
        for file in &plan.environment_d {
            let _ = writeln!(out, "  {:32} {}", file.name, file.element);
        }
    }
}

/// Each phase's scripts and whose they are.
fn render_phases(out: &mut String, plan: &Plan) {
    for phase in Phase::ALL {
        // Element files copied are in the pipeline's listing below.
        let lines: Vec<String> = crate::pipeline::phase_contents(plan, phase)
            .into_iter()
            .filter(|line| !line.copies_files)
            .map(|line| format!("  {:32} {}", line.what, line.whose))
            .collect();
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{}:\n{}", phase.dir_name(), lines.join("\n"));
        }
    }
}

/// The packages each phase installs, uninstalls and keeps only for the build.
fn render_packages(out: &mut String, plan: &Plan) {
    if plan.packages.is_empty() {
        return;
    }
    let _ = writeln!(out, "\npackages:");
    for (phase, set) in &plan.packages {
        for (label, list) in [("install", &set.install), ("uninstall", &set.uninstall), ("build-only", &set.build_only)]
        {
            if !list.is_empty() {
                let _ = writeln!(out, "  {:15} {:10} {}", phase.dir_name(), label, list.join(" "));
            }
        }
    }
}

/// The environment handed to elements, the Glance properties and the number of checks.
fn render_settings(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "\nenvironment:");
    for (key, value) in &plan.env {
        let _ = writeln!(out, "  {key}={value}");
    }
    if !plan.glance.properties.is_empty() {
        let _ = writeln!(out, "\nglance properties:");
        for (key, value) in &plan.glance.properties {
            let _ = writeln!(out, "  {key}={value}");
        }
    }
    if !plan.checks.is_empty() {
        let _ = writeln!(out, "\nchecks: {}", plan.checks.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_architecture_gets_its_own_image_name() {
        assert_eq!(output_for_arch(Path::new("out/x.qcow2"), "arm64"), Path::new("out/x-arm64.qcow2"));
        assert_eq!(output_for_arch(Path::new("image"), "amd64"), Path::new("image-amd64"));
    }
}
