//! The module structure (docs/architecture.md): no file of `src/` imports one that imports it
//! back, at any depth (between top-level modules and between the files of one folder), and
//! the layers below the commands never reach up into them. Read from the source as text: every
//! `crate::…`, `super::…` and `self::…` path, and a `mod.rs`'s paths through its own children,
//! outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The command layer: the top-level modules that run commands. Every other top-level module of
/// `src/` is below them and must never import one of them (docs/architecture.md names this
/// declaration; a new module is a lower one unless it is added here).
const COMMAND_LAYER: [&str; 5] = ["cli", "build", "failure", "vmtest", "upload"];

/// A file's module path (`cli::preflight`, `element` for `element/mod.rs`) -> the module paths
/// its non-test code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file of `src/` (but `main.rs` and `lib.rs`) as (module path, text).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if relative == "main.rs" || relative == "lib.rs" {
            continue;
        }
        files.push((module_path(&relative), fs::read_to_string(path).unwrap()));
    }
    files
}

/// `cli/preflight.rs` -> `cli::preflight`, `cli/mod.rs` -> `cli`.
fn module_path(relative: &str) -> String {
    let trimmed = relative.trim_end_matches(".rs").trim_end_matches("/mod");
    trimmed.replace('/', "::")
}

/// The file-level import graph of `files`.
fn file_graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut graph = Graph::new();
    for (module, text) in files {
        let deps = graph.entry(module.clone()).or_default();
        for line in statements(text) {
            for path in named_paths(&line, module, &modules) {
                if let Some(target) = resolve(&path, &modules) {
                    if target != *module {
                        deps.insert(target);
                    }
                }
            }
        }
    }
    graph
}

/// The lines of `text` before its test module, without comments, a `use` that spans lines
/// joined into one.
fn statements(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut open_use = false;
    for line in text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        match lines.last_mut() {
            Some(last) if open_use => last.push_str(trimmed),
            _ => lines.push(trimmed.to_owned()),
        }
        let starts_use = ["use ", "pub use ", "pub(crate) use "].iter().any(|p| trimmed.starts_with(p));
        open_use = (open_use || starts_use) && !trimmed.contains(';');
    }
    lines
}

/// The top-level graph: each file's edges folded onto the first segment of both ends.
fn top_level_graph(files: &[(String, String)]) -> Graph {
    let top = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    let mut graph = Graph::new();
    for (from, deps) in file_graph(files) {
        let entry = graph.entry(top(&from)).or_default();
        entry.extend(deps.iter().map(|dep| top(dep)).filter(|dep| *dep != top(&from)));
    }
    graph
}

/// The absolute paths (`a::b::c`) a line names from inside `module`: `crate::…` (also grouped,
/// `crate::{a, b::c}`), `super::…` and `self::…` made absolute, and in a folder's `mod.rs` a path
/// that starts with one of its child modules (`build::run`, `pub use phase::Phase`).
fn named_paths(line: &str, module: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = line;
    while let Some(start) = next_path_start(rest) {
        let text = &rest[start..];
        let is_word_start = start == 0 || !is_ident_char(rest[..start].chars().last().unwrap_or(' '));
        let consumed = path_len(text);
        if is_word_start {
            let path = &text[..consumed];
            paths.extend(expand(path, module, modules));
        }
        rest = &text[consumed.max(1)..];
    }
    paths
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Where the next identifier followed by `::` starts.
fn next_path_start(text: &str) -> Option<usize> {
    let index = text.find("::")?;
    let start = text[..index].rfind(|c: char| !is_ident_char(c)).map_or(0, |i| i + 1);
    Some(start)
}

/// The length of the path at the start of `text`: identifiers, `::` and one `{…}` group.
fn path_len(text: &str) -> usize {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return index + 1;
                }
            }
            c if depth == 0 && !(is_ident_char(c) || c == ':') => return index,
            _ => {}
        }
    }
    text.len()
}

/// A path as written -> the absolute paths it names (a group gives one per item).
fn expand(path: &str, module: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let (head, group) = match path.split_once('{') {
        Some((head, group)) => (head.trim_end_matches("::"), Some(group.trim_end_matches('}'))),
        None => (path, None),
    };
    let Some(base) = absolute(head, module, modules) else { return Vec::new() };
    let items: Vec<&str> = group.map(split_group).unwrap_or_default();
    let items: Vec<&str> = items.into_iter().map(str::trim).filter(|item| !item.is_empty()).collect();
    if items.is_empty() {
        return vec![base].into_iter().filter(|path| !path.is_empty()).collect();
    }
    items
        .into_iter()
        .map(|item| if item == "self" { base.clone() } else { join(&base, item.trim_end_matches("::*")) })
        .filter(|path| !path.is_empty())
        .collect()
}

/// Top-level items of a `{…}` group (commas inside nested groups do not split).
fn split_group(items: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, c) in items.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&items[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&items[start..]);
    parts
}

fn join(base: &str, item: &str) -> String {
    let item = item.split_once('{').map_or(item, |(head, _)| head).trim_end_matches("::");
    match (base.is_empty(), item.is_empty()) {
        (true, _) => item.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}::{item}"),
    }
}

