//! The rest of the CRI surface, for each runtime handler (moat and runc): terminals and
//! streams (exec -it, attach), large outputs, stats, resource updates, OOM, pause/resume,
//! and the bad days of a pod's life (containerd restarted, the shim killed).
//!
//! Streams go through containerd's streaming server as `kubectl exec/attach` does (see
//! `moat_e2e::stream`). Pause and resume are not CRI verbs: they go through containerd's
//! task API with `ctr`, containerd's own client.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources};
use moat_e2e::bed::on_private;
use moat_e2e::stream::Session;
use moat_e2e::{e2e_tests, host, settles_within, Container, Pod, TestBed};
use sha2::{Digest, Sha256};

e2e_tests!(
    the_standard_devices_are_usable,
    exec_with_a_tty_resizes_and_round_trips_stdin,
    exec_without_a_tty_pipes_stdin_and_keeps_streams_apart,
    exec_sync_carries_10_mib_intact,
    the_log_carries_10_mib_intact,
    the_log_of_a_tty_container_carries_10_mib_intact,
    attach_to_a_tty_container_round_trips_and_resizes,
    attach_to_a_stdin_only_container_then_detach_closes_stdin,
    stats_show_cpu_after_a_busy_loop_and_memory_after_an_allocation,
    memory_limit_below_use_is_reported_as_oom_killed,
    update_lowers_the_memory_limit_and_cpu_quota_live,
    a_lowered_pod_pids_limit_stops_forks,
    pause_freezes_a_counter_and_resume_thaws_it,
    execs_leak_no_fds_or_threads_in_the_shim,
    containerd_restart_keeps_pods_reachable,
    a_shim_killed_with_sigkill_is_cleaned_up_by_remove_pod_sandbox,
    port_forward_reaches_a_server_in_the_pod,
    list_verbs_show_the_pod_and_its_containers,
    pod_stats_cover_the_pod_and_its_containers,
);

const STREAM_TIMEOUT: Duration = Duration::from_secs(20);
const MIB: i64 = 1024 * 1024;

/// `seq 1 SEQ_END` prints 10 888 896 bytes (a bit over 10 MiB), every line distinct, so a
/// lost, doubled or reordered chunk changes the checksum.
const SEQ_END: u32 = 1_500_000;

fn seq_output() -> Vec<u8> {
    let mut out = Vec::with_capacity(11 << 20);
    for i in 1..=SEQ_END {
        out.extend_from_slice(format!("{i}\n").as_bytes());
    }
    out
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where two outputs first differ, for a failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let show = |d: &[u8]| {
        String::from_utf8_lossy(&d[at.saturating_sub(20)..(at + 40).min(d.len())]).into_owned()
    };
    format!(
        "lengths {} (got) and {} (expected); first difference at byte {at}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    )
}

/// The line that follows the last line equal to `marker` in terminal output (lines end in
/// "\r\n"), once it is complete.
fn line_after(text: &str, marker: &str) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    // The last element is an unterminated (possibly empty) line: never complete.
    let complete = &lines[..lines.len().saturating_sub(1)];
    let at = complete.iter().rposition(|l| l.trim_end_matches('\r') == marker)?;
    complete.get(at + 1).map(|l| l.trim_end_matches('\r').to_string())
}

/// Sends `line` to a shell loop that answers `got:<line>` and then `stty size`; returns the
/// size it printed.
fn ask_size(s: &mut Session, line: &str) -> Result<String> {
    s.stdin(format!("{line}\r").as_bytes())?;
    let marker = format!("got:{line}");
    s.read_until(STREAM_TIMEOUT, &format!("{marker:?} and a size"), |s| {
        line_after(&s.stdout_text(), &marker).is_some()
    })?;
    line_after(&s.stdout_text(), &marker).context("no size line")
}

