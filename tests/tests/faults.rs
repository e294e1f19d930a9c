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
use moat_e2e::bed::on_private;
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
    containerd_killed_during_an_exec,
    containerd_killed_during_remove_pod_sandbox,
    the_id_pool_exhausted,
    the_id_pool_state_dir_full,
    the_id_pool_state_dir_read_only,
    a_node_reboot,
);

/// A private test bed whose shims die at `point` (see `shim/src/fault.rs`).
fn fault_bed(point: &str) -> Result<Option<TestBed>> {
    let test = format!("faults::{point}::moat");
    TestBed::private_with_shim_env(&test, "moat", point, &[("MOAT_FAULT", point)])
}

/// The containers whose shim died at `point`, from the hook's log line in containerd's log
/// (containerd copies a shim's log asynchronously: waits up to 5 s for a first line).
fn killed_at(bed: &TestBed, point: &str) -> Vec<String> {
    let needle = format!("MOAT_FAULT={point}: container ");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&bed.layout().log).unwrap_or_default();
        let mut ids: Vec<String> = log
            .lines()
            .filter_map(|l| l.split(&needle).nth(1))
            .filter_map(|rest| rest.split(':').next())
            .map(str::to_string)
            .collect();
        ids.dedup();
        if !ids.is_empty() || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    on_private(fault_bed(point)?, |bed| {
        let fds_before = warm_fd_count(bed)?;
        let err = match bed.run_pod(point, "moat") {
            Ok(pod) => bail!("RunPodSandbox succeeded though the shim died at {point}: {}", pod.id),
            Err(e) => format!("{e:#}"),
        };
        eprintln!("RunPodSandbox with the shim killed {point}: {err}");
        let ids = killed_at(bed, point);
        ensure!(!ids.is_empty(), "the shim never reached {point} (no MOAT_FAULT line in the log)");
        let first = err.lines().next().unwrap_or_default().to_string();
        ensure!(
            ["ttrpc: closed", "shim", "connection", "EOF"].iter().any(|w| first.contains(w)),
            "RunPodSandbox's error does not say the runtime died: {first}"
        );
        remove_all_pods(bed)?;
        assert_nothing_left(bed, &ids, fds_before, &format!("shim killed {point}"))
    })
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
    on_private(fault_bed(point)?, |bed| {
        let fds_before = warm_fd_count(bed)?;
        let pod = bed.run_pod(point, "moat")?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let ids = vec![pod.id.clone(), c.id.clone()];
        let exec = pod.exec(&c, &["echo", "hi"]);
        let killed = killed_at(bed, point);
        ensure!(
            killed == vec![c.id.clone()],
            "the shim did not die in the exec into {}: {killed:?}",
            c.id
        );
        match exec {
            Ok(out) if out.exit_code == 0 => bail!("the exec succeeded though its shim died"),
            Ok(out) => eprintln!("exec into the dead shim's container: {out:?}"),
            Err(e) => eprintln!("exec into the dead shim's container: {e:#}"),
        }
        bed.cri().wait_exited(&c.id, Duration::from_secs(20))?;
        pod.teardown()?;
        assert_nothing_left(bed, &ids, fds_before, "shim killed during an exec")
    })
}

