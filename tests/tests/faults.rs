//! Faults (issue 14): whatever dies at whatever step, the pod is either running and reachable
//! or fully removable, and RemovePodSandbox leaves no process, mount, cgroup, ID range, shim
//! socket file or containerd fd behind; errors name the cause.
//!
//! Shim deaths at named points come from the debug shim's fault hook (`MOAT_FAULT=<point>`,
//! `shim/src/fault.rs`), on a private test bed whose containerd (and so every shim it starts)
//! carries that variable. Runs under moat only (the points are moat's).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use moat_e2e::TestBed;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

moat_only_tests!(a_killed_shims_socket_is_removed_with_its_pod,);

/// Where a shim serving `id` for the containerd at `socket` listens (containerd-shim's
/// `socket_address`: /run/containerd/s/<sha256 of "<address>/<namespace>/<id>">).
fn shim_socket(bed: &TestBed, id: &str) -> PathBuf {
    let key = bed.layout().socket.join("k8s.io").join(id);
    let hash: String = Sha256::digest(key.to_string_lossy().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    PathBuf::from("/run/containerd/s").join(hash)
}

/// Waits until `pid` is gone (or a zombie: the shim's parent is gone, init reaps it).
fn wait_dead(pid: i32, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while moat_e2e::host::state(pid).is_some_and(|s| s != 'Z') {
        if Instant::now() > deadline {
            bail!("{what} (pid {pid}) is still alive 10 s after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The leak already seen: a SIGKILLed shim's ttrpc socket stayed in containerd's shim socket
/// directory after its pod was removed; and the socket was 0755 where runc's shim makes 0600.
fn a_killed_shims_socket_is_removed_with_its_pod(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("killed-shim", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let socket = shim_socket(bed, &pod.id);
    let mode = std::fs::metadata(&socket)
        .with_context(|| format!("the pod's shim socket {}", socket.display()))?
        .permissions()
        .mode();
    let footprint = pod.footprint()?;
    let shims = pod.shims();
    ensure!(shims.len() == 1, "expected one shim for pod {}: {shims:?}", pod.id);
    kill(Pid::from_raw(shims[0].pid), Signal::SIGKILL).context("SIGKILL to the shim")?;
    wait_dead(shims[0].pid, "the pod's shim")?;
    // containerd sees the shim gone and reports the containers exited.
    bed.cri().wait_exited(&c.id, Duration::from_secs(20))?;
    pod.teardown()?;
    let left = footprint.wait_gone(Duration::from_secs(10));
    ensure!(left.is_empty(), "after RemovePodSandbox of a pod whose shim was killed: {left:?}");
    ensure!(
        !socket.exists(),
        "the killed shim's socket {} is still there after RemovePodSandbox",
        socket.display()
    );
    ensure!(
        mode & 0o077 == 0,
        "the shim socket {} is mode {:o}: others may read it (runc's shim makes 0600)",
        socket.display(),
        mode & 0o7777
    );
    Ok(())
}
