//! The sandbox crate's architecture, checked from its sources: no module imports a sibling
//! that imports it back (directly or around a circle), and the rootfs code does not reach into
//! the user-namespace code (mounts go through `sys`, the user namespace comes in the plan).

#[path = "common/module_graph.rs"]
mod module_graph;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn graph() -> module_graph::Graph {
    module_graph::read_crate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let cycles = module_graph::sibling_cycles(&graph());
    assert!(cycles.is_empty(), "import circles among sibling modules: {cycles:#?}");
}

#[test]
fn rootfs_does_not_import_userns() {
    let arrows = module_graph::arrows(&graph(), "rootfs", "userns");
    assert!(arrows.is_empty(), "rootfs reaches into userns: {arrows:#?}");
}

#[test]
fn the_checker_sees_the_imports_it_judges() {
    // The two checks above pass on an empty graph too: this one fails if the reader stopped
    // seeing imports (every spawn module is reached from the helper's main, and the plan is
    // what policy produces).
    let g = graph();
    let uses = |from: &[&str], to: &[&str]| {
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        g.get(&from).is_some_and(|t| t.contains(&to))
    };
    assert!(
        uses(&["policy"], &["plan"]),
        "policy -> plan not seen: {:#?}",
        g.get(&vec!["policy".to_string()])
    );
    assert!(uses(&["spawn", "launcher"], &["plan"]), "spawn::launcher -> plan not seen");
}

#[test]
fn a_circle_and_an_arrow_are_found_in_a_crate_that_has_them() {
    // Input: a made-up crate where a/x.rs and a/y.rs use each other, and rootfs uses userns.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::create_dir_all(src.join("rootfs")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a; mod rootfs; mod userns;").expect("write");
    std::fs::write(src.join("a/mod.rs"), "mod x; mod y; pub struct Shared;").expect("write");
    std::fs::write(src.join("a/x.rs"), "use super::{y::Y, Shared};\npub struct X;").expect("write");
    std::fs::write(src.join("a/y.rs"), "// use crate::userns;\npub struct Y(crate::a::x::X);\n#[cfg(test)]\nmod tests { use crate::userns; }")
        .expect("write");
    std::fs::write(src.join("rootfs/mod.rs"), "use crate::{userns::idmap::attach};")
        .expect("write");
    std::fs::write(src.join("userns.rs"), "pub mod idmap {}").expect("write");
    let g = module_graph::read_crate(src);
    assert_eq!(
        module_graph::sibling_cycles(&g),
        vec![vec!["a::x".to_string(), "a::y".to_string()]]
    );
    assert_eq!(module_graph::arrows(&g, "rootfs", "userns"), vec!["rootfs -> userns".to_string()]);
    assert_eq!(
        module_graph::arrows(&g, "a", "userns"),
        Vec::<String>::new(),
        "a comment or a unit test is no import"
    );
}

#[test]
fn the_spawn_graph_written_in_its_module_doc_is_the_real_one() {
    // `spawn/mod.rs` documents the process model as `a, b -> c, d` lines (youki style: each
    // process role a file), every arrow pointing down the list: that text must stay true.
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spawn/mod.rs"))
            .expect("read spawn/mod.rs");
    let g = graph();
    let siblings: BTreeSet<String> =
        g.keys().filter(|m| m.len() == 2 && m[0] == "spawn").map(|m| m[1].clone()).collect();
    let mut documented = BTreeMap::new();
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
            .filter(|t| siblings.contains(*t))
            .map(str::to_owned)
            .collect();
        let row: Vec<String> = from.split(',').map(|m| m.trim().to_owned()).collect();
        for m in &row {
            assert!(documented.insert(m.clone(), targets.clone()).is_none(), "{m} listed twice");
        }
        rows.push(row);
    }
    let real: BTreeMap<String, BTreeSet<String>> = siblings
        .iter()
        .map(|m| {
            let uses = g[&vec!["spawn".to_string(), m.clone()]]
                .iter()
                .filter(|t| t.len() >= 2 && t[0] == "spawn" && &t[1] != m)
                .map(|t| t[1].clone())
                .collect();
            (m.clone(), uses)
        })
        .collect();
    assert_eq!(documented, real, "spawn/mod.rs's graph (left) differs from the imports (right)");
    let row_of = |m: &str| rows.iter().position(|r| r.iter().any(|x| x == m));
    for (from, targets) in &documented {
        for to in targets {
            assert!(row_of(to) > row_of(from), "{from} -> {to} points up the list in spawn/mod.rs");
        }
    }
}
