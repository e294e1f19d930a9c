//! The shared fixture: one private containerd per test process, started on first use with
//! the test images imported, stopped (and everything it left removed) when the process exits.
//! Tests get it through `bed(test_name, handler)` and run pods through `Pod`, which removes
//! its pod when dropped and prints containerd's log tail when the test is failing. Tests that
//! disturb containerd or change its config run on a private bed of their own: `on_private`
//! (per handler) and `test_on_private_bed` (a `#[test]` of its own) run a body on one.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use k8s_cri::v1::{ContainerConfig, ContainerStatus, PodSandboxConfig};

use crate::configs;
use crate::containerd::{self, Containerd, Layout};
use crate::cri::{Cri, ExecOutput};
use crate::cri_log::{self, LogLine};
use crate::host::{self, ProcessId};
use crate::{images, paths, prereq};

/// The test process's private containerd, with the test images imported.
#[derive(Debug)]
pub struct TestBed {
    containerd: Containerd,
    /// Replaced when containerd restarts (`restart_containerd`).
    cri: RwLock<Cri>,
    shim: Option<PathBuf>,
}

static BED: OnceLock<Result<TestBed, String>> = OnceLock::new();

/// The shared test bed for a test running pods with `handler` ("moat" or "runc"), or `None`
/// when the test should be skipped (prerequisites missing and `MOAT_E2E` unset; see `prereq`).
/// Panics when the test bed cannot start.
pub fn bed(test: &str, handler: &str) -> Option<&'static TestBed> {
    if !prereq::gate(test, handler) {
        return None;
    }
    match BED.get_or_init(|| TestBed::start().map_err(|e| format!("{e:#}"))) {
        Ok(bed) => Some(bed),
        Err(e) => panic!("{test}: the test bed did not start: {e}"),
    }
}

/// Runs `body` on `bed`, a private bed (`TestBed::private*`; `None`: the test is skipped, see
/// `prereq`), which is shut down when it returns. A failure carries this bed's containerd log
/// tail: the one `run_e2e` adds is the shared bed's, which saw nothing of it.
pub fn on_private(bed: Option<TestBed>, body: impl FnOnce(&TestBed) -> Result<()>) -> Result<()> {
    let Some(bed) = bed else {
        return Ok(());
    };
    body(&bed).map_err(|e| bed.with_log(e))
}

/// `TestBed::private` for a `#[test]` of its own (not one per handler, see `run_e2e`): `None`
/// when the test is skipped; panics naming `test` when the bed does not start.
pub fn private_bed_or_panic(test: &str, handler: &str, name: &str) -> Option<TestBed> {
    private_bed_with_config_or_panic(test, handler, name, |_| None)
}

fn private_bed_with_config_or_panic(
    test: &str,
    handler: &str,
    name: &str,
    config: impl FnOnce(&Layout) -> Option<String>,
) -> Option<TestBed> {
    match TestBed::private_with_config(test, handler, name, config) {
        Ok(bed) => bed,
        Err(e) => panic!("{test}: the private test bed did not start: {e:#}"),
    }
}

/// For a `#[test]` of its own: runs `body` on a private bed (`private_bed_or_panic`), shut down
/// afterwards; when `body` fails, panics naming `test` with its error and the bed's log tail.
pub fn test_on_private_bed(
    test: &str,
    handler: &str,
    name: &str,
    body: impl FnOnce(&TestBed) -> Result<()>,
) {
    test_on_private_bed_with_config(test, handler, name, |_| None, body)
}

/// `test_on_private_bed` with containerd's config written by `config` (as
/// `TestBed::private_with_config`).
pub fn test_on_private_bed_with_config(
    test: &str,
    handler: &str,
    name: &str,
    config: impl FnOnce(&Layout) -> Option<String>,
    body: impl FnOnce(&TestBed) -> Result<()>,
) {
    let Some(bed) = private_bed_with_config_or_panic(test, handler, name, config) else {
        return;
    };
    let result = body(&bed);
    if let Err(e) = result {
        let message = format!("{e:#}\n---- containerd log tail:\n{}", bed.log_tail(60));
        bed.shutdown();
        panic!("{test}: {message}");
    }
    bed.shutdown();
}

