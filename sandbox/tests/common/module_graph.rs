//! The import graph of a crate's modules, read from its sources, for the architecture tests.
//!
//! A node is a module file (`spawn::container`, `rootfs`); an edge `a -> b` means a path in
//! `a`'s code (a `use` or an inline path, comments and strings left out) names something in
//! `b`. `crate::…`, `super::…` and `self::…` paths are resolved to the deepest module file
//! they reach. Hand-written on purpose: it is a few dozen lines, and a full parser (syn) would
//! be the crate's only reason to build proc-macro tooling in its tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["spawn", "container"]`, `[]` for the crate root) → the modules it uses.
pub type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// Reads every `.rs` file under `src` and returns the crate's module import graph.
pub fn read_crate(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(src, file);
        if module.last().is_some_and(|m| m == "tests") {
            continue; // a unit-test module in its own file (`#[cfg(test)] mod tests;`)
        }
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let code = strip_comments_and_strings(&text);
        let edges = graph.entry(module.clone()).or_default();
        for path in paths_in(&code) {
            if let Some(target) = resolve(&module, &path, &modules) {
                if target != module {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// Cycles among the children of one parent: `a -> b` counts for siblings `a` and `b` when a
/// module inside `a` uses a module inside `b`. (A child using its parent's items is not a
/// cycle: that is how Rust modules share a parent's types.) Each cycle is returned as the
/// sibling modules on it, in order.
pub fn sibling_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut by_parent: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, tos) in graph {
        for to in tos {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                let parent = from[..common].to_vec();
                by_parent
                    .entry(parent)
                    .or_default()
                    .entry(from[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, edges) in by_parent {
        for cycle in find_cycles(&edges) {
            let named = cycle
                .iter()
                .map(|m| {
                    parent.iter().chain(std::iter::once(m)).cloned().collect::<Vec<_>>().join("::")
                })
                .collect();
            cycles.push(named);
        }
    }
    cycles
}

/// Edges from a module under `from` (a top-level module name) into one under `to`.
pub fn arrows(graph: &Graph, from: &str, to: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (src, dsts) in graph {
        if src.first().map(String::as_str) != Some(from) {
            continue;
        }
        for dst in dsts.iter().filter(|d| d.first().map(String::as_str) == Some(to)) {
            found.push(format!("{} -> {}", src.join("::"), dst.join("::")));
        }
    }
    found
}

fn find_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // One cycle per strongly connected component of more than one node is enough to report.
    let nodes: Vec<&String> = edges.keys().collect();
    let mut cycles = Vec::new();
    let mut seen_in_cycle = BTreeSet::new();
    for start in nodes {
        if seen_in_cycle.contains(start) {
            continue;
        }
        if let Some(cycle) = path_back(edges, start) {
            seen_in_cycle.extend(cycle.iter().cloned());
            cycles.push(cycle);
        }
    }
    cycles
}

/// A path `start -> … -> start`, breadth first, if there is one.
fn path_back(edges: &BTreeMap<String, BTreeSet<String>>, start: &String) -> Option<Vec<String>> {
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![node.clone()];
                let mut at = node.clone();
                while let Some(p) = previous.get(&at) {
                    cycle.push(p.clone());
                    at = p.clone();
                }
                cycle.reverse();
                return Some(cycle);
            }
            if !previous.contains_key(next) && next != start {
                previous.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn is_mod_file(file: &Path) -> bool {
    matches!(file.file_name().and_then(|n| n.to_str()), Some("mod.rs" | "lib.rs" | "main.rs"))
}

/// `spawn/container.rs` → `[spawn, container]`; `spawn/mod.rs` → `[spawn]`; `lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> =
        rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if is_mod_file(file) {
        parts.pop();
    }
    parts
}

/// The module a path lands in: the longest prefix of the absolute path that is a module file.
fn resolve(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    // The module `self` is, seen from this file: a `foo.rs` or `foo/mod.rs` is `foo` itself.
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => module.to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        absolute.pop();
        while rest.first().map(String::as_str) == Some("super") {
            absolute.pop();
            rest = &rest[1..];
        }
    }
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len()).rev().map(|n| absolute[..n].to_vec()).find(|m| modules.contains(m))
}

/// Every `crate::…`, `super::…` and `self::…` path in `code`, `use` groups expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let tokens = without_test_items(tokenize(code));
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = matches!(tokens[i].as_str(), "crate" | "super" | "self")
            && tokens.get(i + 1).map(String::as_str) == Some("::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts {
            let (mut found, next) = parse_tree(&tokens, i);
            paths.append(&mut found);
            i = next;
        } else {
            i += 1;
        }
    }
    paths
}

/// The tokens without the items under `#[cfg(test)]` (unit tests may use any module: the
/// architecture is what the crate itself is built from).
fn without_test_items(tokens: Vec<String>) -> Vec<String> {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let is_cfg_test = tokens.len() - i >= CFG_TEST.len()
            && tokens[i..i + CFG_TEST.len()].iter().zip(CFG_TEST).all(|(t, c)| t == c);
        if !is_cfg_test {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // Skip the item: up to its `;` at depth 0, or to the `}` closing its first `{`.
        i += CFG_TEST.len();
        let mut depth = 0usize;
        while i < tokens.len() {
            match tokens[i].as_str() {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                ";" if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` starting at `tokens[i]`; returns the leaf paths and the index
/// after the tree.
fn parse_tree(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                let mut out = Vec::new();
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        Some("}") => return (out, i + 1),
                        Some(",") => i += 1,
                        None => return (out, i),
                        _ => {
                            let (inner, next) = parse_tree(tokens, i);
                            for p in inner {
                                out.push(prefix.iter().cloned().chain(p).collect());
                            }
                            if next == i {
                                i += 1;
                            } else {
                                i = next;
                            }
                        }
                    }
                }
            }
            Some(t) if is_ident(t) => {
                prefix.push(t.to_string());
                i += 1;
                if tokens.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                } else {
                    return (vec![prefix], i);
                }
            }
            _ => return (if prefix.is_empty() { vec![] } else { vec![prefix] }, i),
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// Code without comments, string and char literals (their text could look like paths).
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && is_raw_string(&chars, i) {
            i += 1;
            let mut hashes = 0;
            while chars.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_raw_string(chars: &[char], i: usize) -> bool {
    let before_ok = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    before_ok && chars.get(j) == Some(&'"')
}

/// `'a'`, `'\n'`, `'\''` — not a lifetime such as `'a` or `'static`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!((chars.get(i + 1), chars.get(i + 2)), (Some('\\'), _) | (Some(_), Some('\'')))
}
