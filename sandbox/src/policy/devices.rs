//! `linux.devices`, masked and read-only paths.
//!
//! Devices: moat's helper always builds a minimal /dev (null, zero, full, random, urandom,
//! tty, ptmx); entries for those are accepted and need nothing more. Any other device node is
//! a host device: refused unless `allow_host_devices`, in which case the plan bind-mounts the
//! host node at the same path (a user namespace cannot mknod). The code performing that bind
//! must check that the host node's type and major:minor match the spec before mounting.
//!
//! Masked and read-only paths: the spec's lists UNION moat's built-in lists, so a spec that
//! clears them (a privileged container, `procMount: Unmasked`) cannot unmask anything.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};
use crate::plan::{MountKind, MountPlan};

/// The devices every container gets: (path, major, minor).
pub const STANDARD: [(&str, i64, i64); 7] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/ptmx", 5, 2),
];

/// Always masked (containerd's and Docker's defaults, plus powercap: CVE-2020-8694).
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Always read-only.
pub const READONLY: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn is_standard(d: &LinuxDevice) -> bool {
    STANDARD.iter().any(|(path, major, minor)| {
        d.path() == Path::new(path)
            && d.major() == *major
            && d.minor() == *minor
            && d.typ() == LinuxDeviceType::C
    })
}

/// Host device bind mounts for the spec's non-standard devices. `privileged_allowed`: a
/// privileged spec lists every host device; without `allow_host_devices` those are left out
/// (moat's privileged is not host-privileged) instead of refusing the container.
pub(crate) fn plan(
    devices: &[LinuxDevice],
    config: &Config,
    privileged_allowed: bool,
    who: &Subject,
) -> Result<Vec<MountPlan>, Refusal> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if is_standard(d) {
            continue;
        }
        let field = format!("linux.devices[{i}].path={}", d.path().display());
        if !config.allow_host_devices {
            if privileged_allowed {
                continue;
            }
            return Err(who.refuse(
                field,
                Rule::HostDevice,
                format!(
                    "host device {} ({}:{}) is not allowed at level {}",
                    d.path().display(),
                    d.major(),
                    d.minor(),
                    config.level
                ),
                "allow_host_devices = true",
            ));
        }
        let path = super::host_paths::normalize(d.path())
            .filter(|p| p.starts_with("/dev") && p != Path::new("/dev"))
            .ok_or_else(|| {
                who.refuse_always(
                    field.clone(),
                    Rule::InvalidSpec,
                    "a device path must be an absolute path under /dev",
                    "fix the container's spec",
                )
            })?;
        if !matches!(d.typ(), LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U) {
            return Err(who.refuse_always(
                field,
                Rule::InvalidSpec,
                "only character and block devices can be passed through",
                "fix the container's spec",
            ));
        }
        out.push(MountPlan {
            destination: path.clone(),
            kind: MountKind::Bind { source: path, recursive: false, idmap: false },
            readonly: false,
            nosuid: true,
            nodev: false,
            noexec: true,
            data: None,
        });
    }
    Ok(out)
}

/// The spec's list union the built-in one, deduplicated, spec order first.
pub(crate) fn union(spec: Option<&Vec<String>>, built_in: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let all = spec.into_iter().flatten().map(String::as_str).chain(built_in.iter().copied());
    for p in all {
        let p = PathBuf::from(p);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
