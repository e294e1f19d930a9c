//! The task service: containerd's Task API for every container of one pod.
//!
//! Each handler is short: it finds the container or process, asks `confine` (the sandbox
//! side) to do the work off the async threads, records the result and publishes the event.
//! One lock guards the pod's state; blocking work (spawning, starting, cgroup teardown)
//! runs in `spawn_blocking` with the lock released.
//!
//! The runtime is single-threaded and serves every request of the pod, so no handler may
//! wait on anything the tenant controls: a process that never reads its stdin (CloseIO only
//! closes a stop pipe, see `stdio`), a process stopped before it execs (Start waits with the
//! lock released; an exit reaped meanwhile is held until the start is reported), a pty whose
//! output never ends (exits wait for their output off the reaper's loop). Processes are
//! signalled and joined through their pidfds, never by a pid that may have been reused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::TaskIO;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::ProcessInfo;
use log::info;
use moat_sandbox::cgroups::Cgroup;
use moat_sandbox::policy::Config;
use oci_spec::runtime::LinuxResources;
use tokio::sync::Mutex;

use super::confine::{Confinement, ExecTarget};
use super::container::Container;
use super::error::ShimError;
use super::events::EventSink;
use super::exits::exit_status;
use super::process::{Exit, Process};
use super::state::{Effect, ExitRouter, ProcessKey};
use super::stdio::StdioPaths;
use crate::config::ConfigSource;

/// How long a container's exit waits for the exits of its execs before it is reported.
const EXEC_EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long an exit waits for a terminal's output to be copied out.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(5);

pub struct MoatTask {
    shared: Arc<Shared>,
}

struct Shared {
    events: EventSink,
    exit_signal: Arc<ExitSignal>,
    config_source: ConfigSource,
    confinement: Confinement,
    state: Mutex<PodState>,
}

#[derive(Default)]
struct PodState {
    config: Option<Arc<Config>>,
    containers: HashMap<String, Container>,
    /// Which process each pid is, and when each exit is recorded and published.
    exits: ExitRouter,
}

impl MoatTask {
    pub async fn new(events: EventSink, exit_signal: Arc<ExitSignal>) -> Result<Self, ShimError> {
        let shared = Arc::new(Shared {
            events,
            exit_signal,
            config_source: ConfigSource::from_env(),
            confinement: Confinement::new()?,
            state: Mutex::new(PodState::default()),
        });
        let mut subscription =
            monitor_subscribe(Topic::Pid).await.map_err(ShimError::ExitSubscription)?;
        let reaper = shared.clone();
        tokio::spawn(async move {
            while let Some(event) = subscription.rx.recv().await {
                if let Subject::Pid(pid) = event.subject {
                    let exit = Exit { status: exit_status(event.exit_code), at: SystemTime::now() };
                    Shared::reaped(&reaper, pid, exit).await;
                }
            }
        });
        Ok(MoatTask { shared })
    }
}

impl Shared {
    async fn config(&self, state: &mut PodState) -> Result<Arc<Config>, ShimError> {
        if let Some(config) = &state.config {
            return Ok(config.clone());
        }
        let config = Arc::new(self.config_source.load()?);
        info!("moat config loaded from {}", config.source);
        state.config = Some(config.clone());
        Ok(config)
    }

