//! The README demo: a private containerd with the `moat` and `runc` handlers; the same busybox
//! pod under each (moat first), whose container (read-only root asked for in its security
//! context) prints who it is and how it is confined: `id`, its uid_map, seccomp mode,
//! no_new_privs, capabilities, an attempt to write `/`, its cgroup. The two outputs are shown
//! field by field, then a privileged pod is asked of moat and containerd's refusal printed.
//! Everything is stopped and removed at the end.
//!
//!   demo

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use moat_e2e::{configs, TestBed};

/// What the demo container runs: one `label: value` line per probe, then `end`.
const PROBE: &str = r#"
echo "id: $(id)"
cat /proc/self/uid_map | while read -r inside host size; do echo "uid_map: $inside $host $size"; done
grep -E 'Seccomp|NoNewPrivs|CapEff|CapBnd' /proc/self/status
if err=$(touch /probe 2>&1); then echo "touch /probe: written"; else echo "touch /probe: $err"; fi
head -3 /proc/1/cgroup | sed 's/^/cgroup: /'
echo end
"#;

const HANDLERS: [&str; 2] = ["moat", "runc"];

fn main() -> Result<()> {
    let missing: Vec<String> = HANDLERS.iter().flat_map(|h| moat_e2e::prereq::missing(h)).fold(
        Vec::new(),
        |mut all, m| {
            if !all.contains(&m) {
                all.push(m);
            }
            all
        },
    );
    if !missing.is_empty() {
        bail!("cannot run the demo: {}", missing.join("; "));
    }

    let t = Instant::now();
    let bed = moat_e2e::bed("demo", "moat").context("the test bed is unavailable")?;
    println!(
        "containerd {} up with the test images in {:?}",
        bed.layout().socket.display(),
        t.elapsed()
    );
    if let Some(shim) = bed.shim() {
        println!("moat shim: {}", shim.display());
    }

    let mut outputs = Vec::new();
    for handler in HANDLERS {
        outputs.push((handler, probe_pod(bed, handler)?));
    }
    print_side_by_side(&outputs);

    println!();
    println!(
        "== a privileged pod asked of moat (pod and container securityContext.privileged = true)"
    );
    let refusal = privileged_refusal(bed)?;
    // The refusal names the moat config the pod was checked against: this demo's temporary
    // file, gone once the demo ends. Show its content instead of a path that will not exist.
    let config_path = bed.layout().moat_config.display().to_string();
    let config_text = std::fs::read_to_string(&bed.layout().moat_config)
        .with_context(|| format!("reading the demo's moat config {config_path}"))?;
    println!("refused: {}", refusal.replace(&config_path, "the moat config below"));
    println!();
    println!(
        "== the moat config used (on a node: /etc/moat/config.toml, see docs/config.example.toml)"
    );
    print!("{config_text}");

    bed.shutdown();
    println!();
    println!(
        "containerd stopped, its files removed (and, when no other test run is alive, the \
         {} bridge and the moat-e2e cgroups)",
        moat_e2e::containerd::CNI_BRIDGE
    );
    Ok(())
}

