//! The task service's one door into the sandbox crate: policy, ID ranges, cgroups, spawn.
//!
//! Everything here runs the blocking sandbox calls on tokio's blocking pool and undoes what
//! it did when a later step fails, so a refused or broken Create leaves no ID range, cgroup
//! or process behind.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::CreateTaskRequest;
use log::{info, warn};
use moat_sandbox::audit::{PodAudit, PodSupervisor};
use moat_sandbox::cgroups::{Cgroup, Layout};
use moat_sandbox::plan::{
    ContainerPlan, NamespaceAction, NamespaceKind, RootfsMount, UserNamespaceAction,
    UserNamespacePlan,
};
use moat_sandbox::policy::{self, Config, ContainerdDirs, PodContext};
use moat_sandbox::seccomp::FilterCache;
use moat_sandbox::spawn::{Launcher, PidFd};
use moat_sandbox::userns::pool::{IdRange, IdRangePool};
use oci_spec::runtime::{Process as OciProcess, Spec};

use super::audit_log;
use super::bundle_state::BundleState;
use super::io_owner;
use super::process::Process;
use super::stdio::{self, StdioPaths};
use crate::bootstrap::options::IoOwner;
use crate::config::ConfigSource;
use crate::error::ShimError;

/// What the pod's first (sandbox) container leaves for the others.
#[derive(Clone)]
pub struct PodResources {
    pub pod_id: String,
    pub pod_uid: Option<String>,
    pub user: UserNamespacePlan,
    /// The pod's user namespace, joined by every later container and exec.
    pub userns: Option<Arc<OwnedFd>>,
    /// The ID range came from moat's pool (and goes back to it with the pod).
    pub pool: Option<Arc<IdRangePool>>,
    /// The sandbox container's init: containerd names the pod's namespaces to the other
    /// containers as `/proc/<its pid>/ns/*`, checked against it (see `sandbox_paths_held`).
    pub sandbox: Option<PidFd>,
    /// The namespaces the sandbox shares with the host (policy allowed them): the pod's
    /// containers that join the sandbox's namespace of such a kind share the host's.
    pub host_namespaces: Vec<NamespaceKind>,
}

pub struct Created {
    pub is_sandbox: bool,
    pub plan: ContainerPlan,
    pub cgroup: Option<Cgroup>,
    pub process: Process,
    pub pod: Option<PodResources>,
}

pub struct Confinement {
    launcher: Arc<Launcher>,
    /// The machine's cgroup hierarchies, or why none could be found: then every container that
    /// names a cgroup is refused (it would run without its limits).
    layout: Result<Layout, String>,
    /// Seccomp filters compiled to BPF, by filter: the baseline is compiled once per shim
    /// instead of once per container start and exec.
    filters: FilterCache,
    /// Who owns each container's stdio (containerd 2.x's IoUid/IoGid, see `io_owner`), by
    /// container id: its execs' stdio gets the same owner.
    io_owners: std::sync::Mutex<std::collections::HashMap<String, IoOwner>>,
    /// The denial audit's state, by pod (one shim serves one pod; keyed for safety).
    audits: std::sync::Mutex<std::collections::HashMap<String, Arc<PodAudit>>>,
    /// The audit thread of each pod (one for all its processes' seccomp listeners).
    supervisors: std::sync::Mutex<std::collections::HashMap<String, Arc<PodSupervisor>>>,
}

impl Confinement {
    pub fn new() -> Result<Self, ShimError> {
        let launcher = Launcher::new()
            .map_err(|e| ShimError::Start(format!("preparing the sandbox helper: {e}")))?;
        let layout = Layout::detect().map_err(|e| {
            warn!("no cgroup hierarchy usable, containers with a cgroup will be refused: {e}");
            e.to_string()
        });
        Ok(Confinement {
            launcher: Arc::new(launcher),
            layout,
            filters: FilterCache::new(),
            io_owners: Default::default(),
            audits: Default::default(),
            supervisors: Default::default(),
        })
    }

