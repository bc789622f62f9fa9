//! The module structure (docs/architecture.md): no top-level module of `src/` imports one that
//! imports it back, and the layers below the commands never reach up into `build` or `cli`.
//! Read from the source as text: every `crate::NAME` outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module -> the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = fs::read_to_string(path).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for line in text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")) {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in named_modules(line) {
                if name != module {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// The modules a line names: `crate::NAME` and each `NAME` of `crate::{NAME, ...}`.
fn named_modules(line: &str) -> Vec<String> {
    let ident = |text: &str| text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut names = Vec::new();
    for (index, _) in line.match_indices("crate::") {
        let rest = &line[index + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(list) => {
                let list = list.split('}').next().unwrap_or_default();
                names.extend(list.split(',').map(|item| ident(item.trim())).filter(|name| !name.is_empty()));
            }
            None => names.push(ident(rest)),
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

/// A path `from` -> ... -> `from` through the graph, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.contains_key("stage") && graph["build"].contains("stage"), "the reader finds imports: {graph:?}");
    let circles: Vec<String> =
        graph.keys().filter_map(|module| circle_through(&graph, module)).map(|circle| circle.join(" -> ")).collect();
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_layers_below_the_commands_never_reach_up() {
    let graph = imports();
    let lower = ["element", "recipe", "plan", "stage", "disk", "cache", "manifest", "reproducible", "io", "output"];
    for module in lower {
        for upper in ["cli", "build", "failure", "vmtest", "upload"] {
            assert!(!graph[module].contains(upper), "{module} imports {upper}");
        }
    }
    for upper in ["plan", "stage", "cache", "build"] {
        assert!(!graph["element"].contains(upper), "element imports {upper}");
        assert!(!graph["recipe"].contains(upper), "recipe imports {upper}");
    }
}

#[test]
fn the_reader_sees_plain_and_grouped_imports_and_skips_self() {
    assert_eq!(named_modules("use crate::plan::Plan;"), ["plan"]);
    assert_eq!(named_modules("use crate::{io, recipe::ImageSpec, self};"), ["io", "recipe"]);
    assert_eq!(named_modules("    let x = crate::shell::quote(&a) + crate::clock::now();"), ["shell", "clock"]);
    assert!(named_modules("no import here").is_empty());
}
