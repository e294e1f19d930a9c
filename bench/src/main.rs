//! moat-bench: moat against runc on the test bed's private containerd (see `--help`).
//!
//! Phases, each alternating handlers (moat, runc, moat, ...):
//! - `share`: moat's own share of a container start (cgroup, sandbox helper, exec) against a
//!   bare clone-into-namespaces + pivot_root + exec, in a child process (`share`);
//! - `lifecycle`: pod start calls, ExecSync, stop + remove, shim memory and threads;
//! - `workload`: syscall and fork+exec loops timed inside the pod;
//! - `burst`: many pods started a few at a time.
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
mod pods;
mod share;
mod shim_log;
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
}

#[derive(Debug, Default, Serialize)]
struct BurstRaw {
    starts_ms: Vec<f64>,
    failures: Vec<String>,
    teardown_failures: Vec<String>,
    shim_rss_mib: Vec<f64>,
    shim_pss_mib: Vec<f64>,
    shim_threads: Vec<f64>,
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
            let b = concurrency::burst(bed, handler, o.burst_pods, o.burst_parallel);
            for f in b.failures.iter().chain(&b.teardown_failures) {
                eprintln!("  {handler}: {f}");
            }
            raw.burst.insert(
                handler.to_string(),
                BurstRaw {
                    shim_rss_mib: b.memory.iter().map(memory::ShimMemory::rss_mib).collect(),
                    shim_pss_mib: b.memory.iter().map(memory::ShimMemory::pss_mib).collect(),
                    shim_threads: b.memory.iter().map(|m| m.threads as f64).collect(),
                    starts_ms: b.starts_ms,
                    failures: b.failures,
                    teardown_failures: b.teardown_failures,
                },
            );
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

    let failed: usize =
        report.raw.burst.values().map(|b| b.failures.len() + b.teardown_failures.len()).sum();
    bed.shutdown();
    if failed > 0 {
        bail!("{failed} pod(s) failed in the burst phase (listed above)");
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
        rows.push(vs_runc("StartContainer", "ms", |s| &s.start_container).target(ratio(0.25)));
        rows.push(vs_runc("pod start (sum of the 3)", "ms", |s| &s.pod_start).target(ratio(0.6)));
        rows.push(vs_runc("ExecSync `true`", "ms", |s| &s.exec_sync).target(ratio(0.5)));
        rows.push(vs_runc("StopPodSandbox + RemovePodSandbox", "ms", |s| &s.stop_remove));
        rows.push(
            vs_runc("shim RSS, pod of 2 containers", "MiB", |s| &s.shim_rss_mib)
                .target(ratio(0.25)),
        );
        rows.push(vs_runc("shim PSS, pod of 2 containers", "MiB", |s| &s.shim_pss_mib));
        rows.push(
            vs_runc("shim sealed memfd (not in RSS)", "MiB", |s| &s.shim_memfd_mib)
                .note("moat's sealed copy of its binary, held by every shim: per-pod memory that RSS and PSS do not show"),
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
        rows.push(Row::new(
            &format!("shim PSS per pod, {} pods up", o.burst_pods),
            "MiB",
            &m.shim_pss_mib,
            "runc",
            &r.shim_pss_mib,
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
            rows.push(Row::new(
                &format!(
                    "shim start: sealed memfd copy of {:.1} MiB",
                    s.shim_binary_bytes as f64 / 1048576.0
                ),
                "ms",
                &s.memfd_copy_ms,
                "-",
                &[],
            ));
        }
    }
    rows
}