    pub async fn create_container(
        &self,
        req: &CreateTaskRequest,
        config: &Arc<Config>,
        pod: Option<&PodResources>,
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
        let is_sandbox = PodContext::spec_is_sandbox(&spec) || pod.is_none();
        let pod_id = PodContext::spec_pod_id(&spec, &req.id);

        // Written before anything is taken (the ID range), again once the cgroup is made
        // (only a cgroup this shim made is ever named there: `delete` kills what is in it),
        // and with the init's pid once it is spawned: `shim delete` after a shim killed at any
        // step in between finds what to give back.
        let mut early_state = BundleState {
            container_id: req.id.clone(),
            pod_id: pod_id.clone(),
            is_sandbox,
            cgroups_path: None,
            pid: 0,
            pid_start_time: None,
            boot_id: None,
            config: config_source.clone(),
        };
        early_state.write(&bundle)?;

        // The pod's user namespace: handed over by containerd 2.x (`hostUsers: false`), else a
        // fresh range from moat's pool for the pod's first container, else the pod's.
        let handed_over = policy::spec_user_namespace(&spec);
        let is_handed_over = handed_over.is_some();
        let (user, mut pod_resources, userns_fd) = if let Some(user) = handed_over {
            if let Some(p) = pod.filter(|_| !is_sandbox) {
                if (&p.user.uid_mappings, &p.user.gid_mappings)
                    != (&user.uid_mappings, &user.gid_mappings)
                {
                    return Err(ShimError::Refused(format!(
                        "moat refused container {} of pod {pod_id}: linux.uidMappings, \
                         linux.gidMappings: they differ from the mappings of the pod's sandbox",
                        req.id
                    )));
                }
            }
            let resources = PodResources {
                pod_id: pod_id.clone(),
                pod_uid: PodContext::spec_pod_uid(&spec)
                    .or_else(|| pod.and_then(|p| p.pod_uid.clone())),
                user: user.clone(),
                userns: pod.and_then(|p| p.userns.clone()),
                pool: None,
                sandbox: pod.and_then(|p| p.sandbox.clone()),
                host_namespaces: pod.map(|p| p.host_namespaces.clone()).unwrap_or_default(),
            };
            (user, resources, None)
        } else if is_sandbox {
            let config = config.clone();
            let pod_id_for_pool = pod_id.clone();
            let (pool, user) = blocking(move || -> Result<_, ShimError> {
                let pool = IdRangePool::open(&config.userns)
                    .map_err(|e| ShimError::Sandbox(e.to_string()))?;
                let range = pool
                    .allocate(&pod_id_for_pool)
                    .map_err(|e| ShimError::Sandbox(e.to_string()))?;
                Ok((Arc::new(pool), range.user_namespace_plan(UserNamespaceAction::Create)))
            })
            .await?;
            crate::fault::point(crate::fault::AFTER_ID_RANGE, &req.id);
            let resources = PodResources {
                pod_id: pod_id.clone(),
                pod_uid: PodContext::spec_pod_uid(&spec),
                user: user.clone(),
                userns: None,
                pool: Some(pool),
                sandbox: None,
                host_namespaces: Vec::new(),
            };
            (user, resources, None)
        } else {
            let pod = pod.ok_or_else(|| {
                ShimError::FailedPrecondition(format!(
                    "container {}: its pod {pod_id} has no sandbox in this shim",
                    req.id
                ))
            })?;
            let mut user = pod.user.clone();
            user.action = UserNamespaceAction::JoinPod;
            (user, pod.clone(), pod.userns.clone())
        };

        let release_range = |resources: &PodResources| {
            if is_sandbox {
                if let Some(pool) = &resources.pool {
                    if let Err(e) = pool.release(&resources.pod_id) {
                        warn!("releasing the ID range of pod {}: {e}", resources.pod_id);
                    }
                }
            }
        };

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
        let ctx = PodContext {
            pod_id: pod_id.clone(),
            container_id: req.id.clone(),
            pod_uid: pod_resources.pod_uid.clone().or_else(|| PodContext::spec_pod_uid(&spec)),
            is_sandbox,
            rootfs: spec_rootfs(&spec, &bundle),
            rootfs_mounts,
            containerd,
            user,
            pod_shares_host: if is_sandbox {
                Vec::new()
            } else {
                pod_resources.host_namespaces.clone()
            },
        };
        // Every check below sees the CRI directories in effect: `cri_state_dirs`, else those
        // derived from containerd's bundle path and rootfs mounts.
        let effective_config: Arc<Config> = match policy::effective_config(config, &ctx) {
            std::borrow::Cow::Borrowed(_) => config.clone(),
            std::borrow::Cow::Owned(derived) => Arc::new(derived),
        };
        let config = &effective_config;
        let sandbox_pid =
            if is_sandbox { None } else { pod_resources.sandbox.as_ref().map(PidFd::pid) };
        if let Err(refusal) = policy::check_namespace_owner(&spec, config, &ctx, sandbox_pid) {
            warn!("refused: {refusal}");
            release_range(&pod_resources);
            return Err(ShimError::Refused(refusal.to_string()));
        }
        if is_handed_over && is_sandbox {
            // kubelet chose the pod's host IDs: never onto moat's pool or another live pod's
            // range; recorded in the pool so no later pod gets them while this one lives.
            let (config, spec, ctx) = (config.clone(), spec.clone(), ctx.clone());
            let claimed = blocking(move || -> Result<_, ShimError> {
                let sandbox = |e: moat_sandbox::userns::pool::PoolError| {
                    ShimError::Sandbox(format!("pod {}: {e}", ctx.pod_id))
                };
                let pool = IdRangePool::open(&config.userns).map_err(sandbox)?;
                let live = pool.allocations().map_err(sandbox)?;
                policy::check_handed_over_user(&spec, &config, &ctx, &live).map_err(|refusal| {
                    warn!("refused: {refusal}");
                    ShimError::Refused(refusal.to_string())
                })?;
                let ranges: Vec<_> = ctx
                    .user
                    .uid_mappings
                    .iter()
                    .chain(&ctx.user.gid_mappings)
                    .map(|m| IdRange { host_base: m.host_id, size: m.size })
                    .collect();
                pool.claim(&ctx.pod_id, &ranges).map_err(sandbox)?;
                Ok(Arc::new(pool))
            })
            .await?;
            pod_resources.pool = Some(claimed);
        }
        let mut plan = match policy::derive_container(&spec, config, &ctx) {
            Ok(plan) => plan,
            Err(refusal) => {
                warn!("refused: {refusal}");
                let who = audit_log::Subject {
                    pod_id: &pod_id,
                    container_id: &req.id,
                    exec_id: None,
                    spec: Some(&spec),
                };
                warn!("{}", audit_log::refused(&who, config, &ctx.user, &refusal));
                release_range(&pod_resources);
                return Err(ShimError::Refused(refusal.to_string()));
            }
        };
        warn_host_owned_capabilities(&req.id, &plan.process.capabilities);

        let io_owner = match io_owner::from_request(req, &plan.user) {
            Ok(owner) => owner,
            Err(e) => {
                release_range(&pod_resources);
                return Err(e);
            }
        };

        audit_baseline(self.pod_audit(config, &pod_id), &mut plan.process.seccomp);
        self.filters.precompile(&mut plan.process.seccomp);
        let cgroup = match self.create_cgroup(&spec, &req.id, config.default_pids_limit).await {
            Ok(cgroup) => cgroup,
            Err(e) => {
                release_range(&pod_resources);
                return Err(e);
            }
        };
        plan.cgroup_procs = cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default();

        let undo = |cgroup: &Option<Cgroup>| {
            if let Some(cg) = cgroup {
                if let Err(e) = cg.destroy() {
                    warn!("removing the cgroup of {}: {e}", req.id);
                }
            }
            release_range(&pod_resources);
        };
        if let Some(cg) = &cgroup {
            early_state.cgroups_path = Some(cg.path());
            if let Err(e) = early_state.write(&bundle) {
                undo(&cgroup);
                return Err(e);
            }
        }
        // The egress guard goes into the pod's network namespace before any of its processes
        // runs: a namespace the spec names (CNI's) now, one the init makes once it exists.
        let egress = if is_sandbox { egress_target(&plan) } else { EgressTarget::Pod };
        if let EgressTarget::Path(netns) = &egress {
            if let Err(e) = guard_egress(config, &pod_id, netns.clone()).await {
                undo(&cgroup);
                return Err(e);
            }
        }
        crate::fault::point(crate::fault::AFTER_CGROUP, &req.id);
        let spawned = self.spawn_init(&plan, stdio_paths, userns_fd.clone(), io_owner).await;
        let (mut pending, plumbing) = match spawned {
            Ok(v) => v,
            Err(e) => {
                undo(&cgroup);
                return Err(e);
            }
        };
        crate::fault::point(crate::fault::AFTER_HELPER_SPAWNED, &req.id);
        if !is_sandbox {
            let joined = plan
                .namespaces
                .iter()
                .filter_map(|n| match &n.action {
                    NamespaceAction::Join(path) => Some(path.as_path()),
                    NamespaceAction::Create => None,
                })
                .chain(match &plan.user.action {
                    UserNamespaceAction::JoinPath(path) => Some(path.as_path()),
                    _ => None,
                });
            if let Err(e) = sandbox_paths_held(joined, pod_resources.sandbox.as_ref(), &req.id) {
                drop(pending);
                undo(&cgroup);
                return Err(e);
            }
        }
        if let EgressTarget::OfInit = egress {
            let netns = PathBuf::from(format!("/proc/{}/ns/net", pending.pid));
            if let Err(e) = guard_egress(config, &pod_id, netns).await {
                drop(pending);
                undo(&cgroup);
                return Err(e);
            }
        }
        self.supervise_denials(config, &plan, &mut pending, &req.id);
        let console = pending.console.take();
        let io = match plumbing.start(console, &format!("container {}", req.id)) {
            Ok(io) => io,
            Err(e) => {
                drop(pending);
                undo(&cgroup);
                return Err(e);
            }
        };
        let mut pod_out = None;
        if is_sandbox {
            let mut resources = pod_resources.clone();
            resources.userns = pending.userns.take().map(Arc::new);
            resources.sandbox = Some(pending.pidfd.clone());
            resources.host_namespaces = moat_sandbox::features::NAMESPACE_KINDS
                .into_iter()
                .filter(|kind| policy::shares_host(&plan, *kind))
                .collect();
            pod_out = Some(resources);
        }
        let identity = u32::try_from(pending.pid)
            .ok()
            .and_then(|pid| moat_sandbox::userns::pool::Owner::of(pid).ok().flatten());
        let state = BundleState {
            container_id: req.id.clone(),
            pod_id,
            is_sandbox,
            cgroups_path: cgroup.as_ref().map(Cgroup::path),
            pid: pending.pid,
            // The process is ours and waiting for Start: its identity is certain now.
            pid_start_time: identity.as_ref().map(|o| o.start_time),
            boot_id: identity.map(|o| o.boot_id),
            config: config_source.clone(),
        };
        if let Err(e) = state.write(&bundle) {
            drop(pending);
            undo(&cgroup);
            return Err(e);
        }
        let process = Process::new(pending.pid, stdio_paths.clone(), pending, io);
        if let (Some(owner), Ok(mut owners)) = (io_owner, self.io_owners.lock()) {
            owners.insert(req.id.clone(), owner);
        }
        let who = audit_log::Subject {
            pod_id: &state.pod_id,
            container_id: &req.id,
            exec_id: None,
            spec: Some(&spec),
        };
        info!("{}", audit_log::created(&who, config, &plan));
        info!(
            "create {}: {:.3} ms in the shim ({})",
            req.id,
            began.elapsed().as_secs_f64() * 1e3,
            if is_sandbox { "sandbox" } else { "container" }
        );
        Ok(Created { is_sandbox, plan, cgroup, process, pod: pod_out })
    }

