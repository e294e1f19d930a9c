//! cgroups module against the machine's real cgroup hierarchies. Needs root.
//!
//! Every test works under its own parent `/moat-test-<pid>-<test>` so that tests running in
//! parallel do not see each other, and checks afterwards that nothing is left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use moat_sandbox::cgroups::stats::CgroupStats;
use moat_sandbox::cgroups::{Cgroup, CgroupError, FreezerState, Layout, Mode};
use nix::sys::signal::Signal;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

const MIB: i64 = 1024 * 1024;

fn layout() -> Layout {
    assert!(nix::unistd::geteuid().is_root(), "the cgroups tests need root");
    Layout::detect().expect("detect cgroup layout")
}

/// `/moat-test-<pid>-<test>`: the parent every path of one test lives under.
fn parent(test: &str) -> String {
    format!("/moat-test-{}-{test}", std::process::id())
}

/// Every hierarchy's directory for `cgroups_path` that exists now.
fn existing_dirs(layout: &Layout, cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    layout
        .v1_hierarchies()
        .iter()
        .map(|h| h.mount.clone())
        .chain(layout.v2_mount().map(Path::to_path_buf))
        .map(|m| m.join(rel))
        .filter(|p| p.exists())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Destroys the cgroup (and fails the test if that fails) even when an assertion panicked.
struct Guard(Option<Cgroup>);

impl Guard {
    fn cg(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup present")
    }
    fn destroy(mut self) -> Result<()> {
        let cg = self.0.take().expect("cgroup present");
        cg.destroy().context("destroy")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            if let Err(e) = cg.destroy() {
                eprintln!("cleanup: destroy {}: {e}", cg.path());
            }
        }
    }
}

/// `sh -c 'read x; <script>'`: the shell waits on stdin until `go`, so it can be moved into
/// the cgroup before it runs anything.
struct Gated {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Gated {
    fn spawn(script: &str) -> Result<Gated> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read x; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn sh")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Gated { child, stdout })
    }
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }
    fn go(&mut self) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n").context("write go")?;
        stdin.flush().context("flush")?;
        Ok(())
    }
    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        self.stdout.read_line(&mut s).context("read a line")?;
        Ok(s.trim().to_string())
    }
    /// Waits (bounded) and returns (exit code or None, terminating signal or None, stderr).
    fn wait(mut self, limit: Duration) -> Result<(Option<i32>, Option<i32>, String)> {
        use std::os::unix::process::ExitStatusExt;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    e.read_to_string(&mut err)?;
                }
                return Ok((status.code(), status.signal(), err));
            }
            ensure!(
                start.elapsed() < limit,
                "child {} still running after {limit:?}",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn resources(
    memory: Option<(i64, i64)>,
    pids: Option<i64>,
    cpu: Option<(i64, u64, u64)>,
) -> LinuxResources {
    let mut b = LinuxResourcesBuilder::default();
    if let Some((limit, swap)) = memory {
        b = b
            .memory(LinuxMemoryBuilder::default().limit(limit).swap(swap).build().expect("memory"));
    }
    if let Some(p) = pids {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build().expect("pids"));
    }
    if let Some((quota, period, shares)) = cpu {
        b = b.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .shares(shares)
                .build()
                .expect("cpu"),
        );
    }
    b.build().expect("resources")
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !f()? {
        ensure!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn create_applies_limits_in_every_hierarchy_and_destroy_removes_them() -> Result<()> {
    let layout = layout();
    let top = parent("limits");
    let path = format!("{top}/c1");
    let r = resources(Some((64 * MIB, 64 * MIB)), Some(50), Some((50_000, 100_000, 512)));
    let cg = Guard(Some(Cgroup::create(&layout, &path, Some(&r))?));

    let dirs: Vec<PathBuf> = cg.cg().dirs().map(Path::to_path_buf).collect();
    ensure!(!dirs.is_empty());
    for d in &dirs {
        ensure!(d.is_dir(), "{} missing", d.display());
    }
    let procs = cg.cg().procs_files();
    ensure!(procs.len() == dirs.len(), "one cgroup.procs per hierarchy: {procs:?}");
    for p in &procs {
        ensure!(p.exists(), "{} missing", p.display());
    }
    if layout.mode() == Mode::Hybrid {
        let unified = layout.v2_mount().context("v2 mount")?;
        ensure!(
            procs.iter().any(|p| p.starts_with(unified)),
            "hybrid tracks processes in the v2 hierarchy"
        );
    }

    match layout.mode() {
        Mode::V1 | Mode::Hybrid => {
            let mem = cg.cg().v1_dir("memory").context("memory")?;
            ensure!(read(&mem.join("memory.limit_in_bytes")) == (64 * MIB).to_string());
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                ensure!(read(&mem.join("memory.memsw.limit_in_bytes")) == (64 * MIB).to_string());
            }
            ensure!(read(&cg.cg().v1_dir("pids").context("pids")?.join("pids.max")) == "50");
            let cpu = cg.cg().v1_dir("cpu").context("cpu")?;
            ensure!(read(&cpu.join("cpu.cfs_quota_us")) == "50000");
            ensure!(read(&cpu.join("cpu.cfs_period_us")) == "100000");
            ensure!(read(&cpu.join("cpu.shares")) == "512");
            // the v1 cpuset got usable cpus/mems copied down from its parent
            if let Some(cpuset) = cg.cg().v1_dir("cpuset") {
                ensure!(!read(&cpuset.join("cpuset.cpus")).is_empty());
                ensure!(!read(&cpuset.join("cpuset.mems")).is_empty());
            }
        }
        Mode::V2 => {
            let d = cg.cg().v2_dir().context("v2")?;
            ensure!(read(&d.join("memory.max")) == (64 * MIB).to_string());
            ensure!(read(&d.join("pids.max")) == "50");
            ensure!(read(&d.join("cpu.max")) == "50000 100000");
            ensure!(read(&d.join("cpu.weight")) == "20"); // 1 + (510 * 9999) / 262142
        }
    }

    cg.destroy()?;
    ensure!(existing_dirs(&layout, &path).is_empty(), "leaf left behind");
    ensure!(existing_dirs(&layout, &top).is_empty(), "the parent moat created is left behind");
    Ok(())
}

