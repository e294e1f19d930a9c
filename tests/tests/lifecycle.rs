//! Pod and container lifecycle through containerd's CRI, for each runtime handler (moat and
//! runc): what a kubelet relies on.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use moat_e2e::{e2e_tests, TestBed};

e2e_tests!(
    stdout_and_stderr_reach_the_log,
    exec_sync_returns_output_and_exit_code,
    exit_code_is_reported_in_container_status,
    containers_of_a_pod_share_localhost_and_one_shim,
    pod_teardown_leaves_nothing_behind,
    stop_container_sends_sigterm_first,
    stop_container_kills_after_the_grace_period,
);

fn stdout_and_stderr_reach_the_log(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("logs", handler)?;
    let c = pod
        .run("talker", &["sh", "-c", "echo to-stdout; echo to-stderr >&2; printf 'no newline'"])?;
    let status = pod.wait_exited(&c, Duration::from_secs(30))?;
    ensure!(
        status.exit_code == 0,
        "the container exited {} (reason {:?})",
        status.exit_code,
        status.reason
    );
    let lines = pod.wait_for_log(&c, Duration::from_secs(10), |l| l.len() >= 3)?;
    let has = |stream: &str, text: &str| lines.iter().any(|l| l.stream == stream && l.text == text);
    ensure!(has("stdout", "to-stdout"), "no stdout line 'to-stdout' in {lines:?}");
    ensure!(has("stderr", "to-stderr"), "no stderr line 'to-stderr' in {lines:?}");
    ensure!(
        has("stdout", "no newline"),
        "no stdout line 'no newline' (output without a final newline) in {lines:?}"
    );
    pod.teardown()
}

