//! `mesos-image elements`: inspect the element graph.

use clap::{Args, Subcommand};

pub use super::args::search::ElementsPathArgs;
use super::args::GlobalOpts;
use crate::element::installtype::{self, InstallTypes};
use crate::element::packages::PackageInstalls;
use crate::element::pkgmap::PkgMapFile;
use crate::element::request;
use crate::element::{element_scripts, merge_environment_d, merge_hooks, runparts, Element, ElementLibrary, Phase};

#[derive(Debug, Args)]
pub struct ElementsArgs {
    #[command(subcommand)]
    pub command: ElementsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ElementsCommand {
    /// List every element on the search path: name, where it comes from, one-line summary.
    List(ElementsPathArgs),
    /// Show one element: deps, provides, scripts per phase, packages.
    Show {
        /// The element's name.
        name: String,
        #[command(flatten)]
        path: ElementsPathArgs,
    },
    /// Print the resolved element set of NAME..., one name per line, sorted; with the elements
    /// disk-image-create adds (`base` unless -n, a block-device-* for vm), as `build` does.
    Resolve {
        /// Do not add `base` (disk-image-create -n).
        #[arg(short = 'n')]
        skip_base: bool,
        /// Requested elements (one must provide `operating-system`).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        path: ElementsPathArgs,
    },
}

pub fn run(args: ElementsArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    match args.command {
        ElementsCommand::List(path) => list(&path.scan()?),
        ElementsCommand::Show { name, path } => show(&path.scan()?, &name),
        ElementsCommand::Resolve { names, path, skip_base } => resolve(&path.scan()?, &names, skip_base),
    }
}

fn list(library: &ElementLibrary) -> anyhow::Result<()> {
    let width = library.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let source_width = library.iter().map(|e| e.source.display().to_string().len()).max().unwrap_or(0);
    for element in library.iter() {
        let summary = element.summary().unwrap_or_default();
        let line =
            format!("{:width$}  {:source_width$}  {summary}", element.name, element.source.display().to_string());
        println!("{}", line.trim_end());
    }
    Ok(())
}

fn show(library: &ElementLibrary, name: &str) -> anyhow::Result<()> {
    let element = library.get(name).ok_or_else(|| super::preflight::PreflightError {
        culprit: format!("element `{name}`"),
        problem: format!("not found (ELEMENTS_PATH: {})", library.elements_path_var()),
    })?;
    println!("name:     {}", element.name);
    println!("path:     {}", element.path.display());
    if let Some(summary) = element.summary() {
        println!("summary:  {summary}");
    }
    println!("deps:     {}", join_or_none(element.deps.iter()));
    println!("provides: {}", join_or_none(element.provides.iter()));
    print_scripts(element)?;
    print_install_types(element)?;
    print_packages(element)?;
    if PkgMapFile::load(&element.path)?.is_some() {
        println!("pkg-map:  {}", element.path.join("pkg-map").display());
    }
    if let Some(bin) = element.bin_dir() {
        println!("bin/:     {}", bin.display());
    }
    if let Some(static_dir) = element.static_dir() {
        println!("static/:  {}", static_dir.display());
    }
    Ok(())
}

fn print_scripts(element: &Element) -> anyhow::Result<()> {
    let env_files = merge_environment_d(&[element])?;
    if !env_files.is_empty() {
        println!("environment.d:");
        for file in env_files {
            println!("  {}", file.name);
        }
    }
    for phase in Phase::ALL {
        let scripts = element_scripts(element, phase)?;
        if scripts.is_empty() {
            continue;
        }
        println!("{}:", phase.dir_name());
        for script in scripts {
            match script.skipped {
                Some(reason) => println!("  {} (skipped: {reason})", script.name),
                None => println!("  {}", script.name),
            }
        }
    }
    Ok(())
}

/// `install.d/<prefix>-<type>-install/` directories, marking the type this shell's
/// `DIB_INSTALLTYPE_*` / `DIB_DEFAULT_INSTALLTYPE` (default `source`) would enable.
fn print_install_types(element: &Element) -> anyhow::Result<()> {
    let dirs = installtype::list_dirs(&element.path.join(Phase::Install.dir_name()))?;
    if dirs.is_empty() {
        return Ok(());
    }
    let types = InstallTypes::from_env(&std::env::vars().collect());
    println!("install types:");
    for dir in dirs {
        let scripts = runparts::select(&dir.path, runparts::Selection::Scripts)?;
        let names: Vec<String> = scripts.into_iter().map(|c| c.name).collect();
        let enabled = if types.for_prefix(&dir.prefix) == dir.kind { " (enabled)" } else { "" };
        println!("  {}: {}{enabled}  {}", dir.prefix, dir.kind, names.join(" "));
    }
    Ok(())
}

fn print_packages(element: &Element) -> anyhow::Result<()> {
    for file in PackageInstalls::load(&element.path)? {
        println!("packages ({}):", file.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        for decl in file.decls {
            let params = decl.params.to_string();
            if params.is_empty() {
                println!("  {}", decl.name);
            } else {
                println!("  {}  [{params}]", decl.name);
            }
        }
    }
    Ok(())
}

fn resolve(library: &ElementLibrary, names: &[String], skip_base: bool) -> anyhow::Result<()> {
    let arch = crate::arch::normalize(&std::env::var("ARCH").unwrap_or_else(|_| std::env::consts::ARCH.to_owned()));
    let (names, _added) = request::with_dib_defaults(names, library, &arch, !skip_base);
    let resolved = library.resolve(&names)?;
    for substitution in library.substitutions_for(&resolved, &names) {
        tracing::info!("{}", substitution.note());
    }
    // Catch malformed hook directories and package files now, not halfway through a build.
    merge_hooks(&resolved)?;
    merge_environment_d(&resolved)?;
    for element in &resolved {
        PackageInstalls::load(&element.path)?;
        PkgMapFile::load(&element.path)?;
    }
    for element in resolved {
        println!("{}", element.name);
    }
    Ok(())
}

fn join_or_none<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let joined = items.map(String::as_str).collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "(none)".to_owned()
    } else {
        joined
    }
}