extern "C" fn shut_down_at_exit() {
    if let Some(Ok(bed)) = BED.get() {
        // On a fresh thread: the exiting thread's thread-locals (tokio's context among them)
        // may already be gone.
        let worker =
            std::thread::Builder::new().name("moat-e2e-exit".into()).spawn(|| bed.shutdown());
        match worker {
            Ok(worker) => {
                let _ = worker.join();
            }
            Err(_) => bed.containerd.shutdown(),
        }
    }
}

impl TestBed {
    fn start() -> Result<Self> {
        let bed = Self::start_in(Layout::for_this_process())?;
        // SAFETY: registers a plain `extern "C" fn` with atexit(3); it only touches the
        // OnceLock above, which lives for the whole process.
        if unsafe { libc::atexit(shut_down_at_exit) } != 0 {
            bail!("atexit failed: the test containerd could not be stopped at exit");
        }
        Ok(bed)
    }

    /// A test bed of its own for one test (`name` tells it apart), for tests that disturb
    /// containerd itself (killing and restarting it) and so must not share it. Returns `None`
    /// when the test should be skipped (see `prereq`). Everything it ran is removed when it
    /// is dropped.
    pub fn private(test: &str, handler: &str, name: &str) -> Result<Option<Self>> {
        Self::private_with_config(test, handler, name, |_| None)
    }

    /// `private`, with containerd's config.toml written by `config` (given the bed's layout)
    /// instead of the test bed's own, when it returns one.
    pub fn private_with_config(
        test: &str,
        handler: &str,
        name: &str,
        config: impl FnOnce(&Layout) -> Option<String>,
    ) -> Result<Option<Self>> {
        if !prereq::gate(test, handler) {
            return Ok(None);
        }
        let dir = Path::new(containerd::BASE_DIR).join(format!(
            "{}-{}",
            std::process::id(),
            configs::unique_name(name)
        ));
        let layout = Layout::new(&dir);
        let config = config(&layout);
        Self::start_in_with(layout, config).map(Some)
    }

