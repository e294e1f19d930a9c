//! The shim crate's architecture, checked from its sources: no module imports a sibling that
//! imports it back (directly or around a circle). The reader is the sandbox's (one copy).

#[path = "../../sandbox/tests/common/module_graph.rs"]
mod module_graph;

use std::path::Path;

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let graph = module_graph::read_crate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The reader saw the imports it judges (an empty graph would pass the check below).
    let service = vec!["task".to_string(), "service".to_string()];
    assert!(
        graph
            .get(&service)
            .is_some_and(|uses| uses.contains(&vec!["task".to_string(), "error".to_string()])),
        "task::service -> task::error not seen: {:#?}",
        graph.get(&service)
    );
    let cycles = module_graph::sibling_cycles(&graph);
    assert!(cycles.is_empty(), "import circles among sibling modules: {cycles:#?}");
}

#[test]
fn the_task_service_does_not_reach_into_the_shim_commands() {
    // `bootstrap/` is `start`, `delete` and `-info`; the serving shim's task service must not
    // depend on them (it did: the runtime options lived in `bootstrap/options.rs`).
    let graph = module_graph::read_crate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let arrows = module_graph::arrows(&graph, "task", "bootstrap");
    assert!(arrows.is_empty(), "task reaches into bootstrap: {arrows:#?}");
}