#[test]
fn added_process_shows_in_pids_and_cpu_stats() -> Result<()> {
    let layout = layout();
    let cg = Guard(Some(Cgroup::create(&layout, &format!("{}/busy", parent("cpu")), None)?));
    let mut child = Gated::spawn("while :; do :; done")?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    ensure!(cg.cg().pids()? == vec![child.pid()], "pids {:?}", cg.cg().pids()?);
    for f in cg.cg().procs_files() {
        ensure!(
            read(&f).lines().any(|l| l == child.pid().to_string()),
            "{} lacks the pid",
            f.display()
        );
    }
    std::thread::sleep(Duration::from_millis(400));
    match cg.cg().stats()? {
        CgroupStats::V1(s) => {
            let cpu = s.cpu.context("v1 cpu stats")?;
            ensure!(cpu.usage_total > 50_000_000, "total {} ns after 400ms busy", cpu.usage_total);
            ensure!(cpu.per_cpu.iter().sum::<u64>() > 0, "per cpu {:?}", cpu.per_cpu);
            ensure!(
                cpu.usage_user + cpu.usage_kernel > 0,
                "user {} kernel {}",
                cpu.usage_user,
                cpu.usage_kernel
            );
        }
        CgroupStats::V2(s) => {
            let cpu = s.cpu.context("v2 cpu stats")?;
            ensure!(cpu.usage_usec > 50_000, "usage {} us after 400ms busy", cpu.usage_usec);
        }
    }
    drop(child);
    cg.destroy()
}

#[test]
fn memory_stats_after_allocation() -> Result<()> {
    let layout = layout();
    let cg = Guard(Some(Cgroup::create(&layout, &format!("{}/alloc", parent("mem")), None)?));
    // a 8 MiB shell string
    let mut child = Gated::spawn(
        "x=a; i=0; while [ $i -lt 23 ]; do x=$x$x; i=$((i+1)); done; sleep 100 & echo ok; wait",
    )?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    ensure!(child.line()? == "ok");
    match cg.cg().stats()? {
        CgroupStats::V1(s) => {
            let m = s.memory.context("v1 memory stats")?;
            ensure!(m.usage.usage > 8 * MIB as u64, "usage {}", m.usage.usage);
            ensure!(
                m.usage.max >= m.usage.usage,
                "max_usage {} < usage {}",
                m.usage.max,
                m.usage.usage
            );
            ensure!(m.stat.rss > 4 * MIB as u64, "rss {}", m.stat.rss);
            ensure!(m.stat.total_rss >= m.stat.rss);
            ensure!(m.stat.pg_fault > 0);
            let pids = s.pids.context("pids stats")?;
            ensure!(pids.current == 2, "sh + sleep, got {}", pids.current);
        }
        CgroupStats::V2(s) => {
            let m = s.memory.context("v2 memory stats")?;
            ensure!(m.usage > 8 * MIB as u64, "usage {}", m.usage);
            ensure!(m.stat.anon > 4 * MIB as u64, "anon {}", m.stat.anon);
            ensure!(s.pids.context("pids")?.current == 2);
        }
    }
    drop(child);
    cg.destroy()
}

