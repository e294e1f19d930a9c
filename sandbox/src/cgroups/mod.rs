//! Cgroups: create, limit, update, freeze, measure and remove a container's cgroup (v1, v2, hybrid).
//!
//! Plain file I/O on cgroupfs, written here rather than taken from the `cgroups-rs` crate: the
//! whole job is a few dozen small reads and writes, and owning them lets every error carry the
//! file and the value, lets hybrid mode (v1 controllers + a controller-less v2 hierarchy for
//! process tracking) work the way this module needs, and keeps the dependency tree small.
//!
//! Paths: only the cgroupfs driver's `linux.cgroupsPath` (`/k8s.io/<id>`,
//! `/<cgroup_parent>/<id>`) is supported, joined under every hierarchy's mount point; the
//! systemd driver's `slice:prefix:name` is refused with [`CgroupError::SystemdDriverUnsupported`].
//!
//! Which hierarchy does what:
//! - v1 and hybrid: limits go to the v1 controllers; in hybrid mode the v2 directory is created
//!   too and every process is written to it (process tracking, `cgroup.kill`). Controllers that
//!   exist only in the v2 hierarchy of a hybrid machine are not used (as runc does).
//! - v2: controllers are enabled in `cgroup.subtree_control` down the path; limits use runc's
//!   conversions (see [`resources`]).
//!
//! Devices: at create, every container's cgroup gets "deny everything, then the spec's rules,
//! then the nodes of moat's minimal /dev" — on v1 as devices.deny/devices.allow writes, and on
//! the v2 directory (pure v2, and hybrid's unified one too, where it adds to the v1 rules) as an
//! eBPF device program built from the same list ([`device_filter`], attached by [`bpf`]). The
//! program is released by the kernel when the cgroup directory is removed.

pub mod bpf;
pub mod device_filter;
mod error;
mod freezer;
mod fsio;
mod layout;
mod oom;
mod path;
pub mod resources;
pub mod stats;

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use error::CgroupError;
pub use freezer::FreezerState;
pub use fsio::{parse_flat_keyed, parse_pids};
pub use layout::{Layout, Mode, V1Hierarchy};
pub use oom::OomWatcher;
pub use path::CgroupPath;
pub use stats::CgroupStats;

/// How long `destroy` waits for the cgroup's processes to be gone.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);
/// v2 controllers enabled down the path in pure v2 mode (those the machine has).
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Dir {
    controllers: Vec<String>,
    mount: PathBuf,
    dir: PathBuf,
}

/// A container's cgroup: its directory in every hierarchy of the machine's layout.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: CgroupPath,
    mode: Mode,
    v1: Vec<V1Dir>,
    /// In the v2 hierarchy (pure v2, or hybrid's unified one).
    v2: Option<PathBuf>,
    /// The v2 hierarchy's mount point.
    v2_root: Option<PathBuf>,
    /// Directories this value created, outermost first; `destroy` removes the parents among them
    /// when they are empty. Empty for a cgroup reattached with [`Cgroup::open`].
    created: Vec<PathBuf>,
}

impl Cgroup {
    /// mkdir -p the container's cgroup in every hierarchy, prepare it (v1 cpuset copy-down, v2
    /// subtree_control), apply `resources` and confine devices (see the module docs: deny all
    /// but the spec's rules and the minimal /dev, on v1 and v2). On error, everything this call
    /// created is removed again. An existing leaf is reused.
    pub fn create(
        layout: &Layout,
        cgroups_path: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        let path = CgroupPath::parse(cgroups_path)?;
        if let Some(r) = resources {
            resources::validate(&path.as_absolute(), r, layout.mode())?;
        }
        let devices = resources.and_then(|r| r.devices().as_deref()).unwrap_or_default();
        let mut cg = Cgroup::locate(layout, path);
        let result = cg
            .make_dirs()
            .and_then(|()| cg.prepare())
            .and_then(|()| match resources {
                Some(r) => resources::apply(&cg, r),
                None => Ok(()),
            })
            .and_then(|()| cg.confine_devices(devices));
        if let Err(e) = result {
            cg.remove_created();
            return Err(e);
        }
        Ok(cg)
    }

    /// Reattaches to an existing cgroup (after a shim restart). It must exist in at least one
    /// hierarchy. `destroy` on it removes only the leaf directories.
    pub fn open(layout: &Layout, cgroups_path: &str) -> Result<Cgroup, CgroupError> {
        let path = CgroupPath::parse(cgroups_path)?;
        let cg = Cgroup::locate(layout, path);
        let Some(first) = cg.dirs().next().map(Path::to_path_buf) else {
            return Err(CgroupError::NotFound { path: cg.path.as_absolute(), dir: PathBuf::new() });
        };
        if !cg.dirs().any(Path::is_dir) {
            return Err(CgroupError::NotFound { path: cg.path.as_absolute(), dir: first });
        }
        Ok(cg)
    }

