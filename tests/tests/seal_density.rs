//! Density (issue 11): what a moat pod pins on the node beyond its own processes.
//!
//! A pod's shim used to keep a sealed memfd copy of its binary to start helpers from
//! (CVE-2019-5736): shared memory the size of the binary per pod, invisible in the shim's RSS.
//! The helper now runs from a read-only overlay view of the installed binary (see the sandbox's
//! `spawn::exe_seal`, attacked in `sandbox/tests/exe_seal.rs` and in
//! `confinement::the_runtime_binary_cannot_be_written_through_proc_exe`).

mod common;

use anyhow::{ensure, Context, Result};
use moat_e2e::TestBed;

moat_only_tests!(a_pods_shim_holds_no_copy_of_its_binary);

/// memfd files `pid` holds open: (fd target, size in bytes).
fn memfds(pid: i32) -> Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let path = entry?.path();
        let Ok(target) = std::fs::read_link(&path) else { continue };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("/memfd:") {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            found.push((target, size));
        }
    }
    Ok(found)
}

fn a_pods_shim_holds_no_copy_of_its_binary(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("density", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    // An exec starts a helper too: it must have found its binary.
    let out = pod.exec(&c, &["echo", "hi"])?;
    ensure!(out.stdout == "hi\n", "exec: {out:?}");
    let shim = pod.shims().first().map(|s| s.pid).context("no shim for the pod")?;
    let binary_size = std::fs::metadata(bed.shim().context("no moat shim binary")?)?.len();
    let held = memfds(shim)?;
    let copies: Vec<_> = held.iter().filter(|(_, size)| *size >= binary_size / 2).collect();
    ensure!(
        copies.is_empty(),
        "the pod's shim (pid {shim}) holds a copy of its {binary_size}-byte binary in memory: \
         {copies:?}"
    );
    pod.teardown()
}
