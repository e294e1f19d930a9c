//! A blocking CRI (k8s.io/cri-api runtime.v1) client over containerd's unix socket, with
//! crictl-like verbs: `runp / create / start / exec_sync / exec / attach / stats / update /
//! stop / rm / inspect / stopp / rmp`. `exec` and `attach` return the streaming URL, which
//! `stream::Session` connects to.
//!
//! Every call runs on one process-wide tokio runtime and has a deadline, so a hung shim fails
//! the test that hit it instead of hanging the whole run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    AttachRequest, ContainerConfig, ContainerFilter, ContainerState, ContainerStats,
    ContainerStatsFilter, ContainerStatsRequest, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecRequest, ExecSyncRequest, ImageSpec, LinuxContainerResources,
    ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest, PodSandbox,
    PodSandboxConfig, PodSandboxFilter, PodSandboxStatus, PodSandboxStatusRequest,
    PortForwardRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest,
};
use k8s_cri::v1::{PodSandboxStats, PodSandboxStatsRequest};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Deadline for one CRI call that is not given its own.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest CRI answer the client accepts (ExecSync carries whole outputs; containerd sends
/// up to 16 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// The process-wide runtime all CRI calls run on (test threads block on it).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("moat-e2e-cri")
            .enable_all()
            .build()
            .expect("cannot build the tokio runtime for the CRI client")
    })
}

/// What `ExecSync` returned.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// A CRI client bound to one containerd socket.
#[derive(Clone)]
pub struct Cri {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl std::fmt::Debug for Cri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cri").field("socket", &self.socket).finish()
    }
}

fn block_on<T>(
    what: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    runtime().block_on(async {
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => bail!("CRI {what}: no answer within {timeout:?}"),
            Ok(Err(status)) => bail!("CRI {what}: {:?}: {}", status.code(), status.message()),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    })
}

