//! Many pods at once: `pods` pod starts (RunPodSandbox + CreateContainer + StartContainer)
//! through `parallel` worker threads, all pods kept running until the last started; then the
//! shims' memory at that density, then a parallel teardown. One handler at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use moat_e2e::TestBed;

use crate::memory::ShimMemory;
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
}

pub fn burst(bed: &TestBed, handler: &str, pods: usize, parallel: usize) -> Burst {
    let next = AtomicUsize::new(0);
    let started: Mutex<Vec<BenchPod<'_>>> = Mutex::new(Vec::new());
    let result = Mutex::new(Burst::default());
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