/// The shim dies in the middle of a container's Delete (its state forgotten, its cgroup not
/// yet removed): kubelet's StopPodSandbox/RemovePodSandbox (retried) leave nothing.
fn shim_killed_during_delete(_: &TestBed, _: &str) -> Result<()> {
    let point = "during-delete";
    on_private(fault_bed(point)?, |bed| {
        let fds_before = warm_fd_count(bed)?;
        let pod = bed.run_pod(point, "moat")?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let out = pod.exec(&c, &["echo", "reachable"])?;
        ensure!(out.stdout == "reachable\n", "the pod is not reachable: {out:?}");
        let ids = vec![pod.id.clone(), c.id.clone()];
        let _ = bed.cri().stop(&c.id, 2);
        let _ = bed.cri().rm(&c.id);
        ensure!(!killed_at(bed, point).is_empty(), "the shim never reached {point}");
        remove_all_pods(bed)?;
        drop(pod);
        assert_nothing_left(bed, &ids, fds_before, "shim killed during a delete")
    })
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
    moat_e2e::host::wait_dead(shims[0].pid, "the pod's shim")?;
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

/// Every container or pod id containerd's log of `bed` ever named (64 hex digits; image
/// digests come along and match nothing): for pods whose RunPodSandbox failed, whose id the
/// CRI never returned.
fn ids_in_log(bed: &TestBed) -> Vec<String> {
    let log = std::fs::read_to_string(&bed.layout().log).unwrap_or_default();
    let mut ids: Vec<String> = log
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// containerd's fd count once it serves the CRI again after a restart.
fn fd_count_now(bed: &TestBed) -> Result<usize> {
    moat_e2e::host::fd_count(containerd_pid(bed)?).context("containerd's fd count")
}

/// Runs `call` (a CRI call, `what` in messages) on a thread of its own, SIGKILLs containerd
/// `after` it began and starts containerd again (down for 200 ms); what `call` returned.
fn killed_during<T: Send + 'static>(
    bed: &TestBed,
    what: &str,
    after: Duration,
    call: impl FnOnce(moat_e2e::Cri) -> Result<T> + Send + 'static,
) -> Result<Result<T>> {
    let cri = bed.cri();
    let thread = std::thread::spawn(move || call(cri));
    std::thread::sleep(after);
    bed.restart_containerd(Duration::from_millis(200))?;
    thread.join().map_err(|_| anyhow::anyhow!("the {what} thread panicked"))
}

/// containerd is SIGKILLed while an ExecSync runs in a pod, and started again: the pod is
/// still running and reachable, and its removal leaves nothing.
fn containerd_killed_during_an_exec(_: &TestBed, handler: &str) -> Result<()> {
    let test = "faults::containerd_killed_during_an_exec";
    on_private(TestBed::private(test, handler, "cd-exec")?, |bed| {
        let pod = bed.run_pod("cd-exec", handler)?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let ids = vec![pod.id.clone(), c.id.clone()];
        let id = c.id.clone();
        let lost = killed_during(bed, "exec", Duration::from_millis(500), move |cri| {
            cri.exec_sync(&id, &["sh", "-c", "sleep 2; echo late"], Duration::from_secs(20))
        })?;
        ensure!(lost.is_err(), "the exec went on through a containerd that was killed: {lost:?}");
        let fds_before = fd_count_now(bed)?;
        let out = pod.exec(&c, &["echo", "reachable"])?;
        ensure!(
            out.exit_code == 0 && out.stdout == "reachable\n",
            "the pod is not reachable after containerd's restart: {out:?}"
        );
        pod.teardown()?;
        assert_nothing_left(bed, &ids, fds_before, "containerd killed during an exec")
    })
}

/// containerd is SIGKILLed while it removes a pod, and started again: the kubelet's retry of
/// StopPodSandbox + RemovePodSandbox succeeds and nothing is left.
fn containerd_killed_during_remove_pod_sandbox(_: &TestBed, handler: &str) -> Result<()> {
    let test = "faults::containerd_killed_during_remove_pod_sandbox";
    on_private(TestBed::private(test, handler, "cd-rmp")?, |bed| {
        let pod = bed.run_pod("cd-rmp", handler)?;
        let c = pod.run("sleeper", &["sleep", "3600"])?;
        let ids = vec![pod.id.clone(), c.id.clone()];
        // containerd killed in the middle of StopPodSandbox (the task's kill and delete in
        // the shim), then in the middle of RemovePodSandbox (once stopped, a short call:
        // killed a few ms in). Each time it is started again and the kubelet retries.
        let id = pod.id.clone();
        let stopped =
            killed_during(bed, "stop", Duration::from_millis(60), move |cri| cri.stopp(&id))?;
        eprintln!("the interrupted StopPodSandbox: {stopped:?}");
        bed.cri().stopp(&pod.id).context("StopPodSandbox after containerd's restart")?;
        let id = pod.id.clone();
        let removed =
            killed_during(bed, "remove", Duration::from_millis(5), move |cri| cri.rmp(&id))?;
        eprintln!("the interrupted RemovePodSandbox: {removed:?}");
        let fds_before = fd_count_now(bed)?;
        remove_all_pods(bed)?;
        drop(pod);
        ensure!(bed.cri().pods()?.is_empty(), "pods still listed: {:?}", bed.cri().pods()?);
        assert_nothing_left(bed, &ids, fds_before, "containerd killed during RemovePodSandbox")
    })
}

/// Rewrites the moat config of `bed` with `[userns]` keys added (the section is last).
fn with_userns_keys(bed: &TestBed, keys: &str) -> Result<()> {
    // The keys go right after the `[userns]` header (other sections may follow it).
    let text = moat_e2e::moat_config::render(bed.layout()).replacen(
        "[userns]\n",
        &format!("[userns]\n{keys}"),
        1,
    );
    std::fs::write(&bed.layout().moat_config, text).context("rewriting the moat config")
}

/// A pool with room for one pod: the second pod is refused naming the pool and the remedy,
/// and leaves nothing; once the first is removed a new pod runs.
fn the_id_pool_exhausted(_: &TestBed, handler: &str) -> Result<()> {
    on_private(TestBed::private("faults::the_id_pool_exhausted", handler, "pool1")?, |bed| {
        with_userns_keys(bed, "count = 1\n")?;
        let fds_before = warm_fd_count(bed)?;
        let first = bed.run_pod("only", handler)?;
        let running = leftovers(bed, &ids_in_log(bed));
        let err = match bed.run_pod("second", handler) {
            Ok(pod) => bail!("a second pod {} ran in a pool of one range", pod.id),
            Err(e) => format!("{e:#}"),
        };
        eprintln!("the second pod: {err}");
        let first_line = err.lines().next().unwrap_or_default();
        ensure!(
            first_line.contains("ID pool is exhausted") && first_line.contains("userns.count"),
            "the second pod's error does not name the pool and the remedy: {first_line}"
        );
        // What is on the host now is what the first pod holds, nothing of the second.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = leftovers(bed, &ids_in_log(bed));
            let extra: Vec<&String> = now.iter().filter(|l| !running.contains(l)).collect();
            if extra.is_empty() {
                break;
            }
            ensure!(Instant::now() < deadline, "the refused pod left: {extra:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        first.teardown()?;
        let again = bed.run_pod("again", handler)?;
        again.teardown()?;
        assert_nothing_left(bed, &ids_in_log(bed), fds_before, "an exhausted pool")
    })
}

/// Mounts a small tmpfs on the pool's state dir, made full or read-only, runs a pod, which
/// must fail naming the pool's path and the cause `cause`, and leave nothing.
fn state_dir_fault(name: &str, handler: &str, make: &str, cause: &str) -> Result<()> {
    let test = format!("faults::{name}");
    let Some(bed) = TestBed::private(&test, handler, name)? else {
        return Ok(());
    };
    let pool = bed.layout().dir.join("idranges");
    std::fs::create_dir_all(&pool)?;
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "moat-e2e-faults"])
        .arg(&pool)
        .status()
        .context("mount")?;
    ensure!(mount.success(), "mounting a tmpfs on {}", pool.display());
    let result = (|| -> Result<()> {
        let fds_before = warm_fd_count(&bed)?;
        match make {
            "full" => {
                // Every block taken (a write to a full tmpfs fails with ENOSPC).
                let filler = pool.join("filler");
                let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
            }
            _ => {
                let ro = std::process::Command::new("mount")
                    .args(["-o", "remount,ro"])
                    .arg(&pool)
                    .status()?;
                ensure!(ro.success(), "remounting {} read-only", pool.display());
            }
        }
        let err = match bed.run_pod(name, handler) {
            Ok(pod) => bail!("pod {} ran with the ID pool's state dir {make}", pod.id),
            Err(e) => format!("{e:#}"),
        };
        eprintln!("the pod with the state dir {make}: {err}");
        let first_line = err.lines().next().unwrap_or_default();
        ensure!(
            first_line.contains(&pool.display().to_string()) && first_line.contains(cause),
            "the error does not name the pool's state dir {} and {cause:?}: {first_line}",
            pool.display()
        );
        remove_all_pods(&bed)?;
        assert_nothing_left(&bed, &ids_in_log(&bed), fds_before, &format!("state dir {make}"))
    })();
    let _ = std::process::Command::new("umount").arg("-l").arg(&pool).status();
    result.map_err(|e| bed.with_log(e))
}