/// Resizes and asks for the size until the shell sees `rows cols` (a resize travels to the
/// shim apart from stdin, so the first answer may still show the old size).
fn resize_and_check(s: &mut Session, width: u16, height: u16, tag: &str) -> Result<()> {
    s.resize(width, height)?;
    let want = format!("{height} {width}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let size = ask_size(s, &format!("{tag}{attempt}"))?;
        if size == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("after resizing to {width}x{height} the terminal still says {size:?} (stty size: rows cols)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

fn running(bed: &TestBed, c: &Container) -> Result<bool> {
    let (status, _) = bed.cri().inspect(&c.id)?;
    Ok(status.state == ContainerState::ContainerRunning as i32)
}

fn the_standard_devices_are_usable(bed: &TestBed, handler: &str) -> Result<()> {
    // What runc allows every container whatever the spec's device rules say (the CRI's spec
    // denies all devices and lists none): programs need these, terminals need ptmx and pts.
    let pod = bed.run_pod("devices", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let script = "for d in zero full random urandom; do \
                    [ \"$(head -c 4 /dev/$d | wc -c)\" = 4 ] && echo ok-read-$d; done; \
                  echo x > /dev/null && echo ok-write-null; \
                  exec 3<>/dev/ptmx && echo ok-open-ptmx";
    let out = pod.exec(&c, &["sh", "-c", script])?;
    for want in [
        "ok-write-null",
        "ok-open-ptmx",
        "ok-read-zero",
        "ok-read-full",
        "ok-read-random",
        "ok-read-urandom",
    ] {
        ensure!(
            out.stdout.lines().any(|l| l == want),
            "{want} missing: a standard device cannot be used in the container: {out:?}"
        );
    }
    pod.teardown()
}

fn exec_with_a_tty_resizes_and_round_trips_stdin(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("tty-exec", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let script = "if [ -t 0 ] && [ -t 1 ]; then echo ready-tty; else echo no-tty; fi; \
                  while read line; do [ \"$line\" = quit ] && exit 5; echo \"got:$line\"; stty size; done";
    let url = bed.cri().exec(&c.id, &["sh", "-c", script], true, true)?;
    let mut s = Session::connect(&url)?;
    s.read_until(STREAM_TIMEOUT, "the shell's first line", |s| s.stdout_text().contains("tty"))?;
    ensure!(
        s.stdout_text().contains("ready-tty"),
        "stdin and stdout of `exec -it` are not a terminal: {s:?}"
    );
    resize_and_check(&mut s, 123, 45, "first")?;
    resize_and_check(&mut s, 200, 50, "second")?;
    // The terminal echoes input (line discipline inside the container's pty).
    ensure!(s.stdout_text().contains("first0"), "the terminal did not echo the input: {s:?}");
    s.stdin(b"quit\r")?;
    s.wait_closed(STREAM_TIMEOUT)?;
    ensure!(
        s.exit_code() == Some(5),
        "the exec's exit code 5 did not come back on the error channel: {s:?}"
    );
    ensure!(running(bed, &c)?, "the container stopped running after the exec");
    pod.teardown()
}

fn exec_without_a_tty_pipes_stdin_and_keeps_streams_apart(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("pipe-exec", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let script = "if [ -t 0 ]; then echo tty; fi; echo ready; \
                  while read line; do [ \"$line\" = quit ] && exit 0; echo \"out:$line\"; echo \"err:$line\" >&2; done";
    let url = bed.cri().exec(&c.id, &["sh", "-c", script], false, true)?;
    let mut s = Session::connect(&url)?;
    s.read_until(STREAM_TIMEOUT, "ready", |s| s.stdout_text().contains("ready"))?;
    s.stdin(b"one\ntwo\n")?;
    s.read_until(STREAM_TIMEOUT, "both lines on stdout and stderr", |s| {
        s.stdout_text().contains("out:two")
            && String::from_utf8_lossy(&s.stderr).contains("err:two")
    })?;
    ensure!(s.stdout_text() == "ready\nout:one\nout:two\n", "stdout of a piped exec: {s:?}");
    ensure!(
        String::from_utf8_lossy(&s.stderr) == "err:one\nerr:two\n",
        "stderr of a piped exec: {s:?}"
    );
    s.stdin(b"quit\n")?;
    s.wait_closed(STREAM_TIMEOUT)?;
    ensure!(s.exit_code() == Some(0), "exit status of the exec: {s:?}");
    pod.teardown()
}

fn exec_sync_carries_10_mib_intact(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("big-exec", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let want = seq_output();
    let out =
        bed.cri().exec_sync(&c.id, &["seq", "1", &SEQ_END.to_string()], Duration::from_secs(60))?;
    ensure!(out.exit_code == 0, "seq exited {}: {}", out.exit_code, out.stderr);
    ensure!(out.stderr.is_empty(), "seq wrote to stderr: {:?}", out.stderr);
    let got = out.stdout.as_bytes();
    ensure!(
        sha256(got) == sha256(&want),
        "ExecSync stdout is not seq's output: {}",
        first_difference(got, &want)
    );
    pod.teardown()
}

/// How much of the end of a container's output runc (containerd-shim-runc-v2 of containerd
/// 1.6) may lose when the container exits right after writing it. Seen here with and without a
/// tty: about a pipe's worth when the machine is idle, more when two test threads load both
/// cores. runc is the baseline, not the subject: its run only has to be intact up to the lost
/// tail. moat must lose nothing.
const RUNC_TAIL_LOSS: usize = 1024 * 1024;

/// Reads a container's whole log once `last` is in it (or it stops growing, for runc); the
/// lines joined back into the bytes written.
fn log_bytes(pod: &Pod, c: &Container, last: &str) -> Result<Vec<u8>> {
    let lines = pod.wait_for_log(c, Duration::from_secs(90), |l| {
        l.last().is_some_and(|l| l.text.trim_end_matches('\r') == last)
    });
    let lines = match lines {
        Ok(lines) => lines,
        Err(_) if pod.handler == "runc" => pod.log(c)?,
        Err(_) => {
            let lines = pod.log(c)?;
            bail!(
                "the log never ended with {last:?}: {} lines, the last ones {:?}",
                lines.len(),
                &lines[lines.len().saturating_sub(3)..]
            );
        }
    };
    if let Some(bad) = lines.iter().find(|l| l.stream != "stdout") {
        bail!("a line on {} in a stdout-only log: {bad:?}", bad.stream);
    }
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.text.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// The log must hold exactly `want`; under runc a lost tail of up to `RUNC_TAIL_LOSS` bytes
/// is noted and tolerated (an upstream race at exit), but what arrived must be intact.
fn check_log(handler: &str, what: &str, got: &[u8], want: &[u8]) -> Result<()> {
    if sha256(got) == sha256(want) {
        return Ok(());
    }
    if handler == "runc" && got.len() < want.len() && want.len() - got.len() <= RUNC_TAIL_LOSS {
        // The last line may be a piece of one (a partial log entry): compare before it.
        let body = got.strip_suffix(b"\n").unwrap_or(got);
        let whole = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if want.starts_with(&got[..whole]) {
            eprintln!(
                "note: runc lost the last {} bytes of {what} at exit (known containerd 1.6 runc-shim race)",
                want.len() - got.len()
            );
            return Ok(());
        }
    }
    bail!("{what} is not seq's output: {}", first_difference(got, want))
}

fn the_log_carries_10_mib_intact(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("big-log", handler)?;
    let c = pod.run("seq", &["seq", "1", &SEQ_END.to_string()])?;
    let status = pod.wait_exited(&c, Duration::from_secs(60))?;
    ensure!(status.exit_code == 0, "seq exited {}", status.exit_code);
    let got = log_bytes(&pod, &c, &SEQ_END.to_string())?;
    check_log(handler, "the CRI log", &got, &seq_output())?;
    pod.teardown()
}

fn the_log_of_a_tty_container_carries_10_mib_intact(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("big-tty-log", handler)?;
    let mut config = pod.container_config("seq", &["seq", "1", &SEQ_END.to_string()]);
    config.tty = true;
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let status = pod.wait_exited(&c, Duration::from_secs(60))?;
    ensure!(status.exit_code == 0, "seq exited {}", status.exit_code);
    // The terminal turns "\n" into "\r\n".
    let got: Vec<u8> =
        log_bytes(&pod, &c, &SEQ_END.to_string())?.into_iter().filter(|b| *b != b'\r').collect();
    check_log(handler, "the CRI log of a tty container", &got, &seq_output())?;
    pod.teardown()
}

fn attach_to_a_tty_container_round_trips_and_resizes(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("tty-attach", handler)?;
    let script = "echo started; while read line; do echo \"got:$line\"; stty size; done";
    let mut config = pod.container_config("shell", &["sh", "-c", script]);
    config.tty = true;
    config.stdin = true;
    let c = pod.create(&config)?;
    pod.start(&c)?;
    pod.wait_for_log(&c, STREAM_TIMEOUT, |l| l.iter().any(|l| l.text.contains("started")))?;

    let mut s = Session::connect(&bed.cri().attach(&c.id, true, true)?)?;
    resize_and_check(&mut s, 100, 30, "hello")?;
    s.close()?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(running(bed, &c)?, "the container stopped when the attach ended");

    // Attach again: the same shell answers, and it was all logged too.
    let mut s = Session::connect(&bed.cri().attach(&c.id, true, true)?)?;
    resize_and_check(&mut s, 90, 20, "again")?;
    s.close()?;
    pod.wait_for_log(&c, STREAM_TIMEOUT, |l| {
        l.iter().any(|l| l.text.contains("got:hello0"))
            && l.iter().any(|l| l.text.contains("got:again0"))
    })?;
    pod.teardown()
}

fn attach_to_a_stdin_only_container_then_detach_closes_stdin(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("pipe-attach", handler)?;
    let script =
        "echo started; while read line; do echo \"out:$line\"; echo \"err:$line\" >&2; done; \
                  echo stdin-closed; exit 3";
    let mut config = pod.container_config("reader", &["sh", "-c", script]);
    config.stdin = true;
    config.stdin_once = true;
    let c = pod.create(&config)?;
    pod.start(&c)?;
    pod.wait_for_log(&c, STREAM_TIMEOUT, |l| l.iter().any(|l| l.text == "started"))?;

    let mut s = Session::connect(&bed.cri().attach(&c.id, false, true)?)?;
    s.stdin(b"hello\n")?;
    s.read_until(STREAM_TIMEOUT, "out:hello and err:hello", |s| {
        s.stdout_text().contains("out:hello\n")
            && String::from_utf8_lossy(&s.stderr).contains("err:hello\n")
    })?;
    ensure!(
        !s.stdout_text().contains("err:") && !String::from_utf8_lossy(&s.stderr).contains("out:"),
        "stdout and stderr were mixed up: {s:?}"
    );
    // stdin_once: the end of the first attach closes the container's stdin (CloseIO).
    s.close()?;
    let status = pod
        .wait_exited(&c, STREAM_TIMEOUT)
        .context("a stdin_once container's stdin was not closed when its attach ended (CloseIO)")?;
    ensure!(
        status.exit_code == 3,
        "the container exited {} instead of 3 after its stdin closed",
        status.exit_code
    );
    let lines = pod
        .wait_for_log(&c, Duration::from_secs(5), |l| l.iter().any(|l| l.text == "stdin-closed"))?;
    let has = |stream: &str, text: &str| lines.iter().any(|l| l.stream == stream && l.text == text);
    ensure!(
        has("stdout", "out:hello") && has("stderr", "err:hello"),
        "the attached session's output is not in the log: {lines:?}"
    );
    pod.teardown()
}

/// CPU time (ns) and working set (bytes) of a container, from ContainerStats and from
/// ListContainerStats (both must report it).
fn cpu_and_memory(bed: &TestBed, pod: &Pod, c: &Container) -> Result<(u64, u64)> {
    let stats = bed.cri().stats(&c.id)?;
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .with_context(|| format!("ContainerStats has no CPU usage: {stats:?}"))?;
    let memory = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
        .with_context(|| format!("ContainerStats has no working set: {stats:?}"))?;
    let listed = bed.cri().list_stats(&pod.id)?;
    let mine = listed
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == c.id))
        .with_context(|| format!("ListContainerStats of the pod lacks {}: {listed:?}", c.name))?;
    ensure!(
        mine.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds.as_ref()).is_some()
            && mine.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).is_some(),
        "ListContainerStats has no CPU or memory for {}: {mine:?}",
        c.name
    );
    Ok((cpu, memory))
}

fn stats_show_cpu_after_a_busy_loop_and_memory_after_an_allocation(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("stats", handler)?;
    // Waits for /tmp/go, then holds a 64 MiB string (awk doubles "x" 26 times).
    let script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; \
                  awk 'BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s; print \"allocated\", length(s); fflush(); system(\"sleep 3600\") }'";
    let c = pod.run("worker", &["sh", "-c", script])?;
    let (cpu0, mem0) = cpu_and_memory(bed, &pod, &c)?;

    let busy = Instant::now();
    let out =
        pod.exec(&c, &["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i"])?;
    let busy = busy.elapsed();
    ensure!(out.stdout.trim() == "300000", "the busy loop: {out:?}");
    let (cpu1, _) = cpu_and_memory(bed, &pod, &c)?;
    // The loop ran on one core for most of its wall time; ask for a fifth of it.
    let want = (busy.as_nanos() / 5) as u64;
    ensure!(
        cpu1 >= cpu0 + want,
        "CPU usage went from {cpu0} ns to {cpu1} ns over a busy loop of {busy:?} (expected at least +{want} ns)"
    );

    pod.exec(&c, &["touch", "/tmp/go"])?;
    pod.wait_for_log(&c, Duration::from_secs(30), |l| {
        l.iter().any(|l| l.text == "allocated 67108864")
    })?;
    let allocation = 64 * MIB as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mem1 = loop {
        let (_, mem) = cpu_and_memory(bed, &pod, &c)?;
        if mem > allocation || Instant::now() > deadline {
            break mem;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(
        mem1 > allocation,
        "the working set is {mem1} bytes (was {mem0}) while the container holds a {allocation}-byte string"
    );
    pod.teardown()
}

fn memory_limit_below_use_is_reported_as_oom_killed(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("oom", handler)?;
    // awk doubles a string until it is killed: far past the 32 MiB limit.
    let mut config =
        pod.container_config("hog", &["awk", "BEGIN { s = \"x\"; while (1) s = s s }"]);
    config.linux.get_or_insert_with(Default::default).resources =
        Some(LinuxContainerResources { memory_limit_in_bytes: 32 * MIB, ..Default::default() });
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let status = pod.wait_exited(&c, Duration::from_secs(60))?;
    ensure!(
        status.reason == "OOMKilled",
        "a container over its memory limit exited {} with reason {:?} instead of OOMKilled",
        status.exit_code,
        status.reason
    );
    ensure!(
        status.exit_code == 137,
        "an OOM-killed container exited {} instead of 137",
        status.exit_code
    );
    pod.teardown()
}

fn read_cgroup_file(pid: i32, controller: &str, file: &str) -> Result<String> {
    let dir = host::cgroup_dir_of(pid, controller)
        .with_context(|| format!("no {controller} cgroup for pid {pid}"))?;
    let path = dir.join(file);
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

fn update_lowers_the_memory_limit_and_cpu_quota_live(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("update", handler)?;
    let mut config = pod.container_config("sleeper", &["sleep", "3600"]);
    config.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 512 * MIB,
        cpu_period: 100_000,
        cpu_quota: 200_000,
        cpu_shares: 1024,
        ..Default::default()
    });
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let pid = pod.container_pid(&c)?;
    // 64 MiB (plus awk's copies while doubling) fits in 512 MiB.
    let hog = ["awk", "BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s; print length(s) }"];
    let out = pod.exec(&c, &hog)?;
    ensure!(
        out.exit_code == 0 && out.stdout.trim() == "67108864",
        "allocating 64 MiB under a 512 MiB limit failed: {out:?}"
    );

    // The CRI of containerd 1.6 (cri-api v1 LinuxContainerResources) has no pids field:
    // memory and CPU are what UpdateContainerResources can lower.
    bed.cri().update(
        &c.id,
        &LinuxContainerResources {
            memory_limit_in_bytes: 32 * MIB,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        },
    )?;
    let (memory_file, quota_file) = if host::cgroup_dir_of(pid, "memory")
        .is_some_and(|d| d.join("memory.limit_in_bytes").exists())
    {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us")
    } else {
        ("memory.max", "cpu.max")
    };
    let memory = read_cgroup_file(pid, "memory", memory_file)?;
    ensure!(
        memory == (32 * MIB).to_string(),
        "after the update {memory_file} of the container is {memory}, not 32 MiB"
    );
    let quota = read_cgroup_file(pid, "cpu", quota_file)?;
    ensure!(
        quota == "50000" || quota == "50000 100000",
        "after the update {quota_file} of the container is {quota:?}, not a 50 ms quota"
    );
    let out = pod.exec(&c, &hog)?;
    ensure!(
        out.exit_code != 0,
        "allocating 64 MiB after lowering the limit to 32 MiB succeeded: {out:?}"
    );
    ensure!(running(bed, &c)?, "the container's init died with the exec that went over");
    pod.teardown()
}

fn a_lowered_pod_pids_limit_stops_forks(bed: &TestBed, handler: &str) -> Result<()> {
    // The kubelet enforces a pod's pids limit on the pod's cgroup (the cgroup parent it
    // gives the CRI); CRI UpdateContainerResources has no pids field in containerd 1.6.
    // Lowering it live must stop forks in every container of the pod: this holds only if
    // the runtime puts container and exec processes below the cgroup parent.
    let pod = bed.run_pod("pids", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let parent = pod
        .config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .context("the pod config has no cgroup parent")?;
    let pids_dir = host::cgroup_roots()
        .into_iter()
        .map(|root| root.join(parent.trim_start_matches('/')))
        .find(|d| d.join("pids.max").exists())
        .with_context(|| format!("no pids controller for the pod's cgroup parent {parent}"))?;
    let spawn_many =
        ["sh", "-c", "for i in $(seq 1 20); do sleep 30 & done; wait; echo all-started"];
    // Under the current (unlimited) setting 20 sleeps fork fine.
    let out = bed.cri().exec_sync(
        &c.id,
        &["sh", "-c", "for i in $(seq 1 20); do sleep 0.2 & done; wait; echo forked"],
        Duration::from_secs(30),
    )?;
    ensure!(out.stdout.trim() == "forked", "20 forks without a limit: {out:?}");

    let current: u64 = std::fs::read_to_string(pids_dir.join("pids.current"))?.trim().parse()?;
    let limit = current + 5;
    std::fs::write(pids_dir.join("pids.max"), limit.to_string())
        .with_context(|| format!("writing pids.max in {}", pids_dir.display()))?;
    let out = bed.cri().exec_sync(&c.id, &spawn_many, Duration::from_secs(30));
    let _ = std::fs::write(pids_dir.join("pids.max"), "max");
    // The exec itself may be refused (its process cannot be created), or the shell's forks fail.
    if let Ok(out) = out {
        ensure!(
            out.stdout.trim() != "all-started"
                && (out.exit_code != 0 || out.stderr.contains("fork")),
            "20 forks under a pids limit of {limit} (pod had {current}) all succeeded: {out:?}"
        );
    }
    bed.cri().exec_sync(&c.id, &["pkill", "sleep"], Duration::from_secs(10)).ok();
    pod.teardown()
}

fn log_count(pod: &Pod, c: &Container) -> Result<usize> {
    Ok(pod.log(c)?.iter().filter(|l| l.text.starts_with("tick")).count())
}

fn pause_freezes_a_counter_and_resume_thaws_it(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("pause", handler)?;
    let c = pod.run(
        "counter",
        &["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"],
    )?;
    pod.wait_for_log(&c, STREAM_TIMEOUT, |l| l.len() >= 3)?;
    let pid = pod.container_pid(&c)?;

    bed.ctr(&["task", "pause", &c.id])?;
    let tasks = bed.ctr(&["task", "ls"])?;
    ensure!(
        tasks.lines().any(|l| l.starts_with(&c.id) && l.contains("PAUSED")),
        "after pause, `ctr task ls` does not show the task PAUSED:\n{tasks}"
    );
    if let Ok(state) = read_cgroup_file(pid, "freezer", "freezer.state") {
        ensure!(state == "FROZEN", "after pause freezer.state is {state}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let frozen = log_count(&pod, &c)?;
    std::thread::sleep(Duration::from_secs(1));
    let still = log_count(&pod, &c)?;
    ensure!(
        still == frozen,
        "the counter went on while paused: {frozen} ticks, then {still} a second later"
    );

    bed.ctr(&["task", "resume", &c.id])?;
    let tasks = bed.ctr(&["task", "ls"])?;
    ensure!(
        tasks.lines().any(|l| l.starts_with(&c.id) && l.contains("RUNNING")),
        "after resume, `ctr task ls` does not show the task RUNNING:\n{tasks}"
    );
    pod.wait_for_log(&c, Duration::from_secs(10), |l| {
        l.iter().filter(|l| l.text.starts_with("tick")).count() >= still + 5
    })
    .context("the counter did not go on after resume")?;
    pod.teardown()
}

fn execs_leak_no_fds_or_threads_in_the_shim(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("exec-leak", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let shim = pod.shims().first().map(|s| s.pid).context("no shim for the pod")?;
    let run_execs = |n: usize| -> Result<()> {
        for i in 0..n {
            let out = pod.exec(&c, &["echo", &i.to_string()])?;
            ensure!(out.stdout == format!("{i}\n"), "exec {i}: {out:?}");
            // And one with a terminal and stdin, through the streaming server.
            let mut s = Session::connect(&bed.cri().exec(
                &c.id,
                &["sh", "-c", "read x; echo got:$x"],
                true,
                true,
            )?)?;
            s.stdin(b"x\r")?;
            s.wait_closed(STREAM_TIMEOUT)?;
            ensure!(s.stdout_text().contains("got:x"), "tty exec {i}: {s:?}");
        }
        Ok(())
    };
    run_execs(5)?; // warm up (thread pools, lazily opened files)
    std::thread::sleep(Duration::from_millis(500));
    let fds0 = host::fd_count(shim).context("shim gone")?;
    let threads0 = host::thread_count(shim).context("shim gone")?;
    run_execs(30)?;
    // Copy threads end when their process's output ends; give them a moment. runc, the
    // baseline: containerd-shim-runc-v2 was seen keeping 3 more fds after 60 execs on a loaded
    // CI run. moat is held to the bound.
    settles_within(handler, Duration::from_secs(10), || {
        let fds = host::fd_count(shim).context("shim gone")?;
        let threads = host::thread_count(shim).context("shim gone")?;
        Ok((fds > fds0 + 2 || threads > threads0 + 2).then(|| {
            format!("after 60 more execs the shim holds {fds} fds (was {fds0}) and {threads} threads (was {threads0})")
        }))
    })?;
    pod.teardown()
}

fn containerd_restart_keeps_pods_reachable(_shared: &TestBed, handler: &str) -> Result<()> {
    let test = format!("containerd_restart_keeps_pods_reachable::{handler}");
    on_private(TestBed::private(&test, handler, "restart")?, |bed| {
        let pod = bed.run_pod("restart", handler)?;
        let c = pod.run(
            "ticker",
            &["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.02; done"],
        )?;
        pod.wait_for_log(&c, STREAM_TIMEOUT, |l| l.len() >= 3)?;
        let before = pod.footprint()?;

        // containerd stays down for a second while the container goes on writing to its
        // log fifo with nobody reading it (writes must neither fail nor be lost for good).
        bed.restart_containerd(Duration::from_secs(1))?;
        let (status, _) = bed.cri().inspect(&c.id)?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "after containerd restarted the container is {} (exit {}, reason {:?})",
            moat_e2e::cri::state_name(status.state),
            status.exit_code,
            status.reason
        );
        let ticks = log_count(&pod, &c)?;
        pod.wait_for_log(&c, Duration::from_secs(10), |l| {
            l.iter().filter(|l| l.text.starts_with("tick")).count() >= ticks + 5
        })
        .context("the container's output no longer reaches its log after containerd restarted")?;
        // Nothing written while containerd was down is lost: the ticks are consecutive.
        let numbers: Vec<u64> = pod
            .log(&c)?
            .iter()
            .filter_map(|l| l.text.strip_prefix("tick ")?.parse().ok())
            .collect();
        if let Some(gap) = numbers.windows(2).find(|w| w[1] != w[0] + 1) {
            bail!(
                "the log skips from tick {} to tick {}: output written while containerd was down was lost",
                gap[0],
                gap[1]
            );
        }
        let out = pod.exec(&c, &["sh", "-c", "echo alive; exit 4"])?;
        ensure!(
            out.stdout == "alive\n" && out.exit_code == 4,
            "ExecSync after the restart: {out:?}"
        );
        let mut s = Session::connect(&bed.cri().exec(
            &c.id,
            &["sh", "-c", "read x; echo got:$x"],
            true,
            true,
        )?)?;
        s.stdin(b"y\r")?;
        s.wait_closed(STREAM_TIMEOUT)?;
        ensure!(s.stdout_text().contains("got:y"), "tty exec after the restart: {s:?}");
        bed.cri().stats(&c.id).context("ContainerStats after the restart")?;

        let stopped = Instant::now();
        bed.cri().stop(&c.id, 2)?;
        let status = pod.wait_exited(&c, Duration::from_secs(10))?;
        ensure!(
            status.exit_code == 143 || status.exit_code == 137,
            "StopContainer after the restart: exit {} (reason {:?}) after {:?}",
            status.exit_code,
            status.reason,
            stopped.elapsed()
        );
        pod.teardown()?;
        let left = before.wait_gone(Duration::from_secs(10));
        ensure!(left.is_empty(), "after the restart and teardown these remain: {left:#?}");
        Ok(())
    })
}

fn a_shim_killed_with_sigkill_is_cleaned_up_by_remove_pod_sandbox(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("shim-kill", handler)?;
    let a = pod.run("a", &["sleep", "3600"])?;
    pod.run("b", &["sh", "-c", "sleep 3600 & sleep 3600"])?;
    pod.exec(&a, &["true"])?;
    let footprint = pod.footprint()?;
    let idranges = bed.layout().dir.join("idranges");
    let owner = format!("pod={}", pod.id);
    let range_files = || -> Vec<String> {
        std::fs::read_dir(&idranges)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| t.lines().any(|l| l == owner))
            })
            .map(|e| e.path().display().to_string())
            .collect()
    };
    if handler == "moat" {
        ensure!(
            !range_files().is_empty(),
            "while the pod runs, no file in {} holds its ID range (pod={})",
            idranges.display(),
            pod.id
        );
    }
    let shims = pod.shims();
    ensure!(shims.len() == 1, "expected one shim for the pod: {shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0].pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    // containerd sees the shim die and runs `<shim> delete` for it; then the kubelet's
    // StopPodSandbox and RemovePodSandbox.
    let deadline = Instant::now() + Duration::from_secs(20);
    while running(bed, &a)? {
        if Instant::now() > deadline {
            bail!("20 s after its shim was killed the container is still RUNNING");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pod.teardown()?;
    let left = footprint.wait_gone(Duration::from_secs(10));
    ensure!(
        left.is_empty(),
        "after the shim was killed and the pod removed these remain: {left:#?}"
    );
    let files = range_files();
    ensure!(
        files.is_empty(),
        "after the pod was removed its ID range is still allocated in {files:?}"
    );
    Ok(())
}

fn port_forward_reaches_a_server_in_the_pod(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("port-forward", handler)?;
    let server = pod.run("server", &["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/var/www"])?;
    // Wait until the server listens (from inside the pod).
    let deadline = Instant::now() + STREAM_TIMEOUT;
    while pod
        .exec(&server, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"])
        .map(|o| o.exit_code != 0)
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!("httpd in the pod never answered on 127.0.0.1:8080");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The WebSocket port-forward protocol: per port a data channel (0) and an error channel
    // (1); the server's first frame on each is the port number (2 bytes, little endian).
    let mut s = Session::connect(&bed.cri().port_forward(&pod.id, 8080)?)?;
    s.read_until(STREAM_TIMEOUT, "the port header on the data channel", |s| {
        s.channel(0).len() >= 2
    })?;
    ensure!(
        s.channel(0)[..2] == 8080u16.to_le_bytes(),
        "the data channel did not start with port 8080: {:?}",
        &s.channel(0)[..2]
    );
    s.send_frame(0, b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    s.read_until(STREAM_TIMEOUT, "the page through the forwarded port", |s| {
        String::from_utf8_lossy(s.channel(0)).contains("moat test page")
    })?;
    let answer = String::from_utf8_lossy(&s.channel(0)[2..]).into_owned();
    ensure!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "the forwarded answer is not an HTTP 200: {answer:?}"
    );
    s.close()?;
    pod.teardown()
}

fn list_verbs_show_the_pod_and_its_containers(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("lists", handler)?;
    let sleeper = pod.run("running", &["sleep", "3600"])?;
    let exited = pod.run("exited", &["true"])?;
    pod.wait_exited(&exited, Duration::from_secs(30))?;
    let created = pod.create(&pod.container_config("created", &["sleep", "3600"]))?;

    let listed = bed.cri().pod_listed(&pod.id)?.context("ListPodSandbox does not show the pod")?;
    ensure!(
        listed.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32,
        "ListPodSandbox shows the running pod in state {}",
        listed.state
    );
    ensure!(
        listed.runtime_handler == handler,
        "ListPodSandbox shows runtime handler {:?} instead of {handler:?}",
        listed.runtime_handler
    );
    let containers = bed.cri().containers_listed(&pod.id)?;
    let state_of = |c: &Container| {
        containers.iter().find(|l| l.id == c.id).map(|l| moat_e2e::cri::state_name(l.state))
    };
    for (c, want) in [(&sleeper, "RUNNING"), (&exited, "EXITED"), (&created, "CREATED")] {
        ensure!(
            state_of(c) == Some(want),
            "ListContainers shows {} as {:?} instead of {want}: {containers:?}",
            c.name,
            state_of(c)
        );
    }
    // rm of an exited and of a never-started container; stopp then shows the pod NOTREADY.
    bed.cri().rm(&exited.id)?;
    bed.cri().rm(&created.id)?;
    let left: Vec<String> = bed.cri().ps(&pod.id)?;
    ensure!(
        left == vec![sleeper.id.clone()],
        "after removing two containers ListContainers shows {left:?}"
    );
    bed.cri().stopp(&pod.id)?;
    let listed = bed.cri().pod_listed(&pod.id)?.context("ListPodSandbox lost the stopped pod")?;
    ensure!(
        listed.state == k8s_cri::v1::PodSandboxState::SandboxNotready as i32,
        "a stopped pod is listed in state {}",
        listed.state
    );
    ensure!(!running(bed, &sleeper)?, "StopPodSandbox left {} running", sleeper.name);
    let pod_id = pod.id.clone();
    pod.teardown()?;
    ensure!(bed.cri().pod_listed(&pod_id)?.is_none(), "RemovePodSandbox left the pod listed");
    Ok(())
}

fn pod_stats_cover_the_pod_and_its_containers(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("statsp", handler)?;
    let c = pod.run("sleeper", &["sleep", "3600"])?;
    let out =
        pod.exec(&c, &["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i"])?;
    ensure!(out.stdout.trim() == "100000", "the busy loop: {out:?}");
    let stats = bed.cri().pod_stats(&pod.id)?;
    let linux = stats
        .linux
        .as_ref()
        .with_context(|| format!("PodSandboxStats has no Linux stats: {stats:?}"))?;
    let cpu = linux
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    let memory = linux
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    ensure!(
        cpu > 0 && memory > 0,
        "PodSandboxStats shows no pod CPU ({cpu} ns) or memory ({memory} bytes): {stats:?}"
    );
    ensure!(
        linux.containers.iter().any(|s| s.attributes.as_ref().is_some_and(|a| a.id == c.id)),
        "PodSandboxStats lists no stats for the container: {stats:?}"
    );
    pod.teardown()
}
