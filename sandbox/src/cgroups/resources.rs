//! Applying OCI `linux.resources` to a cgroup: checks first (pure), then the v1 or v2 writes.
//!
//! Zero means "unset" for memory, swap, cpu shares/quota/period and pids, as in runc; -1 means
//! unlimited. Real-time cpu limits, kernel memory limits and (on v2) swappiness and
//! disableOOMKiller have no effect here and are logged when set. Device rules are applied once,
//! at create, by `Cgroup::create` (v1: `devices_v1`; v2: the `device_filter` program).

use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxPids, LinuxResources, LinuxThrottleDevice,
};

use super::{fsio, Cgroup, CgroupError, Mode};

/// cgroup v2 `cpu.weight` for v1 `cpu.shares` (runc's conversion; 0 means unset).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// cgroup v2 `io.weight` for v1 `blkio.weight` (10..=1000 -> 1..=10000; 0 means unset).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// cgroup v2 `cpu.max` for a quota and period (µs). `None`: nothing to write.
/// A quota without period keeps the kernel's current period.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut s = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(p) = period {
        s.push(' ');
        s.push_str(&p.to_string());
    }
    Some(s)
}

/// cgroup v2 `memory.swap.max` from OCI's memory+swap `swap` and `limit` (runc's conversion).
/// `Ok(None)`: nothing to write.
pub fn swap_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, &'static str> {
    let swap = swap.unwrap_or(0);
    let limit = limit.unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        -1 => return Ok(Some("max".into())),
        0 => return Ok(None),
        _ => {}
    }
    if limit == 0 || limit == -1 {
        return Err("a swap limit needs a memory limit");
    }
    if limit < 0 || swap < 0 {
        return Err("memory and swap limits must be positive, 0 (unset) or -1 (unlimited)");
    }
    if swap < limit {
        return Err("the memory+swap limit (swap) must be >= the memory limit");
    }
    Ok(Some((swap - limit).to_string()))
}

/// v2 value for an OCI number where -1 (or any negative) means unlimited.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The resources a container's cgroup is created with: the spec's, with `default_pids_limit`
/// as the pids limit when the spec sets none (no `pids`, or a limit of 0, which means unset as
/// in runc). A spec's own limit (-1, unlimited, included) is kept. `default_pids_limit` 0: no
/// default. The limit goes on the container's own cgroup (the pod's cgroup is kubelet's), so
/// it bounds each container, not the pod: a pod of N containers can hold N times the limit.
pub fn with_default_pids(
    spec: Option<&LinuxResources>,
    default_pids_limit: u64,
) -> Option<LinuxResources> {
    let unset = spec.and_then(|r| r.pids().as_ref()).is_none_or(|p| p.limit() == 0);
    let default = i64::try_from(default_pids_limit).ok().filter(|l| *l > 0);
    match (unset, default) {
        (true, Some(limit)) => {
            let mut r = spec.cloned().unwrap_or_default();
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            r.set_pids(Some(pids));
            Some(r)
        }
        _ => spec.cloned(),
    }
}

