//! The library's modules form no import circle: reading `src/` as text,
//! every `crate::a::b` and `super::b` outside comments and unit-test
//! modules is an edge
//! from the using module to the used one, and the graph of top-level modules
//! (and of modules one level down) must have no cycle. Text, not `syn`:
//! imports in this code base are written as paths, never through macros.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/run/scenario.rs` → `["run", "scenario"]`; `src/gate/mod.rs` → `["gate"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The paths after `prefix` in `text`, as segments (`crate::gate::quality::X` → `[gate, quality, X]`).
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

fn graph(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    // The longest known module a path names (`gate::quality::X` → `gate::quality`).
    let resolve = |segments: Vec<String>| -> Option<Vec<String>> {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let cut = |m: &[String]| m[..m.len().min(depth)].join("::");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if module.is_empty() || module == ["main"] || module.first().is_some_and(|m| m == "cli") {
            continue; // the binary's side, above the library
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let mut used = Vec::new();
        for p in paths_after(code, "crate::") {
            used.push(p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        // `super::x` in `a/b.rs` (module a::b) names a::x.
        let parent = &module[..module.len() - 1];
        for p in paths_after(code, "super::") {
            let mut full = parent.to_vec();
            full.extend(p.iter().map(|s| s.to_string()));
            used.push(full);
        }
        for target in used.into_iter().filter_map(resolve) {
            let (from, to) = (cut(&module), cut(&target));
            if !from.is_empty() && !to.is_empty() && from != to {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle in the graph, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_no_circle() {
    let edges = graph(1);
    assert!(edges.len() > 10, "the graph was read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import circle: {}", cycle.join(" → "));
    }
}

#[test]
fn modules_one_level_down_import_no_circle() {
    if let Some(cycle) = find_cycle(&graph(2)) {
        panic!("import circle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_check_finds_a_circle_when_there_is_one() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        find_cycle(&edges).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
    edges.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&edges), None);
}

#[test]
fn pure_layers_use_nothing_above_them() {
    let edges = graph(1);
    // Statistics know no requests, tasks or configuration.
    assert_eq!(
        edges.get("stats"),
        None,
        "stats imports {:?}",
        edges.get("stats")
    );
    // Change points are statistics over a series of numbers: nothing but
    // `stats` below them, and nothing of runs, results or reports.
    let changepoint = edges.get("changepoint").cloned().unwrap_or_default();
    assert!(
        changepoint.iter().all(|m| m == "stats"),
        "changepoint imports {changepoint:?}"
    );
    // The configuration schema depends on metric names, never on runners,
    // servers or quality tasks.
    let config = edges.get("config").cloned().unwrap_or_default();
    for above in [
        "run", "server", "quality", "report", "results", "gate", "client",
    ] {
        assert!(
            !config.contains(above),
            "config imports {above}: {config:?}"
        );
    }
    // Reports read results; they never call the code that produces them.
    let report = edges.get("report").cloned().unwrap_or_default();
    for producer in ["run", "loadgen", "server", "harness"] {
        assert!(
            !report.contains(producer),
            "report imports {producer}: {report:?}"
        );
    }
}
