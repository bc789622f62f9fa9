//! Element hooks with DIB's semantics, on plans the planner makes: the hooks dir layout, outside
//! phases on the host, inside phases chrooted (root), and (root + network) the whole inside of
//! the pipeline on a real mmdebstrap tree with one apt transaction.

#[path = "phases_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use mesos_image::element::Phase;
use mesos_image::progress::Reporter;
use mesos_image::recipe::{BaseMethod, Overrides};
use mesos_image::stage::{cleanup, finalise, phases, root};

#[test]
fn hooks_dir_is_laid_out_like_dib_tmp_hooks_path() {
    let work = tempfile::tempdir().unwrap();
    let dir = support::element(
        work.path(),
        "mesos",
        &[
            ("install.d/50-configure", "#!/bin/bash\ntrue\n"),
            ("root.d/10-root", "#!/bin/bash\ntrue\n"),
            ("environment.d/10-mesos.bash", "export MESOS=1\n"),
            ("pkg-map", r#"{"family": {"debian": {"java": "openjdk-17-jre-headless"}}}"#),
        ],
    );
    assert!(dir.is_dir());
    let plan = support::plan(work.path(), &["mesos"], Overrides::default());
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work.path().join("build"));
    phases::prepare_hooks(&dirs.context(&plan, &reporter)).unwrap();

    let hooks = &dirs.hooks;
    for phase in Phase::ALL {
        assert!(hooks.join(phase.dir_name()).is_dir(), "{phase}");
    }
    let mode = fs::metadata(hooks.join("install.d/50-configure")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "scripts stay executable");
    assert!(hooks.join("root.d/10-root").is_file());
    assert!(hooks.join("environment.d/10-mesos.bash").is_file());
    for helper in ["install-packages", "pkg-map", "dib-init-system", "dib-run-parts"] {
        let mode = fs::metadata(hooks.join("bin").join(helper)).unwrap().permissions().mode();
        assert_eq!(mode & 0o755, 0o755, "{helper}");
    }
    assert_eq!(fs::read_to_string(hooks.join("pkg-map.d/mesos")).unwrap(), "java openjdk-17-jre-headless\n");
}

#[test]
fn pkg_map_helper_maps_passes_through_and_drops() {
    let work = tempfile::tempdir().unwrap();
    let pkg_map = r#"{"distro": {"debian": {"java": "openjdk-17-jre-headless", "upstart": ""}}}"#;
    support::element(work.path(), "mesos", &[("pkg-map", pkg_map)]);
    let plan = support::plan(work.path(), &["mesos"], Overrides::default());
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(work.path());
    phases::prepare_hooks(&dirs.context(&plan, &reporter)).unwrap();
    let pkg_map = |args: &[&str]| {
        support::output_of_fresh(
            Command::new(dirs.hooks.join("bin/pkg-map")).args(args).env("TMP_HOOKS_PATH", &dirs.hooks),
        )
    };
    let mapped = pkg_map(&["--element", "mesos", "java", "jq", "upstart"]);
    assert!(mapped.status.success());
    assert_eq!(String::from_utf8_lossy(&mapped.stdout), "openjdk-17-jre-headless\njq\n");
    let missing = pkg_map(&["--element", "other", "jq"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("element other has no pkg-map"));
    let missing_ok = pkg_map(&["--element", "other", "--missing-ok", "jq"]);
    assert_eq!(String::from_utf8_lossy(&missing_ok.stdout), "jq\n");
}

#[test]
fn dib_run_parts_helper_orders_numerically_and_skips_bad_names() {
    let work = tempfile::tempdir().unwrap();
    let reporter = Reporter::silent();
    let plan = support::plan(work.path(), &[], Overrides::default());
    let dirs = support::Dirs::new(&work.path().join("build"));
    phases::prepare_hooks(&dirs.context(&plan, &reporter)).unwrap();
    let parts = work.path().join("parts");
    let out = work.path().join("out");
    support::element(
        work.path(),
        "parts",
        &[
            ("10-b", &format!("#!/bin/bash\necho \"10-b $FROM_ENV\" >> {}\n", out.display())),
            ("9-a", &format!("#!/bin/bash\necho 9-a >> {}\n", out.display())),
            ("bad.name", &format!("#!/bin/bash\necho bad >> {}\n", out.display())),
        ],
    );
    support::element(work.path(), "environment.d", &[("10-env", "export FROM_ENV=sourced\n")]);
    let status = support::output_of_fresh(Command::new(dirs.hooks.join("bin/dib-run-parts")).arg(&parts));
    assert!(status.status.success(), "{status:?}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "9-a\n10-b sourced\n");
}

#[test]
fn outside_phase_runs_on_the_host_with_dib_variables_and_environment_d() {
    let work = tempfile::tempdir().unwrap();
    let dir = support::element(
        work.path(),
        "base",
        &[
            ("root.d/20-second", "#!/bin/bash\necho \"second $FROM_ENV_D $PLAN_VAR\" >> \"$TARGET_ROOT/order\"\n"),
            (
                "root.d/10-first",
                "#!/bin/bash\necho \"first $TMP_MOUNT_PATH $TMP_HOOKS_PATH $DIB_RELEASE\" >> \"$TARGET_ROOT/order\"\n",
            ),
            ("environment.d/10-env", "export FROM_ENV_D=sourced\n"),
        ],
    );
    assert!(dir.is_dir());
    let environment = BTreeMap::from([("PLAN_VAR".to_owned(), "from-plan".to_owned())]);
    let plan = support::plan(work.path(), &["base"], Overrides { environment, ..Overrides::default() });
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work.path().join("build"));
    let ctx = dirs.context(&plan, &reporter);
    phases::prepare_hooks(&ctx).unwrap();
    phases::run_phase(&ctx, Phase::Root).unwrap();
    let order = fs::read_to_string(dirs.target.join("order")).unwrap();
    let expected =
        format!("first {} {} bookworm\nsecond sourced from-plan\n", dirs.target.display(), dirs.hooks.display());
    assert_eq!(order, expected);
}

#[test]
fn first_failing_script_stops_the_phase_and_is_named() {
    let work = tempfile::tempdir().unwrap();
    let dir = support::element(
        work.path(),
        "broken",
        &[
            ("extra-data.d/20-fails", "#!/bin/bash\necho 'about to fail'\nexit 3\n"),
            ("extra-data.d/30-never", "#!/bin/bash\ntouch \"$TARGET_ROOT/ran\"\n"),
        ],
    );
    assert!(dir.is_dir());
    let plan = support::plan(work.path(), &["broken"], Overrides::default());
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work.path().join("build"));
    let ctx = dirs.context(&plan, &reporter);
    phases::prepare_hooks(&ctx).unwrap();
    let message = format!("{:#}", phases::run_phase(&ctx, Phase::ExtraData).unwrap_err());
    assert!(message.contains("extra-data.d/20-fails of element broken"), "{message}");
    assert!(message.contains("about to fail"), "{message}");
    assert!(!dirs.target.join("ran").exists());
}