/// Checks that need no cgroup: done before anything is created, so bad input leaves nothing.
pub fn validate(path: &str, r: &LinuxResources, mode: Mode) -> Result<(), CgroupError> {
    let bad = |reason: String| CgroupError::InvalidResources { path: path.to_string(), reason };
    if let Some(m) = r.memory() {
        for (name, v) in
            [("limit", m.limit()), ("swap", m.swap()), ("reservation", m.reservation())]
        {
            if let Some(v) = v {
                if v < -1 {
                    return Err(bad(format!(
                        "memory {name} {v} is negative (only -1, unlimited, is allowed)"
                    )));
                }
            }
        }
        swap_v2(m.swap(), m.limit()).map_err(|e| {
            bad(format!("memory: {e} (limit {:?}, swap {:?})", m.limit(), m.swap()))
        })?;
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(bad(format!("memory swappiness {s} is above 100")));
            }
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(q) = cpu.quota() {
            if q < -1 {
                return Err(bad(format!(
                    "cpu quota {q} is negative (only -1, unlimited, is allowed)"
                )));
            }
        }
        for (name, v) in [("cpus", cpu.cpus()), ("mems", cpu.mems())] {
            if let Some(v) = v {
                if !v.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-') {
                    return Err(bad(format!("cpuset {name} {v:?} is not a list like \"0-2,4\"")));
                }
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        let ok = size
            .strip_suffix('B')
            .and_then(|s| s.strip_suffix(['K', 'M', 'G']))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(bad(format!("hugepage size {size:?} is not like \"2MB\" or \"1GB\"")));
        }
    }
    for d in r.devices().iter().flatten() {
        if let Some(a) = d.access() {
            if a.is_empty() || !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(bad(format!("device rule access {a:?} is not made of r, w, m")));
            }
        }
    }
    // The rules compile for the v2 program (numbers in range); checked before anything exists.
    super::device_filter::DeviceRules::for_container(r.devices().as_deref().unwrap_or_default())
        .map_err(bad)?;
    if let Some(unified) = r.unified() {
        if !unified.is_empty() && mode != Mode::V2 {
            return Err(bad("linux.resources.unified needs a pure cgroup v2 machine".into()));
        }
        for key in unified.keys() {
            let simple = !key.is_empty()
                && !key.contains('/')
                && key.contains('.')
                && !key.starts_with("cgroup.")
                && !key.starts_with('.');
            if !simple {
                return Err(bad(format!("unified key {key:?} is not a controller file name")));
            }
        }
    }
    Ok(())
}

/// Writes the limits (not the device rules: `devices_v1` and the v2 program, at create only).
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    match cg.mode() {
        Mode::V2 => apply_v2(cg, r),
        Mode::V1 | Mode::Hybrid => apply_v1(cg, r),
    }
}

fn unsupported(cg: &Cgroup, what: impl Into<String>) -> CgroupError {
    CgroupError::Unsupported { path: cg.path(), what: what.into() }
}

fn v1_dir<'a>(cg: &'a Cgroup, controller: &str) -> Result<&'a Path, CgroupError> {
    cg.v1_dir(controller).ok_or_else(|| unsupported(cg, format!("the v1 {controller} controller")))
}

/// Writes a control file that must exist; a missing one becomes `Unsupported` naming it.
fn write_ctl(cg: &Cgroup, dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(unsupported(cg, format!("{} (needed to write {value:?})", path.display())));
    }
    fsio::write(&path, value)
}

fn warn_realtime(cpu: &LinuxCpu, cg: &Cgroup) {
    if cpu.realtime_runtime().is_some_and(|v| v != 0)
        || cpu.realtime_period().is_some_and(|v| v != 0)
    {
        log::warn!("cgroup {}: real-time cpu limits are not applied", cg.path());
    }
}

fn warn_kernel_memory(m: &LinuxMemory, cg: &Cgroup) {
    if m.kernel().is_some_and(|v| v != 0) || m.kernel_tcp().is_some_and(|v| v != 0) {
        log::warn!("cgroup {}: kernel memory limits are deprecated and not applied", cg.path());
    }
}

