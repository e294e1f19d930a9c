//! Publishing task events to containerd: one sink, the namespace fixed, failures logged.
//!
//! containerd-shim's `RemotePublisher` already queues events (bounded), retries with backoff
//! and reconnects; this wrapper only stamps topic and namespace and turns a full queue into
//! a log line instead of failing the request that caused the event.

use std::sync::Arc;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::ttrpc::context::Context;
use log::warn;

#[derive(Clone)]
pub struct EventSink {
    publisher: Arc<RemotePublisher>,
    namespace: String,
}

impl EventSink {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        EventSink { publisher: Arc::new(publisher), namespace: namespace.to_string() }
    }

    async fn send<E: Event + 'static>(&self, event: E) {
        let topic = event.topic();
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, Box::new(event))
            .await
        {
            warn!("publishing {topic} failed: {e}");
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn created(&self, id: &str, bundle: &str, io: TaskIO, pid: u32) {
        self.send(TaskCreate {
            container_id: id.into(),
            bundle: bundle.into(),
            io: Some(io).into(),
            pid,
            ..Default::default()
        })
        .await
    }

    pub async fn started(&self, id: &str, pid: u32) {
        self.send(TaskStart { container_id: id.into(), pid, ..Default::default() }).await
    }

    pub async fn exited(&self, id: &str, process_id: &str, pid: u32, status: u32, at: Timestamp) {
        self.send(TaskExit {
            container_id: id.into(),
            id: process_id.into(),
            pid,
            exit_status: status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
        .await
    }

    pub async fn deleted(&self, id: &str, pid: u32, status: u32, at: Timestamp) {
        self.send(TaskDelete {
            container_id: id.into(),
            id: id.into(),
            pid,
            exit_status: status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
        .await
    }

    pub async fn exec_added(&self, id: &str, exec_id: &str) {
        self.send(TaskExecAdded {
            container_id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        })
        .await
    }

    pub async fn exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        self.send(TaskExecStarted {
            container_id: id.into(),
            exec_id: exec_id.into(),
            pid,
            ..Default::default()
        })
        .await
    }

    pub async fn oom(&self, id: &str) {
        self.send(TaskOOM { container_id: id.into(), ..Default::default() }).await
    }

    pub async fn paused(&self, id: &str) {
        self.send(TaskPaused { container_id: id.into(), ..Default::default() }).await
    }

    pub async fn resumed(&self, id: &str) {
        self.send(TaskResumed { container_id: id.into(), ..Default::default() }).await
    }
}