fn the_id_pool_state_dir_full(_: &TestBed, handler: &str) -> Result<()> {
    state_dir_fault("statedir-full", handler, "full", "No space left on device")
}

fn the_id_pool_state_dir_read_only(_: &TestBed, handler: &str) -> Result<()> {
    state_dir_fault("statedir-ro", handler, "read-only", "Read-only file system")
}

/// A node reboot on the bed: containerd and every shim and pod process killed, containerd's
/// state directory (under /run on a node) and the shim sockets lost, the pods' cgroups gone,
/// containerd started again. The kubelet's cleanup of the old pods (StopPodSandbox +
/// RemovePodSandbox of each) succeeds, and their ID ranges return to the pool once the next
/// pod's shim starts (see seal_id_ranges.rs for the reclaim itself).
fn a_node_reboot(_: &TestBed, handler: &str) -> Result<()> {
    on_private(TestBed::private("faults::a_node_reboot", handler, "reboot")?, |bed| {
        let mut old = Vec::new();
        for i in 0..2 {
            let pod = bed.run_pod(&format!("before-reboot{i}"), handler)?;
            let c = pod.run("sleeper", &["sleep", "3600"])?;
            old.push((pod, c));
        }
        let mut ids = Vec::new();
        for (pod, c) in &old {
            ids.push(pod.id.clone());
            ids.push(c.id.clone());
        }
        let layout = bed.layout().clone();
        bed.restart_containerd_after(|| {
            // Everything running dies.
            for _ in 0..50 {
                let mut pids: Vec<i32> =
                    moat_e2e::host::shims(&layout.socket).into_iter().map(|s| s.pid).collect();
                pids.extend(moat_e2e::host::cgroup_procs(&moat_e2e::host::cgroup_tree(
                    &layout.cgroup_parent,
                )));
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // /run is a tmpfs: containerd's state (bundles, netns mounts) and the shim
            // sockets are gone; so are the cgroups (a fresh cgroupfs).
            moat_e2e::containerd::unmount_under(&layout.state);
            std::fs::remove_dir_all(&layout.state)
                .with_context(|| format!("removing {}", layout.state.display()))?;
            for id in &ids {
                let _ = std::fs::remove_file(shim_socket(bed, id));
            }
            for dir in moat_e2e::host::cgroup_tree(&layout.cgroup_parent) {
                let _ = std::fs::remove_dir(&dir);
            }
            Ok(())
        })?;
        let fds_before = fd_count_now(bed)?;
        let listed = bed.cri().pods()?;
        for (pod, _) in &old {
            ensure!(listed.contains(&pod.id), "pod {} is not listed after the reboot", pod.id);
        }
        // The kubelet's cleanup of the old pods.
        for (pod, _) in &old {
            bed.cri().stopp(&pod.id).context("StopPodSandbox of a pod from before the reboot")?;
            bed.cri().rmp(&pod.id).context("RemovePodSandbox of a pod from before the reboot")?;
        }
        ensure!(
            bed.cri().pods()?.is_empty(),
            "pods listed after the cleanup: {:?}",
            bed.cri().pods()?
        );
        // The next pod's shim gives the old pods' ranges back.
        let next = bed.run_pod("after-reboot", handler)?;
        let ranges = leftovers(bed, &[])
            .into_iter()
            .filter(|l| l.starts_with("ID range") && !l.contains(&next.id))
            .collect::<Vec<_>>();
        ensure!(ranges.is_empty(), "ranges of the pods from before the reboot: {ranges:#?}");
        next.teardown()?;
        drop(old);
        assert_nothing_left(bed, &ids, fds_before, "a node reboot")
    })
}