fn pids_value(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

// ---------------------------------------------------------------- v1

fn apply_v1(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(cpu) = r.cpu() {
        cpu_v1(cg, cpu)?;
    }
    if let Some(m) = r.memory() {
        memory_v1(cg, m)?;
    }
    if let Some(value) = r.pids().and_then(|p| pids_value(p.limit())) {
        write_ctl(cg, v1_dir(cg, "pids")?, "pids.max", &value)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        hugetlb(cg, limits, cg.v1_dir("hugetlb"), "limit_in_bytes", |l| {
            if l < 0 {
                "-1".into()
            } else {
                l.to_string()
            }
        })?;
    }
    if let Some(b) = r.block_io() {
        blkio_v1(cg, b)?;
    }
    Ok(())
}

fn cpu_v1(cg: &Cgroup, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    warn_realtime(cpu, cg);
    let shares = cpu.shares().filter(|s| *s != 0);
    let quota = cpu.quota().filter(|q| *q != 0);
    let period = cpu.period().filter(|p| *p != 0);
    if shares.is_some()
        || quota.is_some()
        || period.is_some()
        || cpu.burst().is_some()
        || cpu.idle().is_some()
    {
        let dir = v1_dir(cg, "cpu")?;
        if let Some(s) = shares {
            write_ctl(cg, dir, "cpu.shares", &s.to_string())?;
        }
        let quota_value = quota.map(|q| if q < 0 { "-1".to_string() } else { q.to_string() });
        let mut quota_done = false;
        if let Some(p) = period {
            if let Err(e) = write_ctl(cg, dir, "cpu.cfs_period_us", &p.to_string()) {
                // A period the current quota does not fit: set the quota first, then retry.
                let Some(q) = quota_value.as_deref() else { return Err(e) };
                write_ctl(cg, dir, "cpu.cfs_quota_us", q)?;
                write_ctl(cg, dir, "cpu.cfs_period_us", &p.to_string())?;
                quota_done = true;
            }
        }
        if let (Some(q), false) = (quota_value.as_deref(), quota_done) {
            write_ctl(cg, dir, "cpu.cfs_quota_us", q)?;
        }
        if let Some(b) = cpu.burst() {
            write_ctl(cg, dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(i) = cpu.idle() {
            write_ctl(cg, dir, "cpu.idle", &i.to_string())?;
        }
    }
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = v1_dir(cg, "cpuset")?;
        if let Some(c) = cpus {
            write_ctl(cg, dir, "cpuset.cpus", c)?;
        }
        if let Some(m) = mems {
            write_ctl(cg, dir, "cpuset.mems", m)?;
        }
    }
    Ok(())
}

/// A write to memory.limit_in_bytes / memsw that the kernel refuses with EBUSY: the new limit
/// is below what the cgroup uses and reclaim could not make room.
fn write_memory_limit(cg: &Cgroup, dir: &Path, file: &str, limit: i64) -> Result<(), CgroupError> {
    match write_ctl(cg, dir, file, &limit.to_string()) {
        Err(CgroupError::Write { path, source, .. })
            if source.raw_os_error() == Some(libc::EBUSY) =>
        {
            let usage_file = if file.contains("memsw") {
                "memory.memsw.usage_in_bytes"
            } else {
                "memory.usage_in_bytes"
            };
            let usage = fsio::read_u64(&dir.join(usage_file)).unwrap_or(0);
            Err(CgroupError::MemoryLimitBelowUsage { path, limit, usage })
        }
        other => other,
    }
}

fn memory_v1(cg: &Cgroup, m: &LinuxMemory) -> Result<(), CgroupError> {
    warn_kernel_memory(m, cg);
    let limit = m.limit().filter(|v| *v != 0);
    let mut swap = m.swap().filter(|v| *v != 0);
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    let reservation = m.reservation().filter(|v| *v != 0);
    if limit.is_none()
        && swap.is_none()
        && reservation.is_none()
        && m.swappiness().is_none()
        && m.disable_oom_killer().is_none()
    {
        return Ok(());
    }
    let dir = v1_dir(cg, "memory")?;
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if let Some(s) = swap {
        if !dir.join(MEMSW).exists() {
            // No swap accounting: without it there is nothing a swap limit could add to a
            // memory limit equal to it (or to "unlimited"); a real swap allowance cannot be kept.
            if s == -1 || Some(s) == limit {
                swap = None;
            } else {
                return Err(unsupported(
                    cg,
                    "a swap limit (memory.memsw.limit_in_bytes; boot with swapaccount=1)",
                ));
            }
        }
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= limit at every step: raise memsw first when growing.
            let current = fsio::read_u64(&dir.join(LIMIT))?;
            if s == -1 || i64::try_from(current).is_ok_and(|c| c < s) {
                write_memory_limit(cg, dir, MEMSW, s)?;
                write_memory_limit(cg, dir, LIMIT, l)?;
            } else {
                write_memory_limit(cg, dir, LIMIT, l)?;
                write_memory_limit(cg, dir, MEMSW, s)?;
            }
        }
        (Some(l), None) => write_memory_limit(cg, dir, LIMIT, l)?,
        (None, Some(s)) => write_memory_limit(cg, dir, MEMSW, s)?,
        (None, None) => {}
    }
    if let Some(r) = reservation {
        write_ctl(cg, dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        write_ctl(cg, dir, "memory.swappiness", &s.to_string())?;
    }
    if let Some(d) = m.disable_oom_killer() {
        write_ctl(cg, dir, "memory.oom_control", if d { "1" } else { "0" })?;
    }
    Ok(())
}

/// Where the kernel describes its hugepage pools, one `hugepages-<size>kB` directory per size.
const HUGEPAGES_SYSFS: &str = "/sys/kernel/mm/hugepages";

/// Whether pages of `size` ("2MB", "1GB", validated) can be allocated on this host: the pool
/// (`nr_hugepages`) or the overcommit allowance is non-zero. A size the kernel does not know
/// has none; a file that cannot be read counts as available (fail closed).
fn hugepages_available(sysfs: &Path, size: &str) -> bool {
    let kib = |n: &str, shift: u32| n.parse::<u64>().ok().and_then(|v| v.checked_mul(1 << shift));
    let kb = if let Some(n) = size.strip_suffix("KB") {
        kib(n, 0)
    } else if let Some(n) = size.strip_suffix("MB") {
        kib(n, 10)
    } else if let Some(n) = size.strip_suffix("GB") {
        kib(n, 20)
    } else {
        None
    };
    let Some(kb) = kb else { return true };
    let dir = sysfs.join(format!("hugepages-{kb}kB"));
    if !dir.is_dir() {
        return false;
    }
    ["nr_hugepages", "nr_overcommit_hugepages"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_none_or(|n| n > 0)
    })
}

fn hugetlb(
    cg: &Cgroup,
    limits: &[LinuxHugepageLimit],
    dir: Option<&Path>,
    suffix: &str,
    value: impl Fn(i64) -> String,
) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let Some(dir) = dir else {
        // No hugetlb controller: a limit that cannot be enforced refuses the container when
        // the host could hand out pages of that size; where it has none (no pool, no
        // overcommit) the limit holds anyway. Refusing always would refuse every pod a kubelet
        // sends, on such a node: it lists every page size the kernel supports, with limit 0.
        for l in limits {
            if hugepages_available(Path::new(HUGEPAGES_SYSFS), l.page_size()) {
                return Err(unsupported(
                    cg,
                    format!(
                        "the hugetlb controller (no hugetlb hierarchy; the {} hugepage limit \
                         cannot be enforced while {HUGEPAGES_SYSFS} offers such pages)",
                        l.page_size()
                    ),
                ));
            }
        }
        log::warn!(
            "cgroup {}: no hugetlb controller here; hugepage limits not applied (the host has \
             no hugepages of those sizes to give)",
            cg.path()
        );
        return Ok(());
    };
    for l in limits {
        write_ctl(cg, dir, &format!("hugetlb.{}.{suffix}", l.page_size()), &value(l.limit()))?;
    }
    Ok(())
}

