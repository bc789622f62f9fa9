//! The elements disk-image-create adds to what the user asked for (`arg_to_elements` and
//! `_arg_defaults_hack` in DIB's `lib/img-functions`): `base` unless `-n`, and a partitioning
//! element when `vm` comes without any `block-device-*`. `build` and `elements resolve` both
//! expand a request through here, so they agree.

use super::library::ElementLibrary;

/// One element added to the request, with the rule that added it (printed by `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddedElement {
    pub name: String,
    pub reason: &'static str,
}

/// `requested` plus what disk-image-create would add. Only elements that exist on the search
/// path are added: our own `vm` needs no partitioning element, and a search path without a
/// `base` element builds as before.
pub fn with_dib_defaults(
    requested: &[String],
    library: &ElementLibrary,
    arch: &str,
    add_base: bool,
) -> (Vec<String>, Vec<AddedElement>) {
    let mut names = requested.to_vec();
    let mut added = Vec::new();
    let mut add = |names: &mut Vec<String>, name: &str, reason: &'static str| {
        if !names.iter().any(|n| n == name) && library.get(name).is_some() {
            tracing::debug!("adding element {name}: {reason}");
            names.push(name.to_owned());
            added.push(AddedElement { name: name.to_owned(), reason });
        }
    };
    if add_base {
        add(&mut names, "base", "disk-image-create always adds base (-n to skip)");
    }
    let wants_vm = names.iter().any(|n| n == "vm");
    let has_block_device = names.iter().any(|n| n.starts_with("block-device-"));
    if wants_vm && !has_block_device {
        let (default, reason) = if arch == "arm64" {
            ("block-device-efi", "vm without a block-device-* element gets block-device-efi on arm64, as in DIB")
        } else {
            ("block-device-mbr", "vm without a block-device-* element gets block-device-mbr, as in DIB")
        };
        add(&mut names, default, reason);
    }
    (names, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(names: &[&str]) -> (tempfile::TempDir, ElementLibrary) {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let library = ElementLibrary::scan(&[dir.path().to_owned()]).unwrap();
        (dir, library)
    }

    fn request(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn base_is_added_unless_skipped_and_only_when_it_exists() {
        let (_dir, lib) = library(&["base", "vm", "os"]);
        let (names, added) = with_dib_defaults(&request(&["os"]), &lib, "amd64", true);
        assert_eq!(names, ["os", "base"]);
        assert_eq!(added[0].name, "base");
        assert_eq!(with_dib_defaults(&request(&["os"]), &lib, "amd64", false).0, ["os"]);
        let (_dir, without) = library(&["os"]);
        assert_eq!(with_dib_defaults(&request(&["os"]), &without, "amd64", true).0, ["os"]);
    }

    #[test]
    fn vm_gets_dibs_partitioning_default_when_the_element_exists() {
        let (_dir, lib) = library(&["vm", "block-device-mbr", "block-device-efi", "block-device-gpt"]);
        assert_eq!(with_dib_defaults(&request(&["vm"]), &lib, "amd64", false).0, ["vm", "block-device-mbr"]);
        assert_eq!(with_dib_defaults(&request(&["vm"]), &lib, "arm64", false).0, ["vm", "block-device-efi"]);
        let gpt = request(&["vm", "block-device-gpt"]);
        assert_eq!(with_dib_defaults(&gpt, &lib, "amd64", false).0, gpt);
    }
}
