//! The Pod Security Standards levels, as rules on what the OCI spec shows.
//!
//! moat sees the container's OCI spec, never the pod's securityContext; each control of
//! Kubernetes' Pod Security Standards is checked on the spec fields it turns into. A pod that
//! Kubernetes' admission would let through at a level runs under moat at that level, and one it
//! would refuse is refused, with the field, the rule and the config key that would allow it.
//!
//! `baseline` (the default), each control where it is checked:
//!
//! | PSS control | spec field | where | key that allows it |
//! |---|---|---|---|
//! | Host namespaces | `linux.namespaces` (network, pid, ipc absent) | `namespaces` | `allow_host_network/pid/ipc` |
//! | Privileged containers | CAP_SYS_ADMIN, no masked or read-only paths | `mod.rs` | `allow_privileged` |
//! | Capabilities (baseline list) | `process.capabilities.*` | `capabilities` | `allowed_capabilities` |
//! | HostPath volumes | bind `mounts[i].source` | `host_paths`, `mounts` | `allowed_host_paths` |
//! | Host devices | `linux.devices` | `devices` | `allow_host_devices` |
//! | /proc mount type (Unmasked) | `linux.maskedPaths/readonlyPaths` | floor: moat masks always | — |
//! | Seccomp (not Unconfined) | `linux.seccomp` absent | floor: moat's baseline filter | `allow_unconfined_seccomp` |
//! | Sysctls (safe set) | `linux.sysctl` | `sysctls` | `allowed_sysctls` |
//! | Host ports, AppArmor, SELinux, HostProcess | not in the spec moat sees / no such LSM here | — | — |
//!
//! `restricted`: everything of `baseline`, plus the rows of [`RESTRICTED`] (one row each,
//! with its own refusal), checked on application containers only: the pod's sandbox (pause)
//! container is the runtime's, not the pod's, and Kubernetes' admission never sees it.
//!
//! moat's floor, at every level: the pod's own user namespace (container root is an
//! unprivileged host ID), moat's baseline seccomp filter under the spec's, masked /proc and
//! /sys, a read-only /sys, the host-path denylist, nodev everywhere. no_new_privs is set when
//! the spec asks for it (`allowPrivilegeEscalation: false`), at `restricted` (which requires
//! the spec to ask), and on every process when `allow_privilege_escalation = false`; without
//! it a setuid binary raises a process to IDs of the pod's own range, never further.

use oci_spec::runtime::Process;

use super::capabilities::normalize;
use super::config::{Config, Level};
use super::refusal::{Refusal, Rule, Subject};
use crate::plan::ProcessPlan;

/// What a row looks at: the spec's process and seccomp, the planned process (capabilities
/// after moat's defaults), the config.
pub(crate) struct Facts<'a> {
    pub spec_process: &'a Process,
    pub has_seccomp_profile: bool,
    pub process: &'a ProcessPlan,
    /// A privileged container the operator allowed (`allow_privileged`): its capability
    /// ceiling is lifted, so the capability row does not apply.
    pub privileged: bool,
    pub config: &'a Config,
}

/// A rule's verdict: the field, the rule, what it says and the key that would allow it.
pub(crate) struct Violation {
    pub field: String,
    pub rule: Rule,
    pub reason: String,
    pub setting: String,
}