#[test]
fn pids_limit_makes_fork_fail() -> Result<()> {
    let layout = layout();
    let cg = Guard(Some(Cgroup::create(
        &layout,
        &format!("{}/bomb", parent("pids")),
        Some(&resources(None, Some(4), None)),
    )?));
    let mut child = Gated::spawn(
        "for i in 1 2 3 4 5 6 7 8; do sleep 30 >/dev/null 2>&1 & done; echo spawned; wait",
    )?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    // the shell stops at the failed fork (sleeps hold no copy of its stderr)
    let (_, _, stderr) = child.wait(Duration::from_secs(10))?;
    ensure!(stderr.to_lowercase().contains("fork"), "expected a fork failure, stderr: {stderr:?}");
    ensure!(cg.cg().pids()?.len() <= 4, "{:?}", cg.cg().pids()?);
    cg.destroy()
}

#[test]
fn update_lowers_pids_limit_live() -> Result<()> {
    let layout = layout();
    let cg = Guard(Some(Cgroup::create(
        &layout,
        &format!("{}/u", parent("update")),
        Some(&resources(None, Some(100), None)),
    )?));
    cg.cg().update(&resources(None, Some(3), None))?;
    let stats_limit = match cg.cg().stats()? {
        CgroupStats::V1(s) => s.pids.context("pids")?.limit,
        CgroupStats::V2(s) => s.pids.context("pids")?.limit,
    };
    ensure!(stats_limit == Some(3), "limit after update: {stats_limit:?}");
    let mut child =
        Gated::spawn("for i in 1 2 3 4; do sleep 30 >/dev/null 2>&1 & done; echo spawned; wait")?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    let (_, _, stderr) = child.wait(Duration::from_secs(10))?;
    ensure!(
        stderr.to_lowercase().contains("fork"),
        "the lowered limit must stop the 3rd sleep; stderr {stderr:?}"
    );
    cg.destroy()
}

#[test]
fn freeze_stops_a_process_and_thaw_resumes_it() -> Result<()> {
    let layout = layout();
    let dir = tempdir("freeze")?;
    let file = dir.join("count");
    let cg = Guard(Some(Cgroup::create(&layout, &format!("{}/f", parent("freeze")), None)?));
    let mut child =
        Gated::spawn(&format!("while :; do echo x >> {}; sleep 0.02; done", file.display()))?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    wait_for("the counter to start", Duration::from_secs(5), || Ok(size() > 4))?;

    cg.cg().freeze()?;
    ensure!(cg.cg().freezer_state()? == FreezerState::Frozen);
    let frozen_at = size();
    std::thread::sleep(Duration::from_millis(400));
    ensure!(size() == frozen_at, "the counter ran while frozen: {frozen_at} -> {}", size());

    cg.cg().thaw()?;
    ensure!(cg.cg().freezer_state()? == FreezerState::Thawed);
    wait_for("the counter to resume", Duration::from_secs(5), || Ok(size() > frozen_at + 4))?;
    drop(child);
    cg.destroy()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn oom_kill_is_counted_and_watched() -> Result<()> {
    let layout = layout();
    let cg = Guard(Some(Cgroup::create(
        &layout,
        &format!("{}/o", parent("oom")),
        Some(&resources(Some((32 * MIB, 32 * MIB)), None, None)),
    )?));
    ensure!(cg.cg().oom_kill_count()? == 0);
    let watcher = cg.cg().oom_watcher()?;
    ensure!(!watcher.drain()?, "no OOM event yet");
    let mut child = Gated::spawn("x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done")?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    let (code, signal, _) = child.wait(Duration::from_secs(30))?;
    ensure!(signal == Some(9), "the OOM killer sends SIGKILL; exit {code:?} signal {signal:?}");
    ensure!(cg.cg().oom_kill_count()? >= 1, "oom_kill {}", cg.cg().oom_kill_count()?);

    let mut fds =
        [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&watcher), nix::poll::PollFlags::POLLIN)];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16)).context("poll")?;
    ensure!(ready == 1, "the OOM watcher did not wake up");
    ensure!(watcher.drain()?, "drain reports the event");
    match cg.cg().stats()? {
        CgroupStats::V1(s) => {
            ensure!(s.memory.and_then(|m| m.oom_control).is_some_and(|o| o.oom_kill >= 1))
        }
        CgroupStats::V2(s) => ensure!(s.memory_events.is_some_and(|e| e.oom_kill >= 1)),
    }
    cg.destroy()
}