    /// A `private` test bed whose moat shims run with `env` added to their environment (the
    /// debug shim's fault hook reads `MOAT_FAULT`): containerd runs a wrapper script in place
    /// of the shim binary, which sets `env` and execs it.
    pub fn private_with_shim_env(
        test: &str,
        handler: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Option<Self>> {
        let Some(bed) = Self::private(test, handler, name)? else {
            return Ok(None);
        };
        let shim = bed.shim.clone().context("no moat shim to wrap (set MOAT_SHIM)")?;
        let target = std::fs::canonicalize(&shim)
            .with_context(|| format!("resolving the moat shim {}", shim.display()))?;
        let exports: String = env.iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect();
        let script = format!("#!/bin/sh\n{exports}exec '{}' \"$@\"\n", target.display());
        let link = bed.layout().bin_dir.join(paths::MOAT_SHIM_NAME);
        let _ = std::fs::remove_file(&link);
        std::fs::write(&link, script).with_context(|| format!("writing {}", link.display()))?;
        std::fs::set_permissions(&link, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(Some(bed))
    }

    fn start_in(layout: Layout) -> Result<Self> {
        Self::start_in_with(layout, None)
    }

    fn start_in_with(layout: Layout, config: Option<String>) -> Result<Self> {
        let archives = images::build(&paths::image_cache_dir())?;
        if layout.dir.exists() {
            containerd::clean_up(&layout);
        }
        let shim = paths::shim_binary().filter(|p| p.is_file());
        // Registering this run (its dir and owner file) and reaping dead ones happen under the
        // shared lock, so the last run out never removes the bridge or cgroups under a new one.
        let containerd = {
            let _lock = containerd::shared_lock()?;
            containerd::reap_stale_runs();
            Containerd::start_with_config(layout, shim.as_deref(), config)?
        };
        for archive in &archives {
            images::import(&containerd.layout.socket, archive)
                .with_context(|| format!("containerd log:\n{}", containerd.log_tail(20)))?;
        }
        let cri = Cri::connect(&containerd.layout.socket)?;
        for archive in &archives {
            if !cri.image_present(&archive.reference)? {
                bail!("{} was imported but the CRI does not see it", archive.reference);
            }
        }
        Ok(Self { containerd, cri: RwLock::new(cri), shim })
    }

    /// The CRI client (of the current containerd process).
    pub fn cri(&self) -> Cri {
        match self.cri.read() {
            Ok(cri) => cri.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Kills containerd with SIGKILL (shims and containers go on running), leaves it down for
    /// `down_for`, starts it again with the same config and directories, and reconnects the
    /// CRI client. Only for a `private` bed: other tests would see their containerd vanish.
    pub fn restart_containerd(&self, down_for: Duration) -> Result<()> {
        self.restart_containerd_after(|| {
            std::thread::sleep(down_for);
            Ok(())
        })
    }

    /// `restart_containerd`, running `while_down` while containerd is down (to do what a
    /// crash or a reboot does meanwhile: kill shims, lose the state directory).
    pub fn restart_containerd_after(&self, while_down: impl FnOnce() -> Result<()>) -> Result<()> {
        self.containerd.kill()?;
        while_down()?;
        self.containerd.relaunch()?;
        let cri = Cri::connect(&self.containerd.layout.socket)?;
        // The socket answers before the CRI has loaded its pods ("server is not initialized
        // yet"), as a kubelet finds out too.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = cri.pods() {
            if Instant::now() > deadline {
                return Err(self.with_log(e.context("the CRI did not come up after the restart")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match self.cri.write() {
            Ok(mut slot) => *slot = cri,
            Err(poisoned) => *poisoned.into_inner() = cri,
        }
        Ok(())
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    pub fn layout(&self) -> &Layout {
        &self.containerd.layout
    }

    /// The moat shim binary containerd runs (`None` if there was none at start).
    pub fn shim(&self) -> Option<&Path> {
        self.shim.as_deref()
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.containerd.log_tail(lines)
    }

    /// `error` followed by containerd's log tail (the shims log there too).
    pub fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "{error:#}\n---- containerd log tail ({}):\n{}\n----",
            self.layout().log.display(),
            self.log_tail(30)
        )
    }

    /// A new empty directory under the volumes dir (which the moat config allows to mount).
    pub fn volume_dir(&self, base: &str) -> Result<PathBuf> {
        let dir = self.layout().volumes.join(configs::unique_name(base));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A pod sandbox config with a unique name (from `base`), its own log dir and cgroup parent.
    pub fn pod_config(&self, base: &str) -> Result<PodSandboxConfig> {
        let name = configs::unique_name(base);
        let log_dir = self.layout().pod_logs.join(&name);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let cgroup_parent = format!("{}/{name}", self.layout().cgroup_parent);
        Ok(configs::pod_config(&name, &log_dir, &cgroup_parent))
    }

    /// Runs a pod with default config (see `pod_config`) and `handler`.
    pub fn run_pod(&self, base: &str, handler: &str) -> Result<Pod<'_>> {
        self.run_pod_with(self.pod_config(base)?, handler)
    }

    /// Runs a pod with `config` and `handler`.
    pub fn run_pod_with(&self, config: PodSandboxConfig, handler: &str) -> Result<Pod<'_>> {
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let id = self.cri().runp(&config, handler).map_err(|e| self.with_log(e))?;
        if let Some(netns) =
            self.cri().inspectp(&id).ok().and_then(|(_, info)| netns_path(info.as_ref()))
        {
            self.layout().record_netns(&netns);
        }
        Ok(Pod {
            bed: self,
            id,
            name,
            handler: handler.to_string(),
            log_dir: PathBuf::from(&config.log_directory),
            config,
            containers: Mutex::new(Vec::new()),
            removed: false,
        })
    }

    /// Runs containerd's own client, `ctr`, on this containerd in the CRI's namespace
    /// (`k8s.io`): for the task verbs the CRI lacks (pause, resume). Returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let ctr =
            paths::find_program("ctr").context("no `ctr` program (it comes with containerd)")?;
        let out = std::process::Command::new(ctr)
            .arg("--address")
            .arg(&self.layout().socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .with_context(|| format!("running ctr {args:?}"))?;
        if !out.status.success() {
            bail!(
                "ctr {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Removes every pod, stops containerd, removes what it left. Idempotent; also run at exit.
    pub fn shutdown(&self) {
        let cri = self.cri();
        if let Ok(pods) = cri.pods() {
            for pod in pods {
                let _ = cri.stopp(&pod);
                let _ = cri.rmp(&pod);
            }
        }
        self.containerd.shutdown();
        containerd::remove_shared_if_last(self.layout());
    }
}

impl Drop for TestBed {
    /// Only `private` beds are dropped (the shared one lives in a static and is shut down
    /// at exit).
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The network namespace path in a sandbox's verbose info (its runtime spec), resolved
/// (/var/run is usually a symlink to /run, and mountinfo shows the resolved path).
fn netns_path(info: Option<&serde_json::Value>) -> Option<PathBuf> {
    let path = info?
        .pointer("/runtimeSpec/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|ns| ns.get("type").and_then(|t| t.as_str()) == Some("network"))?
        .get("path")?
        .as_str()
        .map(PathBuf::from)?;
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

/// A container created by `Pod::create`.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// Its CRI log file.
    pub log_path: PathBuf,
}

/// A running pod sandbox; stopped and removed when dropped (unless `teardown` did it).
#[derive(Debug)]
pub struct Pod<'a> {
    pub bed: &'a TestBed,
    pub id: String,
    /// The unique pod name (also the value of `MOAT_E2E_POD` in its containers).
    pub name: String,
    pub handler: String,
    pub config: PodSandboxConfig,
    pub log_dir: PathBuf,
    containers: Mutex<Vec<Container>>,
    removed: bool,
}

/// Deadline for `Pod::exec`.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

impl Pod<'_> {
    /// A busybox container config for this pod (see `configs::container_config`).
    pub fn container_config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        configs::container_config(&self.name, name, configs::BUSYBOX, command)
    }

    /// CreateContainer.
    pub fn create(&self, config: &ContainerConfig) -> Result<Container> {
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let id = self
            .bed
            .cri()
            .create(&self.id, config, &self.config)
            .map_err(|e| self.bed.with_log(e))?;
        let container = Container { id, name, log_path: self.log_dir.join(&config.log_path) };
        if let Ok(mut list) = self.containers.lock() {
            list.push(container.clone());
        }
        Ok(container)
    }

    /// StartContainer.
    pub fn start(&self, container: &Container) -> Result<()> {
        self.bed
            .cri()
            .start(&container.id)
            .map_err(|e| self.bed.with_log(e.context(format!("starting {}", container.name))))
    }

    /// Creates and starts a busybox container running `command`.
    pub fn run(&self, name: &str, command: &[&str]) -> Result<Container> {
        let container = self.create(&self.container_config(name, command))?;
        self.start(&container)?;
        Ok(container)
    }

    /// ExecSync `cmd` in `container`.
    pub fn exec(&self, container: &Container, cmd: &[&str]) -> Result<ExecOutput> {
        self.bed.cri().exec_sync(&container.id, cmd, EXEC_TIMEOUT)
    }

    /// The container's log so far, as whole lines.
    pub fn log(&self, container: &Container) -> Result<Vec<LogLine>> {
        cri_log::read(&container.log_path)
    }

    /// Waits until the container's log satisfies `done`; returns the log.
    pub fn wait_for_log(
        &self,
        container: &Container,
        timeout: Duration,
        done: impl Fn(&[LogLine]) -> bool,
    ) -> Result<Vec<LogLine>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.log(container)?;
            if done(&lines) {
                return Ok(lines);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: log {} not as expected after {timeout:?}; it holds {lines:?}",
                    container.name,
                    container.log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until the container exited; its final status.
    pub fn wait_exited(&self, container: &Container, timeout: Duration) -> Result<ContainerStatus> {
        self.bed.cri().wait_exited(&container.id, timeout)
    }

    /// The containers created in this pod so far.
    pub fn containers(&self) -> Vec<Container> {
        self.containers.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The host pid of the pod sandbox's process, as containerd reports it.
    pub fn sandbox_pid(&self) -> Result<i32> {
        let (_, info) = self.bed.cri().inspectp(&self.id)?;
        info.as_ref()
            .and_then(|i| i.get("pid"))
            .and_then(|p| p.as_i64())
            .map(|p| p as i32)
            .ok_or_else(|| anyhow!("PodSandboxStatus of {} has no pid in its info", self.id))
    }

    /// The host pid of a container's init process, as containerd reports it.
    pub fn container_pid(&self, container: &Container) -> Result<i32> {
        let (_, info) = self.bed.cri().inspect(&container.id)?;
        info.as_ref()
            .and_then(|i| i.get("pid"))
            .and_then(|p| p.as_i64())
            .filter(|p| *p > 0)
            .map(|p| p as i32)
            .ok_or_else(|| anyhow!("ContainerStatus of {} has no pid in its info", container.name))
    }

    /// Shim processes serving this pod (found by `-id` among this pod's and its containers' ids).
    pub fn shims(&self) -> Vec<host::ShimProcess> {
        let ids = self.ids();
        host::shims(&self.bed.layout().socket).into_iter().filter(|s| ids.contains(&s.id)).collect()
    }

    fn ids(&self) -> Vec<String> {
        std::iter::once(self.id.clone())
            .chain(self.containers().into_iter().map(|c| c.id))
            .collect()
    }

    /// Records what this pod occupies on the host now, to check after teardown that it is gone.
    pub fn footprint(&self) -> Result<PodFootprint> {
        let (_, info) = self.bed.cri().inspectp(&self.id)?;
        let netns = netns_path(info.as_ref());
        let mut processes = Vec::new();
        if let Some(p) = ProcessId::of(self.sandbox_pid()?) {
            processes.push(p);
        }
        for c in self.containers() {
            if let Ok(pid) = self.container_pid(&c) {
                processes.extend(ProcessId::of(pid));
            }
        }
        processes.extend(
            host::processes_with_env(configs::POD_TAG_ENV, &self.name)
                .into_iter()
                .filter_map(ProcessId::of),
        );
        processes.extend(self.shims().into_iter().filter_map(|s| ProcessId::of(s.pid)));
        Ok(PodFootprint {
            pod_name: self.name.clone(),
            ids: self.ids(),
            netns,
            processes,
            socket: self.bed.layout().socket.clone(),
        })
    }

    /// StopPodSandbox + RemovePodSandbox.
    pub fn teardown(mut self) -> Result<()> {
        self.removed = true;
        self.bed.cri().stopp(&self.id).map_err(|e| self.bed.with_log(e))?;
        self.bed.cri().rmp(&self.id).map_err(|e| self.bed.with_log(e))?;
        Ok(())
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- pod {} ({}, handler {}) failed; containerd log tail ({}):\n{}\n----",
                self.name,
                self.id,
                self.handler,
                self.bed.layout().log.display(),
                self.bed.log_tail(60)
            );
        }
        if !self.removed {
            let _ = self.bed.cri().stopp(&self.id);
            let _ = self.bed.cri().rmp(&self.id);
        }
    }
}

/// What a pod occupied on the host while it ran (see `Pod::footprint`).
#[derive(Debug, Clone)]
pub struct PodFootprint {
    pub pod_name: String,
    /// The pod sandbox id first, then its containers' ids.
    pub ids: Vec<String>,
    /// The pod's network namespace bind mount (from containerd's runtime spec for the sandbox).
    pub netns: Option<PathBuf>,
    /// Sandbox, container, tagged and shim processes.
    pub processes: Vec<ProcessId>,
    socket: PathBuf,
}

impl PodFootprint {
    /// Everything of the pod still on the host, described for a failure message: mounts
    /// mentioning its ids or netns, shims serving it, cgroup dirs named by its ids, its
    /// processes. Empty when the pod is entirely gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let mut needles: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        let netns = self.netns.as_ref().map(|p| p.to_string_lossy().into_owned());
        if let Some(ns) = &netns {
            needles.push(ns);
        }
        left.extend(host::mounts_mentioning(&needles).into_iter().map(|l| format!("mount: {l}")));
        for shim in host::shims(&self.socket) {
            if self.ids.contains(&shim.id) {
                left.push(format!("shim process {} ({} -id {})", shim.pid, shim.binary, shim.id));
            }
        }
        let names: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        left.extend(
            host::cgroup_dirs_named(&names)
                .into_iter()
                .map(|d| format!("cgroup dir {}", d.display())),
        );
        for p in &self.processes {
            if p.alive() {
                left.push(format!("process {} ({:?})", p.pid, host::cmdline(p.pid)));
            }
        }
        for pid in host::processes_with_env(configs::POD_TAG_ENV, &self.pod_name) {
            if !self.processes.iter().any(|p| p.pid == pid) {
                left.push(format!(
                    "process {pid} tagged {}={} ({:?})",
                    configs::POD_TAG_ENV,
                    self.pod_name,
                    host::cmdline(pid)
                ));
            }
        }
        left
    }

    /// Waits (up to `timeout`) for `leftovers` to become empty; returns what is left then.
    pub fn wait_gone(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
