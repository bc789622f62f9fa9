//! The partition tables we write, read back by util-linux's sfdisk (no root needed: a file).

use std::path::Path;
use std::process::Command;

use mesos_image::disk::layout::{Layout, MIB};
use mesos_image::disk::write_partition_table;
use mesos_image::recipe::Partitioning;
use mesos_image::reproducible::Pins;

fn sfdisk_dump(raw: &Path) -> String {
    let output = Command::new("sfdisk").arg("--dump").arg(raw).output().expect("sfdisk runs");
    assert!(output.status.success(), "sfdisk failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn table_file(table: Partitioning, uefi: bool, disk_bytes: u64) -> (tempfile::TempDir, std::path::PathBuf, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let layout = Layout::for_disk(table, uefi, disk_bytes).unwrap();
    std::fs::File::create(&raw).unwrap().set_len(layout.disk_bytes).unwrap();
    write_partition_table(&raw, &layout, &[0xEB, 0x63, 0x90], &mesos_image::reproducible::Pins::fixed(0, "table test"))
        .unwrap();
    (dir, raw, layout)
}

#[test]
fn sfdisk_reads_our_mbr() {
    let (_dir, raw, _) = table_file(Partitioning::Mbr, false, 3 * 1024 * MIB);
    let dump = sfdisk_dump(&raw);
    assert!(dump.contains("label: dos"), "{dump}");
    assert!(dump.contains("start=        2048, size=     6289408, type=83, bootable"), "{dump}");
    assert_eq!(dump.matches("start=").count(), 1, "{dump}");
}

#[test]
fn sfdisk_reads_our_gpt_without_complaint() {
    let (_dir, raw, _) = table_file(Partitioning::Gpt, true, 1024 * MIB);
    let output = Command::new("sfdisk").arg("--dump").arg(&raw).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // sfdisk warns about bad CRCs or a misplaced backup header on stderr.
    assert!(output.status.success() && stderr.trim().is_empty(), "{stderr}");
    let dump = String::from_utf8(output.stdout).unwrap();
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(dump.contains("first-lba: 34"), "{dump}");
    assert!(dump.contains("last-lba: 2097118"), "{dump}");
    assert!(
        dump.contains("start=        2048, size=        2048, type=21686148-6449-6E6F-744E-656564454649"),
        "{dump}"
    );
    assert!(
        dump.contains("start=        4096, size=      131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{dump}"
    );
    assert!(
        dump.contains("start=      135168, size=     1959936, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        "{dump}"
    );
    assert!(dump.contains("attrs=\"LegacyBIOSBootable\""), "{dump}");
}

#[test]
fn gpt_backup_header_verifies_with_sfdisk_verify() {
    let (_dir, raw, _) = table_file(Partitioning::Gpt, false, 512 * MIB);
    let output = Command::new("sfdisk").arg("--verify").arg(&raw).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("No errors detected"), "{stdout}");
}

/// The table's identifiers come from the build seed, nothing from the random pool: the same
/// pins write the same bytes, another seed another disk GUID, partition GUIDs and MBR signature,
/// and sfdisk reads back the GUIDs the seed derives.
#[test]
fn table_identifiers_are_the_seeds() {
    let write = |seed: &str, table: Partitioning| {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let layout = Layout::for_disk(table, table == Partitioning::Gpt, 256 * MIB).unwrap();
        std::fs::File::create(&raw).unwrap().set_len(layout.disk_bytes).unwrap();
        let pins = Pins::fixed(0, seed);
        write_partition_table(&raw, &layout, &[0xEB, 0x63, 0x90], &pins).unwrap();
        (std::fs::read(&raw).unwrap(), sfdisk_dump(&raw), pins)
    };
    for table in [Partitioning::Mbr, Partitioning::Gpt] {
        let (first, _, _) = write("seed a", table);
        let (again, _, _) = write("seed a", table);
        let (other, _, _) = write("seed b", table);
        assert!(first == again, "{table:?}: two tables of the same pins differ");
        assert!(first[440..444] != other[440..444], "{table:?}: the MBR disk signature ignores the seed");
        if table == Partitioning::Gpt {
            assert!(first[512..] != other[512..], "the GPT ignores the seed");
        }
    }
    let (_, dump, pins) = write("seed a", Partitioning::Gpt);
    let upper = |guid: uuid::Uuid| guid.to_string().to_uppercase();
    assert!(dump.contains(&format!("label-id: {}", upper(pins.seed.guid("gpt-disk-guid")))), "{dump}");
    for number in 1..=3 {
        let unique = upper(pins.seed.guid(&format!("gpt-partition-{number}")));
        assert!(dump.contains(&format!("uuid={unique}")), "partition {number}: {unique} not in {dump}");
    }
    let (_, dump, pins) = write("seed a", Partitioning::Mbr);
    assert!(dump.contains(&format!("label-id: 0x{:08x}", pins.seed.u32("mbr-disk-signature"))), "{dump}");
}