#[test]
fn destroy_kills_remaining_processes_and_is_idempotent() -> Result<()> {
    let layout = layout();
    let top = parent("destroy");
    let path = format!("{top}/d");
    let cg = Cgroup::create(&layout, &path, None)?;
    let mut child = Gated::spawn("sleep 1000 & sleep 1000 & echo started; wait")?;
    cg.add_pid(child.pid())?;
    child.go()?;
    ensure!(child.line()? == "started");
    ensure!(cg.pids()?.len() == 3, "sh and two sleeps: {:?}", cg.pids()?);
    let reaper = std::thread::spawn(move || child.wait(Duration::from_secs(20)));

    cg.destroy()?;
    ensure!(existing_dirs(&layout, &path).is_empty(), "{:?}", existing_dirs(&layout, &path));
    ensure!(existing_dirs(&layout, &top).is_empty());
    let (_, signal, _) = reaper.join().map_err(|_| anyhow::anyhow!("reaper panicked"))??;
    ensure!(signal == Some(9), "the shell was SIGKILLed: {signal:?}");

    cg.destroy().context("a second destroy is Ok")?;
    match Cgroup::open(&layout, &path) {
        Err(e @ CgroupError::NotFound { .. }) => ensure!(e.is_not_found()),
        other => anyhow::bail!("open of a destroyed cgroup: {other:?}"),
    }
    Ok(())
}

#[test]
fn open_reattaches_and_kill_all_signals_every_process() -> Result<()> {
    let layout = layout();
    let top = parent("open");
    let path = format!("{top}/r");
    let created = Guard(Some(Cgroup::create(&layout, &path, None)?));
    let mut child = Gated::spawn("sleep 1000")?;
    created.cg().add_pid(child.pid())?;
    child.go()?;

    let opened = Cgroup::open(&layout, &path)?;
    ensure!(opened.pids()? == created.cg().pids()?);
    ensure!(opened.procs_files() == created.cg().procs_files());
    opened.kill_all(Signal::SIGTERM)?;
    let (_, signal, _) = child.wait(Duration::from_secs(10))?;
    ensure!(signal == Some(15), "SIGTERM reached the process: {signal:?}");
    ensure!(opened.freezer_state()? == FreezerState::Thawed, "kill_all leaves the cgroup thawed");

    opened.destroy()?;
    ensure!(existing_dirs(&layout, &path).is_empty());
    // a reattached cgroup does not know which parents it created: the original does
    created.destroy()?;
    ensure!(existing_dirs(&layout, &top).is_empty());
    Ok(())
}

#[test]
fn systemd_form_path_is_refused() -> Result<()> {
    let layout = layout();
    let path = format!("system.slice:moat-test-{}:x", std::process::id());
    match Cgroup::create(&layout, &path, None) {
        Err(CgroupError::SystemdDriverUnsupported { path: p }) => ensure!(p == path),
        other => anyhow::bail!("systemd path {path:?} gave {other:?}"),
    }
    ensure!(existing_dirs(&layout, &path).is_empty());
    ensure!(existing_dirs(&layout, "system.slice").iter().all(|d| !d.join(&path).exists()));
    Ok(())
}

#[test]
fn dot_dot_path_is_refused_and_creates_nothing() -> Result<()> {
    let layout = layout();
    let top = parent("dotdot");
    let path = format!("{top}/../moat-escape-{}", std::process::id());
    match Cgroup::create(&layout, &path, None) {
        Err(CgroupError::InvalidPath { path: p, .. }) => ensure!(p == path),
        other => anyhow::bail!("path {path:?} gave {other:?}"),
    }
    ensure!(existing_dirs(&layout, &top).is_empty());
    ensure!(existing_dirs(&layout, &format!("/moat-escape-{}", std::process::id())).is_empty());
    Ok(())
}

