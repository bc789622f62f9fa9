//! `mesos-image test IMAGE [--recipe NAME]`: boot the image in qemu and run its recipe's checks.

use std::time::Duration;

pub use super::args::test::TestArgs;
use super::args::{GlobalOpts, OutputFormat};
use super::preflight::PreflightError;
use crate::manifest::{Located, Manifest};
use crate::recipe::{Check, Recipe};
use crate::vmtest::machine::Machine;
use crate::vmtest::qemu::Accel;
use crate::vmtest::{self, BootMilestone, TestOptions, TestOutcome};
use anyhow::Context;

/// Boot, check, print; an error (exit status 1) unless every check passed.
pub fn run(args: TestArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    super::preflight::test(&args)?;
    let located = Manifest::find(&args.image)?;
    let (recipe_name, checks) = recipe_checks(&args, located.as_ref())?;
    let machine = guest_machine(&args, located.as_ref())?;
    // Ctrl-C or a service manager's SIGTERM must still kill the VM and remove the temporary
    // directory: the boot wait notices the signal and unwinds.
    crate::sandbox::catch_stop_signals()?;
    let options = TestOptions {
        machine,
        accel: args.accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        timeout: Duration::from_secs(args.timeout.unwrap_or(default_timeout(machine, args.accel))),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        append: args.append.clone(),
    };
    if !global.quiet {
        eprintln!(
            "==> testing {} ({}) with {} checks of recipe {recipe_name}",
            args.image.display(),
            machine.arch,
            checks.len()
        );
    }
    let mut on_phase = |phase: BootMilestone, elapsed: Duration| {
        if !global.quiet {
            eprintln!("    {:<20} {:>6.1}s", phase.describe(), elapsed.as_secs_f64());
        }
    };
    let outcome = vmtest::run_checks(&args.image, &checks, &options, &mut on_phase)?;
    // The results first: nothing that can fail afterwards may lose them.
    print_outcome(&outcome, args.format)?;
    if let Some(keep) = &args.keep_serial_log {
        vmtest::keep_serial_log(&outcome, keep)?;
    }
    if outcome.passed() {
        return Ok(());
    }
    let failed = outcome.report.failures();
    match &outcome.problem {
        Some(problem) => {
            anyhow::bail!("{}: {failed} of {} checks failed: {problem}", args.image.display(), checks.len())
        }
        None => anyhow::bail!("{}: {failed} of {} checks failed", args.image.display(), checks.len()),
    }
}

fn print_outcome(outcome: &TestOutcome, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(outcome).context("cannot render the results as JSON")?);
        }
        OutputFormat::Table => {
            print!("{}", outcome.report.table());
            let passed = outcome.report.results.len() - outcome.report.failures();
            let timing = match outcome.boot_to_results() {
                Some(secs) => format!(", boot to results {secs:.0}s ({})", outcome.accel),
                None => format!(" ({})", outcome.accel),
            };
            println!("{passed} passed, {} failed{timing}", outcome.report.failures());
            if let Some(switch) = &outcome.accel_switch {
                println!("accelerator: {switch}");
            }
        }
    }
    Ok(())
}

/// The guest's machine: `--arch`, else the manifest's `arch`, else amd64 (images built before
/// manifests recorded one). Decided before the guest boots: an architecture no machine exists
/// for, or KVM asked for a foreign one, is bad input (exit 2).
fn guest_machine(args: &TestArgs, located: Option<&Located>) -> anyhow::Result<&'static Machine> {
    let (arch, culprit) = match (&args.arch, located) {
        (Some(arch), _) => (arch.as_str(), format!("--arch {arch}")),
        (None, Some(Located { path, manifest })) if !manifest.arch.is_empty() => {
            (manifest.arch.as_str(), format!("{} (arch `{}`)", path.display(), manifest.arch))
        }
        _ => return Ok(Machine::default_machine()),
    };
    let machine =
        Machine::for_arch(arch).map_err(|err| PreflightError { culprit: culprit.clone(), problem: err.to_string() })?;
    if args.accel == Accel::Kvm && !machine.is_native() {
        return Err(PreflightError {
            culprit: "--accel kvm".to_owned(),
            problem: format!(
                "KVM runs only guests of the host's architecture ({}); this {} image runs under --accel tcg",
                std::env::consts::ARCH,
                machine.arch
            ),
        }
        .into());
    }
    Ok(machine)
}

/// `--timeout`'s default: the machine's under emulation; a KVM guest on the same host is not
/// slower than an amd64 one.
fn default_timeout(machine: &Machine, accel: Accel) -> u64 {
    let amd64 = Machine::default_machine().tcg_timeout_secs;
    match accel {
        Accel::Tcg => machine.tcg_timeout_secs,
        Accel::Kvm | Accel::Auto if machine.is_native() => amd64,
        Accel::Kvm | Accel::Auto => machine.tcg_timeout_secs,
    }
}