impl Cri {
    /// Connects to the CRI service on `socket` (containerd's grpc address).
    pub fn connect(socket: &Path) -> Result<Self> {
        let path = socket.to_path_buf();
        let channel = runtime()
            .block_on(async {
                let path = path.clone();
                Endpoint::try_from("http://[::]:50051")?
                    .connect_timeout(Duration::from_secs(10))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await
            })
            .with_context(|| format!("connecting to CRI on {}", socket.display()))?;
        Ok(Self {
            socket: path,
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel),
        })
    }

    /// RunPodSandbox with the given runtime handler ("moat", "runc"). Returns the pod id.
    pub fn runp(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        Ok(block_on(
            &format!("RunPodSandbox {name} ({handler})"),
            CALL_TIMEOUT,
            c.run_pod_sandbox(req),
        )?
        .pod_sandbox_id)
    }

    /// CreateContainer in `pod_id`. Returns the container id.
    pub fn create(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(block_on(&format!("CreateContainer {name}"), CALL_TIMEOUT, c.create_container(req))?
            .container_id)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StartContainerRequest { container_id: id.to_string() };
        block_on(&format!("StartContainer {id}"), CALL_TIMEOUT, c.start_container(req))?;
        Ok(())
    }

    /// ExecSync `cmd` in container `id`; `timeout` is passed to the runtime and bounds the call.
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<ExecOutput> {
        let mut c = self.runtime.clone();
        let req = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.as_secs().max(1) as i64,
        };
        let resp = block_on(
            &format!("ExecSync {cmd:?} in {id}"),
            timeout + Duration::from_secs(15),
            c.exec_sync(req),
        )?;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&resp.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&resp.stderr).into_owned(),
            exit_code: resp.exit_code,
        })
    }

    /// Exec: the streaming URL (containerd's streaming server) for `cmd` in container `id`.
    /// The CRI refuses `tty` together with stderr, so stderr is asked for only without a tty.
    pub fn exec(&self, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        };
        Ok(block_on(
            &format!("Exec {cmd:?} in {id} (tty {tty}, stdin {stdin})"),
            CALL_TIMEOUT,
            c.exec(req),
        )?
        .url)
    }

    /// Attach: the streaming URL for the container's stdio (stderr only without a tty).
    pub fn attach(&self, id: &str, tty: bool, stdin: bool) -> Result<String> {
        let mut c = self.runtime.clone();
        let req =
            AttachRequest { container_id: id.to_string(), stdin, tty, stdout: true, stderr: !tty };
        Ok(block_on(
            &format!("Attach {id} (tty {tty}, stdin {stdin})"),
            CALL_TIMEOUT,
            c.attach(req),
        )?
        .url)
    }

    /// PortForward: the streaming URL forwarding to `port` in the pod's network namespace
    /// (the port goes in the URL's query too, where the streaming server reads it).
    pub fn port_forward(&self, pod_id: &str, port: u16) -> Result<String> {
        let mut c = self.runtime.clone();
        let req =
            PortForwardRequest { pod_sandbox_id: pod_id.to_string(), port: vec![i32::from(port)] };
        let url = block_on(
            &format!("PortForward {pod_id} port {port}"),
            CALL_TIMEOUT,
            c.port_forward(req),
        )?
        .url;
        Ok(format!("{url}?port={port}"))
    }

    /// ListPodSandbox filtered by id: the pod as the list shows it (`None` if absent).
    pub fn pod_listed(&self, pod_id: &str) -> Result<Option<PodSandbox>> {
        let mut c = self.runtime.clone();
        let filter = PodSandboxFilter { id: pod_id.to_string(), ..Default::default() };
        Ok(block_on(
            "ListPodSandbox",
            CALL_TIMEOUT,
            c.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }),
        )?
        .items
        .into_iter()
        .find(|p| p.id == pod_id))
    }

    /// ListContainers of `pod_id`, whole entries (state, metadata, image).
    pub fn containers_listed(&self, pod_id: &str) -> Result<Vec<k8s_cri::v1::Container>> {
        let mut c = self.runtime.clone();
        let filter = ContainerFilter { pod_sandbox_id: pod_id.to_string(), ..Default::default() };
        Ok(block_on(
            "ListContainers",
            CALL_TIMEOUT,
            c.list_containers(ListContainersRequest { filter: Some(filter) }),
        )?
        .containers)
    }

    /// PodSandboxStats (`crictl statsp`).
    pub fn pod_stats(&self, pod_id: &str) -> Result<PodSandboxStats> {
        let mut c = self.runtime.clone();
        let req = PodSandboxStatsRequest { pod_sandbox_id: pod_id.to_string() };
        block_on(&format!("PodSandboxStats {pod_id}"), CALL_TIMEOUT, c.pod_sandbox_stats(req))?
            .stats
            .ok_or_else(|| anyhow!("PodSandboxStats {pod_id}: no stats in the answer"))
    }

    /// ContainerStats.
    pub fn stats(&self, id: &str) -> Result<ContainerStats> {
        let mut c = self.runtime.clone();
        let req = ContainerStatsRequest { container_id: id.to_string() };
        block_on(&format!("ContainerStats {id}"), CALL_TIMEOUT, c.container_stats(req))?
            .stats
            .ok_or_else(|| anyhow!("ContainerStats {id}: no stats in the answer"))
    }

    /// ListContainerStats of the containers of `pod_id`.
    pub fn list_stats(&self, pod_id: &str) -> Result<Vec<ContainerStats>> {
        let mut c = self.runtime.clone();
        let req = ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod_id.to_string(),
                ..Default::default()
            }),
        };
        Ok(block_on(
            &format!("ListContainerStats of pod {pod_id}"),
            CALL_TIMEOUT,
            c.list_container_stats(req),
        )?
        .stats)
    }

    /// UpdateContainerResources with Linux resources.
    pub fn update(&self, id: &str, resources: &LinuxContainerResources) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(resources.clone()),
            ..Default::default()
        };
        block_on(
            &format!("UpdateContainerResources {id} to {resources:?}"),
            CALL_TIMEOUT,
            c.update_container_resources(req),
        )?;
        Ok(())
    }

    /// StopContainer with a grace period of `timeout_s` seconds.
    pub fn stop(&self, id: &str, timeout_s: i64) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StopContainerRequest { container_id: id.to_string(), timeout: timeout_s };
        block_on(
            &format!("StopContainer {id}"),
            CALL_TIMEOUT + Duration::from_secs(timeout_s.max(0) as u64),
            c.stop_container(req),
        )?;
        Ok(())
    }

    pub fn rm(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = RemoveContainerRequest { container_id: id.to_string() };
        block_on(&format!("RemoveContainer {id}"), CALL_TIMEOUT, c.remove_container(req))?;
        Ok(())
    }

    /// ContainerStatus (verbose): the status and containerd's `info` JSON (pid, runtimeSpec, ...).
    pub fn inspect(&self, id: &str) -> Result<(ContainerStatus, Option<serde_json::Value>)> {
        let mut c = self.runtime.clone();
        let req = ContainerStatusRequest { container_id: id.to_string(), verbose: true };
        let resp =
            block_on(&format!("ContainerStatus {id}"), CALL_TIMEOUT, c.container_status(req))?;
        let status =
            resp.status.ok_or_else(|| anyhow!("ContainerStatus {id}: no status in the answer"))?;
        Ok((status, parse_info(&resp.info)))
    }

    /// The container's CRI log so far (read from the log path ContainerStatus reports).
    pub fn logs(&self, id: &str) -> Result<Vec<crate::cri_log::LogLine>> {
        let (status, _) = self.inspect(id)?;
        crate::cri_log::read(Path::new(&status.log_path))
    }

    /// PodSandboxStatus (verbose): the status and containerd's `info` JSON.
    pub fn inspectp(&self, pod_id: &str) -> Result<(PodSandboxStatus, Option<serde_json::Value>)> {
        let mut c = self.runtime.clone();
        let req = PodSandboxStatusRequest { pod_sandbox_id: pod_id.to_string(), verbose: true };
        let resp = block_on(
            &format!("PodSandboxStatus {pod_id}"),
            CALL_TIMEOUT,
            c.pod_sandbox_status(req),
        )?;
        let status = resp
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus {pod_id}: no status in the answer"))?;
        Ok((status, parse_info(&resp.info)))
    }

    pub fn stopp(&self, pod_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StopPodSandboxRequest { pod_sandbox_id: pod_id.to_string() };
        block_on(&format!("StopPodSandbox {pod_id}"), CALL_TIMEOUT, c.stop_pod_sandbox(req))?;
        Ok(())
    }

    pub fn rmp(&self, pod_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = RemovePodSandboxRequest { pod_sandbox_id: pod_id.to_string() };
        block_on(&format!("RemovePodSandbox {pod_id}"), CALL_TIMEOUT, c.remove_pod_sandbox(req))?;
        Ok(())
    }

    /// Ids of all pod sandboxes containerd knows.
    pub fn pods(&self) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let resp = block_on(
            "ListPodSandbox",
            CALL_TIMEOUT,
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )?;
        Ok(resp.items.into_iter().map(|p| p.id).collect())
    }

    /// Ids of the containers of `pod_id`.
    pub fn ps(&self, pod_id: &str) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let filter = ContainerFilter { pod_sandbox_id: pod_id.to_string(), ..Default::default() };
        let resp = block_on(
            "ListContainers",
            CALL_TIMEOUT,
            c.list_containers(ListContainersRequest { filter: Some(filter) }),
        )?;
        Ok(resp.containers.into_iter().map(|c| c.id).collect())
    }

    /// Polls ContainerStatus until the container has exited; returns its final status.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, _) = self.inspect(id)?;
            if status.state == ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {id} still in state {} after {timeout:?}",
                    state_name(status.state)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Image names containerd's CRI knows (for checking that the test images are present).
    pub fn image_present(&self, name: &str) -> Result<bool> {
        let mut c = self.images.clone();
        let req = k8s_cri::v1::ImageStatusRequest {
            image: Some(ImageSpec { image: name.to_string(), ..Default::default() }),
            verbose: false,
        };
        Ok(block_on(&format!("ImageStatus {name}"), CALL_TIMEOUT, c.image_status(req))?
            .image
            .is_some())
    }
}

fn parse_info(info: &HashMap<String, String>) -> Option<serde_json::Value> {
    info.get("info").and_then(|s| serde_json::from_str(s).ok())
}

/// A container state's name, for messages.
pub fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "CREATED",
        Ok(ContainerState::ContainerRunning) => "RUNNING",
        Ok(ContainerState::ContainerExited) => "EXITED",
        _ => "UNKNOWN",
    }
}
