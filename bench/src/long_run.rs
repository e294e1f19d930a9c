//! `moat-bench long-run`: the long run of issue 14 (not in CI). Many pod cycles and many
//! ExecSync on live pods, `parallel` at a time, then the leak counters (mounts, cgroups, ID
//! ranges, shim and containerd fds and threads, zombies) before against after, and the latency
//! of the last 100 of each against the first 100 (a leak often shows as a slowdown first).
//!
//! Its own subcommand with its own arguments, so the main benchmark's options stay as they are.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use moat_e2e::{host, TestBed};

use crate::options::{count, value};
use crate::pods::BenchPod;
use crate::stats::{fmt, Summary};

pub const SUBCOMMAND: &str = "long-run";

pub const USAGE: &str = "\
usage: moat-bench long-run [--cycles N] [--execs N] [--parallel N] [--handler moat|runc]

  --cycles N     pod cycles: RunPodSandbox, a container, one ExecSync, Stop+Remove (default 1000)
  --execs N      ExecSync `true` spread over `parallel` live pods (default 10000)
  --parallel N   how many at a time (default 20)
  --handler H    runtime handler (default moat)

Prints each leak counter before and after, and the latency of the first 100 and the last 100
cycles and execs. Exits 1 when a counter grew.
";

#[derive(Debug, Clone)]
struct Args {
    cycles: usize,
    execs: usize,
    parallel: usize,
    handler: String,
}

fn parse(args: &[String]) -> Result<Option<Args>> {
    let mut a = Args { cycles: 1000, execs: 10_000, parallel: 20, handler: "moat".into() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--cycles" => a.cycles = count(&mut it, "--cycles")?,
            "--execs" => a.execs = count(&mut it, "--execs")?,
            "--parallel" => a.parallel = count(&mut it, "--parallel")?,
            "--handler" => {
                let h = value(&mut it, "--handler")?;
                if h != "moat" && h != "runc" {
                    bail!("--handler {h:?}: moat or runc");
                }
                a.handler = h.clone();
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(a))
}

/// Runs the subcommand; never returns.
pub fn main(args: &[String]) -> ! {
    let code = match parse(args) {
        Ok(None) => {
            print!("{USAGE}");
            0
        }
        Ok(Some(a)) => match run(&a) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("moat-bench long-run: {e:#}");
                1
            }
        },
        Err(e) => {
            eprintln!("moat-bench long-run: {e:#}");
            2
        }
    };
    std::process::exit(code)
}

/// What a leak would make grow.
#[derive(Debug, Clone, Default)]
struct Counters {
    values: Vec<(&'static str, usize)>,
}

impl Counters {
    fn take(bed: &TestBed) -> Counters {
        let layout = bed.layout();
        let containerd = std::fs::read_to_string(layout.dir.join("containerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let ranges = std::fs::read_dir(layout.dir.join("idranges"))
            .map(|d| {
                d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "range")).count()
            })
            .unwrap_or(0);
        let shims = host::shims(&layout.socket);
        let zombies = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|pid| host::state(*pid) == Some('Z'))
                    .count()
            })
            .unwrap_or(0);
        let shim_sockets = std::fs::read_dir("/run/containerd/s").map(|d| d.count()).unwrap_or(0);
        Counters {
            values: vec![
                ("mounts (host)", host::mounts().len()),
                // Below the bed's top cgroup (which stands for the kubelet's kubepods).
                ("cgroup dirs (pods)", pod_cgroups(&layout.cgroup_parent)),
                ("ID ranges (pool)", ranges),
                ("shim processes", shims.len()),
                ("shim fds", shims.iter().filter_map(|s| host::fd_count(s.pid)).sum()),
                ("shim threads", shims.iter().filter_map(|s| host::thread_count(s.pid)).sum()),
                ("shim sockets (/run/containerd/s, all)", shim_sockets),
                ("containerd fds", containerd.and_then(host::fd_count).unwrap_or(0)),
                ("containerd threads", containerd.and_then(host::thread_count).unwrap_or(0)),
                ("zombies (host)", zombies),
            ],
        }
    }
}

/// Cgroup directories strictly below `top` in every hierarchy.
fn pod_cgroups(top: &str) -> usize {
    let all = host::cgroup_tree(top);
    let present = host::cgroup_roots()
        .iter()
        .filter(|r| r.join(top.trim_start_matches('/')).is_dir())
        .count();
    all.len().saturating_sub(present)
}