    /// Audit: the process's seccomp listener (sent right before exec) goes to a supervisor
    /// thread that answers and records its refused syscalls (`moat_sandbox::audit`).
    fn supervise_denials(
        &self,
        config: &Config,
        plan: &ContainerPlan,
        pending: &mut moat_sandbox::spawn::Pending,
        who: &str,
    ) {
        if !config.audit.enabled {
            return;
        }
        // Without it refusals are still answered (ENOSYS by the kernel), only unrecorded.
        let Some(pod) = self.pod_audit(config, &plan.pod_id) else { return };
        let Some(supervisor) = self.pod_supervisor(&plan.pod_id, pod) else { return };
        let who = who.to_string();
        pending.on_seccomp_listener(move |listener| supervisor.add(listener, who));
    }

    /// The pod's one audit thread (started on first use); `None` (logged) when no thread can
    /// be started: the refused syscalls then answer ENOSYS, unrecorded.
    fn pod_supervisor(&self, pod_id: &str, pod: Arc<PodAudit>) -> Option<Arc<PodSupervisor>> {
        let mut supervisors = self.supervisors.lock().ok()?;
        if let Some(s) = supervisors.get(pod_id) {
            return Some(s.clone());
        }
        match PodSupervisor::start(pod) {
            Ok(s) => {
                let s = Arc::new(s);
                supervisors.insert(pod_id.to_string(), s.clone());
                Some(s)
            }
            Err(e) => {
                warn!("pod {pod_id}: no audit thread ({e}); its refused syscalls answer ENOSYS");
                None
            }
        }
    }

