//! The build seed comes from the inputs that make the disk, not from how it is written out:
//! `-t raw` and `-t qcow2,vhd -u` of the same inputs hold the same disk, identifiers included.

#[path = "phases_support/mod.rs"]
mod support;

use mesos_image::pipeline::{GivenPins, StageKeys};
use mesos_image::recipe::{ImageFormat, Overrides};
use mesos_image::settings::ByteSize;

#[test]
fn output_settings_leave_the_seed_alone_disk_settings_change_it() {
    let work = tempfile::tempdir().unwrap();
    support::element(work.path(), "app", &[("install.d/10-install", "#!/bin/bash\ntrue\n")]);
    let key = |overrides: Overrides| {
        StageKeys::compute(&support::plan(work.path(), &["app"], overrides), false, GivenPins::default()).unwrap().disk
    };
    let default = key(Overrides::default());
    let written_otherwise = key(Overrides {
        formats: Some(vec![ImageFormat::Raw, ImageFormat::Vhd]),
        compress: Some(false),
        qemu_img_options: Some("compat=0.10".into()),
        ..Overrides::default()
    });
    assert_eq!(default, written_otherwise, "formats, compression and qemu-img options changed the seed");
    let other_disk = key(Overrides { root_label: Some("other-root".into()), ..Overrides::default() });
    assert_ne!(default, other_disk, "the root label is part of the disk");
    let other_size = key(Overrides { image_size: ByteSize::parse("4G").ok(), ..Overrides::default() });
    assert_ne!(default, other_size, "the disk size is part of the disk");
}
