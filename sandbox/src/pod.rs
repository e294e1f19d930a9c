//! One pod's containers, protocol-free: the pod's user-namespace decision and ID range, its
//! containers' cgroups, spawning them (through `spawn::Launcher`), rolling back what a failed
//! create took, and teardown.
//!
//! Knows nothing of containerd, ttrpc, fifos or bundles. The caller (the shim) turns its
//! protocol's requests into [`CreateContainer`] and [`ExecRequest`] and is told of each step
//! through a [`Journal`], which is where it records crash-recovery state and supplies the
//! process's stdio; it gets back the plan and the process waiting for its start.
//!
//! Every call here blocks (files, cgroups, the helper): run them off async threads.

mod audit;
mod create;
mod error;
mod exec;
mod rollback;
pub mod teardown;
mod user;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use log::warn;
use oci_spec::runtime::{Process as OciProcess, Spec};

use crate::cgroups::{Cgroup, Layout};
use crate::plan::{ContainerPlan, RootfsMount, UserNamespacePlan};
use crate::policy::{Config, ContainerdDirs, Refusal};
use crate::seccomp::FilterCache;
use crate::spawn::{Launcher, Pending, PidFd, Stdio};

pub use error::PodError;

/// A pod: what its sandbox container decided for the others, and the means to build them.
pub struct Pod {
    launcher: Launcher,
    /// The machine's cgroup hierarchies, or why none could be found: then every container that
    /// names a cgroup is refused (it would run without its limits).
    layout: Result<Layout, String>,
    /// Seccomp filters compiled to BPF once per shim (see `seccomp::cache`).
    filters: FilterCache,
    /// The denial audit's state and thread, by pod.
    audits: audit::Audits,
    /// What the sandbox container left for the pod's other containers (`None` until it is
    /// created, and again once it is removed).
    shared: Mutex<Option<user::PodShared>>,
}

/// What a container is created from: the spec and what its runtime knows about it, stripped
/// of any protocol.
pub struct CreateContainer {
    pub container_id: String,
    pub spec: Arc<Spec>,
    /// The operator's config.
    pub config: Arc<Config>,
    /// The directory that becomes the container's `/`.
    pub rootfs: PathBuf,
    /// The rootfs mounts as the runtime gave them, idmap options already stripped.
    pub rootfs_mounts: Vec<RootfsMount>,
    /// containerd's `root` and `state` as far as they could be derived.
    pub containerd: ContainerdDirs,
}

/// A created container: its process waits inside the sandbox for [`Pending::start`].
pub struct CreatedContainer {
    /// The pod's sandbox (pause) container: removing it gives the pod's ID range back.
    pub is_sandbox: bool,
    pub pod_id: String,
    pub plan: ContainerPlan,
    /// The config in effect for this container (the CRI directories filled in).
    pub config: Arc<Config>,
    pub cgroup: Option<Cgroup>,
    pub pending: Pending,
}

/// An exec into a running container.
pub struct ExecRequest {
    pub container_id: String,
    pub exec_id: String,
    pub process: OciProcess,
    /// The container's plan (as its create returned it).
    pub container: ContainerPlan,
    pub config: Arc<Config>,
    /// The container's init: the exec joins its namespaces.
    pub init: PidFd,
    pub cgroup: Option<Cgroup>,
}

/// The caller's record of a create or exec, told of each step in order. Crash recovery
/// hangs on this order: `begin` comes before anything is taken, `cgroup_made` as soon as the
/// cgroup exists, `ready` once the process exists; a caller killed in between finds in its
/// record what to give back. An error returned by any step undoes what was taken and ends the
/// create with that error.
pub trait Journal {
    type Error: From<PodError>;

    /// Before anything is taken: the container's pod and whether it is the pod's sandbox.
    fn begin(&mut self, _pod_id: &str, _is_sandbox: bool) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A fresh ID range was taken from the pool for the pod.
    fn range_taken(&mut self) {}
    /// The policy refused the container or exec (already logged as `refused: …`): `config`
    /// is the config in effect, `user` the pod's user namespace.
    fn refused(&mut self, _refusal: &Refusal, _config: &Config, _user: &UserNamespacePlan) {}
    /// The plan is decided (the policy allowed the container).
    fn planned(&mut self, _plan: &ContainerPlan) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The container's cgroup was made.
    fn cgroup_made(&mut self, _cgroup: &Cgroup) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The process's stdio, asked for right before it is spawned.
    fn stdio(&mut self) -> Result<Stdio, Self::Error>;
    /// The process exists (host pid `pid`), not yet checked nor ready.
    fn spawned(&mut self, _pid: i32) {}
    /// The process is built and its audit wired: the last step that can fail.
    fn ready(&mut self, pending: &mut Pending) -> Result<(), Self::Error>;
}

impl Pod {
    /// Seals the helper binary and finds the machine's cgroup hierarchies (a machine without
    /// one is logged: its containers that name a cgroup are refused).
    pub fn new() -> Result<Pod, PodError> {
        let launcher = Launcher::new().map_err(PodError::Helper)?;
        let layout = Layout::detect().map_err(|e| {
            warn!("no cgroup hierarchy usable, containers with a cgroup will be refused: {e}");
            e.to_string()
        });
        Ok(Pod {
            launcher,
            layout,
            filters: FilterCache::new(),
            audits: audit::Audits::default(),
            shared: Mutex::new(None),
        })
    }

    fn shared(&self) -> Option<user::PodShared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_shared(&self, shared: Option<user::PodShared>) -> Option<user::PodShared> {
        let mut slot = self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *slot, shared)
    }
}