#[test]
fn invalid_resources_leave_nothing_behind() -> Result<()> {
    let layout = layout();
    // memory+swap below memory: refused before anything is created
    let top = parent("badswap");
    match Cgroup::create(
        &layout,
        &format!("{top}/x"),
        Some(&resources(Some((64 * MIB, 32 * MIB)), None, None)),
    ) {
        Err(CgroupError::InvalidResources { .. }) => {}
        other => anyhow::bail!("swap 32M < limit 64M gave {other:?}"),
    }
    ensure!(existing_dirs(&layout, &top).is_empty());

    // a cpu the machine does not have: refused by the kernel after the directories exist
    let top = parent("badcpuset");
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("1000").build().expect("cpu"))
        .build()
        .expect("resources");
    match Cgroup::create(&layout, &format!("{top}/x"), Some(&r)) {
        Err(e @ CgroupError::Write { .. }) => ensure!(e.to_string().contains("cpuset.cpus"), "{e}"),
        other => anyhow::bail!("cpuset.cpus 1000 gave {other:?}"),
    }
    ensure!(existing_dirs(&layout, &top).is_empty(), "{:?}", existing_dirs(&layout, &top));
    Ok(())
}

#[test]
fn memory_limit_below_usage_is_refused_on_v1() -> Result<()> {
    let layout = layout();
    if layout.mode() == Mode::V2 {
        eprintln!("v2 reclaims or OOM-kills instead of refusing: nothing to check here");
        return Ok(());
    }
    let cg = Guard(Some(Cgroup::create(
        &layout,
        &format!("{}/m", parent("below")),
        Some(&resources(Some((128 * MIB, 128 * MIB)), None, None)),
    )?));
    let mut child = Gated::spawn(
        "x=a; i=0; while [ $i -lt 24 ]; do x=$x$x; i=$((i+1)); done; echo ok; sleep 100",
    )?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    ensure!(child.line()? == "ok");
    match cg.cg().update(&resources(Some((4 * MIB, 4 * MIB)), None, None)) {
        Err(CgroupError::MemoryLimitBelowUsage { limit, usage, .. }) => {
            ensure!(limit == 4 * MIB && usage > 4 * MIB as u64, "limit {limit} usage {usage}");
        }
        other => {
            anyhow::bail!("4M limit under ~16M of anonymous memory without swap gave {other:?}")
        }
    }
    let mem = cg.cg().v1_dir("memory").context("memory")?;
    ensure!(
        read(&mem.join("memory.limit_in_bytes")) == (128 * MIB).to_string(),
        "the old limit stays"
    );
    drop(child);
    cg.destroy()
}

#[test]
fn destroy_kills_a_process_that_is_only_in_one_v1_hierarchy() -> Result<()> {
    let layout = layout();
    if layout.mode() != Mode::Hybrid {
        eprintln!("only a hybrid machine has both cgroup.kill and v1 directories");
        return Ok(());
    }
    let path = format!("{}/partial", parent("partial"));
    let cg = Cgroup::create(&layout, &path, None)?;
    // `exec`: the shell becomes the sleep, so the cgroup holds exactly this one pid (a forked
    // sleep would join it too, after a race with the check below).
    let mut child = Gated::spawn("exec sleep 1000")?;
    // as if someone moved it into the memory hierarchy only: cgroup.kill cannot see it
    std::fs::write(
        cg.v1_dir("memory").context("memory")?.join("cgroup.procs"),
        child.pid().to_string(),
    )?;
    child.go()?;
    ensure!(cg.pids()? == vec![child.pid()]);
    let reaper = std::thread::spawn(move || child.wait(Duration::from_secs(20)));
    cg.destroy()?;
    let (_, signal, _) = reaper.join().map_err(|_| anyhow::anyhow!("reaper panicked"))??;
    ensure!(signal == Some(9), "{signal:?}");
    ensure!(existing_dirs(&layout, &path).is_empty());
    Ok(())
}