fn throttles(
    b: &LinuxBlockIo,
) -> [(&'static str, &'static str, Option<&Vec<LinuxThrottleDevice>>); 4] {
    [
        ("blkio.throttle.read_bps_device", "rbps", b.throttle_read_bps_device().as_ref()),
        ("blkio.throttle.write_bps_device", "wbps", b.throttle_write_bps_device().as_ref()),
        ("blkio.throttle.read_iops_device", "riops", b.throttle_read_iops_device().as_ref()),
        ("blkio.throttle.write_iops_device", "wiops", b.throttle_write_iops_device().as_ref()),
    ]
}

fn blkio_v1(cg: &Cgroup, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weights = b.weight().filter(|w| *w != 0).is_some()
        || b.weight_device().as_ref().is_some_and(|d| !d.is_empty());
    let limits = throttles(b).iter().any(|(_, _, d)| d.is_some_and(|d| !d.is_empty()));
    if !weights && !limits {
        return Ok(());
    }
    let dir = v1_dir(cg, "blkio")?;
    if weights {
        // CFQ's blkio.weight is gone from current kernels; BFQ has blkio.bfq.weight.
        let prefix =
            ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| dir.join(f).exists());
        match prefix {
            None => {
                log::warn!("cgroup {}: no blkio weight file, io weights are not applied", cg.path())
            }
            Some(file) => {
                if let Some(w) = b.weight().filter(|w| *w != 0) {
                    write_ctl(cg, dir, file, &w.to_string())?;
                }
                for d in b.weight_device().iter().flatten() {
                    if let Some(w) = d.weight() {
                        write_ctl(
                            cg,
                            dir,
                            &format!("{file}_device"),
                            &format!("{}:{} {w}", d.major(), d.minor()),
                        )?;
                    }
                }
            }
        }
    }
    for (file, _, devices) in throttles(b) {
        for d in devices.into_iter().flatten() {
            write_ctl(cg, dir, file, &format!("{}:{} {}", d.major(), d.minor(), d.rate()))?;
        }
    }
    Ok(())
}

