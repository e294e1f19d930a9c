//! The module graph of `spawn/`: the one written in `mod.rs`'s doc is the one the files'
//! `use super::...` lines make, and it has no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn spawn_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/spawn")
}

/// Every module of `spawn/` but `mod` and `tests`, with the source of its file.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let dir = std::fs::read_dir(spawn_dir()).expect("read src/spawn");
    for entry in dir {
        let path = entry.expect("a src/spawn entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && name != "mod" && name != "tests" {
            let src = std::fs::read_to_string(&path).expect("read a module");
            out.insert(name, src);
        }
    }
    out
}

/// The sibling modules named by the top-level `use super::...` items of `src`.
fn uses(src: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut items = Vec::new();
    let mut lines = src.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("use super::") else { continue };
        let mut item = rest.to_owned();
        while !item.ends_with(';') {
            let Some(next) = lines.next() else { break };
            item.push_str(next.trim());
        }
        items.push(item);
    }
    let mut used = BTreeSet::new();
    for item in items {
        // `x::...;`, `x;` or `{x, y::z, ...};`: the first path segment of each.
        let inner = item.trim_end_matches(';').trim_start_matches('{').trim_end_matches('}');
        for part in inner.split(',') {
            let first = part.trim().split("::").next().unwrap_or_default();
            if modules.contains(first) {
                used.insert(first.to_owned());
            }
        }
    }
    used
}

fn real_graph() -> Graph {
    let modules = modules();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules.iter().map(|(name, src)| (name.clone(), uses(src, &names))).collect()
}

/// The ```text block of mod.rs's doc: `a, b -> c, d` per line; rows in the order given.
fn documented_graph() -> (Graph, Vec<Vec<String>>) {
    let src = std::fs::read_to_string(spawn_dir().join("mod.rs")).expect("read mod.rs");
    let names: BTreeSet<String> = modules().keys().cloned().collect();
    let mut graph = Graph::new();
    let mut rows = Vec::new();
    let block = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .skip_while(|l| *l != "```text")
        .skip(1)
        .take_while(|l| *l != "```");
    for line in block {
        let (from, to) = line.split_once("->").expect("a `from -> to` line");
        let targets: BTreeSet<String> = to
            .split(',')
            .map(str::trim)
            .filter(|t| names.contains(*t))
            .map(str::to_owned)
            .collect();
        let row: Vec<String> = from.split(',').map(|m| m.trim().to_owned()).collect();
        for m in &row {
            assert!(graph.insert(m.clone(), targets.clone()).is_none(), "{m} listed twice");
        }
        rows.push(row);
    }
    (graph, rows)
}

#[test]
fn the_documented_module_graph_is_the_real_one() {
    let (documented, _) = documented_graph();
    assert_eq!(documented, real_graph());
}

#[test]
fn the_module_graph_has_no_circle() {
    let graph = real_graph();
    // Depth-first search; a module met again while still on the path closes a circle.
    fn visit<'g>(
        m: &'g str,
        graph: &'g Graph,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!path.contains(&m), "circle: {} -> {m}", path.join(" -> "));
        path.push(m);
        for next in &graph[m] {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    // And the doc lists the modules so that every arrow points down.
    let (documented, rows) = documented_graph();
    let row_of = |m: &str| rows.iter().position(|r| r.iter().any(|x| x == m));
    for (from, targets) in &documented {
        for to in targets {
            assert!(row_of(to) > row_of(from), "{from} -> {to} points up the list in mod.rs");
        }
    }
}
