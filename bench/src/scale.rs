//! Pod start on a full node: `pods` pods started one after another and kept up, each start
//! (RunPodSandbox + CreateContainer + StartContainer) timed, so that the first starts (an
//! almost empty node) compare with the last (that many pods running). Then a parallel
//! teardown. One handler at a time.

use std::sync::Mutex;

use moat_e2e::TestBed;
use serde::Serialize;

use crate::pods::BenchPod;

#[derive(Debug, Default, Serialize)]
pub struct Scale {
    /// Pod start durations (ms) in start order; a failed start ends the series.
    pub starts_ms: Vec<f64>,
    pub failures: Vec<String>,
}

impl Scale {
    /// The starts of pods `from..=to` (1-based), those that happened.
    pub fn window(&self, from: usize, to: usize) -> Vec<f64> {
        self.starts_ms.iter().skip(from - 1).take(to + 1 - from).copied().collect()
    }
}

pub fn run(bed: &TestBed, handler: &str, pods: usize, teardown_parallel: usize) -> Scale {
    let mut result = Scale::default();
    let mut running = Vec::new();
    for i in 0..pods {
        match BenchPod::start_pod(bed, "bench-scale", handler) {
            Ok((pod, start)) => {
                result.starts_ms.push(start.total());
                running.push(pod);
            }
            Err(e) => {
                result.failures.push(format!("pod {}: {e:#}", i + 1));
                break;
            }
        }
    }
    let queue = Mutex::new(running);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..teardown_parallel.max(1) {
            s.spawn(|| loop {
                let Some(pod) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    break;
                };
                let name = pod.name.clone();
                if let Err(e) = pod.teardown() {
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("teardown of pod {name}: {e:#}"));
                }
            });
        }
    });
    result.failures.extend(failures.into_inner().unwrap_or_else(|e| e.into_inner()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_one_based_and_clipped() {
        let s = Scale { starts_ms: (1..=12).map(f64::from).collect(), failures: vec![] };
        assert_eq!(s.window(1, 3), vec![1.0, 2.0, 3.0]);
        assert_eq!(s.window(11, 20), vec![11.0, 12.0]);
        assert!(s.window(13, 20).is_empty());
    }
}