/// The v1 devices-cgroup line for one OCI rule: `c 1:3 rwm`, `a *:* rwm`.
pub fn device_rule_v1(d: &LinuxDeviceCgroup) -> String {
    let typ = d.typ().unwrap_or(LinuxDeviceType::A);
    let num = |v: Option<i64>| v.filter(|v| *v >= 0).map_or("*".to_string(), |v| v.to_string());
    let access = d.access().as_deref().unwrap_or("rwm");
    format!("{} {}:{} {access}", typ.as_str(), num(d.major()), num(d.minor()))
}

/// The v1 device rules: deny everything, then the spec's rules in order, then the minimal
/// /dev's nodes (the list `device_filter::DeviceRules::for_container` compiles for v2).
pub(crate) fn devices_v1(cg: &Cgroup, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    // Without the devices hierarchy the spec's device rules cannot be enforced: refused (as
    // runc does), never skipped.
    let dir = v1_dir(cg, "devices")?;
    // Default deny whatever the spec says first (CRI's spec starts with this rule too).
    write_ctl(cg, dir, "devices.deny", "a *:* rwm")?;
    for rule in rules {
        let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
        write_ctl(cg, dir, file, &device_rule_v1(rule))?;
    }
    // The nodes of moat's minimal /dev are always usable, whatever the spec's rules (CRI's
    // spec denies every device and lists none; runc adds the same allow list itself).
    for line in standard_device_rules_v1() {
        write_ctl(cg, dir, "devices.allow", &line)?;
    }
    Ok(())
}

/// v1 allow lines for the nodes every container's /dev holds, plus its pty slaves.
pub fn standard_device_rules_v1() -> Vec<String> {
    let mut lines: Vec<String> = crate::policy::devices::STANDARD
        .iter()
        .map(|(_, major, minor)| format!("c {major}:{minor} rwm"))
        .collect();
    // /dev/pts/*: the container's own devpts instance.
    lines.push(format!("c {}:* rwm", super::device_filter::PTS_MAJOR));
    lines
}

// ---------------------------------------------------------------- v2