#[test]
fn v1_device_rules_deny_what_is_not_allowed() -> Result<()> {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let layout = layout();
    if layout.v1_mount("devices").is_none() {
        eprintln!("no v1 devices controller: device rules are not applied (v2 would need eBPF)");
        return Ok(());
    }
    let rule = |allow: bool, typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access("rwm");
        if let (Some(ma), Some(mi)) = (major, minor) {
            b = b.major(ma).minor(mi);
        }
        b.build().expect("rule")
    };
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(false, LinuxDeviceType::A, None, None),
            rule(true, LinuxDeviceType::C, Some(1), Some(3)),
        ])
        .build()
        .expect("resources");
    let cg = Guard(Some(Cgroup::create(&layout, &format!("{}/dev", parent("devices")), Some(&r))?));
    // The spec's rules plus the nodes of moat's minimal /dev, which are always allowed.
    let list = read(&cg.cg().v1_dir("devices").context("devices")?.join("devices.list"));
    ensure!(
        list.lines().any(|l| l == "c 1:3 rwm") && list.lines().any(|l| l == "c 136:* rwm"),
        "{list}"
    );
    ensure!(!list.contains("1:11"), "{list}");
    // the attack: open /dev/kmsg (c 1:11), which neither the rules nor the minimal /dev
    // allow; /dev/null (c 1:3) is allowed
    let mut child = Gated::spawn(
        "if (exec 3</dev/kmsg) 2>/dev/null; then echo kmsg-open; else echo kmsg-denied; fi; \
         if echo x >/dev/null; then echo null-open; else echo null-denied; fi",
    )?;
    cg.cg().add_pid(child.pid())?;
    child.go()?;
    ensure!(child.line()? == "kmsg-denied", "/dev/kmsg must not open");
    ensure!(child.line()? == "null-open", "/dev/null must open");
    drop(child);
    cg.destroy()
}

/// The v2 code paths (cgroup.freeze, cgroup.kill, v2 stats, cgroup.procs tracking) exercised on
/// this machine's v2 hierarchy by pretending it is the only one. On a hybrid machine it has no
/// controllers, so no limits are applied here; `hugetlb` may get enabled down the test path,
/// and the root's subtree_control is put back as it was.
#[test]
fn v2_code_paths_on_the_v2_hierarchy() -> Result<()> {
    let real = layout();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let Some(line) = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) else {
        eprintln!("no cgroup v2 hierarchy on this machine");
        return Ok(());
    };
    let layout = Layout::from_mountinfo(line);
    ensure!(layout.mode() == Mode::V2);
    let root_control = layout.v2_mount().context("v2")?.join("cgroup.subtree_control");
    let before = read(&root_control);

    let result = (|| -> Result<()> {
        let path = format!("{}/v2", parent("v2paths"));
        let cg = Guard(Some(Cgroup::create(&layout, &path, None)?));
        ensure!(cg.cg().procs_files().len() == 1);
        let dir = tempdir("v2paths")?;
        let file = dir.join("count");
        let mut child =
            Gated::spawn(&format!("while :; do echo x >> {}; sleep 0.02; done", file.display()))?;
        cg.cg().add_pid(child.pid())?;
        child.go()?;
        let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        wait_for("the counter to start", Duration::from_secs(5), || Ok(size() > 4))?;
        cg.cg().freeze()?;
        ensure!(cg.cg().freezer_state()? == FreezerState::Frozen);
        let frozen_at = size();
        std::thread::sleep(Duration::from_millis(300));
        ensure!(size() == frozen_at, "ran while frozen");
        cg.cg().thaw()?;
        wait_for("the counter to resume", Duration::from_secs(5), || Ok(size() > frozen_at + 4))?;
        match cg.cg().stats()? {
            CgroupStats::V2(s) => ensure!(s.cpu.context("cpu.stat")?.usage_usec > 0),
            CgroupStats::V1(_) => anyhow::bail!("a v2 layout reports v2 stats"),
        }
        let pid = child.pid();
        ensure!(cg.cg().pids()?.contains(&pid));
        cg.cg().kill_all(Signal::SIGKILL)?;
        let (_, signal, _) = child.wait(Duration::from_secs(10))?;
        ensure!(signal == Some(9), "{signal:?}");
        cg.destroy()?;
        ensure!(existing_dirs(&layout, &path).is_empty());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    })();
    if real.mode() == Mode::Hybrid {
        for ctrl in read(&root_control).split_whitespace() {
            if !before.split_whitespace().any(|c| c == ctrl) {
                std::fs::write(&root_control, format!("-{ctrl}"))?;
            }
        }
    }
    result
}

fn tempdir(test: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("moat-cg-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