/// One row of a level: the Pod Security Standards control and its check on the spec.
pub(crate) struct Row {
    /// The control's name in Kubernetes' Pod Security Standards (for readers and tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub control: &'static str,
    pub check: fn(&Facts<'_>) -> Option<Violation>,
}

/// The rows `restricted` adds to `baseline`.
pub(crate) const RESTRICTED: &[Row] = &[
    Row { control: "Running as Non-root user", check: run_as_non_root },
    Row { control: "Capabilities", check: only_net_bind_service },
    Row { control: "Seccomp", check: seccomp_profile_present },
    Row { control: "Privilege Escalation", check: no_privilege_escalation },
];

const TO_BASELINE: &str = "level = \"baseline\"";

/// PSS restricted: `runAsNonRoot: true`, `runAsUser` not 0. In the spec: `process.user.uid`.
fn run_as_non_root(f: &Facts<'_>) -> Option<Violation> {
    let uid = f.spec_process.user().uid();
    (uid == 0).then(|| Violation {
        field: "process.user.uid=0".into(),
        rule: Rule::RunAsNonRoot,
        reason: "running as root (uid 0) is not allowed at level restricted (set runAsNonRoot \
                 and a runAsUser other than 0)"
            .into(),
        setting: TO_BASELINE.into(),
    })
}

/// PSS restricted: drop ALL, add back at most NET_BIND_SERVICE. In the spec: every set holds
/// nothing but CAP_NET_BIND_SERVICE (and what `allowed_capabilities` adds).
fn only_net_bind_service(f: &Facts<'_>) -> Option<Violation> {
    if f.privileged {
        return None;
    }
    let extra: Vec<String> =
        f.config.allowed_capabilities.iter().filter_map(|c| normalize(c)).collect();
    let ok = |cap: &String| cap == "CAP_NET_BIND_SERVICE" || extra.contains(cap);
    super::capabilities::sets(&f.process.capabilities).into_iter().find_map(|(set, caps)| {
        caps.iter().find(|c| !ok(c)).map(|cap| Violation {
            field: format!("process.capabilities.{set}[{cap}]"),
            rule: Rule::Capability,
            reason: format!(
                "{cap} is not allowed at level restricted (drop ALL capabilities and add back \
                 at most NET_BIND_SERVICE)"
            ),
            setting: format!("{TO_BASELINE} or allowed_capabilities = [\"{cap}\"]"),
        })
    })
}

/// PSS restricted: seccompProfile RuntimeDefault or Localhost. In the spec: `linux.seccomp`
/// (CRI's Unconfined and an unset profile both leave it out).
fn seccomp_profile_present(f: &Facts<'_>) -> Option<Violation> {
    (!f.has_seccomp_profile).then(|| Violation {
        field: "linux.seccomp".into(),
        rule: Rule::SeccompProfile,
        reason: "a container without a seccomp profile is not allowed at level restricted (set \
                 seccompProfile RuntimeDefault or Localhost)"
            .into(),
        setting: TO_BASELINE.into(),
    })
}

/// PSS restricted: `allowPrivilegeEscalation: false`. In the spec: `process.noNewPrivileges`.
fn no_privilege_escalation(f: &Facts<'_>) -> Option<Violation> {
    (f.spec_process.no_new_privileges() != Some(true)).then(|| Violation {
        field: "process.noNewPrivileges".into(),
        rule: Rule::PrivilegeEscalation,
        reason: "privilege escalation is not allowed at level restricted (set \
                 allowPrivilegeEscalation: false)"
            .into(),
        setting: TO_BASELINE.into(),
    })
}

/// Checks the rows of `level` that are not checked elsewhere (today: `restricted`'s).
pub(crate) fn check(level: Level, facts: &Facts<'_>, who: &Subject) -> Result<(), Refusal> {
    let rows: &[Row] = match level {
        Level::Baseline => &[],
        Level::Restricted => RESTRICTED,
    };
    for row in rows {
        if let Some(v) = (row.check)(facts) {
            return Err(who.refuse(v.field, v.rule, v.reason, v.setting));
        }
    }
    Ok(())
}

/// Whether the process runs with no_new_privs: when its spec asks, at `restricted` (whose
/// check made sure the spec asks), or on every process when the operator forbids escalation.
pub(crate) fn no_new_privileges(spec_process: &Process, config: &Config) -> bool {
    spec_process.no_new_privileges() == Some(true)
        || config.level == Level::Restricted
        || !config.allow_privilege_escalation
}
