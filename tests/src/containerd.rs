//! A private containerd for tests: its own root, state, socket, CNI config and runtime
//! handlers (`runc` and `moat`), under a short temp dir so it never touches a system
//! containerd. Killed, and everything it left (shims, container processes, mounts, cgroups)
//! removed, by `shutdown` — also for runs of earlier test processes that were killed
//! (`reap_stale_runs`).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host::{self, ProcessId};
use crate::moat_config::toml_str;
use crate::paths;

/// Where test runs keep their containerd dirs: `<BASE>/<test process pid>`.
pub const BASE_DIR: &str = "/tmp/moat-e2e";
/// The CNI network and bridge every test containerd uses.
pub const CNI_NETWORK: &str = "moat-e2e";
pub const CNI_BRIDGE: &str = "moatbr0";
pub const CNI_SUBNET: &str = "10.88.77.0/24";

/// The files and directories of one private containerd.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    /// containerd's grpc address (the CRI socket).
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// Prepended to containerd's PATH: holds `containerd-shim-moat-v2`.
    pub bin_dir: PathBuf,
    pub moat_config: PathBuf,
    /// Host directories tests may mount as volumes (the moat config allows this dir).
    pub volumes: PathBuf,
    /// Pod log directories go below this.
    pub pod_logs: PathBuf,
    pub runc_root: PathBuf,
    /// Pods' cgroup parents go below this cgroup path (`/moat-e2e/<pid>`).
    pub cgroup_parent: String,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        let tag = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            dir: dir.to_path_buf(),
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("c.sock"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            cni_conf_dir: dir.join("cni"),
            bin_dir: dir.join("bin"),
            moat_config: dir.join("moat-config.toml"),
            volumes: dir.join("volumes"),
            pod_logs: dir.join("pod-logs"),
            runc_root: dir.join("runc"),
            cgroup_parent: format!("/moat-e2e/{tag}"),
        }
    }

    /// The layout of this test process's containerd.
    pub fn for_this_process() -> Self {
        Self::new(&Path::new(BASE_DIR).join(std::process::id().to_string()))
    }

    fn owner_file(&self) -> PathBuf {
        self.dir.join("owner")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }

    fn netns_file(&self) -> PathBuf {
        self.dir.join("netns.list")
    }

    /// Notes a pod's network namespace path (containerd keeps them outside our dir, in
    /// /var/run/netns), so `clean_up` can remove it if containerd dies before doing so.
    pub fn record_netns(&self, path: &Path) {
        use std::io::Write;
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(self.netns_file())
        {
            let _ = writeln!(f, "{}", path.display());
        }
    }
}

/// containerd's config.toml for `layout`.
pub fn render_config(layout: &Layout) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {socket}
[ttrpc]
  address = {ttrpc}
[debug]
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  restrict_oom_score_adj = true
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {cni}
    max_conf_num = 1
  [{cri}.registry]
    config_path = {certs}
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = {runc_root}
    [{cri}.containerd.runtimes.moat]
      runtime_type = "io.containerd.moat.v2"
      [{cri}.containerd.runtimes.moat.options]
        ConfigPath = {moat_config}
"#,
        root = toml_str(&layout.root),
        state = toml_str(&layout.state),
        socket = toml_str(&layout.socket),
        ttrpc = toml_str(&layout.dir.join("c.sock.ttrpc")),
        opt = toml_str(&layout.dir.join("opt")),
        pause = crate::configs::PAUSE,
        cni = toml_str(&layout.cni_conf_dir),
        certs = toml_str(&layout.dir.join("certs.d")),
        runc_root = toml_str(&layout.runc_root),
        moat_config = toml_str(&layout.moat_config),
    )
}

/// The one CNI network: a bridge with host-local IPAM, no masquerading, plus loopback.
pub fn render_cni_conflist() -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{CNI_NETWORK}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{CNI_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{ "subnet": "{CNI_SUBNET}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}]
      }}
    }},
    {{ "type": "loopback" }}
  ]
}}
"#
    )
}

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    pub layout: Layout,
    child: Mutex<Option<Child>>,
}

impl Containerd {
    /// Writes the config files into `layout.dir` (which must not exist or be empty), links
    /// `shim` as `containerd-shim-moat-v2` on containerd's PATH, starts containerd and waits
    /// for its socket.
    pub fn start(layout: Layout, shim: Option<&Path>) -> Result<Self> {
        Self::start_with_config(layout, shim, None)
    }

