//! One pod at a time, handlers alternating (moat, runc, moat, runc, ...): the pod start calls,
//! a second container, ExecSync `true` round trips, the shim's memory and threads with both
//! containers running, then StopPodSandbox + RemovePodSandbox.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use moat_e2e::TestBed;
use serde::Serialize;

use crate::memory::ShimMemory;
use crate::pods::{BenchPod, SLEEP};

/// Every series of one handler (ms unless named otherwise).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Series {
    pub run_pod_sandbox: Vec<f64>,
    pub create_container: Vec<f64>,
    pub start_container: Vec<f64>,
    pub pod_start: Vec<f64>,
    pub exec_sync: Vec<f64>,
    pub stop_remove: Vec<f64>,
    pub shim_rss_mib: Vec<f64>,
    pub shim_pss_mib: Vec<f64>,
    pub shim_threads: Vec<f64>,
    /// Sealed memfd copies the shim holds (moat): not in Rss or Pss, but memory all the same.
    pub shim_memfd_mib: Vec<f64>,
    /// The shim's Rss split: anonymous, file-backed (mostly the binary and its libraries:
    /// page cache shared by every shim of the node) and shmem pages.
    pub shim_rss_anon_mib: Vec<f64>,
    pub shim_rss_file_mib: Vec<f64>,
    pub shim_rss_shmem_mib: Vec<f64>,
    /// Where the shim's Rss is (KiB per mapping), in the last pod.
    pub shim_rss_by_mapping: Vec<(String, u64)>,
}

pub fn run(
    bed: &TestBed,
    handlers: &[&str],
    pods: usize,
    execs: usize,
) -> Result<BTreeMap<String, Series>> {
    let mut all: BTreeMap<String, Series> = BTreeMap::new();
    // One untimed pod per handler first: the first pod of a handler pays one-time costs
    // (containerd loading the runtime, page cache).
    for handler in handlers {
        let (pod, _) = BenchPod::start_pod(bed, "bench-warmup", handler)?;
        pod.exec(&["true"])?;
        pod.teardown()?;
    }
    for i in 0..pods {
        for handler in handlers {
            let s = all.entry(handler.to_string()).or_default();
            one_pod(bed, handler, execs, s)
                .with_context(|| format!("pod {} of {pods} with {handler}", i + 1))?;
            eprintln!(
                "  pod {:>2}/{pods} {handler:<5} start {:>7.1} ms (run {:.1} + create {:.1} + start {:.1}), exec {:.1} ms, stop+remove {:.1} ms, shim rss {:.1} MiB",
                i + 1,
                last(&s.pod_start),
                last(&s.run_pod_sandbox),
                last(&s.create_container),
                last(&s.start_container),
                last(&s.exec_sync),
                last(&s.stop_remove),
                last(&s.shim_rss_mib),
            );
        }
    }
    Ok(all)
}

fn last(v: &[f64]) -> f64 {
    v.last().copied().unwrap_or(f64::NAN)
}

fn one_pod(bed: &TestBed, handler: &str, execs: usize, s: &mut Series) -> Result<()> {
    let (mut pod, start) = BenchPod::start_pod(bed, "bench-pod", handler)?;
    s.run_pod_sandbox.push(start.run_pod_sandbox);
    s.create_container.push(start.create_container);
    s.start_container.push(start.start_container);
    s.pod_start.push(start.total());
    let (second, _) = pod.create("second", SLEEP, Vec::new())?;
    pod.start(&second)?;
    for _ in 0..execs {
        s.exec_sync.push(pod.exec(&["true"])?);
    }
    let memory = ShimMemory::of(&pod.shim_pids())
        .with_context(|| format!("the shim of pod {}", pod.name))?;
    s.shim_rss_mib.push(memory.rss_mib());
    s.shim_pss_mib.push(memory.pss_mib());
    s.shim_threads.push(memory.threads as f64);
    s.shim_memfd_mib.push(memory.memfd_mib());
    s.shim_rss_anon_mib.push(memory.rss_anon_kib as f64 / 1024.0);
    s.shim_rss_file_mib.push(memory.rss_file_kib as f64 / 1024.0);
    s.shim_rss_shmem_mib.push(memory.rss_shmem_kib as f64 / 1024.0);
    if let Some(pid) = pod.shim_pids().first() {
        s.shim_rss_by_mapping = crate::memory::rss_by_mapping(*pid, 8);
    }
    s.stop_remove.push(pod.teardown()?);
    Ok(())
}