    /// The audit state of `pod_id` (made on first use), `None` when the audit is off or its
    /// state directory is unusable (logged).
    fn pod_audit(&self, config: &Config, pod_id: &str) -> Option<Arc<PodAudit>> {
        if !config.audit.enabled {
            return None;
        }
        let mut audits = self.audits.lock().ok()?;
        if let Some(pod) = audits.get(pod_id) {
            return Some(pod.clone());
        }
        match PodAudit::new(&config.audit.state_dir, pod_id) {
            Ok(pod) => {
                audits.insert(pod_id.to_string(), pod.clone());
                Some(pod)
            }
            Err(e) => {
                warn!("pod {pod_id}: the denial audit is off: {e}");
                None
            }
        }
    }

    /// The container's cgroup with the spec's resources, and the config's `default_pids_limit`
    /// when the spec sets no pids limit (per container: see `resources::with_default_pids`).
    async fn create_cgroup(
        &self,
        spec: &Spec,
        id: &str,
        default_pids_limit: u64,
    ) -> Result<Option<Cgroup>, ShimError> {
        let linux = spec.linux().as_ref();
        let Some(path) = linux.and_then(|l| l.cgroups_path().clone()) else { return Ok(None) };
        let path = path.display().to_string();
        let layout = usable_layout(&self.layout, id, &path)?;
        let resources = moat_sandbox::cgroups::resources::with_default_pids(
            linux.and_then(|l| l.resources().as_ref()),
            default_pids_limit,
        );
        let id = id.to_string();
        blocking(move || {
            Cgroup::create(&layout, &path, resources.as_ref())
                .map(Some)
                .map_err(|e| ShimError::Sandbox(format!("container {id}: {e}")))
        })
        .await
    }