    /// `start`, with `config` (when given) as containerd's config.toml instead of the one
    /// `render_config` writes: for tests of the configs an operator writes.
    pub fn start_with_config(
        layout: Layout,
        shim: Option<&Path>,
        config: Option<String>,
    ) -> Result<Self> {
        let binary = paths::containerd_binary();
        for dir in [
            &layout.dir,
            &layout.cni_conf_dir,
            &layout.bin_dir,
            &layout.volumes,
            &layout.pod_logs,
            &layout.dir.join("certs.d"),
        ] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let me = ProcessId::of(std::process::id() as i32)
            .ok_or_else(|| anyhow!("cannot read /proc/self/stat"))?;
        fs::write(layout.owner_file(), format!("{} {}\n", me.pid, me.start_time))?;
        let version = crate::containerd_version::detect(&binary)?;
        let config = match (config, version.config_version()) {
            (Some(config), _) => config,
            (None, 3) => crate::containerd_version::to_v3(&render_config(&layout))?,
            (None, _) => render_config(&layout),
        };
        fs::write(&layout.config, config)?;
        fs::write(layout.cni_conf_dir.join("10-moat-e2e.conflist"), render_cni_conflist())?;
        crate::moat_config::write(&layout)?;
        if let Some(shim) = shim {
            let link = layout.bin_dir.join(paths::MOAT_SHIM_NAME);
            let _ = fs::remove_file(&link);
            let target = fs::canonicalize(shim)
                .with_context(|| format!("resolving the moat shim {}", shim.display()))?;
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }

        let containerd = Self { layout, child: Mutex::new(None) };
        containerd.relaunch()?;
        Ok(containerd)
    }

    /// Starts containerd on the written config (again, after `kill`: same root, state and
    /// socket, so it finds its pods and reconnects to their shims) and waits for its socket.
    pub fn relaunch(&self) -> Result<()> {
        let layout = &self.layout;
        let binary = paths::containerd_binary();
        // Appends: the log of the killed containerd stays readable above the new one's.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.log)
            .with_context(|| format!("opening {}", layout.log.display()))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--config")
            .arg(&layout.config)
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    layout.bin_dir.display()
                ),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe; it allocates nothing and touches no lock.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with the thread that spawned it (a thread that lives as long as this
                // process), so a killed test run does not leave containerd behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper_thread(cmd)
            .with_context(|| format!("starting {}", binary.display()))?;
        fs::write(layout.pid_file(), format!("{}\n", child.id()))?;
        {
            let mut slot = self.child.lock().map_err(|_| anyhow!("poisoned"))?;
            if slot.is_some() {
                bail!("relaunch: containerd is still running (kill it first)");
            }
            *slot = Some(child);
        }
        self.wait_ready(Duration::from_secs(30))
    }

    /// Kills containerd with SIGKILL, as a crash would, leaving its shims and containers
    /// running and its files in place; waits until it is gone.
    pub fn kill(&self) -> Result<()> {
        let child = self
            .child
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .take()
            .ok_or_else(|| anyhow!("containerd is not running"))?;
        let mut child = child;
        child.kill().context("SIGKILL to containerd")?;
        child.wait().context("waiting for the killed containerd")?;
        // A new containerd must not find the old socket file and think it is served.
        let _ = fs::remove_file(&self.layout.socket);
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.layout.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.lock().map_err(|_| anyhow!("poisoned"))?.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "containerd exited ({status}) before serving {}:\n{}",
                        self.layout.socket.display(),
                        self.log_tail(40)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not serve {} within {timeout:?}:\n{}",
                    self.layout.socket.display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of containerd's log (shim logs included).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.layout.log, lines)
    }