fn apply_v2(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    let Some(dir) = cg.v2_dir() else { return Err(unsupported(cg, "the cgroup v2 hierarchy")) };
    if let Some(cpu) = r.cpu() {
        warn_realtime(cpu, cg);
        let weight = shares_to_weight(cpu.shares().unwrap_or(0));
        if weight != 0 {
            write_ctl(cg, dir, "cpu.weight", &weight.to_string())?;
        }
        if let Some(max) = cpu_max(cpu.quota(), cpu.period()) {
            write_ctl(cg, dir, "cpu.max", &max)?;
        }
        if let Some(b) = cpu.burst() {
            write_ctl(cg, dir, "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = cpu.idle() {
            write_ctl(cg, dir, "cpu.idle", &i.to_string())?;
        }
        if let Some(c) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            write_ctl(cg, dir, "cpuset.cpus", c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            write_ctl(cg, dir, "cpuset.mems", m)?;
        }
    }
    if let Some(m) = r.memory() {
        warn_kernel_memory(m, cg);
        if m.swappiness().is_some() || m.disable_oom_killer() == Some(true) {
            log::warn!(
                "cgroup {}: swappiness and disableOOMKiller do not exist in cgroup v2",
                cg.path()
            );
        }
        let swap = swap_v2(m.swap(), m.limit()).map_err(|e| CgroupError::InvalidResources {
            path: cg.path(),
            reason: e.to_string(),
        })?;
        if let Some(s) = swap {
            if dir.join("memory.swap.max").exists() {
                write_ctl(cg, dir, "memory.swap.max", &s)?;
            } else if s != "0" && s != "max" {
                return Err(unsupported(cg, "a swap limit (memory.swap.max)"));
            }
        }
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            write_ctl(cg, dir, "memory.max", &max_or(l))?;
        }
        if let Some(r) = m.reservation().filter(|r| *r != 0) {
            write_ctl(cg, dir, "memory.low", &max_or(r))?;
        }
    }
    if let Some(value) = r.pids().and_then(|p| pids_value(p.limit())) {
        write_ctl(cg, dir, "pids.max", &value)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        let has = dir.join("cgroup.controllers");
        let enabled =
            fsio::read_opt(&has)?.is_some_and(|c| c.split_whitespace().any(|w| w == "hugetlb"));
        hugetlb(cg, limits, enabled.then_some(dir), "max", max_or)?;
    }
    if let Some(b) = r.block_io() {
        io_v2(cg, dir, b)?;
    }
    for (key, value) in r.unified().iter().flatten() {
        write_ctl(cg, dir, key, value)?;
    }
    Ok(())
}