#[test]
#[ignore = "needs root: chroot and mounts"]
fn inside_phases_run_chrooted_with_hooks_helpers_static_and_bin() {
    let work = tempfile::tempdir().unwrap();
    let dir = support::element(
        work.path(),
        "probe",
        &[
            (
                "pre-install.d/50-probe",
                "#!/bin/bash\nread -r p < /usr/sbin/policy-rc.d\n\
            read -r r < /etc/resolv.conf || r=empty\n\
            echo \"$TMP_HOOKS_PATH $(dib-init-system) $FROM_ENV_D ${TARGET_ROOT:-unset} $p\" > /probe\n",
            ),
            ("install.d/10-static", "#!/bin/bash\nread -r s < /etc/probe-static\necho \"$s\" > /static-seen\n"),
            ("environment.d/10-env", "export FROM_ENV_D=sourced\n"),
            ("static/etc/probe-static", "static file\n"),
            ("bin/probe-tool", "#!/bin/bash\necho tool\n"),
            ("cleanup.d/10-outside", "#!/bin/bash\ntouch \"$TARGET_ROOT/cleaned\"\n"),
        ],
    );
    assert!(dir.is_dir());
    // The planner sets DIB_INIT_SYSTEM=systemd for bookworm.
    let plan = support::plan(work.path(), &["probe"], Overrides::default());
    let reporter = Reporter::silent();
    let dirs = support::Dirs::new(&work.path().join("build"));
    support::tiny_tree(&dirs.target, &["bash"]);
    fs::write(dirs.target.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let ctx = dirs.context(&plan, &reporter);
    phases::prepare_hooks(&ctx).unwrap();
    for phase in [Phase::PreInstall, Phase::Install, Phase::PostInstall] {
        phases::run_phase(&ctx, phase).unwrap();
        assert_eq!(mesos_image::sandbox::mount_points_under(&dirs.target).unwrap(), Vec::<PathBuf>::new());
    }
    let probe = fs::read_to_string(dirs.target.join("probe")).unwrap();
    assert_eq!(probe, "/tmp/in_target.d systemd sourced unset #!/bin/sh\n");
    assert_eq!(fs::read_to_string(dirs.target.join("static-seen")).unwrap(), "static file\n");
    assert!(dirs.target.join("usr/local/bin/probe-tool").is_file());
    assert!(dirs.target.join("etc/resolv.conf.ORIG").exists(), "the tree's resolv.conf is set aside");

    // The pipeline's order: pre-finalise.d, finalise.d, finalise; cleanup.d, cleanup.
    phases::run_phase(&ctx, Phase::PreFinalise).unwrap();
    phases::run_phase(&ctx, Phase::Finalise).unwrap();
    let packages = finalise::run(&ctx).unwrap();
    assert!(packages.is_empty());
    assert_eq!(
        fs::read_to_string(dirs.target.join("etc/dib-manifests/dib-element-manifest")).unwrap(),
        format!("probe\n{}\n", support::OS_ELEMENT)
    );
    phases::run_phase(&ctx, Phase::Cleanup).unwrap();
    cleanup::run(&ctx).unwrap();
    assert!(dirs.target.join("cleaned").exists());
    assert!(!dirs.target.join("usr/sbin/policy-rc.d").exists(), "services are unblocked after the build");
    assert_eq!(fs::read_to_string(dirs.target.join("etc/resolv.conf")).unwrap(), "nameserver 192.0.2.1\n");
    assert!(!dirs.target.join("etc/resolv.conf.ORIG").exists());
}

#[test]
#[ignore = "needs root and network: mmdebstrap bookworm from the host's mirror plus one apt transaction (~60 s)"]
fn pipeline_inside_on_a_real_tree_installs_packages_in_one_transaction() {
    let Some(mirror) = support::host_mirror() else { panic!("no Debian mirror in the host's apt sources") };
    let work = PathBuf::from(format!("/var/tmp/stages-pipeline-{}", std::process::id()));
    let dir = support::element(&work, "probe", &[
        // Runs before the install slot (01): the packages must not be there yet.
        ("install.d/00-before", "#!/bin/bash\nif command -v jq; then exit 1; fi\ntouch /before-ok\n"),
        ("install.d/50-after", "#!/bin/bash\nset -e\necho '{\"a\":1}' | jq -e .a > /after-ok\ninstall-packages -m probe tree-alias\ncommand -v tree > /tree-ok\n"),
        // `uninstall: true`: removed at the end of its phase.
        ("package-installs.yaml", "file:\n  build-only: true\ntree:\n  uninstall: true\n  phase: post-install.d\n"),
        ("pkg-map", r#"{"default": {"tree-alias": "tree"}}"#),
    ]);
    assert!(dir.is_dir());
    let overrides = Overrides {
        base: Some(BaseMethod::Mmdebstrap),
        mirror: Some(mirror),
        packages: vec!["jq".into()],
        ..Overrides::default()
    };
    let plan = support::plan(&work, &["probe"], overrides);
    assert_eq!(plan.packages[&Phase::Install].build_only, ["file"], "the planner read package-installs.yaml");
    assert_eq!(plan.packages[&Phase::PostInstall].uninstall, ["tree"]);
    let reporter = Reporter::new(true, false, Some(&work.join("build.log")), Default::default()).unwrap();
    let dirs = support::Dirs::new(&work.join("build"));
    let ctx = dirs.context(&plan, &reporter);
    let started = std::time::Instant::now();
    phases::prepare_hooks(&ctx).unwrap();
    root::run(&ctx).unwrap();
    let bootstrap = started.elapsed();
    // The pipeline's order (pipeline/mod.rs), without the cache's steps.
    for phase in [Phase::Root, Phase::ExtraData, Phase::PreInstall, Phase::Install, Phase::PostInstall, Phase::PostRoot]
    {
        phases::run_phase(&ctx, phase).unwrap();
    }
    phases::run_phase(&ctx, Phase::PreFinalise).unwrap();
    phases::run_phase(&ctx, Phase::Finalise).unwrap();
    let installed = finalise::run(&ctx).unwrap();
    phases::run_phase(&ctx, Phase::Cleanup).unwrap();
    cleanup::run(&ctx).unwrap();
    eprintln!("bootstrap {bootstrap:?}, total {:?}", started.elapsed());

    assert!(dirs.target.join("before-ok").exists() && dirs.target.join("after-ok").exists());
    let names: Vec<&str> = installed.iter().map(|deb| deb.name.as_str()).collect();
    assert!(names.contains(&"jq"), "{names:?}");
    assert!(dirs.target.join("tree-ok").exists(), "install-packages -m maps through pkg-map.d");
    assert!(!names.contains(&"tree"), "uninstall packages are removed after their phase: {names:?}");
    assert!(!names.contains(&"file"), "build-only packages are purged: {names:?}");
    let manifest = fs::read_to_string(dirs.target.join("etc/dib-manifests/dib-packages")).unwrap();
    assert!(manifest.lines().any(|line| line.starts_with("jq ")), "{manifest}");
    // The shared cache kept its debs: nothing was deleted through the bind mount.
    let cached: Vec<String> =
        fs::read_dir(&dirs.apt_cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(cached.iter().any(|name| name.starts_with("jq_")), "{cached:?}");
    assert!(cached.iter().any(|name| name.starts_with("libc6_")), "bootstrap debs are synced out: {cached:?}");
    // Build leftovers are gone.
    assert!(!dirs.target.join(mesos_image::stage::target_config::UNSAFE_IO_CONFIG).exists());
    assert!(!dirs.target.join("usr/sbin/policy-rc.d").exists());
    // The build host's resolver and name stay out of the image.
    assert!(!dirs.target.join("etc/resolv.conf").exists(), "the bootstrap tree had none of its own");
    assert!(!dirs.target.join("etc/resolv.conf.ORIG").exists());
    assert_eq!(fs::read_to_string(dirs.target.join("etc/hostname")).unwrap(), "localhost\n");
    let lists: Vec<_> =
        fs::read_dir(dirs.target.join("var/lib/apt/lists")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(lists.iter().all(|name| name == "partial" || name == "lock"), "{lists:?}");
    assert!(fs::read_dir(dirs.target.join("var/cache/apt/archives")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".deb")));
    mesos_image::sandbox::remove_tree(&work).unwrap();
}
