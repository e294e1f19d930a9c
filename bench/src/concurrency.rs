//! Many pods at once: `pods` pod starts (RunPodSandbox + CreateContainer + StartContainer)
//! through `parallel` worker threads, all pods kept running until the last started; then the
//! shims' memory and the node's (`/proc/meminfo` after dropping the page cache, before the
//! first pod and with all up) at that density, then a parallel teardown. One handler at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use moat_e2e::TestBed;

use crate::memory::{NodeMemory, ShimMemory};
use crate::own_cgroup::{Charged, OwnCgroup};
use crate::pods::BenchPod;

#[derive(Debug, Default)]
pub struct Burst {
    /// Pod start durations (ms) of the pods that started.
    pub starts_ms: Vec<f64>,
    /// What failed, one line per failed pod.
    pub failures: Vec<String>,
    /// Each running pod's shim memory with all pods up.
    pub memory: Vec<ShimMemory>,
    /// Teardown failures.
    pub teardown_failures: Vec<String>,
    /// The node before the first pod and with every started pod up.
    pub node_before: Option<NodeMemory>,
    pub node_after: Option<NodeMemory>,
    /// Pods up when `node_after` was read.
    pub up: usize,
    /// Memory charged to the bench's own cgroup (containerd, shims) and the pods' cgroups,
    /// before the first pod and with all up: immune to other work on the host.
    pub charged_before: Option<Charged>,
    pub charged_after: Option<Charged>,
}

pub fn burst(
    bed: &TestBed,
    handler: &str,
    pods: usize,
    parallel: usize,
    own: Option<&OwnCgroup>,
) -> Burst {
    let charged = || own.and_then(|c| c.charged_with(&bed.layout().cgroup_parent).ok());
    let next = AtomicUsize::new(0);
    let started: Mutex<Vec<BenchPod<'_>>> = Mutex::new(Vec::new());
    let result = Mutex::new(Burst::default());
    match NodeMemory::after_dropping_caches() {
        Ok(m) => lock(&result).node_before = Some(m),
        Err(e) => lock(&result).failures.push(format!("node memory before: {e:#}")),
    }
    lock(&result).charged_before = charged();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::SeqCst) < pods {
                    match BenchPod::start_pod(bed, "bench-burst", handler) {
                        Ok((pod, start)) => {
                            lock(&result).starts_ms.push(start.total());
                            lock(&started).push(pod);
                        }
                        Err(e) => lock(&result).failures.push(format!("{e:#}")),
                    }
                }
            });
        }
    });
    let running = std::mem::take(&mut *lock(&started));
    {
        let mut r = lock(&result);
        for pod in &running {
            match ShimMemory::of(&pod.shim_pids()) {
                Ok(m) => r.memory.push(m),
                Err(e) => r.failures.push(format!("pod {}: shim memory: {e:#}", pod.name)),
            }
        }
        r.up = running.len();
        match NodeMemory::after_dropping_caches() {
            Ok(m) => r.node_after = Some(m),
            Err(e) => r.failures.push(format!("node memory with the pods up: {e:#}")),
        }
        r.charged_after = charged();
    }
    let queue = Mutex::new(running);
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| loop {
                let Some(pod) = lock(&queue).pop() else { break };
                let name = pod.name.clone();
                if let Err(e) = pod.teardown() {
                    lock(&result).teardown_failures.push(format!("pod {name}: {e:#}"));
                }
            });
        }
    });
    result.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
