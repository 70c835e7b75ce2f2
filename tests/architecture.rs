//! The shape of `src/`, held by tests so that it cannot drift back: no
//! import cycle between modules, no file too long to read without saying
//! why, one place that asks the engine for a save stream, and one tar
//! implementation in the program (the tar crate only builds test
//! fixtures). Reads the source tree; runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines of code (not blank, not comments, unit tests aside) past which a
/// file must say in its `//!` why it is long.
const LONG: usize = 600;
/// What a long file's `//!` says.
const WHY_LONG: &str = "Long because";

struct Module {
    path: PathBuf,
    /// The file's code without its unit tests and comments.
    code: String,
    doc: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the crate by its path (`""` for the root, `saved::walk`).
fn modules() -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src()).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
                parts.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            let doc = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(
                parts.join("::"),
                Module {
                    code: without_tests_and_comments(&text),
                    doc,
                    path,
                },
            );
        }
    }
    out
}

/// The file up to its unit tests (`#[cfg(test)] mod tests`, which the
/// convention here puts last), without `//` comments.
fn without_tests_and_comments(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                let next = next.trim();
                if next == "mod tests {" || next == "pub mod tests {" {
                    break;
                }
            }
        }
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a module names after `crate::` or `super::`, resolved to
/// modules of the crate (the longest that exists).
fn dependencies(name: &str, module: &Module, all: &BTreeMap<String, Module>) -> BTreeSet<String> {
    let resolve = |segments: Vec<&str>| -> Option<String> {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|m| all.contains_key(m))
    };
    let parent: Vec<&str> = match name.rsplit_once("::") {
        Some((p, _)) => p.split("::").collect(),
        None => Vec::new(),
    };
    let mut out = BTreeSet::new();
    let code = &module.code;
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            if start > 0 && code[..start].ends_with(|c: char| is_ident(c) || c == ':') {
                continue;
            }
            let rest = &code[from..];
            let mut items: Vec<String> = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: each item's leading path.
                let mut depth = 0;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => return true,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        false
                    })
                    .map_or(group.len(), |(i, _)| i);
                items.extend(group[..end].split(',').map(|i| i.trim().to_owned()));
            } else {
                let end = rest
                    .find(|c: char| !(is_ident(c) || c == ':'))
                    .unwrap_or(rest.len());
                items.push(rest[..end].to_owned());
            }
            for item in items {
                let mut segments = base.clone();
                segments.extend(
                    item.split("::")
                        .take_while(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
                        .filter(|s| !s.is_empty() && *s != "self"),
                );
                if let Some(target) = resolve(segments) {
                    if target != name {
                        out.insert(target);
                    }
                }
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one, as the path round it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = path.iter().position(|p| p == next).unwrap();
                    let mut round = path[at..].to_vec();
                    round.push(next.clone());
                    return Some(round);
                }
                Mark::New => {
                    if let Some(round) = visit(next, graph, marks, path) {
                        return Some(round);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(round) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(round);
            }
        }
    }
    None
}

fn graphs() -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let all = modules();
    let files: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(name, m)| (name.clone(), dependencies(name, m, &all)))
        .collect();
    let top_of = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &files {
        for to in targets {
            let (a, b) = (top_of(from), top_of(to));
            if a != b && !a.is_empty() && !b.is_empty() {
                top.entry(a).or_default().insert(b);
            }
        }
    }
    (files, top)
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let (files, top) = graphs();
    assert!(
        files.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the dependency scan found too little to mean anything: {files:#?}"
    );
    if let Some(round) = cycle(&files) {
        panic!("an import cycle between files: {}", round.join(" → "));
    }
    if let Some(round) = cycle(&top) {
        panic!(
            "an import cycle between top-level modules: {}",
            round.join(" → ")
        );
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    let round = cycle(&graph).expect("a → b → c → a");
    assert_eq!(round.first(), round.last());
    assert_eq!(round.len(), 4);
    let code = "use crate::{b::x, c};\nfn f() { super::d::g(); crate::a::h(); }\n";
    let all: BTreeMap<String, Module> = ["a", "a::e", "b", "c", "d"]
        .iter()
        .map(|n| {
            let m = Module {
                path: PathBuf::from(n),
                code: code.to_owned(),
                doc: String::new(),
            };
            (n.to_string(), m)
        })
        .collect();
    let found = dependencies("a::e", &all["a::e"], &all);
    assert_eq!(
        found,
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        "super::d from a::e is a::d, which does not exist: a"
    );
}

#[test]
fn no_file_is_long_without_saying_why() {
    let mut long = Vec::new();
    for module in modules().values() {
        let lines = module.code.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > LONG && !module.doc.contains(WHY_LONG) {
            long.push(format!("{} ({lines} lines)", module.path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {LONG} lines of code, and its //! does not say \"{WHY_LONG} …\": {long:?}"
    );
}

#[test]
fn one_place_asks_the_engine_for_a_save_stream() {
    let callers: Vec<String> = modules()
        .values()
        .filter(|m| m.code.contains(".export_image("))
        .map(|m| m.path.display().to_string())
        .collect();
    assert_eq!(
        callers.len(),
        1,
        "the save endpoint is asked for in {callers:?}"
    );
    assert!(callers[0].ends_with("saved/mod.rs"), "{callers:?}");
}

#[test]
fn the_program_has_one_tar_implementation() {
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("\n[")
        .find(|section| section.starts_with("dependencies]"))
        .expect("a [dependencies] section");
    assert!(
        !dependencies.lines().any(|l| l.starts_with("tar ")),
        "the tar crate is for test fixtures only: src/tar/ reads and writes tar"
    );
    // Header fields are read in one place.
    let readers: Vec<String> = modules()
        .values()
        .filter(|m| m.code.contains("[148..156]"))
        .map(|m| m.path.display().to_string())
        .collect();
    assert_eq!(readers.len(), 2, "{readers:?}");
    assert!(
        readers
            .iter()
            .all(|r| r.ends_with("tar/header.rs") || r.ends_with("tar/blocks.rs")),
        "the checksum field is read or written outside tar/: {readers:?}"
    );
}