/// `crate::a` -> `a`; `super::a` from `x::y` -> `x::a`; `self::a` from a folder `x` -> `x::a`;
/// a child's name from its folder's `mod.rs`. Anything else (std, other crates, locals): none.
fn absolute(head: &str, module: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = head.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = module.split("::").collect();
    let first = *segments.first()?;
    let is_folder = modules.iter().any(|m| m.starts_with(&format!("{module}::")));
    match first {
        "crate" => base.clear(),
        "self" if is_folder => {}
        "self" => return None,
        "super" => {
            // A folder's mod.rs is the folder itself: its `super` is the folder's parent.
            while segments.first() == Some(&"super") {
                base.pop()?;
                segments.remove(0);
            }
            segments.insert(0, "self");
        }
        child if is_folder && modules.contains(&format!("{module}::{child}")) => segments.insert(0, "self"),
        _ => return None,
    }
    segments.remove(0);
    base.extend(segments);
    Some(base.join("::"))
}

/// The longest known module a path names (`cli::build::BuildArgs` -> `cli::build`).
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|candidate| modules.contains(candidate))
}

/// A path `from` -> ... -> `from` through the graph, if there is one.
fn circle_through(graph: &Graph, from: &str) -> Option<Vec<String>> {
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

fn circles(graph: &Graph) -> Vec<String> {
    graph.keys().filter_map(|module| circle_through(graph, module)).map(|circle| circle.join(" -> ")).collect()
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let graph = file_graph(&sources());
    assert!(graph["build"].contains("stage"), "the reader finds imports: {graph:?}");
    assert!(graph["cli::build"].contains("cli::preflight"), "the reader finds `super::` paths: {graph:?}");
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let graph = top_level_graph(&sources());
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_layers_below_the_commands_never_reach_up() {
    let graph = top_level_graph(&sources());
    let lower: Vec<&String> = graph.keys().filter(|module| !COMMAND_LAYER.contains(&module.as_str())).collect();
    assert!(lower.len() > 20, "every other module is a lower one: {lower:?}");
    for module in lower {
        for upper in COMMAND_LAYER {
            assert!(!graph[module].contains(upper), "{module} imports {upper}");
        }
    }
    for upper in ["plan", "stage", "cache", "build"] {
        assert!(!graph["element"].contains(upper), "element imports {upper}");
        assert!(!graph["recipe"].contains(upper), "recipe imports {upper}");
    }
}

#[test]
fn docs_name_the_command_layer_declaration() {
    let docs = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    assert!(docs.contains("`COMMAND_LAYER`"), "docs/architecture.md names tests/layers.rs's COMMAND_LAYER");
    for module in COMMAND_LAYER {
        assert!(docs.contains(&format!("`{module}")), "docs/architecture.md names the command module {module}");
    }
}

#[test]
fn the_reader_sees_plain_grouped_relative_and_child_paths() {
    let modules: BTreeSet<String> =
        ["plan", "io", "recipe", "cli", "cli::build", "cli::preflight", "cli::args"].map(String::from).into();
    let named = |line: &str, module: &str| named_paths(line, module, &modules);
    assert_eq!(named("use crate::plan::Plan;", "io"), ["plan::Plan"]);
    assert_eq!(named("use crate::{io, recipe::ImageSpec, self};", "plan"), ["io", "recipe::ImageSpec"]);
    assert_eq!(named("use super::preflight::{self, bad};", "cli::build"), ["cli::preflight", "cli::preflight::bad"]);
    assert_eq!(named("    super::preflight::build(&args)?;", "cli::build"), ["cli::preflight::build"]);
    assert_eq!(named("Command::Build(args) => build::run(*args),", "cli"), ["cli::build::run"]);
    assert_eq!(named("let x = std::env::args(); serde_json::to_string(&x)", "cli"), Vec::<String>::new());
    assert!(named("no import here", "io").is_empty());
    let joined =
        statements("use crate::cli::{\n    build::BuildArgs,\n    preflight,\n};\n#[cfg(test)]\nuse crate::plan;\n");
    assert_eq!(joined, ["use crate::cli::{build::BuildArgs,preflight,};"]);
    assert_eq!(named(&joined[0], "plan"), ["cli::build::BuildArgs", "cli::preflight"]);
}

#[test]
fn a_circle_inside_a_folder_is_found() {
    let files = [
        ("cli".to_owned(), "pub mod build;\npub mod preflight;\n".to_owned()),
        ("cli::build".to_owned(), "use super::preflight;\nfn f() { preflight::build(); }\n".to_owned()),
        ("cli::preflight".to_owned(), "use crate::cli::build::BuildArgs;\n".to_owned()),
        ("plan".to_owned(), "use crate::io::Thing;\n".to_owned()),
        ("io".to_owned(), "use std::io;\n".to_owned()),
    ];
    let graph = file_graph(&files);
    let found = circles(&graph);
    assert!(found.contains(&"cli::build -> cli::preflight -> cli::build".to_owned()), "{found:?}");
    assert!(circles(&top_level_graph(&files)).is_empty(), "one folder's circle is no top-level one");
}