/// The shim socket files of `pods` still present (containerd-shim's `socket_address`:
/// /run/containerd/s/<sha256 of "<containerd socket>/k8s.io/<pod id>">).
fn sockets_left(bed: &TestBed, pods: &[String]) -> usize {
    use sha2::{Digest, Sha256};
    pods.iter()
        .filter(|id| {
            let key = bed.layout().socket.join("k8s.io").join(id.as_str());
            let hash: String = Sha256::digest(key.to_string_lossy().as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::path::Path::new("/run/containerd/s").join(hash).exists()
        })
        .count()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `jobs` jobs through `parallel` threads; each job's ms in completion order, and failures.
fn in_parallel(
    jobs: usize,
    parallel: usize,
    job: impl Fn(usize, usize) -> Result<f64> + Sync,
) -> (Vec<f64>, Vec<String>) {
    let next = AtomicUsize::new(0);
    let done = Mutex::new((Vec::new(), Vec::new()));
    std::thread::scope(|s| {
        for worker in 0..parallel {
            let (next, done, job) = (&next, &done, &job);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= jobs {
                    break;
                }
                match job(worker, i) {
                    Ok(ms) => lock(done).0.push(ms),
                    Err(e) => lock(done).1.push(format!("#{i}: {e:#}")),
                }
                if (i + 1) % 100 == 0 {
                    eprintln!("  {} / {jobs}", i + 1);
                }
            });
        }
    });
    done.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn first_last(name: &str, ms: &[f64]) {
    let n = ms.len().min(100);
    let describe = |s: Option<Summary>| {
        s.map(|s| format!("median {} ms, p95 {} ms", fmt(s.median), fmt(s.p95)))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{name}: first {n}: {}; last {n}: {}",
        describe(Summary::of(&ms[..n])),
        describe(Summary::of(&ms[ms.len() - n..]))
    );
}

fn run(a: &Args) -> Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!("moat-bench long-run needs root (it runs a private containerd)");
    }
    let bed = moat_e2e::bed("moat-bench-long-run", &a.handler).context("no test bed")?;
    // One cycle first, so the counters start from a warm containerd.
    let (pod, _) = BenchPod::start_pod(bed, "long-warm", &a.handler)?;
    pod.teardown()?;
    std::thread::sleep(Duration::from_secs(1));
    let before = Counters::take(bed);
    let began = Instant::now();

    eprintln!("== {} pod cycles, {} at a time ({})", a.cycles, a.parallel, a.handler);
    let pod_ids = Mutex::new(Vec::new());
    let (cycles, cycle_failures) = in_parallel(a.cycles, a.parallel, |_, _| {
        let t = Instant::now();
        let (pod, _) = BenchPod::start_pod(bed, "long-cycle", &a.handler)?;
        lock(&pod_ids).push(pod.id.clone());
        pod.exec(&["true"])?;
        pod.teardown()?;
        Ok(crate::pods::ms(t.elapsed()))
    });

    eprintln!("== {} ExecSync on {} live pods", a.execs, a.parallel);
    let live: Vec<BenchPod<'_>> = (0..a.parallel)
        .map(|_| BenchPod::start_pod(bed, "long-live", &a.handler).map(|(p, _)| p))
        .collect::<Result<_>>()?;
    let shims_at_start = Counters::take(bed);
    let (execs, exec_failures) =
        in_parallel(a.execs, a.parallel, |worker, _| live[worker % live.len()].exec(&["true"]));
    let shims_at_end = Counters::take(bed);
    for pod in live {
        lock(&pod_ids).push(pod.id.clone());
        pod.teardown()?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = Counters::take(bed);
    let pod_ids = pod_ids.into_inner().unwrap_or_else(|p| p.into_inner());
    let sockets = sockets_left(bed, &pod_ids);

    println!(
        "\nmoat-bench long-run: {} cycles, {} execs, {} at a time, {} ({:.0} s)",
        a.cycles,
        a.execs,
        a.parallel,
        a.handler,
        began.elapsed().as_secs_f64()
    );
    let mut clean = cycle_failures.is_empty() && exec_failures.is_empty();
    for f in cycle_failures.iter().chain(&exec_failures).take(20) {
        println!("  failed: {f}");
    }
    println!("failures: {} cycles, {} execs", cycle_failures.len(), exec_failures.len());
    println!("{:<40} {:>8} {:>8} {:>6}", "counter", "before", "after", "delta");
    for ((name, b), (_, x)) in before.values.iter().zip(&after.values) {
        let delta = *x as i64 - *b as i64;
        // Only the bed's own counters decide; host-wide ones (other runs share the host) are
        // shown for reading.
        // Threads are pools that grow with concurrency (Go's, tokio's blocking pool) and are
        // bounded: shown, not judged.
        let decides =
            !name.contains("(host)") && !name.contains(", all)") && !name.contains("threads");
        if decides && delta > 0 {
            clean = false;
        }
        println!(
            "{name:<40} {b:>8} {x:>8} {delta:>+6}{}",
            if decides { "" } else { "  (not judged)" }
        );
    }
    println!("{:<40} {:>8} {:>8} {sockets:>+6}", "shim sockets of this run's pods", 0, sockets);
    if sockets > 0 {
        clean = false;
    }
    println!("live pods' shims over the execs:");
    for ((name, b), (_, x)) in shims_at_start.values.iter().zip(&shims_at_end.values) {
        if name.starts_with("shim") && !name.contains("sockets") {
            let delta = *x as i64 - *b as i64;
            if delta > 0 && !name.contains("threads") {
                clean = false;
            }
            println!("  {name:<38} {b:>8} {x:>8} {delta:>+6}");
        }
    }
    first_last("pod cycle", &cycles);
    first_last("ExecSync", &execs);
    println!("{}", if clean { "no leak" } else { "LEAK or failures: see above" });
    bed.shutdown();
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_issue_14s_and_bad_arguments_are_refused() {
        let a = parse(&[]).expect("parsed").expect("not help");
        assert_eq!((a.cycles, a.execs, a.parallel, a.handler.as_str()), (1000, 10_000, 20, "moat"));
        // Input: zero, a non-number, an unknown handler, an unknown flag.
        for (bad, want) in [
            (&["--cycles", "0"][..], "at least 1"),
            (&["--execs", "x"][..], "not a number"),
            (&["--handler", "kata"][..], "moat or runc"),
            (&["--forever"][..], "unknown argument"),
        ] {
            let err = parse(&args(bad)).expect_err("refused");
            assert!(format!("{err:#}").contains(want), "{bad:?}: {err:#}");
        }
    }
}
