//! The task service's one door into the sandbox crate: containerd's Create and Exec turned
//! into requests to the pod (`moat_sandbox::pod`), one blocking call each, and the results
//! turned back.
//!
//! What is containerd's stays here, told by the pod at each step through a `Journal`: the
//! bundle's crash-recovery state (`moat-state.json`, written before anything is taken, again
//! with the cgroup, again with the init's pid), the fault points of the tests, the stdio fifos
//! and their owner, the audit log lines. The pod undoes what it took when a step fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use containerd_shim::api::{CreateTaskRequest, ExecProcessRequest};
use log::{info, warn};
use moat_sandbox::cgroups::Cgroup;
use moat_sandbox::plan::{ContainerPlan, RootfsMount, UserNamespacePlan};
use moat_sandbox::pod::{CreateContainer, ExecRequest, Journal, Pod};
use moat_sandbox::policy::{self, Config, ContainerdDirs, Refusal};
use moat_sandbox::spawn::{Pending, PidFd, Stdio};
use oci_spec::runtime::{Process as OciProcess, Spec};

use super::audit_log;
use super::bundle_state::BundleState;
use super::error::ShimError;
use super::io_owner;
use super::process::Process;
use super::stdio::{self, IoHandle, Plumbing, StdioPaths};
use crate::config::ConfigSource;
use crate::options::IoOwner;

pub struct Created {
    pub is_sandbox: bool,
    pub plan: ContainerPlan,
    pub cgroup: Option<Cgroup>,
    pub process: Process,
}

/// The container an exec goes into, as the task service holds it.
pub struct ExecTarget {
    pub plan: ContainerPlan,
    pub init: PidFd,
    pub cgroup: Option<Cgroup>,
}

pub struct Confinement {
    pod: Arc<Pod>,
    /// Who owns each container's stdio (containerd 2.x's IoUid/IoGid, see `io_owner`), by
    /// container id: its execs' stdio gets the same owner.
    io_owners: Mutex<HashMap<String, IoOwner>>,
}

impl Confinement {
    pub fn new() -> Result<Self, ShimError> {
        Ok(Confinement { pod: Arc::new(Pod::new()?), io_owners: Default::default() })
    }

