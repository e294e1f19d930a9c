//! moat-bench: moat against runc on the test bed's private containerd (see `--help`).
//!
//! Phases, each alternating handlers (moat, runc, moat, ...):
//! - `share`: moat's own share of a container start (cgroup, sandbox helper, exec) against a
//!   bare clone-into-namespaces + pivot_root + exec, in a child process (`share`);
//! - `lifecycle`: pod start calls, ExecSync, stop + remove, shim memory and threads;
//! - `workload`: syscall and fork+exec loops timed inside the pod;
//! - `burst`: many pods started a few at a time; the shims' memory and the node's
//!   (`Shmem`, `MemAvailable` after dropping the page cache) with them all up;
//! - `scale`: pods started one by one and kept up: the first ten starts against the last ten;
//! - `soak`: many ExecSync in one pod, the shim's memory and threads before and after.
//!
//! Prints a table (median, p95, ratio moat / baseline, target) and writes it as JSON.

mod concurrency;
mod filter_probe;
mod lifecycle;
mod long_run;
mod machine;
mod memory;
mod options;
mod overlay_probe;
mod own_cgroup;
mod pods;
mod scale;
mod share;
mod shim_log;
mod soak;
mod stats;
mod workload;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use options::Options;
use stats::{Row, Target};

const HANDLERS: [&str; 2] = ["moat", "runc"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Launcher::create re-executes this binary as the sandbox helper (share phase).
    if args.get(1).map(String::as_str) == Some(moat_sandbox::spawn::HELPER_ARG) {
        moat_sandbox::spawn::helper_main();
    }
    if args.get(1).map(String::as_str) == Some(filter_probe::SUBCOMMAND) {
        filter_probe::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(overlay_probe::SUBCOMMAND) {
        overlay_probe::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(long_run::SUBCOMMAND) {
        long_run::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(share::SUBCOMMAND) {
        share::child_main(&args[2..]);
    }
    match Options::parse(&args[1..]) {
        Ok(None) => {
            print!("{}", options::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Some(options)) => match run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("moat-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("moat-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Raw {
    share: Option<share::ShareResult>,
    lifecycle: BTreeMap<String, lifecycle::Series>,
    shim_creates: shim_log::ShimCreates,
    workload: BTreeMap<String, workload::LoopResults>,
    /// The loops on the host: `filter:baseline|none`, `overlay:plain|idmap|idmap-userns`.
    host_probes: BTreeMap<String, workload::LoopResults>,
    burst: BTreeMap<String, BurstRaw>,
    scale: BTreeMap<String, scale::Scale>,
    soak: BTreeMap<String, soak::Soak>,
}

#[derive(Debug, Default, Serialize)]
struct BurstRaw {
    starts_ms: Vec<f64>,
    failures: Vec<String>,
    teardown_failures: Vec<String>,
    shim_rss_mib: Vec<f64>,
    shim_pss_mib: Vec<f64>,
    shim_threads: Vec<f64>,
    shim_rss_anon_mib: Vec<f64>,
    shim_rss_file_mib: Vec<f64>,
    shim_rss_shmem_mib: Vec<f64>,
    node_before: Option<memory::NodeMemory>,
    node_after: Option<memory::NodeMemory>,
    /// Pods up when `node_after` was read.
    up: usize,
    charged_before: Option<own_cgroup::Charged>,
    charged_after: Option<own_cgroup::Charged>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    machine: machine::Machine,
    options: &'a Options,
    rows: Vec<Row>,
    raw: Raw,
}

fn run(o: &Options) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("moat-bench needs root (it runs a private containerd)");
    }
    let missing: Vec<String> = HANDLERS.iter().flat_map(|h| moat_e2e::prereq::missing(h)).collect();
    if !missing.is_empty() {
        bail!("cannot run: {}", missing.join("; "));
    }
    let mut machine = machine::Machine::probe();
    eprintln!("moat-bench on {}", machine.describe());
    if machine.moat_shim.contains("/debug/") {
        eprintln!("moat-bench: warning: {} is a debug build; numbers are not representative (scripts/bench.sh builds release)", machine.moat_shim);
    }
    let mut raw = Raw::default();

    if o.runs("share") {
        eprintln!("== share: moat's sandbox start vs bare namespaces, {} each", o.share_iterations);
        let shim = moat_e2e::paths::shim_binary();
        raw.share = Some(share::measure(o.share_iterations, shim.as_deref())?);
    }

    // Before the bed starts, so that its containerd and shims are charged to it.
    let own = match own_cgroup::OwnCgroup::enter() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("moat-bench: warning: no memory cgroup of its own ({e:#}): no cgroup rows");
            None
        }
    };
    let started = std::time::Instant::now();
    let bed = moat_e2e::bed("moat-bench", "moat").context("the test bed is unavailable")?;
    eprintln!(
        "test bed up in {:.1} s: containerd {}",
        started.elapsed().as_secs_f64(),
        bed.layout().socket.display()
    );

    if o.runs("lifecycle") {
        eprintln!("== lifecycle: {} pods per handler, alternating", o.pods);
        let log_from = shim_log::log_len(&bed.layout().log);
        raw.lifecycle = lifecycle::run(bed, &HANDLERS, o.pods, o.execs)?;
        raw.shim_creates = shim_log::read_since(&bed.layout().log, log_from);
    }
    if o.runs("workload") {
        eprintln!("== workload: {} runs per handler of {:?}", o.workload_runs, o.iterations);
        raw.workload = workload::run(bed, &workload::VARIANTS, o.workload_runs, o.iterations)?;
        raw.host_probes = workload::host_probes(o.workload_runs, o.iterations)?;
    }
    if o.runs("burst") {
        for handler in HANDLERS {
            eprintln!("== burst: {} {handler} pods, {} at a time", o.burst_pods, o.burst_parallel);
            let b = concurrency::burst(bed, handler, o.burst_pods, o.burst_parallel, own.as_ref());
            for f in b.failures.iter().chain(&b.teardown_failures) {
                eprintln!("  {handler}: {f}");
            }
            raw.burst.insert(
                handler.to_string(),
                BurstRaw {
                    shim_rss_mib: b.memory.iter().map(memory::ShimMemory::rss_mib).collect(),
                    shim_pss_mib: b.memory.iter().map(memory::ShimMemory::pss_mib).collect(),
                    shim_threads: b.memory.iter().map(|m| m.threads as f64).collect(),
                    shim_rss_anon_mib: b
                        .memory
                        .iter()
                        .map(|m| m.rss_anon_kib as f64 / 1024.0)
                        .collect(),
                    shim_rss_file_mib: b
                        .memory
                        .iter()
                        .map(|m| m.rss_file_kib as f64 / 1024.0)
                        .collect(),
                    shim_rss_shmem_mib: b
                        .memory
                        .iter()
                        .map(|m| m.rss_shmem_kib as f64 / 1024.0)
                        .collect(),
                    node_before: b.node_before,
                    node_after: b.node_after,
                    up: b.up,
                    charged_before: b.charged_before,
                    charged_after: b.charged_after,
                    starts_ms: b.starts_ms,
                    failures: b.failures,
                    teardown_failures: b.teardown_failures,
                },
            );
        }
    }

    if o.runs("scale") {
        for handler in HANDLERS {
            eprintln!("== scale: {} {handler} pods one by one, kept up", o.scale_pods);
            let s = scale::run(bed, handler, o.scale_pods, o.burst_parallel);
            for f in &s.failures {
                eprintln!("  {handler}: {f}");
            }
            raw.scale.insert(handler.to_string(), s);
        }
    }
    if o.runs("soak") {
        for handler in HANDLERS {
            eprintln!("== soak: {} ExecSync in one {handler} pod", o.soak_execs);
            raw.soak.insert(handler.to_string(), soak::run(bed, handler, o.soak_execs)?);
        }
    }

    machine.load_at_end = machine::load();
    let rows = rows(o, &raw);
    println!("\nmoat-bench on {}", machine.describe());
    println!("{}", stats::table(&rows));
    let report = Report { machine, options: o, rows, raw };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = o.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&o.json, json + "\n")
        .with_context(|| format!("writing {}", o.json.display()))?;
    println!("JSON report: {}", o.json.display());

    let failed: usize = report
        .raw
        .burst
        .values()
        .map(|b| b.failures.len() + b.teardown_failures.len())
        .sum::<usize>()
        + report.raw.scale.values().map(|s| s.failures.len()).sum::<usize>();
    bed.shutdown();
    if let Some(own) = own {
        own.leave();
    }
    if failed > 0 {
        bail!("{failed} pod(s) failed in the burst or scale phase (listed above)");
    }
    Ok(())
}

fn series<'a>(raw: &'a Raw, handler: &str, pick: fn(&lifecycle::Series) -> &Vec<f64>) -> &'a [f64] {
    raw.lifecycle.get(handler).map(|s| pick(s).as_slice()).unwrap_or(&[])
}

