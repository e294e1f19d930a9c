//! Inside the pod: `workload/loop.c` (static, bind-mounted from the bed's volume dir) runs as
//! a container and times its own syscall and fork+exec loops, so the numbers are what a
//! tenant's process pays (seccomp filter, user namespace, idmapped overlay), not what the
//! runtime around it costs. Runs alternate between handlers: moat, runc, moat, ...

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::SecurityProfile;
use moat_e2e::{configs, TestBed};
use sha2::{Digest, Sha256};

use crate::pods::BenchPod;

const LOOP_C: &str = include_str!("../workload/loop.c");

/// Where the binary is mounted in the containers.
const MOUNT_DIR: &str = "/bench";

/// Iteration counts: getpid, open/read/close, fork+exec.
#[derive(Debug, Clone, Copy)]
pub struct Iterations {
    pub getpid: u64,
    pub open: u64,
    pub fork_exec: u64,
}

impl Iterations {
    pub fn full() -> Self {
        Iterations { getpid: 2_000_000, open: 200_000, fork_exec: 400 }
    }
    pub fn quick() -> Self {
        Iterations { getpid: 200_000, open: 20_000, fork_exec: 40 }
    }
}

/// ns per iteration by loop name, one value per run: CPU time under the loop's name
/// ("getpid", "open_read_close", "fork_exec_true"), wall time under `<name>_wall`.
pub type LoopResults = BTreeMap<String, Vec<f64>>;

