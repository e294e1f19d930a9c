//! Issue 9, the shim's own I/O: a tenant must not be able to freeze its pod's shim. For each
//! runtime handler (moat, and runc's shim as the baseline), a pod is put under one kind of
//! tenant pressure, then ExecSync, StopContainer and RemovePodSandbox are timed one by one:
//! each must answer within 2 s for moat (runc's times are printed for comparison).
//!
//! - stdin flood: `exec -i` of a process that never reads stdin, sent 128 KiB (twice a pipe's
//!   capacity) through containerd's streaming server, then the stream ends (CloseIO); the
//!   same with a terminal (`exec -it`, the pty's input fills), and through `attach` to a
//!   container with stdin;
//! - output flood: a container writing to its log as fast as it can;
//! - 100 ExecSync at once;
//! - and the shim's thread count across execs whose stdin copy can never finish by itself
//!   (a child of the exec keeps the stdin pipe open after the exec exits).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use moat_e2e::stream::Session;
use moat_e2e::{e2e_tests, host, settles_within, Container, Pod, TestBed};

e2e_tests!(
    a_stdin_flood_that_is_never_read_leaves_the_shim_responsive,
    a_tty_stdin_flood_that_is_never_read_leaves_the_shim_responsive,
    an_attach_stdin_flood_that_is_never_read_leaves_the_shim_responsive,
    an_output_flood_leaves_the_shim_responsive,
    a_hundred_concurrent_execs_leave_the_shim_responsive,
    stdin_copy_threads_end_with_their_exec,
);

/// The bound on each verb after the pressure (moat).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// Times ExecSync in `c`, StopContainer of `c` (no grace: SIGKILL) and RemovePodSandbox, in
/// this order. For moat each must succeed within `ANSWER_WITHIN`; runc's are printed.
fn verbs_answer_in_time(bed: &TestBed, pod: Pod<'_>, c: &Container, handler: &str) -> Result<()> {
    let cri = bed.cri();
    let mut seen = Vec::new();
    let t = Instant::now();
    let exec = cri.exec_sync(&c.id, &["echo", "alive"], Duration::from_secs(5));
    seen.push((
        "ExecSync",
        t.elapsed(),
        exec.as_ref().map(|o| o.stdout.clone()).map_err(|e| format!("{e:#}")),
    ));
    let t = Instant::now();
    let stop = cri.stop(&c.id, 0);
    seen.push((
        "StopContainer",
        t.elapsed(),
        stop.map(|()| String::new()).map_err(|e| format!("{e:#}")),
    ));
    let t = Instant::now();
    let remove = cri.rmp(&pod.id);
    seen.push((
        "RemovePodSandbox",
        t.elapsed(),
        remove.map(|()| String::new()).map_err(|e| format!("{e:#}")),
    ));
    // The pod is gone (or Drop tries again, ignoring errors).
    drop(pod);
    let report: Vec<String> = seen
        .iter()
        .map(|(verb, took, r)| format!("{verb} {} ms: {r:?}", took.as_millis()))
        .collect();
    eprintln!("{handler}: {}", report.join("; "));
    if handler != "moat" {
        return Ok(());
    }
    for (verb, took, result) in &seen {
        ensure!(result.is_ok(), "{verb} failed after the pressure: {}", report.join("; "));
        ensure!(
            *took < ANSWER_WITHIN,
            "{verb} took {} ms (bound {} ms): {}",
            took.as_millis(),
            ANSWER_WITHIN.as_millis(),
            report.join("; ")
        );
    }
    ensure!(
        matches!(&seen[0].2, Ok(out) if out == "alive\n"),
        "ExecSync printed something else: {}",
        report.join("; ")
    );
    Ok(())
}

/// Sends `total` bytes on the session's stdin in 16 KiB frames.
fn flood_stdin(s: &mut Session, total: usize) -> Result<()> {
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        s.stdin(&chunk).with_context(|| format!("sending stdin after {sent} bytes"))?;
        sent += chunk.len();
    }
    Ok(())
}

