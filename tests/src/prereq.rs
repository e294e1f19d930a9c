//! The gate in front of every end-to-end test.
//!
//! With `MOAT_E2E=1` (CI always sets it) a missing prerequisite FAILS the test, naming what is
//! missing. Without it the test prints `skipped: <why>` and passes, so `cargo test` on a
//! developer machine without containerd or root still works.

use std::path::Path;

use crate::paths;

/// True when end-to-end tests must run (`MOAT_E2E=1`).
pub fn required() -> bool {
    std::env::var("MOAT_E2E").map(|v| v == "1").unwrap_or(false)
}

/// What is missing to run the test bed with `handler` ("moat" or "runc"); empty when nothing.
pub fn missing(handler: &str) -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("not running as root".to_string());
    }
    let containerd = paths::containerd_binary();
    if !containerd.is_file() {
        missing.push(format!(
            "no containerd binary at {} (set MOAT_CONTAINERD_BIN)",
            containerd.display()
        ));
    }
    for program in ["ctr", "umoci", "gcc", "runc"] {
        if paths::find_program(program).is_none() {
            missing.push(format!("no `{program}` on PATH (run scripts/install-deps.sh)"));
        }
    }
    match crate::images::static_busybox() {
        Ok(_) => {}
        Err(e) => missing.push(format!("{e:#} (install busybox-static)")),
    }
    if !Path::new("/usr/lib/cni/bridge").is_file() {
        missing.push(
            "no CNI plugins in /usr/lib/cni (install containernetworking-plugins)".to_string(),
        );
    }
    match handler {
        "moat" => match paths::shim_binary() {
            None => missing.push(format!(
                "no moat shim binary: set MOAT_SHIM or build {} (cargo build --release -p moat-shim)",
                paths::MOAT_SHIM_NAME
            )),
            Some(p) if !p.is_file() => missing.push(format!("MOAT_SHIM={} does not exist", p.display())),
            Some(_) => {}
        },
        "runc" => {}
        other => missing.push(format!("unknown runtime handler {other:?}")),
    }
    missing
}

/// Returns true when the test may go on. When something is missing: panics under
/// `MOAT_E2E=1`, else prints `skipped: <why>` and returns false.
pub fn gate(test: &str, handler: &str) -> bool {
    let missing = missing(handler);
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if required() {
        panic!("{test}: MOAT_E2E=1 but a prerequisite is missing: {why}");
    }
    eprintln!("{test}: skipped: {why}");
    false
}
