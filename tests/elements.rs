//! Element discovery and dependency expansion, mirroring DIB's own element-dependency tests
//! (diskimage_builder/tests/test_elementdeps.py) on the fixtures in tests/fixtures/elements.

mod common;

use std::path::PathBuf;

use mesos_image::element::{merge_environment_d, merge_hooks, ElementError, ElementLibrary, Phase};

fn fixture(entry: &str) -> PathBuf {
    common::fixture("elements").join(entry)
}

/// DIB's layout: the override dir comes first on ELEMENTS_PATH.
fn library() -> ElementLibrary {
    ElementLibrary::scan(&[fixture("override"), fixture("deps")]).unwrap()
}

fn resolve(names: &[&str]) -> Result<Vec<String>, ElementError> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    library().resolve(&names).map(|set| set.into_iter().map(|e| e.name.clone()).collect())
}

#[test]
fn non_transitive_deps() {
    assert_eq!(resolve(&["requires-foo"]).unwrap(), ["foo", "requires-foo"]);
}

#[test]
fn transitive_deps() {
    assert_eq!(resolve(&["requires-requires-foo"]).unwrap(), ["foo", "requires-foo", "requires-requires-foo"]);
}

#[test]
fn no_deps() {
    assert_eq!(resolve(&["foo"]).unwrap(), ["foo"]);
}

#[test]
fn self_dependency_is_fine() {
    assert_eq!(resolve(&["self", "foo"]).unwrap(), ["foo", "self"]);
}

#[test]
fn circular_dependencies_are_fine() {
    assert_eq!(resolve(&["circular1"]).unwrap(), ["circular1", "circular2"]);
}

#[test]
fn provided_element_is_replaced_by_its_provider() {
    // `virtual` exists as an element too (with a dependency); it must not be pulled in.
    assert_eq!(resolve(&["provides_virtual", "requires_virtual"]).unwrap(), ["provides_virtual", "requires_virtual"]);
}

#[test]
fn virtual_provider_ordering_does_not_matter() {
    let expected = ["provides_new_virtual", "requires_new_virtual"];
    assert_eq!(resolve(&["requires_new_virtual", "provides_new_virtual"]).unwrap(), expected);
    assert_eq!(resolve(&["provides_new_virtual", "requires_new_virtual"]).unwrap(), expected);
}

#[test]
fn requesting_a_provided_element_is_an_error_naming_the_provider() {
    let err = resolve(&["virtual", "provides_virtual", "foo"]).unwrap_err();
    assert!(
        matches!(&err, ElementError::AlreadyProvided { name, provided_by } if name == "virtual" && provided_by == "provides_virtual"),
        "{err}"
    );
}

#[test]
fn operating_system_passed_as_element_is_already_provided() {
    let err = resolve(&["circular1", "operating-system"]).unwrap_err();
    assert_eq!(err.to_string(), "element `operating-system` was requested but is already provided by `circular1`");
}

#[test]
fn two_providers_of_one_name_conflict() {
    let err = resolve(&["provides_virtual", "also_provides_virtual", "foo"]).unwrap_err();
    assert_eq!(err.to_string(), "elements `also_provides_virtual` and `provides_virtual` both provide `virtual`");
}

#[test]
fn missing_operating_system_element() {
    let err = resolve(&["provides_virtual"]).unwrap_err();
    assert!(matches!(err, ElementError::MissingOperatingSystem { .. }), "{err}");
}

#[test]
fn missing_element_names_it_and_who_needs_it() {
    let err = resolve(&["fake"]).unwrap_err();
    assert_eq!(err.to_string(), "element `fake` not found");
    let err = resolve(&["requires-missing", "foo"]).unwrap_err();
    assert_eq!(err.to_string(), "element `does-not-exist` not found (required by `requires-missing`)");
}

#[test]
fn earlier_path_entry_overrides_later() {
    let names: Vec<String> = vec!["override_element".into(), "foo".into()];
    let library = library();
    let set = library.resolve(&names).unwrap();
    let overridden = set.iter().find(|e| e.name == "override_element").unwrap();
    assert_eq!(overridden.path, fixture("override/override_element").canonicalize().unwrap());
    let foo = set.iter().find(|e| e.name == "foo").unwrap();
    assert_eq!(foo.path, fixture("deps/foo").canonicalize().unwrap());
    // Reversed path order: the deps/ copy wins.
    let reversed = ElementLibrary::scan(&[fixture("deps"), fixture("override")]).unwrap();
    assert_eq!(
        reversed.get("override_element").unwrap().path,
        fixture("deps/override_element").canonicalize().unwrap()
    );
}

#[test]
fn invalid_path_entry_is_named() {
    let err = ElementLibrary::scan(&[fixture("deps"), PathBuf::from("/not/a/dir")]).unwrap_err();
    assert_eq!(err.to_string(), "ELEMENTS_PATH entry `/not/a/dir` is not a directory");
}

#[test]
fn unreadable_element_file_is_named() {
    let err = ElementLibrary::scan(&[fixture("broken")]).unwrap_err().to_string();
    assert!(err.contains("broken/unreadable/element-deps: cannot read"), "{err}");
}

#[test]
fn resolution_is_deterministic_and_sorted() {
    let first = resolve(&["requires-requires-foo", "provides_virtual", "self", "extra_dependency"]).unwrap();
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted);
    for _ in 0..5 {
        assert_eq!(resolve(&["extra_dependency", "self", "provides_virtual", "requires-requires-foo"]).unwrap(), first);
    }
}

#[test]
fn hooks_merge_in_run_parts_order_skipping_bad_names_and_non_executables() {
    let library = ElementLibrary::scan(&[fixture("build")]).unwrap();
    let set = library.resolve(&["app".to_string()]).unwrap();
    let hooks = merge_hooks(&set).unwrap();
    let install: Vec<(&str, &str)> =
        hooks[&Phase::Install].iter().map(|s| (s.name.as_str(), s.element.as_str())).collect();
    assert_eq!(
        install,
        [
            ("05-early", "fake-os"),
            ("9-app-first", "app"),
            ("10-app", "app"),
            ("50-configure", "fake-os"),
            ("100-late", "fake-os")
        ]
    );
    assert!(!hooks.contains_key(&Phase::Cleanup));
    let env_d = merge_environment_d(&set).unwrap();
    assert_eq!(env_d.len(), 1);
    assert_eq!(env_d[0].name, "10-fake-os.bash");
}

#[test]
fn duplicate_script_names_across_elements_are_an_error_naming_both() {
    let library = ElementLibrary::scan(&[fixture("build")]).unwrap();
    let set: Vec<_> = ["dup-a", "dup-b"].iter().map(|n| library.get(n).unwrap()).collect();
    let err = merge_hooks(&set).unwrap_err();
    assert_eq!(err.to_string(), "install.d/50-same is shipped by both `dup-a` and `dup-b`");
}