    /// A reaped exit. A terminal's output is copied by a shim thread: a process with one gets
    /// its exit reported once that output reached the fifo (or after OUTPUT_DRAIN_LIMIT), in
    /// a task of its own, so a pty kept open by the tenant never holds up other exits.
    async fn reaped(this: &Arc<Shared>, pid: i32, exit: Exit) {
        let drained = {
            let state = this.state.lock().await;
            state.exits.owner(pid).and_then(|key| {
                state.containers.get(&key.container)?.process(&key.exec)?.io.output_drained()
            })
        };
        let Some(mut done) = drained else {
            Shared::on_exit(this, pid, exit).await;
            return;
        };
        let this = this.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(OUTPUT_DRAIN_LIMIT, done.wait_for(|d| *d)).await;
            Shared::on_exit(&this, pid, exit).await;
        });
    }

    /// Records an exit on its process and tells containerd, in order (`state::ExitRouter`
    /// decides what happens; this runs it).
    async fn on_exit(this: &Arc<Shared>, pid: i32, exit: Exit) {
        let mut state = this.state.lock().await;
        let effects = state.exits.reaped(pid, exit);
        Self::run(this, &mut state, effects).await;
    }

    /// Runs the router's effects in order, with the state lock held as the caller holds it.
    async fn run(this: &Arc<Shared>, state: &mut PodState, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::CloseStdin(key) => {
                    if let Some(process) = state.process_of(&key) {
                        process.io.close_stdin();
                    }
                }
                Effect::Record(key, exit) => {
                    if let Some(process) = state.process_of(&key) {
                        process.set_exit(exit);
                    }
                }
                Effect::Publish { process, pid, exit } => {
                    let id = if process.is_init() { &process.container } else { &process.exec };
                    let (cid, status, at) = (&process.container, exit.status, exit.timestamp());
                    this.events.exited(cid, id, pid as u32, status, at).await;
                }
                Effect::ReportOom(cid) => {
                    if let Some(container) = state.containers.get(&cid) {
                        if let Some(cgroup) = &container.cgroup {
                            container.oom.report_new(cgroup, &this.events, &cid).await;
                        }
                    }
                }
                Effect::KillRemaining(cid) => {
                    if let Some(cgroup) = state.containers.get(&cid).and_then(|c| c.cgroup.clone())
                    {
                        tokio::task::spawn_blocking(move || {
                            cgroup.kill_all(nix::sys::signal::Signal::SIGKILL)
                        });
                    }
                }
                Effect::StartGrace(cid) => Self::start_grace(this, cid),
            }
        }
    }

    /// After EXEC_EXIT_GRACE, the container's init exit is published if it still waits.
    fn start_grace(this: &Arc<Shared>, cid: String) {
        let this = this.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EXEC_EXIT_GRACE).await;
            let mut state = this.state.lock().await;
            let effects = state.exits.grace_over(&cid);
            Self::run(&this, &mut state, effects).await;
        });
    }
}

impl PodState {
    /// The container `id`, or NOT_FOUND naming `label`.
    fn container(&self, id: &str, label: &str) -> Result<&Container, ShimError> {
        self.containers.get(id).ok_or_else(|| not_found(label))
    }

    fn container_mut(&mut self, id: &str, label: &str) -> Result<&mut Container, ShimError> {
        self.containers.get_mut(id).ok_or_else(|| not_found(label))
    }

    /// The init (`exec_id` empty) or exec of container `id`, or NOT_FOUND naming `label`.
    fn process(&self, id: &str, exec_id: &str, label: &str) -> Result<&Process, ShimError> {
        self.container(id, label)?.process(exec_id).ok_or_else(|| not_found(label))
    }

    /// The process the router means, if it is still there.
    fn process_of(&self, key: &ProcessKey) -> Option<&Process> {
        self.containers.get(&key.container)?.process(&key.exec)
    }
}

fn not_found(what: &str) -> ShimError {
    ShimError::NotFound(format!("{what} not found"))
}

fn process_label(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("container {id}")
    } else {
        format!("exec {exec_id} of container {id}")
    }
}