fn io_v2(cg: &Cgroup, dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            write_ctl(cg, dir, "io.bfq.weight", &w.to_string())?;
        } else {
            write_ctl(cg, dir, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let (file, value) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_weight_to_io_weight(w))
            };
            write_ctl(cg, dir, file, &format!("{}:{} {value}", d.major(), d.minor()))?;
        }
    }
    for (_, key, devices) in throttles(b) {
        for d in devices.into_iter().flatten() {
            write_ctl(
                cg,
                dir,
                "io.max",
                &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxResourcesBuilder,
    };

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn blkio_weight_converts() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn cpu_max_strings() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(0), Some(0)), None);
        assert_eq!(cpu_max(Some(50_000), Some(100_000)).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(Some(50_000), None).as_deref(), Some("50000"));
        assert_eq!(cpu_max(Some(-1), Some(100_000)).as_deref(), Some("max 100000"));
        assert_eq!(cpu_max(None, Some(20_000)).as_deref(), Some("max 20000"));
    }

    #[test]
    fn swap_converts_like_runc() {
        assert_eq!(swap_v2(None, None), Ok(None));
        assert_eq!(swap_v2(None, Some(-1)).as_ref().map(|o| o.as_deref()), Ok(Some("max")));
        assert_eq!(swap_v2(Some(-1), Some(100)).as_ref().map(|o| o.as_deref()), Ok(Some("max")));
        assert_eq!(swap_v2(Some(300), Some(100)).as_ref().map(|o| o.as_deref()), Ok(Some("200")));
        assert_eq!(swap_v2(Some(100), Some(100)).as_ref().map(|o| o.as_deref()), Ok(Some("0")));
        assert!(swap_v2(Some(50), Some(100)).is_err());
        assert!(swap_v2(Some(50), None).is_err());
    }

    #[test]
    fn device_rules_render() {
        let all =
            LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().expect("rule");
        assert_eq!(device_rule_v1(&all), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .expect("rule");
        assert_eq!(device_rule_v1(&null), "c 1:3 rw");
    }

    #[test]
    fn validation_refuses_bad_values() {
        let mem = |limit: i64, swap: i64| {
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default().limit(limit).swap(swap).build().expect("memory"),
                )
                .build()
                .expect("resources")
        };
        assert!(validate("/x", &mem(100 << 20, 200 << 20), Mode::V1).is_ok());
        let e = validate("/x", &mem(100 << 20, 50 << 20), Mode::V1).expect_err("must be refused");
        assert!(e.to_string().contains("must be >= the memory limit"), "{e}");
        assert!(validate("/x", &mem(-5, 0), Mode::V2).is_err());

        let cpuset = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("0-1\n+memory").build().expect("cpu"))
            .build()
            .expect("resources");
        assert!(validate("/x", &cpuset, Mode::V1).is_err());

        let huge = |size: &str| {
            LinuxResourcesBuilder::default()
                .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size(size)
                    .limit(0)
                    .build()
                    .expect("h")])
                .build()
                .expect("resources")
        };
        assert!(validate("/x", &huge("2MB"), Mode::V1).is_ok());
        assert!(validate("/x", &huge("1GB"), Mode::V1).is_ok());
        assert!(validate("/x", &huge("../x"), Mode::V1).is_err());
        assert!(validate("/x", &huge("2MB.limit"), Mode::V1).is_err());

        let device = LinuxResourcesBuilder::default()
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1_i64 << 33)
                .minor(0)
                .access("rw")
                .build()
                .expect("rule")])
            .build()
            .expect("resources");
        let e = validate("/x", &device, Mode::V2).expect_err("out of range");
        assert!(e.to_string().contains("major 8589934592 is out of range"), "{e}");

        let unified = |k: &str| {
            LinuxResourcesBuilder::default()
                .unified(
                    [(k.to_string(), "1".to_string())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .expect("resources")
        };
        assert!(validate("/x", &unified("memory.high"), Mode::V2).is_ok());
        assert!(validate("/x", &unified("memory.high"), Mode::Hybrid).is_err());
        assert!(validate("/x", &unified("cgroup.procs"), Mode::V2).is_err());
        assert!(validate("/x", &unified("../memory.max"), Mode::V2).is_err());
    }
}

#[cfg(test)]
mod fail_closed_tests {
    use super::super::{Cgroup, Layout};
    use super::hugepages_available;

    #[test]
    fn hugepages_count_as_available_unless_the_host_certainly_has_none() {
        let sysfs = tempfile::tempdir().expect("tempdir");
        let pool = |kb: &str, nr: &str, over: &str| {
            let d = sysfs.path().join(format!("hugepages-{kb}kB"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("nr_hugepages"), nr).expect("write");
            std::fs::write(d.join("nr_overcommit_hugepages"), over).expect("write");
        };
        // Input: a 2MB pool of 0 pages and no overcommit; a 1GB pool of 4 pages.
        pool("2048", "0\n", "0\n");
        pool("1048576", "4\n", "0\n");
        assert!(!hugepages_available(sysfs.path(), "2MB"));
        assert!(hugepages_available(sysfs.path(), "1GB"));
        // Input: overcommit allowed.
        pool("2048", "0\n", "16\n");
        assert!(hugepages_available(sysfs.path(), "2MB"));
        // Input: a size the kernel does not have, and one whose count cannot be read.
        assert!(!hugepages_available(sysfs.path(), "64KB"));
        pool("32768", "garbage", "0");
        assert!(hugepages_available(sysfs.path(), "32MB"));
        // Input: a size that does not parse (validation refuses it earlier): fail closed.
        assert!(hugepages_available(sysfs.path(), "99999999999999999999GB"));
    }
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxResourcesBuilder};

