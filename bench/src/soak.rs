//! A pod that runs a long time and is exec'd into often: `execs` ExecSync `true` in one pod,
//! the pod's shim memory, threads and fds before and after (after a warm-up of 20 execs, so
//! that thread pools and lazily opened files are already there). Growth is a leak per exec.

use std::time::Duration;

use anyhow::{Context, Result};
use moat_e2e::TestBed;
use serde::Serialize;

use crate::memory::ShimMemory;
use crate::pods::BenchPod;

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct ShimState {
    pub rss_kib: u64,
    pub rss_anon_kib: u64,
    pub threads: usize,
    pub fds: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Soak {
    pub execs: usize,
    pub before: ShimState,
    pub after: ShimState,
    /// ExecSync durations (ms) in order.
    pub exec_ms: Vec<f64>,
    /// The shim's RSS (KiB) every 100 execs: a leak grows with the count, a heap settling
    /// into its working size does not.
    pub rss_every_100_kib: Vec<u64>,
}

fn state(pod: &BenchPod<'_>) -> Result<ShimState> {
    let pids = pod.shim_pids();
    let m = ShimMemory::of(&pids)?;
    let fds = pids.iter().filter_map(|&p| moat_e2e::host::fd_count(p)).sum();
    Ok(ShimState { rss_kib: m.rss_kib, rss_anon_kib: m.rss_anon_kib, threads: m.threads, fds })
}

pub fn run(bed: &TestBed, handler: &str, execs: usize) -> Result<Soak> {
    let (pod, _) = BenchPod::start_pod(bed, "bench-soak", handler)?;
    for _ in 0..20 {
        pod.exec(&["true"])?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = state(&pod).context("shim state before")?;
    let mut exec_ms = Vec::with_capacity(execs);
    let mut rss_every_100_kib = Vec::new();
    for i in 0..execs {
        exec_ms.push(pod.exec(&["true"]).with_context(|| format!("exec {}", i + 1))?);
        if (i + 1) % 100 == 0 {
            rss_every_100_kib.push(ShimMemory::of(&pod.shim_pids())?.rss_kib);
        }
    }
    // Exec bookkeeping ends a moment after ExecSync returns.
    std::thread::sleep(Duration::from_millis(1000));
    let after = state(&pod).context("shim state after")?;
    pod.teardown()?;
    Ok(Soak { execs, before, after, exec_ms, rss_every_100_kib })
}