    fn locate(layout: &Layout, path: CgroupPath) -> Cgroup {
        let join = |mount: &Path| {
            let mut d = mount.to_path_buf();
            d.extend(path.components());
            d
        };
        let v1 = layout
            .v1_hierarchies()
            .iter()
            .map(|h| V1Dir {
                controllers: h.controllers.clone(),
                mount: h.mount.clone(),
                dir: join(&h.mount),
            })
            .collect();
        let v2 = layout.v2_mount().map(join);
        let v2_root = layout.v2_mount().map(Path::to_path_buf);
        Cgroup { mode: layout.mode(), v1, v2, v2_root, created: Vec::new(), path }
    }

    /// The normalised cgroupsPath (`/k8s.io/<id>`).
    pub fn path(&self) -> String {
        self.path.as_absolute()
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The container's directory in every hierarchy (v1 ones first).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1.iter().map(|d| d.dir.as_path()).chain(self.v2.as_deref())
    }

    /// Every `cgroup.procs` a process of the container must be written to.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The directory of the v1 hierarchy holding `controller` (v1 and hybrid modes only).
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.dir.as_path())
    }

    /// The container's directory in the v2 hierarchy (pure v2, or hybrid's unified one).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Moves `pid` (a whole process) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let value = pid.to_string();
        for f in self.procs_files() {
            fsio::write(&f, &value)?;
        }
        Ok(())
    }

    /// Applies new limits to the live cgroup (CRI UpdateContainerResources). Device rules are
    /// not touched (they are set once at create).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        resources::validate(&self.path(), resources, self.mode)?;
        if self.mode == Mode::V2 {
            // A controller may be newly needed (hugetlb); enabling is idempotent.
            self.enable_v2_controllers();
        }
        resources::apply(self, resources)
    }

    /// Device rules, once, at create: v1 devices.deny/allow writes, and the eBPF program on the
    /// v2 directory (see the module docs).
    fn confine_devices(
        &self,
        spec: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        if self.mode != Mode::V2 {
            resources::devices_v1(self, spec)?;
        }
        if let Some(dir) = &self.v2 {
            self.attach_device_program(dir, spec)?;
        }
        Ok(())
    }

    /// Loads the device program for `spec` and attaches it to `dir`; programs of moat already
    /// attached there (a reused leaf) are detached after the new one is in place, so the
    /// directory is never without one.
    fn attach_device_program(
        &self,
        dir: &Path,
        spec: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let rules = device_filter::DeviceRules::for_container(spec)
            .map_err(|reason| CgroupError::InvalidResources { path: self.path(), reason })?;
        let sys = |op: &'static str| {
            let path = dir.to_path_buf();
            move |source| CgroupError::Sys { op, path, source }
        };
        let cgroup = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open the cgroup directory"))?;
        let before = bpf::attached_device_programs(cgroup.as_fd())
            .map_err(sys("BPF_PROG_QUERY (device programs)"))?;
        let program = bpf::load_device_program(&rules.program()).map_err(|e| {
            CgroupError::DeviceProgram { path: dir.to_path_buf(), errno: e.errno, log: e.log }
        })?;
        bpf::attach_device_program(program.as_fd(), cgroup.as_fd())
            .map_err(sys("BPF_PROG_ATTACH (device program)"))?;
        for id in before {
            let old = match bpf::program_by_id(id) {
                Ok(Some(fd)) => fd,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("cgroup {}: device program {id}: {e}", dir.display());
                    continue;
                }
            };
            if bpf::program_info(old.as_fd()).is_ok_and(|(_, name)| name == bpf::PROGRAM_NAME) {
                if let Err(e) = bpf::detach_device_program(old.as_fd(), cgroup.as_fd()) {
                    log::warn!(
                        "cgroup {}: detaching the previous device program {id}: {e}",
                        dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Host pids of every process in the cgroup and its descendants, in all hierarchies,
    /// sorted and without duplicates. A missing cgroup has none.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for d in self.dirs() {
            collect_pids(d, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Sends `signal` to every process of the cgroup. SIGKILL uses v2's `cgroup.kill` when the
    /// kernel has it; otherwise the cgroup is frozen while the pids are read and signalled (so
    /// nothing forks past the list) and thawed afterwards (left frozen only if it was frozen
    /// before and the signal is not SIGKILL). Processes that are already gone are not an error.
    pub fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        self.kill_all_with(signal, true)
    }

    fn kill_all_with(&self, signal: Signal, use_cgroup_kill: bool) -> Result<(), CgroupError> {
        if signal == Signal::SIGKILL && use_cgroup_kill {
            if let Some(kill) =
                self.v2.as_ref().map(|d| d.join("cgroup.kill")).filter(|k| k.exists())
            {
                match fsio::write(&kill, "1") {
                    Ok(()) => return Ok(()),
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => log::warn!("{e}; signalling pids one by one"),
                }
            }
        }
        let was_frozen = matches!(self.freezer_state(), Ok(FreezerState::Frozen));
        let froze = !was_frozen && self.freeze().is_ok();
        let result = self.signal_each(signal);
        if froze || (was_frozen && signal == Signal::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, signal: Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        path: self.path(),
                        pid,
                        signal: signal.as_str().to_string(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Kills what is left in the cgroup, waits until it is empty (bounded), removes the
    /// container's directory (and any child cgroups) in every hierarchy, then the parents this
    /// value created if they are empty. Destroying an already removed cgroup is Ok.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        if self.dirs().any(Path::is_dir) {
            self.kill_and_wait()?;
            for d in self.dirs() {
                remove_tree(d)?;
            }
        }
        self.remove_created();
        Ok(())
    }

    fn kill_and_wait(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if self.pids()?.is_empty() {
                return Ok(());
            }
            // cgroup.kill reaches only the v2 directory's processes: should something remain
            // (a process someone put in the v1 directories only), signal the pids one by one.
            let use_cgroup_kill = start.elapsed() < Duration::from_millis(200);
            self.kill_all_with(Signal::SIGKILL, use_cgroup_kill)?;
            if start.elapsed() > DESTROY_TIMEOUT {
                let path = self.dirs().next().map(Path::to_path_buf).unwrap_or_default();
                return Err(CgroupError::Timeout {
                    path,
                    what: "have no process left",
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// mkdir each missing component in every hierarchy, recording what was created. Retries when
    /// a parent vanishes underneath (another cgroup's destroy removing an empty shared parent).
    fn make_dirs(&mut self) -> Result<(), CgroupError> {
        let roots: Vec<PathBuf> =
            self.v1.iter().map(|d| d.mount.clone()).chain(self.v2_root.clone()).collect();
        for root in roots {
            let mut attempt = 0;
            loop {
                match self.make_dirs_under(&root) {
                    Err(CgroupError::Mkdir { source, .. })
                        if source.kind() == io::ErrorKind::NotFound && attempt < 5 =>
                    {
                        attempt += 1;
                    }
                    other => break other?,
                }
            }
        }
        Ok(())
    }

    fn make_dirs_under(&mut self, root: &Path) -> Result<(), CgroupError> {
        let mut dir = root.to_path_buf();
        for c in self.path.components() {
            dir.push(c);
            match std::fs::create_dir(&dir) {
                Ok(()) => self.created.push(dir.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(source) => return Err(CgroupError::Mkdir { path: dir, source }),
            }
        }
        Ok(())
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        if let Some(cpuset) = self.v1.iter().find(|d| d.controllers.iter().any(|c| c == "cpuset")) {
            self.copy_cpuset_down(cpuset)?;
        }
        if self.mode == Mode::V2 {
            self.enable_v2_controllers();
        }
        Ok(())
    }

    /// A new v1 cpuset cgroup starts with empty cpus/mems and refuses processes until they are
    /// set: copy the parent's values into every empty level of the path, top down.
    fn copy_cpuset_down(&self, cpuset: &V1Dir) -> Result<(), CgroupError> {
        let mut parent = cpuset.mount.clone();
        for c in self.path.components() {
            let dir = parent.join(c);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = fsio::read(&dir.join(file))?;
                if own.trim().is_empty() {
                    let inherited = fsio::read(&parent.join(file))?;
                    fsio::write(&dir.join(file), inherited.trim())?;
                }
            }
            parent = dir;
        }
        Ok(())
    }

    /// Pure v2: enable the wanted controllers the machine has in each ancestor's
    /// subtree_control. A controller that cannot be enabled is logged; a limit that needs it then
    /// fails with an error naming the missing file.
    fn enable_v2_controllers(&self) {
        let Some(mut dir) = self.v2_root.clone() else { return };
        for c in self.path.components() {
            let available = fsio::read(&dir.join("cgroup.controllers")).unwrap_or_default();
            let enabled = fsio::read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
            for ctrl in V2_CONTROLLERS {
                let has = |list: &str| list.split_whitespace().any(|w| w == *ctrl);
                if has(&available) && !has(&enabled) {
                    if let Err(e) =
                        fsio::write(&dir.join("cgroup.subtree_control"), &format!("+{ctrl}"))
                    {
                        log::warn!("cgroup v2 controller {ctrl} not enabled: {e}");
                    }
                }
            }
            dir.push(c);
        }
    }

    /// Removes (innermost first) the directories this value created; best effort, used on a
    /// failed create and at the end of destroy. A non-empty parent (another container's) stays.
    fn remove_created(&self) {
        for d in self.created.iter().rev() {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::debug!("leaving cgroup directory {}: {e}", d.display()),
            }
        }
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    match fsio::read_opt(&dir.join("cgroup.procs"))? {
        None => return Ok(()),
        Some(text) => out.extend(parse_pids(&text)),
    }
    for child in fsio::child_dirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

/// rmdir a cgroup directory and its child cgroups, innermost first. A cgroup whose last task
/// just exited can report EBUSY for a moment: retried for up to a second.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in fsio::child_dirs(dir)? {
        remove_tree(&child)?;
    }
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(1) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => return Err(CgroupError::Rmdir { path: dir.to_path_buf(), source }),
        }
    }
}