    #[test]
    fn device_rules_without_a_devices_hierarchy_are_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let memory = dir.path().join("memory");
        std::fs::create_dir(&memory).expect("mkdir");
        // Input: a v1 layout with a memory hierarchy only (no devices controller mounted).
        let layout = Layout::from_mountinfo(&format!(
            "1 0 0:1 / {} rw - cgroup cgroup rw,memory\n",
            memory.display()
        ));
        let deny_all =
            LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().expect("rule");
        let resources =
            LinuxResourcesBuilder::default().devices(vec![deny_all]).build().expect("resources");
        let err = Cgroup::create(&layout, "/k8s.io/c1", Some(&resources))
            .expect_err("device rules that cannot be enforced must refuse the container");
        let msg = err.to_string();
        assert!(msg.contains("devices controller") && msg.contains("/k8s.io/c1"), "{msg}");
        // Nothing is left behind.
        assert!(!memory.join("k8s.io").exists());
    }
}

#[cfg(test)]
mod default_pids_tests {
    use super::*;
    use crate::cgroups::{CgroupPath, V1Dir};
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    fn pids(limit: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(limit).build().expect("pids"))
            .build()
            .expect("resources")
    }

    fn limit(r: Option<LinuxResources>) -> Option<i64> {
        r.and_then(|r| r.pids().as_ref().map(|p| p.limit()))
    }

    #[test]
    fn the_default_applies_only_when_the_spec_sets_no_limit() {
        assert_eq!(limit(with_default_pids(None, 4096)), Some(4096));
        assert_eq!(limit(with_default_pids(Some(&pids(0)), 4096)), Some(4096));
        assert_eq!(limit(with_default_pids(Some(&pids(100)), 4096)), Some(100));
        assert_eq!(limit(with_default_pids(Some(&pids(-1)), 4096)), Some(-1));
        assert_eq!(limit(with_default_pids(None, 0)), None);
        // The rest of the spec's resources are kept.
        let memory = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(1 << 20).build().expect("memory"))
            .build()
            .expect("resources");
        let r = with_default_pids(Some(&memory), 4096).expect("resources");
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(1 << 20));
        assert_eq!(limit(Some(r)), Some(4096));
    }

    /// A cgroup in `mode` whose directories are plain temporary directories holding a
    /// `pids.max` file (the v2 path is not exercised by this hybrid machine's e2e tests).
    fn fake(mode: Mode, root: &Path) -> Cgroup {
        let dir = root.join("k8s.io/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("pids.max"), "max").expect("pids.max");
        let (v1, v2) = match mode {
            Mode::V2 => (Vec::new(), Some(dir)),
            _ => (
                vec![V1Dir { controllers: vec!["pids".into()], mount: root.to_path_buf(), dir }],
                None,
            ),
        };
        Cgroup {
            path: CgroupPath::parse("/k8s.io/c1").expect("path"),
            mode,
            v1,
            v2,
            v2_root: (mode == Mode::V2).then(|| root.to_path_buf()),
            created: Vec::new(),
        }
    }

    #[test]
    fn the_default_is_written_to_pids_max_on_v1_and_v2() {
        for mode in [Mode::V2, Mode::V1] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let cg = fake(mode, tmp.path());
            let r = with_default_pids(None, 4096).expect("resources");
            apply(&cg, &r).expect("apply");
            let file = tmp.path().join("k8s.io/c1/pids.max");
            let written = std::fs::read_to_string(&file).expect("read");
            assert_eq!(written.trim(), "4096", "{mode:?}");
        }
    }
}

#[cfg(test)]
mod standard_device_tests {
    use super::*;

    #[test]
    fn the_minimal_dev_is_always_allowed() {
        let lines = standard_device_rules_v1();
        for expected in ["c 1:3 rwm", "c 1:5 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm"] {
            assert!(lines.iter().any(|l| l == expected), "{expected} missing from {lines:?}");
        }
        // Nothing beyond the standard nodes and the pty slaves.
        assert_eq!(lines.len(), crate::policy::devices::STANDARD.len() + 1);
    }
}