    pub async fn create_container(
        &self,
        req: &CreateTaskRequest,
        config: &Arc<Config>,
        stdio_paths: &StdioPaths,
        config_source: &ConfigSource,
    ) -> Result<Created, ShimError> {
        let began = std::time::Instant::now();
        let bundle = PathBuf::from(&req.bundle);
        let spec_path = bundle.join("config.json");
        let spec = Spec::load(&spec_path).map_err(|e| {
            ShimError::InvalidArgument(format!(
                "container {}: reading {}: {e}",
                req.id,
                spec_path.display()
            ))
        })?;
        let spec = Arc::new(spec);
        let rootfs_mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| {
                policy::rootfs_mount_without_idmap_options(RootfsMount {
                    fstype: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
            })
            .collect();
        let containerd = ContainerdDirs::derive(&bundle, &req.id, &rootfs_mounts);
        if containerd.root.is_none() || containerd.state.is_none() {
            warn!(
                "container {}: containerd's directories not all derived from bundle {} and its \
                 rootfs mounts ({containerd:?}); containerd's defaults apply to what is missing",
                req.id,
                bundle.display()
            );
        }
        let request = CreateContainer {
            container_id: req.id.clone(),
            spec: spec.clone(),
            config: config.clone(),
            rootfs: spec_rootfs(&spec, &bundle),
            rootfs_mounts,
            containerd,
        };
        let mut journal = CreateJournal {
            req: req.clone(),
            bundle,
            spec: spec.clone(),
            stdio: StdioSetup::new(stdio_paths.clone(), format!("container {}", req.id), None),
            state: BundleState {
                container_id: req.id.clone(),
                pod_id: String::new(),
                is_sandbox: false,
                cgroups_path: None,
                pid: 0,
                pid_start_time: None,
                boot_id: None,
                config: config_source.clone(),
            },
        };
        let pod = self.pod.clone();
        let (created, journal) = blocking(move || {
            let created = pod.create_container(request, &mut journal)?;
            Ok((created, journal))
        })
        .await?;
        let owner = journal.stdio.owner;
        let io = journal.stdio.into_io()?;
        let pid = created.pending.pid;
        let process = Process::new(pid, stdio_paths.clone(), created.pending, io);
        if let (Some(owner), Ok(mut owners)) = (owner, self.io_owners.lock()) {
            owners.insert(req.id.clone(), owner);
        }
        let who = audit_log::Subject {
            pod_id: &created.pod_id,
            container_id: &req.id,
            exec_id: None,
            spec: Some(&spec),
        };
        info!("{}", audit_log::created(&who, &created.config, &created.plan));
        info!(
            "create {}: {:.3} ms in the shim ({})",
            req.id,
            began.elapsed().as_secs_f64() * 1e3,
            if created.is_sandbox { "sandbox" } else { "container" }
        );
        Ok(Created {
            is_sandbox: created.is_sandbox,
            plan: created.plan,
            cgroup: created.cgroup,
            process,
        })
    }

    pub async fn create_exec(
        &self,
        req: &ExecProcessRequest,
        config: Arc<Config>,
        container: ExecTarget,
    ) -> Result<Process, ShimError> {
        let (id, exec_id) = (&req.id, &req.exec_id);
        let process_json = req.spec.as_ref().map(|any| any.value.clone()).unwrap_or_default();
        let process: OciProcess = serde_json::from_slice(&process_json).map_err(|e| {
            ShimError::InvalidArgument(format!(
                "exec {exec_id} of container {id}: the process spec is not valid OCI JSON: {e}"
            ))
        })?;
        let stdio_paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let owner = self.io_owners.lock().ok().and_then(|owners| owners.get(id).copied());
        let mut journal = ExecJournal {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
            pod_id: container.plan.pod_id.clone(),
            stdio: StdioSetup::new(
                stdio_paths.clone(),
                format!("exec {exec_id} of container {id}"),
                owner,
            ),
        };
        let request = ExecRequest {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
            process,
            container: container.plan,
            config,
            init: container.init,
            cgroup: container.cgroup,
        };
        let pod = self.pod.clone();
        let (pending, journal) = blocking(move || {
            let pending = pod.exec(request, &mut journal)?;
            Ok((pending, journal))
        })
        .await?;
        let io = journal.stdio.into_io()?;
        Ok(Process::new(pending.pid, stdio_paths, pending, io))
    }

    /// Removes the container's cgroup (killing what is left in it) and, with the pod's
    /// sandbox container, gives the pod's ID range back.
    pub async fn destroy_container(
        &self,
        cgroup: Option<Cgroup>,
        is_sandbox: bool,
        id: &str,
    ) -> Result<(), ShimError> {
        if let Ok(mut owners) = self.io_owners.lock() {
            owners.remove(id);
        }
        let (pod, id) = (self.pod.clone(), id.to_string());
        blocking(move || Ok(pod.remove_container(&id, cgroup, is_sandbox)?)).await
    }
}

/// A process's stdio as a Create or Exec sets it up: the fifos opened right before the spawn
/// (handed to the container's IoUid/IoGid when it has one), the copies started once the
/// process is ready.
struct StdioSetup {
    paths: StdioPaths,
    /// `container <id>` or `exec <id> of container <id>`, for errors and thread names.
    label: String,
    owner: Option<IoOwner>,
    plumbing: Option<Plumbing>,
    io: Option<IoHandle>,
}

impl StdioSetup {
    fn new(paths: StdioPaths, label: String, owner: Option<IoOwner>) -> StdioSetup {
        StdioSetup { paths, label, owner, plumbing: None, io: None }
    }

    fn open(&mut self) -> Result<Stdio, ShimError> {
        let (fds, plumbing) = stdio::prepare(&self.paths)?;
        if let Some(owner) = self.owner {
            io_owner::apply(&fds, owner, &self.label)?;
        }
        self.plumbing = Some(plumbing);
        Ok(fds)
    }

    fn start(&mut self, pending: &mut Pending) -> Result<(), ShimError> {
        let plumbing = self.plumbing.take().ok_or_else(|| self.incomplete())?;
        let console = pending.console.take();
        self.io = Some(plumbing.start(console, &self.label)?);
        Ok(())
    }

    fn into_io(self) -> Result<IoHandle, ShimError> {
        let incomplete = self.incomplete();
        self.io.ok_or(incomplete)
    }

