//! The process: containerd-shim's lifecycle (`start`, `delete`, serve) wired to moat's
//! task service, on a small tokio runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::{run, ExitSignal, Shim};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use log::error;

use crate::bootstrap;
use crate::task::{EventSink, MoatTask};
use crate::RUNTIME_ID;

/// Threads for blocking sandbox work (spawning, cgroup teardown). The async side runs on one
/// thread: a node may have 100+ cores and 100+ pods, and a shim needs neither.
const BLOCKING_THREADS: usize = 4;

pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-v" || a == "-version" || a == "--version") {
        println!("containerd-shim-moat-v2 {} (runtime {RUNTIME_ID})", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.first().map(String::as_str) == Some("config") {
        std::process::exit(crate::install::run(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("check") {
        // Before anything starts a thread: the probes fork.
        std::process::exit(crate::check::run(&args[1..]));
    }
    if args.iter().any(|a| a == "-info" || a == "--info") {
        std::process::exit(crate::bootstrap::info::print());
    }
    if let Some(address) =
        bootstrap::start::join_running_shim(&std::env::args_os().skip(1).collect::<Vec<_>>())
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let written = out.write_all(address.as_bytes()).and_then(|()| out.flush());
        std::process::exit(if written.is_ok() { 0 } else { 1 });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(10))
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containerd-shim-moat-v2: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = Config { default_log_level: "info".into(), ..Default::default() };
    runtime.block_on(run::<MoatShim>(RUNTIME_ID, Some(config)));
}

struct MoatShim {
    namespace: String,
    /// `-id` and `-address` (containerd's socket): with the bundle, they name the pod's
    /// shim socket, which `delete` removes once its shim is dead.
    id: String,
    address: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for MoatShim {
    type T = MoatTask;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        MoatShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            address: args.address.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let input = bootstrap::start::start_input();
        // `start` is a command, not a ttrpc call: containerd shows its error text as it is.
        bootstrap::start::start(opts, input)
            .await
            .map_err(|e| containerd_shim::Error::Other(e.to_string()))
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = self.bundle.clone();
        let socket = bootstrap::start::pod_socket_path(
            &self.bundle,
            &self.id,
            &self.namespace,
            &self.address,
        );
        let response = tokio::task::spawn_blocking(move || {
            let response = bootstrap::cleanup::delete(&bundle);
            // Whatever the rest did: a dead shim's socket file is removed (nothing else will).
            bootstrap::cleanup::remove_dead_socket(&socket);
            response
        })
        .await
        .map_err(|e| containerd_shim::Error::Other(format!("delete: {e}")))??;
        Ok(response)
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let events = EventSink::new(publisher, &self.namespace);
        match MoatTask::new(events, self.exit.clone()).await {
            Ok(task) => task,
            Err(e) => {
                error!("moat shim cannot serve: {e}");
                std::process::exit(1);
            }
        }
    }
}