    async fn spawn_init(
        &self,
        plan: &ContainerPlan,
        stdio_paths: &StdioPaths,
        userns: Option<Arc<OwnedFd>>,
        io_owner: Option<IoOwner>,
    ) -> Result<(moat_sandbox::spawn::Pending, stdio::Plumbing), ShimError> {
        let (fds, plumbing) = stdio::prepare(stdio_paths)?;
        if let Some(owner) = io_owner {
            io_owner::apply(&fds, owner, &format!("container {}", plan.container_id))?;
        }
        let launcher = self.launcher.clone();
        let plan = plan.clone();
        let pending = blocking(move || {
            launcher
                .create(&plan, fds, userns.as_ref().map(|fd| fd.as_fd()))
                .map_err(|e| ShimError::Sandbox(e.to_string()))
        })
        .await?;
        Ok((pending, plumbing))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_exec(
        &self,
        id: &str,
        exec_id: &str,
        process_json: &[u8],
        container: &ContainerPlan,
        config: &Config,
        init: &PidFd,
        cgroup: Option<&Cgroup>,
        stdio_paths: &StdioPaths,
    ) -> Result<Process, ShimError> {
        let oci: OciProcess = serde_json::from_slice(process_json).map_err(|e| {
            ShimError::InvalidArgument(format!(
                "exec {exec_id} of container {id}: the process spec is not valid OCI JSON: {e}"
            ))
        })?;
        let mut plan = policy::derive_exec(&oci, container, config, exec_id, init.pid()).map_err(
            |refusal| {
                warn!("refused: {refusal}");
                let who = audit_log::Subject {
                    pod_id: &container.pod_id,
                    container_id: id,
                    exec_id: Some(exec_id),
                    spec: None,
                };
                warn!("{}", audit_log::refused(&who, config, &container.user, &refusal));
                if let Some(pod) = self.pod_audit(config, &container.pod_id) {
                    let rule = refusal.rule().as_str();
                    pod.record_refused_exec(id, exec_id, rule, refusal.field());
                }
                ShimError::Refused(refusal.to_string())
            },
        )?;
        plan.cgroup_procs = cgroup.map(Cgroup::procs_files).unwrap_or_default();
        audit_baseline(self.pod_audit(config, &container.pod_id), &mut plan.process.seccomp);
        self.filters.precompile(&mut plan.process.seccomp);
        let (fds, plumbing) = stdio::prepare(stdio_paths)?;
        let label = format!("exec {exec_id} of container {id}");
        let init = init.clone();
        let owner = self.io_owners.lock().ok().and_then(|owners| owners.get(id).copied());
        if let Some(owner) = owner {
            io_owner::apply(&fds, owner, &label)?;
        }
        let launcher = self.launcher.clone();
        let mut pending = blocking(move || {
            launcher.exec(&plan, fds, &init).map_err(|e| ShimError::Sandbox(e.to_string()))
        })
        .await?;
        self.supervise_denials(config, container, &mut pending, &format!("{id}/exec {exec_id}"));
        let console = pending.console.take();
        let io = plumbing.start(console, &label)?;
        Ok(Process::new(pending.pid, stdio_paths.clone(), pending, io))
    }

    /// Removes the container's cgroup (killing what is left in it) and, with the pod's
    /// sandbox container, gives the pod's ID range back.
    pub async fn destroy_container(
        &self,
        cgroup: Option<Cgroup>,
        pod: Option<PodResources>,
        id: &str,
    ) -> Result<(), ShimError> {
        if let Ok(mut owners) = self.io_owners.lock() {
            owners.remove(id);
        }
        let id = id.to_string();
        blocking(move || {
            if let Some(cgroup) = cgroup {
                cgroup.destroy().map_err(|e| ShimError::Sandbox(format!("container {id}: {e}")))?;
            }
            if let Some(pod) = pod {
                if let Some(pool) = &pod.pool {
                    pool.release(&pod.pod_id)
                        .map_err(|e| ShimError::Sandbox(format!("pod {}: {e}", pod.pod_id)))?;
                    info!("pod {}: ID range released", pod.pod_id);
                }
            }
            Ok(())
        })
        .await
    }
}

/// The cgroup layout for container `id`'s cgroup `path`; without one the container is
/// refused, naming the cause, rather than run without its limits.
fn usable_layout(
    layout: &Result<Layout, String>,
    id: &str,
    path: &str,
) -> Result<Layout, ShimError> {
    layout.clone().map_err(|cause| {
        ShimError::Sandbox(format!(
            "container {id}: its cgroup {path} cannot be created: {cause}; moat does not run a \
             container without its cgroup limits"
        ))
    })
}

/// Checks, after the helper opened them, that the namespace paths naming the pod sandbox's
/// process (`/proc/<its pid>/ns/*`, as containerd writes them) were that process's and not
/// those of whoever got its pid after it died: the sandbox's pidfd, taken when it was
/// spawned, must still show it unreaped now. If it does, its pid was never free between its
/// spawn and now, so `/proc/<pid>` at the time of the opens was the sandbox. (A zombie
/// sandbox has no namespaces left to open, so its paths already failed in the helper.)
fn sandbox_paths_held<'a>(
    paths: impl Iterator<Item = &'a std::path::Path>,
    sandbox: Option<&PidFd>,
    id: &str,
) -> Result<(), ShimError> {
    let Some(sandbox) = sandbox else { return Ok(()) };
    let dir = PathBuf::from(format!("/proc/{}", sandbox.pid()));
    let mut paths = paths;
    let Some(path) = paths.find(|p| p.starts_with(&dir)) else { return Ok(()) };
    sandbox.check_alive().map_err(|e| {
        ShimError::FailedPrecondition(format!(
            "container {id}: {} names the pod sandbox's process (pid {}), which has exited \
             (that pid may belong to another process now): {e}",
            path.display(),
            sandbox.pid()
        ))
    })
}