    /// The pod returned a process without asking for its stdio (not expected to happen).
    fn incomplete(&self) -> ShimError {
        ShimError::FailedPrecondition(format!(
            "{}: the process was built without its stdio",
            self.label
        ))
    }
}

/// What a Create records as the pod goes: `moat-state.json` in the bundle, the fault points,
/// the stdio fifos and their owner.
struct CreateJournal {
    req: CreateTaskRequest,
    bundle: PathBuf,
    spec: Arc<Spec>,
    stdio: StdioSetup,
    state: BundleState,
}

impl Journal for CreateJournal {
    type Error = ShimError;

    // Written before anything is taken (the ID range), again once the cgroup is made (only a
    // cgroup this shim made is ever named there: `delete` kills what is in it), and with the
    // init's pid once it is spawned: `shim delete` after a shim killed at any step in between
    // finds what to give back.
    fn begin(&mut self, pod_id: &str, is_sandbox: bool) -> Result<(), ShimError> {
        self.state.pod_id = pod_id.to_string();
        self.state.is_sandbox = is_sandbox;
        Ok(self.state.write(&self.bundle)?)
    }

    fn range_taken(&mut self) {
        crate::fault::point(crate::fault::AFTER_ID_RANGE, &self.req.id);
    }

    fn refused(&mut self, refusal: &Refusal, config: &Config, user: &UserNamespacePlan) {
        let who = audit_log::Subject {
            pod_id: &self.state.pod_id,
            container_id: &self.req.id,
            exec_id: None,
            spec: Some(&self.spec),
        };
        warn!("{}", audit_log::refused(&who, config, user, refusal));
    }

    fn planned(&mut self, plan: &ContainerPlan) -> Result<(), ShimError> {
        self.stdio.owner = io_owner::from_request(&self.req, &plan.user)?;
        Ok(())
    }

    fn cgroup_made(&mut self, cgroup: &Cgroup) -> Result<(), ShimError> {
        self.state.cgroups_path = Some(cgroup.path());
        Ok(self.state.write(&self.bundle)?)
    }

    fn stdio(&mut self) -> Result<Stdio, ShimError> {
        crate::fault::point(crate::fault::AFTER_CGROUP, &self.req.id);
        self.stdio.open()
    }

    fn spawned(&mut self, _pid: i32) {
        crate::fault::point(crate::fault::AFTER_HELPER_SPAWNED, &self.req.id);
    }

    fn ready(&mut self, pending: &mut Pending) -> Result<(), ShimError> {
        self.stdio.start(pending)?;
        let identity = u32::try_from(pending.pid)
            .ok()
            .and_then(|pid| moat_sandbox::userns::pool::Owner::of(pid).ok().flatten());
        self.state.pid = pending.pid;
        // The process is ours and waiting for Start: its identity is certain now.
        self.state.pid_start_time = identity.as_ref().map(|o| o.start_time);
        self.state.boot_id = identity.map(|o| o.boot_id);
        Ok(self.state.write(&self.bundle)?)
    }
}

/// What an Exec records: the audit line of a refusal, the stdio fifos and their owner.
struct ExecJournal {
    container_id: String,
    exec_id: String,
    pod_id: String,
    stdio: StdioSetup,
}

impl Journal for ExecJournal {
    type Error = ShimError;

    fn refused(&mut self, refusal: &Refusal, config: &Config, user: &UserNamespacePlan) {
        let who = audit_log::Subject {
            pod_id: &self.pod_id,
            container_id: &self.container_id,
            exec_id: Some(&self.exec_id),
            spec: None,
        };
        warn!("{}", audit_log::refused(&who, config, user, refusal));
    }

    fn stdio(&mut self) -> Result<Stdio, ShimError> {
        self.stdio.open()
    }

    fn ready(&mut self, pending: &mut Pending) -> Result<(), ShimError> {
        self.stdio.start(pending)
    }
}

/// The spec's root path, relative to the bundle unless absolute.
fn spec_rootfs(spec: &Spec, bundle: &std::path::Path) -> PathBuf {
    let root =
        spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShimError> + Send + 'static,
) -> Result<T, ShimError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| ShimError::Task { context: "a sandbox task failed".into(), source })?
}