fn rows(o: &Options, raw: &Raw) -> Vec<Row> {
    let mut rows = Vec::new();
    let ratio = |max| Target::RatioAtMost { max };
    let vs_runc = |name: &str, unit: &str, pick: fn(&lifecycle::Series) -> &Vec<f64>| {
        Row::new(name, unit, series(raw, "moat", pick), "runc", series(raw, "runc", pick))
    };
    if !raw.lifecycle.is_empty() {
        rows.push(vs_runc("RunPodSandbox", "ms", |s| &s.run_pod_sandbox));
        rows.push(vs_runc("CreateContainer", "ms", |s| &s.create_container));
        rows.push(vs_runc("StartContainer", "ms", |s| &s.start_container).target(ratio(0.2)));
        rows.push(vs_runc("pod start (sum of the 3)", "ms", |s| &s.pod_start).target(ratio(0.6)));
        rows.push(vs_runc("ExecSync `true`", "ms", |s| &s.exec_sync).target(ratio(0.5)));
        rows.push(vs_runc("StopPodSandbox + RemovePodSandbox", "ms", |s| &s.stop_remove));
        rows.push(
            vs_runc("shim RSS, pod of 2 containers", "MiB", |s| &s.shim_rss_mib)
                .target(ratio(0.25)),
        );
        rows.push(vs_runc("  of which RssAnon", "MiB", |s| &s.shim_rss_anon_mib));
        rows.push(
            vs_runc("  of which RssFile", "MiB", |s| &s.shim_rss_file_mib)
                .note("the binary and its libraries: page cache every shim of the node shares"),
        );
        rows.push(vs_runc("  of which RssShmem", "MiB", |s| &s.shim_rss_shmem_mib));
        rows.push(vs_runc("shim PSS, pod of 2 containers", "MiB", |s| &s.shim_pss_mib));
        rows.push(
            vs_runc("shim memfd copies held (not in RSS)", "MiB", |s| &s.shim_memfd_mib)
                .target(Target::ValueAtMost { max: 0.0 })
                .note("before issue 11 every moat shim kept a sealed copy of its binary; now a read-only overlay view"),
        );
        rows.push(
            vs_runc("shim threads, pod of 2 containers", "count", |s| &s.shim_threads).note(
                "moat: one async thread + at most 4 blocking threads, whatever the core count",
            ),
        );
        let c = &raw.shim_creates;
        rows.push(Row::new(
            "moat shim Create, pod sandbox (shim log)",
            "ms",
            &c.sandbox_ms,
            "-",
            &[],
        ));
        rows.push(Row::new(
            "moat shim Create, container (shim log)",
            "ms",
            &c.container_ms,
            "-",
            &[],
        ));
    }
    let in_pod = [
        ("getpid", "in pod: getpid() (cpu)", "ns", 1.0),
        ("open_read_close", "in pod: openat+read+close (cpu)", "ns", 1.0),
        ("open_read_close_2", "  the same on a volume, no overlay (cpu)", "ns", 1.0),
        ("fork_exec_true", "in pod: fork+exec /bin/true (cpu)", "us", 1e-3),
        ("fork_exec_true_wall", "in pod: fork+exec /bin/true (wall)", "us", 1e-3),
    ];
    if !raw.workload.is_empty() {
        for (name, label, unit, scale) in in_pod {
            let get = |h: &str| -> Vec<f64> {
                raw.workload
                    .get(h)
                    .and_then(|r| r.get(name))
                    .map(|v| v.iter().map(|x| x * scale).collect())
                    .unwrap_or_default()
            };
            let row = Row::new(label, unit, &get("moat"), "runc", &get("runc"));
            // Wall time and the volume variant explain the rows that carry the target.
            let informational = name.ends_with("_wall") || name.ends_with("_2");
            rows.push(if informational { row } else { row.target(ratio(1.10)) });
            if !informational {
                rows.push(
                    Row::new(
                        "  vs runc with RuntimeDefault seccomp",
                        unit,
                        &get("moat"),
                        "runc+RD",
                        &get("runc+RuntimeDefault"),
                    )
                    .note("like for like: both runtimes filter syscalls"),
                );
            }
        }
    }
    let host = |variant: &str, name: &str| -> Vec<f64> {
        raw.host_probes.get(variant).and_then(|r| r.get(name)).cloned().unwrap_or_default()
    };
    if !raw.host_probes.is_empty() {
        for (name, label) in [
            ("getpid", "host: getpid(), baseline filter vs none (cpu)"),
            ("open_read_close", "host: openat+read+close, filter vs none (cpu)"),
        ] {
            let (with, without) = (host("filter:baseline", name), host("filter:none", name));
            rows.push(
                Row::new(label, "ns", &with, "no filter", &without)
                    .note("the seccomp filter's own cost, without containers"),
            );
        }
        let plain = host("overlay:plain", "open_read_close");
        rows.push(
            Row::new("host: overlay read, idmapped lower vs plain (cpu)", "ns", &host("overlay:idmap", "open_read_close"), "plain", &plain)
                .note("openat+read+close of a lower-layer file through an overlay like a container's, as host root"),
        );
        rows.push(
            Row::new(
                "host: overlay read, idmapped, as userns root (cpu)",
                "ns",
                &host("overlay:idmap-userns", "open_read_close"),
                "plain",
                &plain,
            )
            .note("the same as root of the pod's user namespace, as under moat"),
        );
    }
    if let (Some(m), Some(r)) = (raw.burst.get("moat"), raw.burst.get("runc")) {
        let label = format!("{} pods {} at a time", o.burst_pods, o.burst_parallel);
        rows.push(Row::new(
            &format!("pod start, {label}"),
            "ms",
            &m.starts_ms,
            "runc",
            &r.starts_ms,
        ));
        let spread = |b: &BurstRaw| {
            stats::Summary::of(&b.starts_ms).map(|s| s.p99 / s.median).unwrap_or(f64::NAN)
        };
        let p99 =
            |b: &BurstRaw| stats::Summary::of(&b.starts_ms).map(|s| s.p99).unwrap_or(f64::NAN);
        rows.push(Row::new(&format!("pod start p99, {label}"), "ms", &[p99(m)], "runc", &[p99(r)]));
        rows.push(
            Row::new(
                &format!("pod start p99 / median, {label}"),
                "x",
                &[spread(m)],
                "runc",
                &[spread(r)],
            )
            .target(Target::ValueAtMost { max: 2.0 }),
        );
        let failed = |b: &BurstRaw| (b.failures.len() + b.teardown_failures.len()) as f64;
        rows.push(
            Row::new(&format!("failed pods, {label}"), "count", &[failed(m)], "runc", &[failed(r)])
                .target(Target::ValueAtMost { max: 0.0 }),
        );
        rows.push(Row::new(
            &format!("shim RSS per pod, {} pods up", o.burst_pods),
            "MiB",
            &m.shim_rss_mib,
            "runc",
            &r.shim_rss_mib,
        ));
        let up = format!("{} pods up", o.burst_pods);
        rows.push(Row::new(
            &format!("  of which RssAnon, {up}"),
            "MiB",
            &m.shim_rss_anon_mib,
            "runc",
            &r.shim_rss_anon_mib,
        ));
        rows.push(Row::new(
            &format!("  of which RssFile, {up}"),
            "MiB",
            &m.shim_rss_file_mib,
            "runc",
            &r.shim_rss_file_mib,
        ));
        rows.push(
            Row::new(
                &format!("shim PSS per pod, {up}"),
                "MiB",
                &m.shim_pss_mib,
                "runc",
                &r.shim_pss_mib,
            )
            .note("sum of the shims' PSS / pods"),
        );
        let node = |b: &BurstRaw| match (b.node_before, b.node_after) {
            (Some(before), Some(after)) => after.per_pod_mib(&before, b.up),
            _ => (f64::NAN, f64::NAN),
        };
        let ((m_shmem, m_avail), (r_shmem, r_avail)) = (node(m), node(r));
        rows.push(
            Row::new(
                &format!("node Shmem growth per pod, {up}"),
                "MiB",
                &[m_shmem],
                "runc",
                &[r_shmem],
            )
            .note("/proc/meminfo after drop_caches, before the first pod and with all up"),
        );
        rows.push(
            Row::new(
                &format!("node MemAvailable fall per pod, {up}"),
                "MiB",
                &[m_avail],
                "runc",
                &[r_avail],
            )
            .note("everything the pod pins (its processes, kernel memory, shims); noisy on a shared host"),
        );
        let cg = |b: &BurstRaw| match (b.charged_before, b.charged_after) {
            (Some(x), Some(y)) => {
                let n = b.up.max(1) as f64 * 1024.0;
                (
                    (y.shmem_kib as f64 - x.shmem_kib as f64) / n,
                    (y.anon_kib as f64 - x.anon_kib as f64) / n,
                )
            }
            _ => (f64::NAN, f64::NAN),
        };
        let ((m_cg_shmem, m_cg_anon), (r_cg_shmem, r_cg_anon)) = (cg(m), cg(r));
        rows.push(
            Row::new(&format!("cgroup shmem growth per pod, {up}"), "MiB", &[m_cg_shmem], "runc", &[r_cg_shmem])
                .note("charged to the bench's containerd+shims and the pods' cgroups: other work on the host does not show"),
        );
        rows.push(
            Row::new(
                &format!("cgroup anon growth per pod, {up}"),
                "MiB",
                &[m_cg_anon],
                "runc",
                &[r_cg_anon],
            )
            .note("the shims' and the pods' processes' anonymous memory"),
        );
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        rows.push(
            Row::new(
                &format!("node memory per pod: shim PSS + Shmem growth, {up}"),
                "MiB",
                &[mean(&m.shim_pss_mib) + m_shmem.max(0.0)],
                "runc",
                &[mean(&r.shim_pss_mib) + r_shmem.max(0.0)],
            )
            .target(ratio(0.25))
            .note("a negative Shmem growth counts as 0"),
        );
        rows.push(
            Row::new(
                &format!("  the same with the cgroup shmem growth, {up}"),
                "MiB",
                &[mean(&m.shim_pss_mib) + m_cg_shmem.max(0.0)],
                "runc",
                &[mean(&r.shim_pss_mib) + r_cg_shmem.max(0.0)],
            )
            .target(ratio(0.25))
            .note("shim PSS + the shmem charged to the bench's cgroups: what other work on the host cannot distort"),
        );
    }
    for (handler, s) in &raw.scale {
        let n = s.starts_ms.len();
        if n < 20 {
            continue;
        }
        let row = Row::new(
            &format!("{handler}: pod start, pods {}-{n} vs 1-10 running", n - 9),
            "ms",
            &s.window(n - 9, n),
            "pods 1-10",
            &s.window(1, 10),
        )
        .note("pods started one by one and kept up");
        rows.push(if handler == "moat" { row.target(ratio(1.2)) } else { row });
    }
    if let (Some(m), Some(r)) = (raw.soak.get("moat"), raw.soak.get("runc")) {
        let mib = |k: u64| k as f64 / 1024.0;
        let grew = |s: &soak::Soak| mib(s.after.rss_kib) - mib(s.before.rss_kib);
        let grew_anon = |s: &soak::Soak| mib(s.after.rss_anon_kib) - mib(s.before.rss_anon_kib);
        let threads = |s: &soak::Soak| s.after.threads as f64 - s.before.threads as f64;
        let fds = |s: &soak::Soak| s.after.fds as f64 - s.before.fds as f64;
        let label = format!("after {} ExecSync in one pod", m.execs);
        // A leak grows with the count; a heap settling into its working size stops growing.
        // The sample half-way through (after execs/2) against the last one.
        let second_half = |s: &soak::Soak| {
            let v = &s.rss_every_100_kib;
            match (v.len().checked_div(2).and_then(|h| h.checked_sub(1)), v.last()) {
                (Some(mid), Some(&last)) if v.len() >= 2 => mib(last) - mib(v[mid]),
                _ => f64::NAN,
            }
        };
        rows.push(
            Row::new(
                &format!("shim RSS growth over the second half of {} ExecSync", m.execs),
                "MiB",
                &[second_half(m)],
                "runc",
                &[second_half(r)],
            )
            .target(Target::ValueAtMost { max: 0.1 })
            .note("RSS every 100 execs (raw.soak.*.rss_every_100_kib): a leak keeps growing"),
        );
        rows.push(
            Row::new(&format!("shim RSS growth {label}"), "MiB", &[grew(m)], "runc", &[grew(r)])
                .note(format!(
                    "moat {:.2} -> {:.2} MiB",
                    mib(m.before.rss_kib),
                    mib(m.after.rss_kib)
                )),
        );
        rows.push(Row::new(
            &format!("  of which RssAnon, {label}"),
            "MiB",
            &[grew_anon(m)],
            "runc",
            &[grew_anon(r)],
        ));
        rows.push(
            Row::new(
                &format!("shim thread growth {label}"),
                "count",
                &[threads(m)],
                "runc",
                &[threads(r)],
            )
            .target(Target::ValueAtMost { max: 0.0 }),
        );
        rows.push(
            Row::new(&format!("shim fd growth {label}"), "count", &[fds(m)], "runc", &[fds(r)])
                .target(Target::ValueAtMost { max: 0.0 }),
        );
        let last = |s: &soak::Soak| s.exec_ms.iter().rev().take(100).copied().collect::<Vec<_>>();
        rows.push(Row::new(
            "ExecSync `true`, last 100 of the soak",
            "ms",
            &last(m),
            "runc",
            &last(r),
        ));
    }
    if let Some(s) = &raw.share {
        rows.push(
            Row::new(
                "moat share: cgroup+helper+exec of /bin/true",
                "ms",
                &s.moat_total_ms,
                "bare ns",
                &s.bare_ms,
            )
            .target(ratio(3.0))
            .note(
                "bare: clone(NEWUSER|NEWNS|NEWPID|NEWIPC|NEWUTS|NEWNET) + maps + pivot_root + exec",
            ),
        );
        rows.push(
            Row::new(
                "moat share, against bare ns + cgroup",
                "ms",
                &s.moat_total_ms,
                "bare+cg",
                &s.bare_cgroup_ms,
            )
            .note("the bare start plus creating a cgroup and moving the child into it"),
        );
        rows.push(Row::new("  of which: cgroup create", "ms", &s.moat_cgroup_ms, "-", &[]));
        rows.push(Row::new("  of which: Launcher::create", "ms", &s.moat_create_ms, "-", &[]));
        rows.push(Row::new("  of which: Pending::start", "ms", &s.moat_start_ms, "-", &[]));
        rows.push(Row::new(
            "seccomp filter compile (once per filter per shim)",
            "ms",
            &s.seccomp_compile_ms,
            "-",
            &[],
        ));
        if s.shim_binary_bytes > 0 {
            rows.push(
                Row::new(
                    "shim start: seal the helper binary (overlay view)",
                    "ms",
                    &s.overlay_seal_ms,
                    &format!("memfd {:.1}M", s.shim_binary_bytes as f64 / 1048576.0),
                    &s.memfd_copy_ms,
                )
                .note("the sealed memfd copy of the shim binary is what moat made before issue 11"),
            );
        }
    }
    rows
}