#[async_trait]
impl Task for MoatTask {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let this = &self.shared;
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(
                "restoring from a checkpoint is not supported by moat".into(),
            )
            .into());
        }
        let stdio_paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        // Taken before the init is spawned: an exit kept under its pid from before is not its.
        let (config, ticket) = {
            let mut state = this.state.lock().await;
            if state.containers.contains_key(&req.id) {
                return Err(ShimError::AlreadyExists(format!(
                    "container {} already exists",
                    req.id
                ))
                .into());
            }
            (this.config(&mut state).await?, state.exits.spawn_ticket())
        };
        let created = this
            .confinement
            .create_container(&req, &config, &stdio_paths, &this.config_source)
            .await?;
        let pid = created.process.pid;
        let mut state = this.state.lock().await;
        let claimed = state.exits.registered_init(&req.id, pid, ticket);
        let oom = super::oom::OomCount::default();
        if let Some(cgroup) = &created.cgroup {
            super::oom::watch(cgroup.clone(), oom.clone(), this.events.clone(), req.id.clone());
        }
        let container = Container {
            bundle: req.bundle.clone(),
            is_sandbox: created.is_sandbox,
            plan: created.plan,
            cgroup: created.cgroup,
            init: created.process,
            execs: HashMap::new(),
            oom,
        };
        state.containers.insert(req.id.clone(), container);
        Shared::run(this, &mut state, claimed).await;
        drop(state);
        let io = TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        this.events.created(&req.id, &req.bundle, io, pid as u32).await;
        Ok(CreateTaskResponse { pid: pid as u32, ..Default::default() })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let this = &self.shared;
        let label = process_label(&req.id, &req.exec_id);
        // The start waits for the process to exec, and the process is within the tenant's
        // reach (it can be stopped or killed): the lock is released meanwhile. The router holds
        // an exit that comes first until the start is reported (`start_began`/`start_ended`).
        let (pending, pid) = {
            let mut state = this.state.lock().await;
            let process = state
                .container_mut(&req.id, &label)?
                .process_mut(&req.exec_id)
                .ok_or_else(|| not_found(&label))?;
            let pending = process.pending.take().ok_or_else(|| {
                ShimError::FailedPrecondition(format!("{label} was already started"))
            })?;
            let pid = process.pid;
            state.exits.start_began(&ProcessKey::new(&req.id, &req.exec_id));
            (pending, pid)
        };
        let started = tokio::task::spawn_blocking(move || pending.start())
            .await
            .map_err(|source| ShimError::Task { context: format!("starting {label}"), source })
            .and_then(|r| {
                r.map_err(|e| ShimError::Spawn {
                    context: format!("starting {label}"),
                    source: Box::new(e),
                })
            });
        {
            let mut state = this.state.lock().await;
            let Some(process) =
                state.containers.get_mut(&req.id).and_then(|c| c.process_mut(&req.exec_id))
            else {
                return Err(
                    ShimError::NotFound(format!("{label} was deleted during its start")).into()
                );
            };
            if started.is_ok() {
                if req.exec_id.is_empty() {
                    crate::fault::point(crate::fault::AFTER_START, &req.id);
                }
                process.started = true;
                if req.exec_id.is_empty() {
                    this.events.started(&req.id, pid as u32).await;
                } else {
                    this.events.exec_started(&req.id, &req.exec_id, pid as u32).await;
                }
            }
            // An exit reaped during the start is applied now, after the start was reported.
            let held = state.exits.start_ended(&ProcessKey::new(&req.id, &req.exec_id));
            Shared::run(this, &mut state, held).await;
        }
        started?;
        Ok(StartResponse { pid: pid as u32, ..Default::default() })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let state = self.shared.state.lock().await;
        let label = process_label(&req.id, &req.exec_id);
        let container = state.container(&req.id, &label)?;
        let process = container.process(&req.exec_id).ok_or_else(|| not_found(&label))?;
        let exit = process.exit();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() { req.id.clone() } else { req.exec_id.clone() },
            bundle: container.bundle.clone(),
            pid: process.pid as u32,
            status: process.status().into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or_default(),
            exited_at: exit.map(|e| e.timestamp()).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let label = process_label(&req.id, &req.exec_id);
        let mut exits = {
            let state = self.shared.state.lock().await;
            state.process(&req.id, &req.exec_id, &label)?.subscribe()
        };
        let exit = exits
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ShimError::NotFound(format!("{label} was deleted while waited on")))?
            .ok_or_else(|| not_found(&label))?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, &req.exec_id);
        let (pidfd, cgroup) = {
            let state = self.shared.state.lock().await;
            let container = state.container(&req.id, &label)?;
            let process = container.process(&req.exec_id).ok_or_else(|| not_found(&label))?;
            if process.exit().is_some() {
                return Err(
                    ShimError::NotFound(format!("{label}: process already finished")).into()
                );
            }
            let cgroup =
                (req.all && req.exec_id.is_empty()).then(|| container.cgroup.clone()).flatten();
            (process.pidfd.clone(), cgroup)
        };
        let signal = i32::try_from(req.signal)
            .ok()
            .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
            .ok_or_else(|| {
                ShimError::InvalidArgument(format!(
                    "{label}: signal {} is not a signal",
                    req.signal
                ))
            })?;
        if let Some(cgroup) = cgroup {
            blocking_cgroup(&label, "killing all", move || cgroup.kill_all(signal)).await?;
            return Ok(Empty::new());
        }
        // Through the pidfd: the process may have been reaped since the check above (the
        // reaper does not take our lock) and its pid given to another process; the pidfd
        // still names this one, and says ESRCH once it is gone.
        pidfd.send_signal(signal).map_err(|e| match e {
            nix::errno::Errno::ESRCH => {
                ShimError::NotFound(format!("{label}: process already finished"))
            }
            other => ShimError::Signal {
                context: format!("signal {signal:?} to {label} (pid {})", pidfd.pid()),
                errno: other,
            },
        })?;
        Ok(Empty::new())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let this = &self.shared;
        let label = process_label(&req.id, &req.exec_id);
        if !req.exec_id.is_empty() {
            let mut state = this.state.lock().await;
            let starting = state.exits.is_starting(&ProcessKey::new(&req.id, &req.exec_id));
            let container = state.container_mut(&req.id, &label)?;
            let process = container.execs.get(&req.exec_id).ok_or_else(|| not_found(&label))?;
            if process.is_running() || starting {
                return Err(
                    ShimError::FailedPrecondition(format!("{label} is still running")).into()
                );
            }
            let process = container.execs.remove(&req.exec_id).ok_or_else(|| not_found(&label))?;
            let exit = process.exit().unwrap_or(Exit { status: 0, at: SystemTime::now() });
            // Only this exec's own pid entry: once it was reaped its pid may have gone to a
            // newer process of the pod, whose registration must stay.
            state.exits.deleted_exec(&req.id, &req.exec_id);
            return Ok(delete_response(process.pid, exit));
        }
        let mut container = {
            let mut state = this.state.lock().await;
            let starting = state.exits.is_starting(&ProcessKey::new(&req.id, ""));
            let container = state.container(&req.id, &label)?;
            if container.init.is_running() || starting {
                return Err(ShimError::FailedPrecondition(format!(
                    "{label} is still running; kill it first"
                ))
                .into());
            }
            let container = state.containers.remove(&req.id).ok_or_else(|| not_found(&label))?;
            state.exits.deleted_container(&req.id);
            container
        };
        // A created-but-never-started init: dropping its pending start makes it exit.
        container.init.pending.take();
        let pid = container.init.pid;
        let exit = container.init.exit().unwrap_or(Exit { status: 137, at: SystemTime::now() });
        crate::fault::point(crate::fault::DURING_DELETE, &req.id);
        let cgroup = container.cgroup.take();
        this.confinement.destroy_container(cgroup, container.is_sandbox, &req.id).await?;
        this.events.deleted(&req.id, pid as u32, exit.status, exit.timestamp()).await;
        Ok(delete_response(pid, exit))
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let label = process_label(&req.id, "");
        let (cgroup, init) = {
            let state = self.shared.state.lock().await;
            let container = state.container(&req.id, &label)?;
            (container.cgroup.clone(), container.init.pid)
        };
        let pids = match cgroup {
            Some(cgroup) => blocking_cgroup(&label, "listing pids", move || cgroup.pids()).await?,
            None => vec![init],
        };
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo { pid: pid as u32, ..Default::default() })
            .collect();
        Ok(PidsResponse { processes, ..Default::default() })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let this = &self.shared;
        let label = process_label(&req.id, &req.exec_id);
        let (config, target, ticket) = {
            let mut state = this.state.lock().await;
            let config = this.config(&mut state).await?;
            let container = state.container(&req.id, &label)?;
            if container.execs.contains_key(&req.exec_id) {
                return Err(ShimError::AlreadyExists(format!("{label} already exists")).into());
            }
            if !container.init.is_running() {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {} is not running",
                    req.id
                ))
                .into());
            }
            let target = ExecTarget {
                plan: container.plan.clone(),
                init: container.init.pidfd.clone(),
                cgroup: container.cgroup.clone(),
            };
            // Taken before the exec is spawned (see `create`).
            (config, target, state.exits.spawn_ticket())
        };
        let process = this.confinement.create_exec(&req, config, target).await?;
        crate::fault::point(crate::fault::DURING_EXEC, &req.id);
        let pid = process.pid;
        let mut state = this.state.lock().await;
        let claimed = state.exits.registered_exec(&req.id, &req.exec_id, pid, ticket);
        let (Some(claimed), Some(container)) = (claimed, state.containers.get_mut(&req.id)) else {
            return Err(ShimError::NotFound(format!(
                "container {} was deleted during exec",
                req.id
            ))
            .into());
        };
        container.execs.insert(req.exec_id.clone(), process);
        Shared::run(this, &mut state, claimed).await;
        drop(state);
        this.events.exec_added(&req.id, &req.exec_id).await;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, &req.exec_id);
        let state = self.shared.state.lock().await;
        let process = state.process(&req.id, &req.exec_id, &label)?;
        process.io.resize(req.width, req.height).map_err(ShimError::from)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, &req.exec_id);
        let state = self.shared.state.lock().await;
        let process = state.process(&req.id, &req.exec_id, &label)?;
        if req.stdin {
            process.io.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        let state = self.shared.state.lock().await;
        let task_pid = state.containers.get(&req.id).map(|c| c.init.pid as u32).unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        let state = self.shared.state.lock().await;
        if state.containers.is_empty() {
            self.shared.exit_signal.signal();
        } else {
            info!("shutdown ignored: {} container(s) still in this pod", state.containers.len());
        }
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let label = process_label(&req.id, "");
        let cgroup = self.cgroup_of(&req.id, &label).await?;
        let stats = blocking_cgroup(&label, "stats", move || cgroup.stats()).await?;
        let any = super::metrics::to_any(&stats).map_err(ShimError::from)?;
        Ok(StatsResponse { stats: Some(any).into(), ..Default::default() })
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, "");
        let resources: LinuxResources = match req.resources.as_ref() {
            Some(any) => serde_json::from_slice(&any.value).map_err(|e| {
                ShimError::InvalidArgument(format!(
                    "update of {label}: resources are not OCI LinuxResources JSON: {e}"
                ))
            })?,
            None => {
                return Err(ShimError::InvalidArgument(format!(
                    "update of {label}: no resources given"
                ))
                .into())
            }
        };
        let cgroup = self.cgroup_of(&req.id, &label).await?;
        blocking_cgroup(&label, "update", move || cgroup.update(&resources)).await?;
        Ok(Empty::new())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, "");
        let cgroup = self.cgroup_of(&req.id, &label).await?;
        blocking_cgroup(&label, "pause", move || cgroup.freeze()).await?;
        self.set_paused(&req.id, true).await;
        self.shared.events.paused(&req.id).await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let label = process_label(&req.id, "");
        let cgroup = self.cgroup_of(&req.id, &label).await?;
        blocking_cgroup(&label, "resume", move || cgroup.thaw()).await?;
        self.set_paused(&req.id, false).await;
        self.shared.events.resumed(&req.id).await;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(ShimError::Unimplemented("checkpoint is not supported by moat".into()).into())
    }
}

