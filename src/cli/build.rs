//! `mesos-image build`: make a plan from a recipe or from elements (DIB mode), print it with
//! `--dry-run`, or hand it to [`execute`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::elements::ElementsPathArgs;
use super::recipes::RecipesDirArgs;
use super::GlobalOpts;
use crate::build::{self, BuildOptions};
use crate::element::Phase;
use crate::paths;
use crate::plan::{HostContext, Plan, PlanOptions};
use crate::recipe::{parse_size, BaseMethod, Compression, ImageFormat, Overrides, Recipe, RecipeSource};
use crate::reproducible;
use crate::stage::BreakPoint;

/// The recipe used when neither elements nor `--recipe` are given.
pub const DEFAULT_RECIPE: &str = "ubuntu-mesos";

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Elements to build from (DIB mode: no recipe applies; one element must provide
    /// operating-system). Without elements and without --recipe, the ubuntu-mesos recipe is used.
    #[arg(value_name = "ELEMENTS", conflicts_with = "recipe")]
    pub elements: Vec<String>,
    /// The image to write (e.g. out/ubuntu-mesos.qcow2); extra formats get their extension swapped.
    #[arg(short, long, value_name = "PATH", required_unless_present = "dry_run")]
    pub output: Option<PathBuf>,
    /// Recipe name (looked up in --recipes-dir and the built-in recipes) or path to a recipe file.
    #[arg(long, value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    #[command(flatten)]
    pub recipes_dir: RecipesDirArgs,
    #[command(flatten)]
    pub elements_path: ElementsPathArgs,
    /// Distribution release codename (trusty, noble, bookworm, ...).
    #[arg(long, env = "DIB_RELEASE", value_name = "RELEASE")]
    pub release: Option<String>,
    /// Target architecture (amd64, arm64; x86_64 and aarch64 are accepted).
    #[arg(short = 'a', long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Distribution mirror (wins over DIB_DISTRIBUTION_MIRROR, the recipe and the host's apt sources).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// How the base tree is made.
    #[arg(long, value_name = "METHOD")]
    pub base: Option<BaseMethod>,
    /// Extra packages installed in the install phase (comma-separated, repeatable).
    #[arg(short = 'p', long = "packages", value_name = "PKG,...", value_delimiter = ',')]
    pub packages: Vec<String>,
    /// Disk size: a bare number is GB as disk-image-create reads it (4, 1.5); or with a unit, 4G
    /// or 2560M (default: the tree's size plus headroom).
    #[arg(long, value_name = "SIZE", value_parser = parse_image_size)]
    pub image_size: Option<String>,
    /// Added to the tree's measured size, in GB as disk-image-create reads it (1, 0.5), in place
    /// of the headroom; --image-size wins.
    #[arg(long, value_name = "GB", value_parser = parse_extra_size)]
    pub image_extra_size: Option<String>,
    /// Extra mkfs.ext4 options for the root filesystem, e.g. "-N 200000 -m 0"; given after ours.
    #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
    pub mkfs_options: Option<String>,
    /// Output formats, comma-separated: qcow2, raw, vmdk, vhd; tar, tgz, squashfs (the tree,
    /// no disk).
    #[arg(short = 't', long = "format", value_name = "FORMAT,...", value_delimiter = ',')]
    pub format: Vec<ImageFormat>,
    /// Extra `qemu-img convert -o` options, e.g. compat=0.10.
    #[arg(long, value_name = "OPTIONS")]
    pub qemu_img_options: Option<String>,
    /// Compress qcow2 output (the default; overrides a recipe's `compress: false`).
    #[arg(long, conflicts_with = "no_compress")]
    pub compress: bool,
    /// Do not compress qcow2 output: larger, but faster to write (DIB's -u).
    #[arg(short = 'u', long)]
    pub no_compress: bool,
    /// qcow2 compression: zlib (every qemu reads it) or zstd (faster; needs qemu 5.1+ to read).
    #[arg(long, value_name = "zlib|zstd")]
    pub compression: Option<Compression>,
    /// Write a sha256 checksum file beside each image.
    #[arg(long)]
    pub checksum: bool,
    /// Apt repository line or URI for mesos and marathon (sets DIB_MESOS_REPO).
    #[arg(long, value_name = "URI")]
    pub mesos_repo: Option<String>,
    /// Signing key of --mesos-repo (sets DIB_MESOS_REPO_KEY to its absolute path).
    #[arg(long, value_name = "FILE")]
    pub mesos_repo_key: Option<PathBuf>,
    /// Variable passed to every element script (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Cache root for packages, base trees and stage outputs [default: ~/.cache/mesos-image].
    #[arg(long, value_name = "DIR", env = "MESOS_IMAGE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Neither read nor write the stage cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Write the full build log here (disk-image-create spells it --logfile).
    #[arg(long, value_name = "FILE", visible_alias = "logfile")]
    pub log_file: Option<PathBuf>,
    /// Open a shell in the chroot: after-error, before-PHASE or after-PHASE (DIB's break=).
    #[arg(long = "break", value_name = "WHEN")]
    pub break_at: Option<BreakPoint>,
    /// Trace element scripts (set -x, DIB_DEBUG_TRACE=1); repeatable, as disk-image-create's.
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    pub trace: u8,
    /// Where elements cache their downloads (DIB_IMAGE_CACHE) [default: <cache-dir>].
    #[arg(long, value_name = "DIR")]
    pub image_cache: Option<PathBuf>,
    /// Root filesystem label (DIB_ROOT_LABEL) [default: the recipe's, or cloudimg-rootfs].
    #[arg(long, value_name = "LABEL", value_parser = parse_root_label)]
    pub root_label: Option<String>,
    /// Default install type of elements with install-type directories (DIB_DEFAULT_INSTALLTYPE)
    /// [default: source, as disk-image-create].
    #[arg(long, value_name = "TYPE")]
    pub install_type: Option<String>,
    /// DIB mode: do not add the `base` element (disk-image-create -n).
    #[arg(short = 'n')]
    pub skip_base: bool,
    /// Elements must not refresh their cached downloads (DIB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Scratch directory for the build [default: <cache-dir>/work, in a tmpfs when memory allows;
    /// a directory given here is used as it is].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Build on disk, never in a tmpfs (DIB_NO_TMPFS=1).
    #[arg(long)]
    pub no_tmpfs: bool,
    /// Build in a tmpfs only when at least this many GB of memory are available (DIB_MIN_TMPFS)
    /// [default: 6; the tree, raw disk and conversions sit side by side].
    #[arg(long, value_name = "GB")]
    pub min_tmpfs: Option<u64>,
    /// Derive filesystem UUIDs, partition GUIDs and the other identifiers from this text
    /// instead of from the build's inputs.
    #[arg(long, value_name = "TEXT")]
    pub seed: Option<String>,
    /// The time written into the image (seconds since 1970) [default: the mirror's Release date].
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS", value_parser = parse_epoch)]
    pub source_date_epoch: Option<i64>,
    /// Build twice (the second time with another work dir, TZ, umask and host name) and report
    /// whether the outputs are identical, or which files differ. Implies --no-cache.
    #[arg(long, conflicts_with = "break_at")]
    pub check_reproducible: bool,
    /// Write a file-by-file description of the finished tree here (used by --check-reproducible).
    #[arg(long, value_name = "FILE", hide = true)]
    pub tree_listing: Option<PathBuf>,
    /// Print the plan (elements, scripts, packages, environment) and exit; nothing is written.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

pub fn run(args: BuildArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let plan = make_plan(&args, HostContext::detect())?;
    // -e and the recipe's environment may hold secrets (DIB_REPO_PASSWORD=...).
    crate::redact::register_env(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    super::preflight::build(&args, &plan)?;
    if args.dry_run {
        // The steps the build would run: the same list `build::execute` walks.
        let pipeline = build::pipeline(&plan, !args.no_cache, false);
        let text = if args.json { pipeline.dry_run_json(&plan)? } else { render_plan(&plan) + &pipeline.render(&plan) };
        print!("{}", crate::redact::text(&text));
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
        // DIB reads DIB_NO_TMPFS from the environment as well as from --no-tmpfs.
        no_tmpfs: args.no_tmpfs || plan.env.get("DIB_NO_TMPFS").is_some_and(|v| v == "1"),
        min_tmpfs_bytes: args.min_tmpfs.map(|gb| gb << 30),
        quiet: global.quiet,
        verbose: global.verbose > 0,
        seed: args.seed.clone(),
        source_date_epoch: args.source_date_epoch,
        tree_listing: args.tree_listing.clone(),
        keep_tree: None,
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
    if let Some(repo) = &args.mesos_repo {
        environment.insert("DIB_MESOS_REPO".into(), repo.clone());
    }
    if let Some(key) = &args.mesos_repo_key {
        environment.insert("DIB_MESOS_REPO_KEY".into(), existing_absolute(key, "--mesos-repo-key")?);
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
        packages: args.packages.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
        environment,
    };
    Ok(PlanOptions {
        elements_path: args.elements_path.search_path(),
        overrides,
        image_name: args.output.as_deref().and_then(output_stem),
        trace: args.trace > 0,
        skip_base: args.skip_base,
        host,
    })
}

/// `out/ubuntu-mesos.qcow2` -> `ubuntu-mesos`.
fn output_stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

fn existing_absolute(path: &Path, option: &str) -> anyhow::Result<String> {
    if !path.is_file() {
        let culprit = format!("{option} {}", path.display());
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => "is a directory, not a key file",
            Ok(_) => "is not a regular file",
            Err(_) => "no such file",
        };
        return Err(super::preflight::PreflightError { culprit, problem: problem.into() }.into());
    }
    let absolute = std::path::absolute(path).with_context(|| format!("{option} {}", path.display()))?;
    Ok(absolute.display().to_string())
}

/// The variables disk-image-create's own flags set; an explicit `-e` of the same name wins.
fn dib_flag_variables(args: &BuildArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut vars = Vec::new();
    if let Some(dir) = &args.image_cache {
        let absolute = std::path::absolute(dir).with_context(|| format!("--image-cache {}", dir.display()))?;
        vars.push(("DIB_IMAGE_CACHE", absolute.display().to_string()));
    }
    if let Some(kind) = &args.install_type {
        vars.push(("DIB_DEFAULT_INSTALLTYPE", kind.clone()));
    }
    if args.offline {
        vars.push(("DIB_OFFLINE", "1".to_owned()));
    }
    if args.checksum {
        vars.push(("DIB_CHECKSUM", "1".to_owned()));
    }
    if args.no_tmpfs {
        vars.push(("DIB_NO_TMPFS", "1".to_owned()));
    }
    if let Some(gb) = args.min_tmpfs {
        vars.push(("DIB_MIN_TMPFS", gb.to_string()));
    }
    if let Some(size) = &args.image_size {
        vars.push(("DIB_IMAGE_SIZE", size.clone()));
    }
    if let Some(extra) = &args.image_extra_size {
        vars.push(("DIB_IMAGE_EXTRA_SIZE", extra.clone()));
    }
    vars.retain(|(key, _)| !args.env.iter().any(|(k, _)| k == key));
    Ok(vars)
}

fn parse_epoch(text: &str) -> Result<i64, String> {
    reproducible::epoch::parse_given(text).map_err(|err| err.to_string())
}

/// `--image-size`: disk-image-create reads a bare number as GB (fractions allowed); with a
/// unit it is our size syntax. Returned in our syntax.
fn parse_image_size(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let gigabytes: f64 =
            trimmed.parse().map_err(|_| format!("`{text}` is not a size (try 4 for 4 GB, or 2560M)"))?;
        let mebibytes = (gigabytes * 1024.0).round();
        if mebibytes < 1.0 {
            return Err(format!("`{text}` GB is less than 1 MiB"));
        }
        // Checked here, while the value is still the one the user typed.
        super::preflight::image_size_in_range(mebibytes * (1u64 << 20) as f64)
            .map_err(|problem| format!("`{text}` GB: {problem}"))?;
        return Ok(format!("{mebibytes}M"));
    }
    parse_size(text).map(|_| text.to_owned())
}

/// `--image-extra-size`: GB as disk-image-create's help gives it (a bare number, fractions
/// allowed), or our size syntax; returned in ours.
fn parse_extra_size(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let gigabytes: f64 = trimmed.parse().map_err(|_| format!("`{text}` is not a size in GB (try 1 or 0.5)"))?;
        let mebibytes = (gigabytes * 1024.0).round();
        if !(1.0..=(16u64 << 20) as f64).contains(&mebibytes) {
            return Err(format!("`{text}` GB: out of range (1 MiB to 16T)"));
        }
        return Ok(format!("{mebibytes}M"));
    }
    parse_size(text).map(|_| text.to_owned())
}

fn parse_root_label(text: &str) -> Result<String, String> {
    crate::recipe::check_root_label(text).map(|()| text.to_owned())
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    let valid = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`{key}` is not a valid variable name"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The plan as people read it.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
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
        plan.image.size.as_deref().unwrap_or("auto"),
        formats.join(","),
        plan.image.qemu_img_options.as_deref().map(|o| format!(", qemu-img -o {o}")).unwrap_or_default()
    );
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
    if !plan.block_device_config.is_empty() {
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
    if !plan.packages.is_empty() {
        let _ = writeln!(out, "\npackages:");
        for (phase, set) in &plan.packages {
            for (label, list) in
                [("install", &set.install), ("uninstall", &set.uninstall), ("build-only", &set.build_only)]
            {
                if !list.is_empty() {
                    let _ = writeln!(out, "  {:15} {:10} {}", phase.dir_name(), label, list.join(" "));
                }
            }
        }
    }
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
    out
}