fn a_stdin_flood_that_is_never_read_leaves_the_shim_responsive(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("stdin-flood", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    // The exec never reads its stdin: the pipe to it fills after 64 KiB.
    let url = bed.cri().exec(&c.id, &["sh", "-c", "echo ready; exec sleep 3600"], false, true)?;
    let mut s = Session::connect(&url)?;
    s.read_until(STREAM_TIMEOUT, "ready", |s| s.stdout_text().contains("ready"))?;
    flood_stdin(&mut s, 128 * 1024)?;
    // Let containerd push it into the stdin fifo, then end the client's stdin: containerd
    // closes the fifo and sends CloseIO (stdin_once), as after `kubectl exec -i < file`.
    std::thread::sleep(Duration::from_millis(500));
    if s.protocol == "v5.channel.k8s.io" {
        s.close_stdin()?;
    }
    s.close()?;
    std::thread::sleep(Duration::from_millis(500));
    verbs_answer_in_time(bed, pod, &c, handler)
}

fn a_tty_stdin_flood_that_is_never_read_leaves_the_shim_responsive(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("tty-stdin-flood", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    // No echo: only what the process writes comes back, and it writes nothing more.
    let script = "stty -echo; echo ready; exec sleep 3600";
    let url = bed.cri().exec(&c.id, &["sh", "-c", script], true, true)?;
    let mut s = Session::connect(&url)?;
    s.read_until(STREAM_TIMEOUT, "ready", |s| s.stdout_text().contains("ready"))?;
    let line = [vec![b'x'; 1023], vec![b'\n']].concat();
    for _ in 0..128 {
        s.stdin(&line)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    s.close()?;
    std::thread::sleep(Duration::from_millis(500));
    verbs_answer_in_time(bed, pod, &c, handler)
}

fn an_attach_stdin_flood_that_is_never_read_leaves_the_shim_responsive(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("attach-stdin-flood", handler)?;
    let mut config = pod.container_config("deaf", &["sh", "-c", "echo started; exec sleep 3600"]);
    config.stdin = true;
    config.stdin_once = true;
    let c = pod.create(&config)?;
    pod.start(&c)?;
    pod.wait_for_log(&c, STREAM_TIMEOUT, |l| l.iter().any(|l| l.text == "started"))?;
    let mut s = Session::connect(&bed.cri().attach(&c.id, false, true)?)?;
    flood_stdin(&mut s, 128 * 1024)?;
    std::thread::sleep(Duration::from_millis(500));
    // stdin_once: the end of the attach closes the container's stdin (CloseIO).
    s.close()?;
    std::thread::sleep(Duration::from_millis(500));
    verbs_answer_in_time(bed, pod, &c, handler)
}

fn an_output_flood_leaves_the_shim_responsive(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("output-flood", handler)?;
    let line = "x".repeat(200);
    let script = format!("while :; do echo {line}; done");
    let c = pod.run("chatty", &["sh", "-c", &script])?;
    // Wait until the log grows, then keep it flooding a moment.
    let deadline = Instant::now() + STREAM_TIMEOUT;
    while std::fs::metadata(&c.log_path).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        if Instant::now() > deadline {
            bail!("the flooding container wrote less than 1 MiB to its log in {STREAM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    verbs_answer_in_time(bed, pod, &c, handler)
}

fn a_hundred_concurrent_execs_leave_the_shim_responsive(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("exec-storm", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let began = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let cri = bed.cri();
                let id = c.id.clone();
                scope.spawn(move || -> Result<()> {
                    let out =
                        cri.exec_sync(&id, &["echo", &i.to_string()], Duration::from_secs(60))?;
                    ensure!(out.stdout == format!("{i}\n"), "exec {i} printed {out:?}");
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an exec thread panicked"))))
            .collect()
    });
    let failed: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err()).map(|e| format!("{e:#}")).collect();
    eprintln!("{handler}: 100 concurrent ExecSync took {} ms", began.elapsed().as_millis());
    if handler == "moat" {
        ensure!(failed.is_empty(), "{} of 100 concurrent execs failed: {failed:?}", failed.len());
    } else if !failed.is_empty() {
        // The baseline, not the subject: runc's 100 `runc exec` processes were seen not to
        // finish within the client's 75 s on a 2-core machine shared with other builds.
        eprintln!(
            "{handler}: {} of 100 concurrent execs failed: {:?}",
            failed.len(),
            failed.first()
        );
    }
    verbs_answer_in_time(bed, pod, &c, handler)
}

fn stdin_copy_threads_end_with_their_exec(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("stdin-threads", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let shim = pod.shims().first().map(|s| s.pid).context("no shim for the pod")?;
    // The exec exits at once; its child keeps the stdin pipe open and never reads it, so a
    // copy that only ends on end-of-file or a failed write would wait for that child.
    let run_execs = |n: usize| -> Result<()> {
        for i in 0..n {
            let url = bed.cri().exec(
                &c.id,
                &["sh", "-c", "exec 3<&0; sleep 3600 <&3 3<&- & echo started"],
                false,
                true,
            )?;
            let mut s = Session::connect(&url)?;
            s.read_until(STREAM_TIMEOUT, "started", |s| s.stdout_text().contains("started"))
                .with_context(|| format!("exec {i}"))?;
            // More than the fifo, the pipe and the copy's buffer hold together.
            flood_stdin(&mut s, 256 * 1024)?;
            s.close()?;
        }
        Ok(())
    };
    run_execs(2)?; // warm up (thread pools, lazily opened files)
    std::thread::sleep(Duration::from_secs(1));
    let threads0 = host::thread_count(shim).context("shim gone")?;
    run_execs(10)?;
    settles_within(handler, Duration::from_secs(15), || {
        let threads = host::thread_count(shim).context("shim gone")?;
        Ok((threads > threads0 + 2).then(|| {
            format!(
                "after 10 more execs with stdin the shim has {threads} threads (was {threads0})"
            )
        }))
    })?;
    verbs_answer_in_time(bed, pod, &c, handler)
}