impl MoatTask {
    /// The container's cgroup, for the verbs that act on it.
    async fn cgroup_of(&self, id: &str, label: &str) -> Result<Cgroup, ShimError> {
        let state = self.shared.state.lock().await;
        let container = state.container(id, label)?;
        container.cgroup.clone().ok_or_else(|| {
            ShimError::FailedPrecondition(format!(
                "{label} has no cgroup (the spec gave no linux.cgroupsPath)"
            ))
        })
    }

    async fn set_paused(&self, id: &str, paused: bool) {
        let mut state = self.shared.state.lock().await;
        if let Some(container) = state.containers.get_mut(id) {
            container.init.paused = paused;
            for exec in container.execs.values_mut() {
                exec.paused = paused;
            }
        }
    }
}

/// Runs a cgroup operation on the blocking pool; its error names the container and the verb.
async fn blocking_cgroup<T: Send + 'static>(
    label: &str,
    verb: &str,
    f: impl FnOnce() -> Result<T, moat_sandbox::cgroups::CgroupError> + Send + 'static,
) -> Result<T, ShimError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| ShimError::Task { context: format!("{verb} of {label}"), source })?
        .map_err(|source| ShimError::Cgroup { context: format!("{verb} of {label}"), source })
}

fn delete_response(pid: i32, exit: Exit) -> DeleteResponse {
    DeleteResponse {
        pid: pid as u32,
        exit_status: exit.status,
        exited_at: Some(exit.timestamp()).into(),
        ..Default::default()
    }
}