/// With `[audit] enabled` (and its state usable: `audit` is the pod's), the baseline's EPERM
/// rules notify the shim (`audit::audited`); otherwise the filter answers EPERM itself.
fn audit_baseline(audit: Option<Arc<PodAudit>>, filters: &mut [moat_sandbox::plan::SeccompPlan]) {
    if audit.is_none() {
        return;
    }
    for filter in filters.iter_mut().filter(|f| f.name == moat_sandbox::seccomp::BASELINE_NAME) {
        *filter = moat_sandbox::audit::audited(filter);
    }
}

/// Where the pod's egress guard goes (see `moat_sandbox::egress`).
enum EgressTarget {
    /// The network namespace the sandbox joins (CNI's on containerd 1.6, 2.x's own).
    Path(PathBuf),
    /// The namespace the sandbox's init creates: guarded once the init exists, before it runs.
    OfInit,
    /// Not the sandbox: the pod's namespace is already guarded.
    Pod,
    /// The host's network (`hostNetwork`, allowed by `allow_host_network`): outside the guard.
    Host,
}

fn egress_target(plan: &ContainerPlan) -> EgressTarget {
    use moat_sandbox::plan::{NamespaceAction, NamespaceKind};
    match plan.namespaces.iter().find(|ns| ns.kind == NamespaceKind::Network) {
        Some(ns) => match &ns.action {
            NamespaceAction::Join(path) => EgressTarget::Path(path.clone()),
            NamespaceAction::Create => EgressTarget::OfInit,
        },
        None => {
            info!(
                "pod {}: on the host's network namespace (hostNetwork): outside the egress guard",
                plan.pod_id
            );
            EgressTarget::Host
        }
    }
}

