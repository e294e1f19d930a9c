//! The denial audit (issue 15), from inside pods: a pod that tries keyctl, bpf and
//! unshare(CLONE_NEWUSER) gets EPERM as before and shows up in
//! `containerd-shim-moat-v2 audit <pod>` with those three names; a pod that spams refused
//! syscalls is slowed (the shim paces its answers) while the shim keeps serving the pod's
//! other requests. moat only: runc has no such audit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{attack, attack_volume, must_fail_with, must_succeed, sleeper};
use moat_e2e::{paths, Pod, TestBed};

moat_only_tests!(
    refused_keyctl_bpf_and_unshare_show_up_in_the_audit_by_name,
    a_pod_spamming_refused_syscalls_slows_itself_not_the_shim,
);

/// `containerd-shim-moat-v2 audit <pod> --config <the bed's moat config>`.
fn audit_of(bed: &TestBed, pod: &Pod) -> Result<String> {
    let shim = paths::shim_binary().context("no moat shim binary")?;
    let out = Command::new(&shim)
        .args(["audit", &pod.id, "--config"])
        .arg(&bed.layout().moat_config)
        .output()
        .with_context(|| format!("running {} audit", shim.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "audit {}: {}: {}",
        pod.id,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// The count the audit printed for `name` (0 when absent).
fn count(audit: &str, name: &str) -> u64 {
    audit
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let n = w.next()?.parse().ok()?;
            (w.next()? == name).then_some(n)
        })
        .next()
        .unwrap_or(0)
}

/// Waits until the audit shows `want` of `name` (the counters are written as they come, the
/// last ones when the supervisor ends; a second bounds the wait).
fn wait_count(bed: &TestBed, pod: &Pod, name: &str, want: u64) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audit = audit_of(bed, pod)?;
        if count(&audit, name) >= want || Instant::now() > deadline {
            return Ok(audit);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn refused_keyctl_bpf_and_unshare_show_up_in_the_audit_by_name(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("audit", handler)?;
    let attack_dir = attack_volume(bed)?;
    let c = sleeper(&pod, "tries", &attack_dir, |_| {})?;
    let before = audit_of(bed, &pod)?;
    ensure!(before.contains("0 refused syscalls"), "a new pod has refusals: {before}");
    for args in [&["keyctl"][..], &["bpf"], &["seal-unshare", "NEWUSER"]] {
        let a = attack(&pod, &c, args)?;
        must_fail_with(&a, handler, &["EPERM"])?;
    }
    let audit = wait_count(bed, &pod, "unshare", 1)?;
    eprintln!("{audit}");
    for name in ["keyctl", "bpf", "unshare"] {
        ensure!(count(&audit, name) >= 1, "{name} is not in the audit of pod {}: {audit}", pod.id);
    }
    // One JSON line per refusal in containerd's log (the shim logs there).
    let log = bed.log_tail(3000);
    let line = log
        .lines()
        .find(|l| l.contains("moat_audit") && l.contains(&pod.id) && l.contains("keyctl"))
        .with_context(|| {
            format!("no audit line for keyctl of pod {} in containerd's log", pod.id)
        })?;
    eprintln!("{line}");
    // An allowed syscall is not audited: `ls` makes hundreds and adds nothing.
    let out = pod.exec(&c, &["ls", "/"])?;
    ensure!(out.exit_code == 0, "ls: {out:?}");
    let after = audit_of(bed, &pod)?;
    let total = |a: &str| a.split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok());
    ensure!(total(&after) == total(&audit), "allowed syscalls were audited: {audit} -> {after}");
    pod.teardown()
}

fn a_pod_spamming_refused_syscalls_slows_itself_not_the_shim(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("spam", handler)?;
    let attack_dir = attack_volume(bed)?;
    let spammer = sleeper(&pod, "spammer", &attack_dir, |_| {})?;
    let other = sleeper(&pod, "other", &attack_dir, |_| {})?;
    const CALLS: u64 = 3000;
    let a = std::thread::scope(|s| -> Result<_> {
        let spam = s.spawn(|| attack(&pod, &spammer, &["egress-audit-spam", &CALLS.to_string()]));
        // While the spam runs, the shim answers the pod's other requests promptly.
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..3 {
            let began = Instant::now();
            let out = pod.exec(&other, &["true"])?;
            let took = began.elapsed();
            ensure!(out.exit_code == 0, "exec during the spam: {out:?}");
            eprintln!("exec during the spam: {took:?}");
            ensure!(took < Duration::from_secs(3), "an exec took {took:?} during the spam");
        }
        spam.join().map_err(|_| anyhow::anyhow!("the spam thread panicked"))?
    })?;
    must_succeed(&a, handler)?;
    eprintln!("{}", a.line);
    ensure!(a.line.contains(&format!("{CALLS} of {CALLS} keyctl calls refused")), "{}", a.line);
    // Past the burst the shim answers about 1000 a second: the spammer was slowed.
    let ms: u64 = a
        .line
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no time in {:?}", a.line))?;
    ensure!(ms >= 2000, "{CALLS} refused calls took only {ms} ms: the spam was not paced");
    let audit = wait_count(bed, &pod, "keyctl", CALLS)?;
    ensure!(count(&audit, "keyctl") == CALLS, "the audit did not count every call: {audit}");
    pod.teardown()
}