/// Compiles the workload (cached by its source's hash under the cargo target dir).
pub fn build() -> Result<PathBuf> {
    let hash: String =
        Sha256::digest(LOOP_C.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = moat_e2e::paths::target_dir().join("moat-bench").join(format!("loop-{hash}"));
    let bin = dir.join("loop");
    if bin.is_file() {
        return Ok(bin);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let src = dir.join("loop.c");
    fs::write(&src, LOOP_C)?;
    let tmp = dir.join(format!("loop.{}", std::process::id()));
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .context("running gcc (scripts/install-deps.sh installs it)")?;
    if !out.status.success() {
        bail!("gcc -static {} failed: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    }
    fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// Runs the workload `runs` times under each handler (alternating), one pod per handler.
/// Returns the results per handler.
/// Who runs the workload: a runtime handler, and whether its containers ask for the
/// runtime's default seccomp profile (`RuntimeDefault`, what Kubernetes' SeccompDefault
/// gives every pod) instead of none.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub label: &'static str,
    pub handler: &'static str,
    pub runtime_default_seccomp: bool,
}

/// moat, runc as the test bed's pods run (no seccomp), runc with RuntimeDefault.
pub const VARIANTS: [Variant; 3] = [
    Variant { label: "moat", handler: "moat", runtime_default_seccomp: false },
    Variant { label: "runc", handler: "runc", runtime_default_seccomp: false },
    Variant { label: "runc+RuntimeDefault", handler: "runc", runtime_default_seccomp: true },
];

/// Runs the workload `runs` times per variant (alternating), one pod per variant. Returns
/// the results by variant label.
pub fn run(
    bed: &TestBed,
    variants: &[Variant],
    runs: usize,
    n: Iterations,
) -> Result<BTreeMap<String, LoopResults>> {
    let binary = build()?;
    let volume = bed.volume_dir("bench-loop")?;
    let installed = volume.join("loop");
    fs::copy(&binary, &installed)
        .with_context(|| format!("copying the workload to {}", installed.display()))?;
    fs::set_permissions(&volume, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755))?;

    let mut pods = Vec::new();
    for v in variants {
        pods.push((v, BenchPod::run(bed, "bench-loop", v.handler)?.0));
    }
    let mut results: BTreeMap<String, LoopResults> = BTreeMap::new();
    for r in 0..runs {
        for (v, pod) in pods.iter_mut() {
            let lines = run_once(bed, pod, v, &volume, r, n)?;
            let entry = results.entry(v.label.to_string()).or_default();
            for (name, ns) in lines {
                entry.entry(name).or_default().push(ns);
            }
        }
    }
    for (_, pod) in pods {
        pod.teardown()?;
    }
    Ok(results)
}

fn run_once(
    bed: &TestBed,
    pod: &mut BenchPod<'_>,
    variant: &Variant,
    volume: &Path,
    r: usize,
    n: Iterations,
) -> Result<Vec<(String, f64)>> {
    let program = format!("{MOUNT_DIR}/loop");
    let (getpid, open, fork) = (n.getpid.to_string(), n.open.to_string(), n.fork_exec.to_string());
    // The second file is on the volume (a bind mount): open/read/close without the overlay.
    let command = [
        program.as_str(),
        getpid.as_str(),
        open.as_str(),
        fork.as_str(),
        "/etc/passwd",
        program.as_str(),
    ];
    let mounts = vec![configs::volume(volume, MOUNT_DIR, true)];
    let (id, _) = pod.create_with(&format!("loop-{r}"), &command, mounts, |c| {
        if variant.runtime_default_seccomp {
            configs::security_context(c).seccomp = Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
        }
    })?;
    pod.start(&id)?;
    let cri = bed.cri();
    let status = cri.wait_exited(&id, Duration::from_secs(600))?;
    let log = cri.logs(&id)?;
    if status.exit_code != 0 {
        bail!(
            "the workload in pod {} ({}) exited {}: {log:?}",
            pod.name,
            pod.handler,
            status.exit_code
        );
    }
    let parsed = parse(log.iter().filter(|l| l.stream == "stdout").map(|l| l.text.as_str()));
    if parsed.len() != 8 {
        bail!("the workload in pod {} ({}) printed {log:?}", pod.name, pod.handler);
    }
    Ok(parsed)
}

/// The loops on the host, without containers, alternating: under moat's baseline seccomp
/// filter and under none (`filter:baseline`, `filter:none`); reading a file through an overlay
/// like a container's with a plain lower layer, an idmapped one, and an idmapped one as root
/// of the user namespace (`overlay:plain`, `overlay:idmap`, `overlay:idmap-userns`). Each
/// isolates one thing moat adds to a tenant's syscalls.
pub fn host_probes(runs: usize, n: Iterations) -> Result<BTreeMap<String, LoopResults>> {
    let binary = build()?;
    let exe = std::env::current_exe().context("locating moat-bench")?;
    let dir =
        std::path::Path::new("/var/tmp").join(format!("moat-bench-overlay-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let file = crate::overlay_probe::prepare_lower(&dir)?;
    let counts = [n.getpid.to_string(), n.open.to_string(), n.fork_exec.to_string()];
    let result = (|| {
        let mut results: BTreeMap<String, LoopResults> = BTreeMap::new();
        for _ in 0..runs {
            let mut probes: Vec<(String, Command)> = Vec::new();
            for variant in ["baseline", "none"] {
                let mut cmd = Command::new(&exe);
                cmd.arg(crate::filter_probe::SUBCOMMAND)
                    .arg(variant)
                    .arg(&binary)
                    .args(&counts)
                    .arg("/etc/passwd");
                probes.push((format!("filter:{variant}"), cmd));
            }
            for variant in ["plain", "idmap", "idmap-userns"] {
                let mut cmd = Command::new(&exe);
                cmd.arg(crate::overlay_probe::SUBCOMMAND)
                    .arg(variant)
                    .arg(&dir)
                    .arg(&binary)
                    .args([n.getpid.to_string(), n.open.to_string(), "1".to_string()])
                    .arg(file);
                probes.push((format!("overlay:{variant}"), cmd));
            }
            for (key, mut cmd) in probes {
                let out = cmd.output().with_context(|| format!("running the host probe {key}"))?;
                let text = String::from_utf8_lossy(&out.stdout);
                let parsed = parse(text.lines());
                if !out.status.success() || parsed.len() != 6 {
                    bail!(
                        "the workload on the host ({key}) failed ({}): {text} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let entry = results.entry(key).or_default();
                for (name, ns) in parsed {
                    entry.entry(name).or_default().push(ns);
                }
            }
        }
        Ok(results)
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Lines `<name> <iterations> <wall ns> <cpu ns>` (per iteration): `(name, cpu ns)` and
/// `(name_wall, wall ns)` for each.
pub fn parse<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace();
        let (Some(name), Some(iterations), Some(wall), Some(cpu)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let (Ok(_), Ok(wall), Ok(cpu)) =
            (iterations.parse::<u64>(), wall.parse::<f64>(), cpu.parse::<f64>())
        else {
            continue;
        };
        out.push((name.to_string(), cpu));
        out.push((format!("{name}_wall"), wall));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_lines_are_parsed_and_noise_skipped() {
        // Input: a good line, garbage, a line without its cpu field, a non-number.
        let lines = [
            "getpid 1000 85.5 80.0",
            "garbage",
            "open_read_close 10 1200.0",
            "fork_exec_true 3 x 1.0",
        ];
        let want = vec![("getpid".to_string(), 80.0), ("getpid_wall".to_string(), 85.5)];
        assert_eq!(parse(lines.into_iter()), want);
    }
}