/// Installs the `[egress]` rules in `netns`; the pod is refused when they cannot be.
async fn guard_egress(config: &Arc<Config>, pod_id: &str, netns: PathBuf) -> Result<(), ShimError> {
    let (egress, pod_id) = (config.egress.clone(), pod_id.to_string());
    blocking(move || {
        let refuse = |e: moat_sandbox::egress::EgressError| {
            ShimError::Sandbox(format!("pod {pod_id}: {e}; the pod does not start without it"))
        };
        let ruleset = moat_sandbox::egress::ruleset_for_node(&egress).map_err(refuse)?;
        moat_sandbox::egress::install(&netns, &ruleset).map_err(refuse)?;
        if !ruleset.is_empty() {
            info!("pod {pod_id}: egress guard in {}: {}", netns.display(), ruleset.describe());
        }
        Ok(())
    })
    .await
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
        .map_err(|e| ShimError::Sandbox(format!("a sandbox task failed: {e}")))?
}

/// One warning line when a container is granted capabilities that act on namespaces moat
/// keeps owned by the host's user namespace (or on the host kernel): they are granted, but do
/// not reach what they name (issue 12; `docs/security.md`).
fn warn_host_owned_capabilities(container_id: &str, caps: &moat_sandbox::plan::CapabilityPlan) {
    let found = policy::capabilities::acting_on_host_owned(caps);
    if found.is_empty() {
        return;
    }
    let list: Vec<String> = found.iter().map(|(cap, what)| format!("{cap} ({what})")).collect();
    warn!(
        "container {container_id}: granted {}: these act on namespaces that belong to the \
         host's user namespace (or on the host kernel), which a capability of the pod's user \
         namespace does not reach; operations that need them fail with EPERM (see moat's \
         docs/security.md, \"Namespaces the pod does not own\")",
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_missing_cgroup_hierarchy_refuses_the_container_naming_the_cause() {
        // Input: no cgroup filesystem in mountinfo (what Layout::detect reports).
        let missing: Result<Layout, String> = Err(moat_sandbox::cgroups::CgroupError::NoCgroupFs {
            mountinfo: "/proc/self/mountinfo".into(),
        }
        .to_string());
        let err = usable_layout(&missing, "ctr1", "/k8s.io/ctr1").expect_err("must refuse");
        let msg = err.to_string();
        for part in ["ctr1", "/k8s.io/ctr1", "no cgroup filesystem", "/proc/self/mountinfo"] {
            assert!(msg.contains(part), "the refusal does not name {part:?}: {msg}");
        }
        let v2 = Layout::from_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(usable_layout(&Ok(v2.clone()), "c", "/p").ok(), Some(v2));
    }
    #[test]
    fn sandbox_paths_are_refused_once_the_sandbox_is_gone() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        // We are its parent and have not reaped it: the pidfd is certainly this child's.
        let sandbox = PidFd::open(pid).expect("pidfd_open");
        let ipc = PathBuf::from(format!("/proc/{pid}/ns/ipc"));
        let other = Path::new("/var/run/netns/cni-1");
        let check =
            |paths: &[&Path]| sandbox_paths_held(paths.iter().copied(), Some(&sandbox), "c1");
        assert!(check(&[other, &ipc]).is_ok(), "alive sandbox refused");
        child.kill().expect("kill");
        child.wait().expect("wait");
        let err = check(&[other, &ipc]).expect_err("a reaped sandbox's path was accepted");
        let text = err.to_string();
        assert!(
            text.contains("container c1") && text.contains(&ipc.display().to_string()),
            "{text}"
        );
        assert!(check(&[other]).is_ok(), "a path that does not name the sandbox was refused");
        assert!(sandbox_paths_held([ipc.as_path()].into_iter(), None, "c1").is_ok());
    }
}