fn exec_sync_returns_output_and_exit_code(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("exec", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let out = pod.exec(&c, &["sh", "-c", "echo out; echo err >&2; exit 7"])?;
    ensure!(out.stdout == "out\n", "exec stdout {:?}, expected \"out\\n\"", out.stdout);
    ensure!(out.stderr == "err\n", "exec stderr {:?}, expected \"err\\n\"", out.stderr);
    ensure!(out.exit_code == 7, "exec exit code {}, expected 7", out.exit_code);
    let out = pod.exec(&c, &["cat", "/var/www/index.html"])?;
    ensure!(
        out.exit_code == 0 && out.stdout.contains("moat test page"),
        "exec cat of an image file: {out:?}"
    );
    // runc reports a missing program as an ExecSync error; a non-zero exit code is fine too.
    if let Ok(out) = pod.exec(&c, &["/no/such/program"]) {
        ensure!(out.exit_code != 0, "exec of a missing program reported success: {out:?}");
    }
    pod.teardown()
}

fn exit_code_is_reported_in_container_status(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("exit", handler)?;
    let c = pod.run("exits3", &["sh", "-c", "exit 3"])?;
    let status = pod.wait_exited(&c, Duration::from_secs(30))?;
    ensure!(
        status.exit_code == 3,
        "ContainerStatus exit code {}, expected 3 (reason {:?})",
        status.exit_code,
        status.reason
    );
    // containerd stamps these separately (finished_at may precede started_at by microseconds).
    ensure!(
        status.started_at > 0 && status.finished_at > 0,
        "start/finish times missing: {status:?}"
    );
    pod.teardown()
}

fn containers_of_a_pod_share_localhost_and_one_shim(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("localhost", handler)?;
    let server = pod.run("server", &["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/var/www"])?;
    let client = pod.run("client", &["sleep", "3600"])?;
    let mut last = None;
    for _ in 0..100 {
        let out =
            pod.exec(&client, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"])?;
        if out.exit_code == 0 {
            ensure!(
                out.stdout.contains("moat test page"),
                "the client got {:?} from the server",
                out.stdout
            );
            last = None;
            break;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        last.is_none(),
        "the client container never reached the server container on 127.0.0.1:8080: {last:?}"
    );

    let shims = pod.shims();
    ensure!(shims.len() == 1, "expected one shim process for the pod, found {shims:?}");
    ensure!(
        shims[0].id == pod.id,
        "the pod's shim has -id {} instead of the pod id {}",
        shims[0].id,
        pod.id
    );
    let expected = match handler {
        "moat" => moat_e2e::paths::MOAT_SHIM_NAME,
        _ => "containerd-shim-runc-v2",
    };
    ensure!(
        shims[0].binary.ends_with(expected),
        "the pod's shim runs {} instead of {expected}",
        shims[0].binary
    );
    // The server still serves: both containers are alive under the one shim.
    let (status, _) = bed.cri().inspect(&server.id)?;
    ensure!(
        status.state == k8s_cri::v1::ContainerState::ContainerRunning as i32,
        "server state {}",
        moat_e2e::cri::state_name(status.state)
    );
    pod.teardown()
}

fn pod_teardown_leaves_nothing_behind(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("teardown", handler)?;
    let a = pod.run("a", &["sleep", "3600"])?;
    pod.run("b", &["sh", "-c", "sleep 3600 & sleep 3600"])?;
    pod.exec(&a, &["true"])?;
    let footprint = pod.footprint()?;

    // The checks below must see the running pod, or their silence after teardown means nothing.
    let present = footprint.leftovers();
    let count = |prefix: &str| present.iter().filter(|l| l.starts_with(prefix)).count();
    ensure!(count("shim process") == 1, "while the pod runs, expected one shim, saw: {present:#?}");
    ensure!(
        count("process") >= 4,
        "while the pod runs, expected sandbox + 3 container processes, saw: {present:#?}"
    );
    ensure!(count("cgroup dir") >= 3, "while the pod runs, expected cgroup dirs named by the sandbox and container ids, saw: {present:#?}");
    let netns = footprint
        .netns
        .clone()
        .context("the sandbox's runtime spec names no network namespace path")?;
    ensure!(
        present.iter().any(|l| l.starts_with("mount") && l.contains(&*netns.to_string_lossy())),
        "while the pod runs, expected the netns mount {}, saw: {present:#?}",
        netns.display()
    );

    pod.teardown()?;
    let left = footprint.wait_gone(Duration::from_secs(10));
    ensure!(left.is_empty(), "after StopPodSandbox + RemovePodSandbox these remain: {left:#?}");
    Ok(())
}

fn stop_container_sends_sigterm_first(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("sigterm", handler)?;
    let c = pod.run(
        "polite",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    )?;
    pod.wait_for_log(&c, Duration::from_secs(10), |l| l.iter().any(|l| l.text == "ready"))?;
    let t = Instant::now();
    bed.cri().stop(&c.id, 30)?;
    let took = t.elapsed();
    let status = pod.wait_exited(&c, Duration::from_secs(5))?;
    ensure!(
        status.exit_code == 0,
        "a container exiting 0 on SIGTERM reported {} (reason {:?})",
        status.exit_code,
        status.reason
    );
    ensure!(
        took < Duration::from_secs(10),
        "StopContainer took {took:?} for a container that exits on SIGTERM"
    );
    pod.wait_for_log(&c, Duration::from_secs(5), |l| l.iter().any(|l| l.text == "got-term"))?;
    pod.teardown()
}

fn stop_container_kills_after_the_grace_period(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("sigkill", handler)?;
    let c = pod.run(
        "stubborn",
        &["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"],
    )?;
    pod.wait_for_log(&c, Duration::from_secs(10), |l| l.iter().any(|l| l.text == "ready"))?;
    let t = Instant::now();
    bed.cri().stop(&c.id, 1)?;
    let took = t.elapsed();
    let status = pod.wait_exited(&c, Duration::from_secs(5))?;
    ensure!(
        status.exit_code == 137,
        "a container killed after ignoring SIGTERM reported {} instead of 137",
        status.exit_code
    );
    ensure!(
        took >= Duration::from_millis(900),
        "StopContainer killed after {took:?}, before the 1 s grace period"
    );
    ensure!(took < Duration::from_secs(15), "StopContainer took {took:?} with a 1 s grace period");
    pod.teardown()
}