    /// Stops containerd and removes all it left. Idempotent.
    pub fn shutdown(&self) {
        let child = self.child.lock().map(|mut c| c.take()).unwrap_or(None);
        if let Some(mut child) = child {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        clean_up(&self.layout);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Spawns `cmd` from a thread that never exits, so PR_SET_PDEATHSIG fires only when this
/// process ends (it is tied to the spawning thread, not the process).
fn spawn_from_keeper_thread(mut cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("moat-e2e-keeper".into()).spawn(move || {
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    })?;
    rx.recv().map_err(|_| std::io::Error::other("the keeper thread died"))?
}

/// Last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(256 * 1024);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills what a (stopped or dead) test containerd left and removes its files: its shims,
/// the processes in its pods' cgroups, mounts under its dir, its cgroups, its dir.
pub fn clean_up(layout: &Layout) {
    let pid = fs::read_to_string(layout.pid_file()).ok().and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        // Only if that pid is still a containerd using our config.
        if host::cmdline(pid).iter().any(|a| Path::new(a) == layout.config) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    kill_until_gone(|| host::shims(&layout.socket).into_iter().map(|s| s.pid).collect());
    kill_until_gone(|| host::cgroup_procs(&host::cgroup_tree(&layout.cgroup_parent)));
    unmount_under(&layout.dir);
    for netns in fs::read_to_string(layout.netns_file()).unwrap_or_default().lines() {
        let netns = Path::new(netns);
        if netns.starts_with("/var/run/netns") || netns.starts_with("/run/netns") {
            let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_file(netns);
        }
    }
    for dir in host::cgroup_tree(&layout.cgroup_parent) {
        let _ = fs::remove_dir(&dir);
    }
    let left = host::mounts_under(&layout.dir);
    if !left.is_empty() {
        eprintln!(
            "moat-e2e: not removing {}: still mounted: {:?}",
            layout.dir.display(),
            left.iter().map(|m| &m.mount_point).collect::<Vec<_>>()
        );
    } else if std::env::var("MOAT_E2E_KEEP").map(|v| v == "1").unwrap_or(false) {
        eprintln!("moat-e2e: MOAT_E2E_KEEP=1: keeping {}", layout.dir.display());
    } else {
        let _ = fs::remove_dir_all(&layout.dir);
    }
}

fn kill_until_gone(list: impl Fn() -> Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = list();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts everything mounted at or below `dir`, newest first (lazily, so a busy mount
/// does not stop the rest).
pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let mounts = host::mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts.iter().rev() {
            let _ = nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The lock every test process holds while it registers a run (creates its dir and owner
/// file) and while the last one out removes what runs share (the bridge, the `moat-e2e`
/// cgroup directories, the CNI leases): outside `BASE_DIR`, so no run mistakes it for a run.
pub const SHARED_LOCK: &str = "/tmp/moat-e2e.lock";

/// Holds `SHARED_LOCK` (an exclusive `flock`) until dropped.
pub fn shared_lock() -> Result<nix::fcntl::Flock<fs::File>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SHARED_LOCK)
        .with_context(|| format!("opening {SHARED_LOCK}"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow!("flock {SHARED_LOCK}: {e}"))
}

/// True when a run other than those in `except` is alive (its owner process lives).
pub fn live_runs_besides(except: &[&Path]) -> bool {
    fs::read_dir(BASE_DIR).into_iter().flatten().flatten().any(|entry| {
        let layout = Layout::new(&entry.path());
        if except.contains(&layout.dir.as_path()) {
            return false;
        }
        let owner = fs::read_to_string(layout.owner_file()).ok().and_then(|s| {
            let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some(ProcessId { pid: f.next()?? as i32, start_time: f.next()?? })
        });
        owner.is_some_and(|o| o.alive())
    })
}

/// Called when the run in `layout` has ended (after `clean_up`): if no other run is alive,
/// removes what all runs share — the `moatbr0` bridge, the `moat-e2e` cgroup directory of
/// every hierarchy, the CNI leases, the empty directories containerd left in /run/containerd,
/// the lock file — so the last one out leaves nothing behind.
pub fn remove_shared_if_last(layout: &Layout) {
    let Ok(lock) = shared_lock() else { return };
    if live_runs_besides(&[&layout.dir]) {
        return;
    }
    if Path::new("/sys/class/net").join(CNI_BRIDGE).exists() {
        match Command::new("ip").args(["link", "delete", CNI_BRIDGE]).output() {
            Ok(out) if !out.status.success() => eprintln!(
                "moat-e2e: ip link delete {CNI_BRIDGE}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("moat-e2e: running ip link delete {CNI_BRIDGE}: {e}"),
            Ok(_) => {}
        }
    }
    for root in host::cgroup_roots() {
        let dir = root.join("moat-e2e");
        if dir.is_dir() {
            if let Err(e) = fs::remove_dir(&dir) {
                eprintln!("moat-e2e: not removing {}: {e}", dir.display());
            }
        }
    }
    let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(CNI_NETWORK));
    // containerd 1.6 puts shim sockets and fifos under /run/containerd whatever its `state`
    // (and runc its default root): the empty directories it leaves, unless a system
    // containerd lives there (its socket exists).
    if !Path::new("/run/containerd/containerd.sock").exists() {
        for dir in ["s", "fifo", "runc/k8s.io", "runc", ""] {
            let _ = fs::remove_dir(Path::new("/run/containerd").join(dir));
        }
    }
    let _ = fs::remove_dir(BASE_DIR);
    let _ = fs::remove_file(SHARED_LOCK);
    drop(lock);
}

/// Cleans up after test runs whose process is gone (killed by a timeout, say): their dirs
/// under `BASE_DIR` and their cgroups under `/moat-e2e/`.
pub fn reap_stale_runs() {
    let me = ProcessId::of(std::process::id() as i32);
    // Any live run, this process's other beds included (tests run at once, each on a private
    // bed): their pods hold address leases on the shared bridge.
    let mut live_runs = false;
    let mut live_tags = Vec::new();
    for entry in fs::read_dir(BASE_DIR).into_iter().flatten().flatten() {
        let layout = Layout::new(&entry.path());
        let owner = fs::read_to_string(layout.owner_file()).ok().and_then(|s| {
            let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some(ProcessId { pid: f.next()?? as i32, start_time: f.next()?? })
        });
        match owner {
            Some(owner) if Some(owner) == me || owner.alive() => {
                live_runs = true;
                live_tags.push(entry.file_name());
            }
            _ => {
                eprintln!("moat-e2e: cleaning up after an earlier run in {}", layout.dir.display());
                clean_up(&layout);
            }
        }
    }
    // Cgroups of runs whose dir is gone.
    for root in host::cgroup_roots() {
        for entry in fs::read_dir(root.join("moat-e2e")).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !live_tags.contains(&entry.file_name())
            {
                let tree =
                    host::cgroup_tree(&format!("moat-e2e/{}", entry.file_name().to_string_lossy()));
                kill_until_gone(|| host::cgroup_procs(&tree));
                for dir in &tree {
                    let _ = fs::remove_dir(dir);
                }
            }
        }
    }
    if !live_runs {
        // host-local IPAM leases of earlier runs (the network is ours alone).
        let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(CNI_NETWORK));
    }
}
