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

moat_only_tests!(
    a_killed_shims_socket_is_removed_with_its_pod,
    shim_killed_after_the_id_range_is_taken,
    shim_killed_after_the_cgroup_is_made,
    shim_killed_after_the_helper_is_spawned,
    shim_killed_after_the_process_is_started,
    shim_killed_during_an_exec,
    shim_killed_during_delete,
);

/// A private test bed whose shims die at `point` (see `shim/src/fault.rs`).
fn fault_bed(point: &str) -> Result<Option<TestBed>> {
    let test = format!("faults::{point}::moat");
    TestBed::private_with_shim_env(&test, "moat", point, &[("MOAT_FAULT", point)])
}

/// The containers whose shim died at `point`, from the hook's log line in containerd's log.
fn killed_at(bed: &TestBed, point: &str) -> Vec<String> {
    let needle = format!("MOAT_FAULT={point}: container ");
    let log = std::fs::read_to_string(&bed.layout().log).unwrap_or_default();
    let mut ids: Vec<String> = log
        .lines()
        .filter_map(|l| l.split(&needle).nth(1))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_string)
        .collect();
    ids.dedup();
    ids
}

/// containerd's pid on `bed`.
fn containerd_pid(bed: &TestBed) -> Result<i32> {
    let path = bed.layout().dir.join("containerd.pid");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    text.trim().parse().with_context(|| format!("{} holds {text:?}", path.display()))
}

/// Everything `ids` (pods and containers of a private bed) may have left on the host: any
/// shim of the bed at all, mounts and cgroup dirs naming them, processes in the bed's cgroup
/// tree, their shim sockets, ID ranges still allocated in the bed's pool.
fn leftovers(bed: &TestBed, ids: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for shim in moat_e2e::host::shims(&bed.layout().socket) {
        left.push(format!("shim process {} (-id {})", shim.pid, shim.id));
    }
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    left.extend(
        moat_e2e::host::mounts_mentioning(&names).into_iter().map(|m| format!("mount {m}")),
    );
    left.extend(
        moat_e2e::host::cgroup_dirs_named(&names)
            .into_iter()
            .map(|d| format!("cgroup dir {}", d.display())),
    );
    let tree = moat_e2e::host::cgroup_tree(&bed.layout().cgroup_parent);
    for pid in moat_e2e::host::cgroup_procs(&tree) {
        left.push(format!(
            "process {pid} in the bed's cgroups ({:?})",
            moat_e2e::host::cmdline(pid)
        ));
    }
    for id in ids {
        let socket = shim_socket(bed, id);
        if socket.exists() {
            left.push(format!("shim socket {} (of {id})", socket.display()));
        }
    }
    let pool = bed.layout().dir.join("idranges");
    if let Ok(entries) = std::fs::read_dir(&pool) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "range") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                left.push(format!("ID range {}: {}", e.path().display(), text.replace('\n', " ")));
            }
        }
    }
    left
}

