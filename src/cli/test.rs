//! `mesos-image test IMAGE [--recipe NAME]`: boot the image in qemu and run its recipe's checks.

use std::time::Duration;

pub use super::args::test::TestArgs;
use super::args::{GlobalOpts, OutputFormat};
use super::preflight::PreflightError;
use crate::manifest::Manifest;
use crate::recipe::{Check, Recipe};
use crate::vmtest::{self, BootMilestone, TestOptions, TestOutcome};
use anyhow::Context;

/// Boot, check, print; an error (exit status 1) unless every check passed.
pub fn run(args: TestArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    super::preflight::test(&args)?;
    let (recipe_name, checks) = recipe_checks(&args)?;
    // Ctrl-C or a service manager's SIGTERM must still kill the VM and remove the temporary
    // directory: the boot wait notices the signal and unwinds.
    crate::sandbox::catch_stop_signals()?;
    let options = TestOptions {
        accel: args.accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        timeout: Duration::from_secs(args.timeout),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        append: args.append.clone(),
    };
    if !global.quiet {
        eprintln!("==> testing {} with {} checks of recipe {recipe_name}", args.image.display(), checks.len());
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

/// The checks to run and the recipe they came from: `--recipe`, else the manifest beside the
/// image (which carries the recipe's checks, wherever the recipe was found at build time).
/// Found before the guest boots: no checks to run is bad input (exit 2), like the options.
fn recipe_checks(args: &TestArgs) -> anyhow::Result<(String, Vec<Check>)> {
    let (name, checks, source) = match &args.recipe {
        Some(name) => {
            let mut search = args.recipes_dir.clone();
            search.push(crate::paths::builtin_recipes_dir());
            let (recipe, path) = Recipe::find(name, &search)?;
            (recipe.name, recipe.checks, path.display().to_string())
        }
        None => {
            let located = Manifest::find(&args.image)?;
            let path = located.as_ref().map(|l| l.path.clone());
            let manifest = located.and_then(|l| Some((l.manifest.recipe?, l.manifest.checks))).ok_or_else(|| {
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
    use crate::vmtest::qemu::Accel;

    #[test]
    fn no_recipe_and_no_manifest_says_how_to_pass_one() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        std::fs::write(&image, b"").unwrap();
        let args = TestArgs {
            image: image.clone(),
            recipe: None,
            recipes_dir: vec![],
            timeout: 1,
            accel: Accel::Tcg,
            memory: 64,
            cpus: 1,
            kernel: None,
            initrd: None,
            append: None,
            format: OutputFormat::Table,
            keep_serial_log: None,
        };
        let err = recipe_checks(&args).unwrap_err().to_string();
        assert!(err.contains("x.qcow2") && err.contains("--recipe"), "{err}");

        // A manifest carries the checks itself: the recipe need not be on any search path.
        let checks = vec![Check::Package("jq".into())];
        let manifest = Manifest { recipe: Some("elsewhere".into()), checks: checks.clone(), ..Manifest::default() };
        std::fs::write(Manifest::path_for(&image), manifest.to_json().unwrap()).unwrap();
        assert_eq!(recipe_checks(&args).unwrap(), ("elsewhere".to_owned(), checks.clone()));

        // disk-image-create's layout: the manifest listing the image is in x.d/.
        std::fs::remove_file(Manifest::path_for(&image)).unwrap();
        let output =
            crate::manifest::OutputEntry { file: "x.qcow2".into(), format: "qcow2".into(), size: 0, sha256: "".into() };
        let manifest = Manifest { outputs: vec![output], recipe: Some("in-name-d".into()), ..manifest };
        std::fs::create_dir(dir.path().join("x.d")).unwrap();
        let path = Manifest::path_in(crate::layout::OutputLayout::Dib, &image);
        std::fs::write(path, manifest.to_json().unwrap()).unwrap();
        assert_eq!(recipe_checks(&args).unwrap(), ("in-name-d".to_owned(), checks));
    }
}
