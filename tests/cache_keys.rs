//! Each cache point's key, on plans the planner makes: a change invalidates exactly the cache
//! points that read it (osbuild-style), so editing a late hook never rebuilds the install tree.

#[path = "phases_support/mod.rs"]
mod support;

use std::fs;

use mesos_image::pipeline::{GivenPins, StageKeys};
use mesos_image::recipe::{ImageFormat, Overrides};
use mesos_image::settings::ByteSize;

fn keys(elements: &std::path::Path) -> StageKeys {
    StageKeys::compute(&support::plan(elements, &["app"], Overrides::default()), false, GivenPins::default()).unwrap()
}

#[test]
fn a_late_hook_changes_only_the_outputs_key() {
    let work = tempfile::tempdir().unwrap();
    let app = support::element(
        work.path(),
        "app",
        &[("install.d/10-install", "#!/bin/bash\ntrue\n"), ("finalise.d/10-finalise", "#!/bin/bash\ntrue\n")],
    );
    let before = keys(work.path());
    for (dir, script) in [("post-install.d", "10-late"), ("cleanup.d", "10-late")] {
        fs::create_dir_all(app.join(dir)).unwrap();
        fs::write(app.join(dir).join(script), "#!/bin/bash\necho changed\n").unwrap();
    }
    fs::write(app.join("finalise.d/10-finalise"), "#!/bin/bash\necho changed\n").unwrap();
    let after = keys(work.path());
    assert_eq!(after.base, before.base);
    assert_eq!(after.install, before.install, "late hooks must not invalidate the install snapshot");
    assert_ne!(after.outputs, before.outputs, "the outputs read every element file");
}

#[test]
fn an_install_hook_changes_the_install_and_outputs_keys_not_the_base() {
    let work = tempfile::tempdir().unwrap();
    let app = support::element(work.path(), "app", &[("install.d/10-install", "#!/bin/bash\ntrue\n")]);
    let before = keys(work.path());
    fs::write(app.join("install.d/10-install"), "#!/bin/bash\necho changed\n").unwrap();
    let after = keys(work.path());
    assert_eq!(after.base, before.base);
    assert_ne!(after.install, before.install);
    assert_ne!(after.outputs, before.outputs);
    // The same inputs give the same keys.
    assert_eq!(keys(work.path()).install, after.install);
}

#[test]
fn how_the_disk_is_written_out_changes_only_the_outputs_key() {
    let work = tempfile::tempdir().unwrap();
    support::element(work.path(), "app", &[("install.d/10-install", "#!/bin/bash\ntrue\n")]);
    let keys = |overrides: Overrides, checksum: bool| {
        StageKeys::compute(&support::plan(work.path(), &["app"], overrides), checksum, GivenPins::default()).unwrap()
    };
    let before = keys(Overrides::default(), false);
    let vhd = Overrides { formats: Some(vec![ImageFormat::Vhd]), ..Overrides::default() };
    for after in [keys(vhd, false), keys(Overrides::default(), true)] {
        assert_eq!((&after.base, &after.install, &after.disk), (&before.base, &before.install, &before.disk));
        assert_ne!(after.outputs, before.outputs, "the stored outputs differ");
    }
    let bigger = keys(Overrides { image_size: ByteSize::parse("4G").ok(), ..Overrides::default() }, false);
    assert_eq!(bigger.install, before.install, "the disk size does not change the tree");
    assert_ne!(bigger.disk, before.disk);
    assert_ne!(bigger.outputs, before.outputs);
}

#[test]
fn a_given_epoch_reaches_every_key_a_given_seed_the_disk_on() {
    let work = tempfile::tempdir().unwrap();
    support::element(work.path(), "app", &[("install.d/10-install", "#!/bin/bash\ntrue\n")]);
    let plan = support::plan(work.path(), &["app"], Overrides::default());
    let keys = |given: GivenPins| StageKeys::compute(&plan, false, given).unwrap();
    let derived = keys(GivenPins::default());
    let all = |k: &StageKeys| [k.base.clone(), k.install.clone(), k.disk.clone(), k.outputs.clone()];

    let dated = keys(GivenPins { epoch: Some(1_700_000_000), seed: None });
    assert!(all(&dated).iter().zip(all(&derived)).all(|(a, b)| *a != b), "the epoch reaches every stage");
    let dated_later = keys(GivenPins { epoch: Some(1_700_000_001), seed: None });
    assert!(all(&dated).iter().zip(all(&dated_later)).all(|(a, b)| *a != b));

    let seeded = keys(GivenPins { epoch: None, seed: Some("s") });
    assert_eq!((&seeded.base, &seeded.install), (&derived.base, &derived.install), "the seed only reaches the disk");
    assert!(seeded.disk != derived.disk && seeded.outputs != derived.outputs);
    assert_ne!(keys(GivenPins { epoch: None, seed: Some("t") }).disk, seeded.disk);
    assert_eq!(keys(GivenPins::default()).outputs, derived.outputs, "nothing given: the same keys");
}

/// nodepool-builder names each build's output in `DIB_IMAGE_FILENAME` (`IMAGES_DIR/NAME-ID`, a
/// new ID every build): the same image built again under a new name reuses every stage.
#[test]
fn the_output_name_nodepool_sets_changes_no_key() {
    let work = tempfile::tempdir().unwrap();
    support::element(work.path(), "app", &[("install.d/10-install", "#!/bin/bash\ntrue\n")]);
    let keys_for = |filename: &str| {
        let mut plan = support::plan(work.path(), &["app"], Overrides::default());
        plan.env.insert("DIB_IMAGE_FILENAME".into(), filename.into());
        StageKeys::compute(&plan, false, GivenPins::default()).unwrap()
    };
    let first = keys_for("/opt/nodepool/images/debian-0000000001");
    let second = keys_for("/opt/nodepool/images/debian-0000000002");
    assert_eq!(
        (&first.base, &first.install, &first.disk, &first.outputs),
        (&second.base, &second.install, &second.disk, &second.outputs)
    );
    // A DIB_* variable that is an input still changes the keys.
    let mut plan = support::plan(work.path(), &["app"], Overrides::default());
    plan.env.insert("DIB_SOMETHING".into(), "1".into());
    assert_ne!(StageKeys::compute(&plan, false, GivenPins::default()).unwrap().base, first.base);
}