/// Waits (10 s at most) until nothing of `ids` is left and containerd holds no more fds than
/// `fds_before`; fails naming what is left.
fn assert_nothing_left(bed: &TestBed, ids: &[String], fds_before: usize, what: &str) -> Result<()> {
    let pid = containerd_pid(bed)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = leftovers(bed, ids);
        let fds = moat_e2e::host::fd_count(pid).unwrap_or(usize::MAX);
        if fds > fds_before {
            left.push(format!("containerd holds {fds} fds, {fds_before} before"));
        }
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: left behind: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// containerd's fd count once a pod cycle ran (its CRI and shim plumbing are warm).
fn warm_fd_count(bed: &TestBed) -> Result<usize> {
    let pid = containerd_pid(bed)?;
    // Settles: fds of the image imports and the first connections close.
    std::thread::sleep(Duration::from_millis(500));
    moat_e2e::host::fd_count(pid).context("containerd's fd count")
}

/// The pods the CRI lists, stopped and removed as a kubelet would (retrying once).
fn remove_all_pods(bed: &TestBed) -> Result<()> {
    let cri = bed.cri();
    for pod in cri.pods()? {
        if cri.stopp(&pod).and_then(|()| cri.rmp(&pod)).is_err() {
            std::thread::sleep(Duration::from_millis(500));
            cri.stopp(&pod).with_context(|| format!("StopPodSandbox {pod} (again)"))?;
            cri.rmp(&pod).with_context(|| format!("RemovePodSandbox {pod} (again)"))?;
        }
    }
    Ok(())
}

/// The shim dies while containerd runs the pod sandbox (RunPodSandbox): the call fails with
/// an error that says the shim is gone, and whatever the pod got is removed with it.
fn sandbox_fault(point: &str) -> Result<()> {
    let Some(bed) = fault_bed(point)? else { return Ok(()) };
    let result = (|| -> Result<()> {
        let fds_before = warm_fd_count(&bed)?;
        let err = match bed.run_pod(point, "moat") {
            Ok(pod) => bail!("RunPodSandbox succeeded though the shim died at {point}: {}", pod.id),
            Err(e) => format!("{e:#}"),
        };
        let ids = killed_at(&bed, point);
        ensure!(!ids.is_empty(), "the shim never reached {point} (no MOAT_FAULT line in the log)");
        let first = err.lines().next().unwrap_or_default().to_string();
        ensure!(
            ["ttrpc: closed", "shim", "connection", "EOF"].iter().any(|w| first.contains(w)),
            "RunPodSandbox's error does not say the runtime died: {first}"
        );
        remove_all_pods(&bed)?;
        assert_nothing_left(&bed, &ids, fds_before, &format!("shim killed {point}"))
    })();
    result.map_err(|e| bed.with_log(e))
}

fn shim_killed_after_the_id_range_is_taken(_: &TestBed, _: &str) -> Result<()> {
    sandbox_fault("after-id-range")
}

fn shim_killed_after_the_cgroup_is_made(_: &TestBed, _: &str) -> Result<()> {
    sandbox_fault("after-cgroup")
}

fn shim_killed_after_the_helper_is_spawned(_: &TestBed, _: &str) -> Result<()> {
    sandbox_fault("after-helper-spawned")
}

fn shim_killed_after_the_process_is_started(_: &TestBed, _: &str) -> Result<()> {
    sandbox_fault("after-start")
}

/// The shim dies in the middle of an exec into a running pod: the exec fails naming the
/// runtime, and the pod (its processes died with the shim) is removable and leaves nothing.
fn shim_killed_during_an_exec(_: &TestBed, _: &str) -> Result<()> {
    let point = "during-exec";
    let Some(bed) = fault_bed(point)? else { return Ok(()) };
    let result = (|| -> Result<()> {
        let fds_before = warm_fd_count(&bed)?;
        let pod = bed.run_pod(point, "moat")?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let ids = vec![pod.id.clone(), c.id.clone()];
        let exec = pod.exec(&c, &["echo", "hi"]);
        ensure!(
            killed_at(&bed, point) == vec![c.id.clone()],
            "the shim did not die in the exec into {}: {:?}",
            c.id,
            killed_at(&bed, point)
        );
        match exec {
            Ok(out) if out.exit_code == 0 => bail!("the exec succeeded though its shim died"),
            Ok(out) => eprintln!("exec into the dead shim's container: {out:?}"),
            Err(e) => eprintln!("exec into the dead shim's container: {e:#}"),
        }
        bed.cri().wait_exited(&c.id, Duration::from_secs(20))?;
        pod.teardown()?;
        assert_nothing_left(&bed, &ids, fds_before, "shim killed during an exec")
    })();
    result.map_err(|e| bed.with_log(e))
}

/// The shim dies in the middle of a container's Delete (its state forgotten, its cgroup not
/// yet removed): kubelet's StopPodSandbox/RemovePodSandbox (retried) leave nothing.
fn shim_killed_during_delete(_: &TestBed, _: &str) -> Result<()> {
    let point = "during-delete";
    let Some(bed) = fault_bed(point)? else { return Ok(()) };
    let result = (|| -> Result<()> {
        let fds_before = warm_fd_count(&bed)?;
        let pod = bed.run_pod(point, "moat")?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let out = pod.exec(&c, &["echo", "reachable"])?;
        ensure!(out.stdout == "reachable\n", "the pod is not reachable: {out:?}");
        let ids = vec![pod.id.clone(), c.id.clone()];
        let _ = bed.cri().stop(&c.id, 2);
        let _ = bed.cri().rm(&c.id);
        ensure!(!killed_at(&bed, point).is_empty(), "the shim never reached {point}");
        remove_all_pods(&bed)?;
        drop(pod);
        assert_nothing_left(&bed, &ids, fds_before, "shim killed during a delete")
    })();
    result.map_err(|e| bed.with_log(e))
}

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