/// Runs the probe pod under `handler`, removes it, returns the container's `label: value` lines.
fn probe_pod(bed: &TestBed, handler: &str) -> Result<Vec<(String, String)>> {
    let t = Instant::now();
    let pod = bed.run_pod("demo", handler)?;
    let mut config = pod.container_config("probe", &["sh", "-c", PROBE]);
    configs::security_context(&mut config).readonly_rootfs = true;
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let status = pod.wait_exited(&c, Duration::from_secs(30))?;
    let log =
        pod.wait_for_log(&c, Duration::from_secs(5), |l| l.iter().any(|l| l.text == "end"))?;
    let name = pod.name.clone();
    pod.teardown()?;
    println!(
        "pod {name} under {handler}: container {} exited {}, pod stopped and removed ({:?})",
        c.name,
        status.exit_code,
        t.elapsed()
    );
    if status.exit_code != 0 {
        bail!("the probe container exited {} under {handler}", status.exit_code);
    }
    Ok(log
        .iter()
        .filter_map(|l| l.text.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Prints each probe, the moat line over the runc line; then the capabilities that differ.
fn print_side_by_side(outputs: &[(&str, Vec<(String, String)>)]) {
    let mut labels: Vec<&str> = Vec::new();
    for (_, lines) in outputs {
        for (k, _) in lines {
            if !labels.contains(&k.as_str()) {
                labels.push(k);
            }
        }
    }
    println!();
    println!("== the same pod under each handler (busybox; kubelet defaults plus readOnlyRootFilesystem)");
    for label in &labels {
        println!("{label}:");
        for (handler, lines) in outputs {
            let values: Vec<&str> =
                lines.iter().filter(|(k, _)| k == label).map(|(_, v)| v.as_str()).collect();
            let mut values = values.into_iter().map(|v| explain(label, v));
            println!("  {handler:<5} {}", values.next().unwrap_or_else(|| "-".to_string()));
            for more in values {
                println!("        {more}");
            }
        }
    }
    for set in ["CapEff", "CapBnd"] {
        let masks: BTreeMap<&str, u64> = outputs
            .iter()
            .filter_map(|(h, lines)| {
                let hex = lines.iter().find(|(k, _)| k == set)?.1.as_str();
                Some((*h, u64::from_str_radix(hex, 16).ok()?))
            })
            .collect();
        if let (Some(moat), Some(runc)) = (masks.get("moat"), masks.get("runc")) {
            println!(
                "{set}: moat {} capabilities, runc {}; runc only: {}",
                moat.count_ones(),
                runc.count_ones(),
                cap_names(runc & !moat)
            );
            if moat & !runc != 0 {
                println!("{set}: moat only: {}", cap_names(moat & !runc));
            }
        }
    }
    println!(
        "(under moat the capabilities are held in the pod's user namespace, whose root is the \
         unprivileged host uid in uid_map; under runc they are the host's)"
    );
}

/// `value` with what the kernel's number means, for the fields where it is a code.
fn explain(label: &str, value: &str) -> String {
    let meaning = match (label, value) {
        ("Seccomp", "0") => "disabled",
        ("Seccomp", "1") => "strict",
        ("Seccomp", "2") => "filter",
        ("NoNewPrivs", "0") => "off: setuid binaries raise privileges",
        ("NoNewPrivs", "1") => "on",
        _ => return value.to_string(),
    };
    format!("{value} ({meaning})")
}

/// The names of the capabilities in `mask` (by capsh(1) when the host has it, else numbers).
fn cap_names(mask: u64) -> String {
    if mask == 0 {
        return "none".to_string();
    }
    let decoded = std::process::Command::new("capsh")
        .arg(format!("--decode={mask:x}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            out.split_once('=').map(|(_, names)| names.replace(',', ", "))
        });
    decoded.unwrap_or_else(|| {
        (0..64)
            .filter(|b| mask & (1u64 << b) != 0)
            .map(|b| format!("cap {b}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Asks moat for a privileged pod with a privileged container; returns containerd's error
/// from whichever call refused it (the pod sandbox or the container), and removes what was
/// made. Fails when moat runs it.
fn privileged_refusal(bed: &TestBed) -> Result<String> {
    let mut pod_config = bed.pod_config("privileged")?;
    // containerd refuses a privileged container in a pod that is not privileged itself.
    configs::pod_security_context(&mut pod_config).privileged = true;
    let cri = bed.cri();
    let pod_id = match cri.runp(&pod_config, "moat") {
        Err(e) => return Ok(format!("{e:#}")),
        Ok(id) => id,
    };
    let pod_name = pod_config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let mut config =
        configs::container_config(&pod_name, "privileged", configs::BUSYBOX, &["sleep", "3600"]);
    configs::security_context(&mut config).privileged = true;
    let started = cri.create(&pod_id, &config, &pod_config).and_then(|id| cri.start(&id));
    cri.stopp(&pod_id)?;
    cri.rmp(&pod_id)?;
    match started {
        Err(e) => Ok(format!("{e:#}")),
        Ok(()) => bail!("moat ran a privileged container"),
    }
}