/// The checks to run and the recipe they came from: `--recipe`, else the manifest beside the
/// image (which carries the recipe's checks, wherever the recipe was found at build time).
/// Found before the guest boots: no checks to run is bad input (exit 2), like the options.
fn recipe_checks(args: &TestArgs, located: Option<&Located>) -> anyhow::Result<(String, Vec<Check>)> {
    let (name, checks, source) = match &args.recipe {
        Some(name) => {
            let mut search = args.recipes_dir.clone();
            search.push(crate::paths::builtin_recipes_dir());
            let (recipe, path) = Recipe::find(name, &search)?;
            (recipe.name, recipe.checks, path.display().to_string())
        }
        None => {
            let path = located.map(|l| l.path.clone());
            let manifest = located.and_then(|l| Some((l.manifest.recipe.clone()?, l.manifest.checks.clone()))).ok_or_else(|| {
                PreflightError {
                    culprit: args.image.display().to_string(),
                    problem: format!(
                        "no recipe to take checks from: no manifest naming one beside the image ({}) or in {}; pass --recipe NAME or --recipe PATH",
                        Manifest::path_for(&args.image).display(),
                        crate::layout::dib_dir(&args.image).display(),
                    ),
                }
            })?;
            let path = path.unwrap_or_else(|| Manifest::path_for(&args.image));
            (manifest.0, manifest.1, path.display().to_string())
        }
    };
    if checks.is_empty() {
        return Err(PreflightError {
            culprit: format!("recipe `{name}` ({source})"),
            problem: "has no checks; pass --recipe with a recipe that lists `checks:`".to_owned(),
        }
        .into());
    }
    Ok((name, checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_for(image: &std::path::Path) -> TestArgs {
        TestArgs {
            image: image.to_owned(),
            recipe: None,
            recipes_dir: vec![],
            timeout: Some(1),
            arch: None,
            accel: Accel::Tcg,
            memory: 64,
            cpus: 1,
            kernel: None,
            initrd: None,
            append: None,
            format: OutputFormat::Table,
            keep_serial_log: None,
        }
    }

    #[test]
    fn no_recipe_and_no_manifest_says_how_to_pass_one() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        std::fs::write(&image, b"").unwrap();
        let args = args_for(&image);
        let err = recipe_checks(&args, None).unwrap_err().to_string();
        assert!(err.contains("x.qcow2") && err.contains("--recipe"), "{err}");

        // A manifest carries the checks itself: the recipe need not be on any search path.
        let checks = vec![Check::Package("jq".into())];
        let manifest = Manifest { recipe: Some("elsewhere".into()), checks: checks.clone(), ..Manifest::default() };
        std::fs::write(Manifest::path_for(&image), manifest.to_json().unwrap()).unwrap();
        assert_eq!(
            recipe_checks(&args, Manifest::find(&image).unwrap().as_ref()).unwrap(),
            ("elsewhere".to_owned(), checks.clone())
        );

        // disk-image-create's layout: the manifest listing the image is in x.d/.
        std::fs::remove_file(Manifest::path_for(&image)).unwrap();
        let output = crate::manifest::OutputEntry {
            file: "x.qcow2".into(),
            format: "qcow2".into(),
            ..crate::manifest::OutputEntry::default()
        };
        let manifest = Manifest { outputs: vec![output], recipe: Some("in-name-d".into()), ..manifest };
        std::fs::create_dir(dir.path().join("x.d")).unwrap();
        let path = Manifest::path_in(crate::layout::OutputLayout::Dib, &image);
        std::fs::write(path, manifest.to_json().unwrap()).unwrap();
        assert_eq!(
            recipe_checks(&args, Manifest::find(&image).unwrap().as_ref()).unwrap(),
            ("in-name-d".to_owned(), checks)
        );
    }

    #[test]
    fn the_manifest_names_the_guest_architecture_and_the_flag_wins() {
        let image = std::path::Path::new("/images/x.qcow2");
        let mut args = args_for(image);
        let located = |arch: &str| Located {
            path: "/images/x.qcow2.manifest.json".into(),
            manifest: Manifest { arch: arch.into(), ..Manifest::default() },
        };
        let arm64 = located("arm64");
        assert_eq!(guest_machine(&args, None).unwrap().arch, "amd64");
        assert_eq!(guest_machine(&args, Some(&arm64)).unwrap().qemu, "qemu-system-aarch64");
        args.arch = Some("x86_64".into());
        assert_eq!(guest_machine(&args, Some(&arm64)).unwrap().arch, "amd64");
        args.arch = Some("mips".into());
        let err = guest_machine(&args, Some(&arm64)).unwrap_err().to_string();
        assert!(err.starts_with("--arch mips: no guest machine for architecture `mips`"), "{err}");
        args.arch = None;
        let riscv = located("riscv64");
        let err = guest_machine(&args, Some(&riscv)).unwrap_err().to_string();
        assert!(err.contains("x.qcow2.manifest.json (arch `riscv64`)"), "{err}");
        if std::env::consts::ARCH == "x86_64" {
            args.accel = Accel::Kvm;
            let err = guest_machine(&args, Some(&arm64)).unwrap_err().to_string();
            assert!(err.starts_with("--accel kvm: KVM runs only guests of the host's architecture"), "{err}");
            assert_eq!(default_timeout(Machine::for_arch("arm64").unwrap(), Accel::Auto), 1800);
            assert_eq!(default_timeout(Machine::for_arch("amd64").unwrap(), Accel::Auto), 900);
        }
    }
}
