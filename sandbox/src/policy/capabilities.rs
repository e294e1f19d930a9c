//! Capabilities: which ones a container may hold, per Pod Security Standards level.
//!
//! moat sees only the OCI spec, never the pod's securityContext. containerd's CRI puts the
//! runtime default set below (Docker's 14) into bounding/effective/permitted of every container
//! whose pod asks for nothing, so a spec holding exactly that set cannot be told apart from one
//! that listed the same capabilities in `add`. The rule is therefore:
//!
//! * every level accepts the runtime default set and any subset of it (dropping is always fine);
//!   under moat these are capabilities of the pod's own user namespace, not of the host;
//! * the default set is capped at both levels to Kubernetes' baseline list: CAP_NET_RAW, which
//!   containerd grants every container, is removed (not refused — it arrives unasked) unless
//!   `allowed_capabilities` lists it. Raw and packet sockets are refused anyway in a pod network
//!   namespace owned by the host's user namespace; ping works through ICMP datagram sockets
//!   (moat sets `net.ipv4.ping_group_range` for the pod);
//! * a capability outside that set is refused unless it is in `allowed_capabilities`
//!   (Kubernetes' baseline list is a subset of the runtime default set, and restricted allows
//!   adding only NET_BIND_SERVICE, which is in it too);
//! * at `restricted`, every set may hold nothing but CAP_NET_BIND_SERVICE (plus
//!   `allowed_capabilities`): Kubernetes' "drop ALL, add back NET_BIND_SERVICE", a row of
//!   `levels::RESTRICTED`.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};
use crate::plan::CapabilityPlan;

/// What containerd (`oci.populateDefaultUnixSpec`) and Docker grant by default.
pub const RUNTIME_DEFAULT: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Capabilities of the runtime default set that no level keeps unless the operator allows
/// them (Kubernetes' baseline level does not list them).
pub const CAPPED: [&str; 1] = ["CAP_NET_RAW"];

/// Every capability the kernel knows: the table is `features::CAPABILITIES`.
pub use crate::features::CAPABILITIES as ALL;

/// Capabilities that act on a namespace or on the host kernel, with what they would
/// administer. Under moat every namespace of a pod but its user namespace belongs to the
/// host's user namespace, and a capability of the pod's user namespace does not reach those
/// (nor anything that needs the host's): granted, they do nothing there, and the shim logs one
/// warning line for them (`docs/security.md`, "Namespaces the pod does not own").
pub const HOST_OWNED: &[(&str, &str)] = &[
    ("CAP_SYS_ADMIN", "the UTS, IPC and mount namespaces (sethostname, mount)"),
    ("CAP_NET_ADMIN", "the network namespace (interfaces, routes, nf_tables)"),
    ("CAP_NET_RAW", "the network namespace (raw and packet sockets)"),
    ("CAP_NET_BROADCAST", "the network namespace"),
    ("CAP_IPC_OWNER", "the IPC namespace"),
    ("CAP_IPC_LOCK", "the host's memory locking limits"),
    ("CAP_SYS_TIME", "the host's clocks (there is no time namespace)"),
    ("CAP_SYS_RESOURCE", "the host's resource limits"),
    ("CAP_CHECKPOINT_RESTORE", "the pid namespace (ns_last_pid)"),
    ("CAP_SYS_BOOT", "the host kernel"),
    ("CAP_SYS_MODULE", "the host kernel"),
    ("CAP_SYS_RAWIO", "the host kernel"),
    ("CAP_SYS_PACCT", "the host kernel"),
    ("CAP_SYS_TTY_CONFIG", "the host kernel"),
    ("CAP_SYSLOG", "the host kernel"),
    ("CAP_AUDIT_CONTROL", "the host kernel"),
    ("CAP_AUDIT_READ", "the host kernel"),
    ("CAP_MAC_ADMIN", "the host kernel"),
    ("CAP_MAC_OVERRIDE", "the host kernel"),
    ("CAP_WAKE_ALARM", "the host kernel"),
    ("CAP_BLOCK_SUSPEND", "the host kernel"),
    ("CAP_BPF", "the host kernel"),
    ("CAP_PERFMON", "the host kernel"),
];

/// The `HOST_OWNED` capabilities `plan` holds (in any of its sets), in `HOST_OWNED` order.
pub fn acting_on_host_owned(plan: &CapabilityPlan) -> Vec<(&'static str, &'static str)> {
    HOST_OWNED
        .iter()
        .filter(|(cap, _)| sets(plan).iter().any(|(_, set)| set.iter().any(|c| c == cap)))
        .copied()
        .collect()
}

pub use crate::features::capability as normalize;

/// The OCI name of an oci-spec capability (`CAP_SYS_ADMIN`).
pub fn oci_name(cap: &oci_spec::runtime::Capability) -> String {
    format!("CAP_{cap}")
}

fn names(set: &Option<Capabilities>) -> BTreeSet<String> {
    set.iter().flatten().map(oci_name).collect()
}

/// The spec's capabilities, as sorted OCI names.
pub fn from_spec(caps: Option<&LinuxCapabilities>) -> CapabilityPlan {
    let Some(c) = caps else { return CapabilityPlan::default() };
    CapabilityPlan {
        bounding: names(c.bounding()).into_iter().collect(),
        effective: names(c.effective()).into_iter().collect(),
        inheritable: names(c.inheritable()).into_iter().collect(),
        permitted: names(c.permitted()).into_iter().collect(),
        ambient: names(c.ambient()).into_iter().collect(),
    }
}

/// The sets of a plan as `(field name, capabilities)`.
pub fn sets(plan: &CapabilityPlan) -> [(&'static str, &Vec<String>); 5] {
    [
        ("bounding", &plan.bounding),
        ("effective", &plan.effective),
        ("inheritable", &plan.inheritable),
        ("permitted", &plan.permitted),
        ("ambient", &plan.ambient),
    ]
}

/// Removes the default capabilities no level keeps (`CAPPED`) from every set, unless
/// `allowed_capabilities` lists them.
pub(crate) fn cap_defaults(plan: &mut CapabilityPlan, config: &Config) {
    let allowed: BTreeSet<String> =
        config.allowed_capabilities.iter().filter_map(|c| normalize(c)).collect();
    let keep = |cap: &String| !CAPPED.contains(&cap.as_str()) || allowed.contains(cap);
    for set in [
        &mut plan.bounding,
        &mut plan.effective,
        &mut plan.inheritable,
        &mut plan.permitted,
        &mut plan.ambient,
    ] {
        set.retain(keep);
    }
}

/// Refuses any capability beyond what the level and `allowed_capabilities` grant.
pub(crate) fn check(plan: &CapabilityPlan, config: &Config, who: &Subject) -> Result<(), Refusal> {
    let extra: BTreeSet<String> =
        config.allowed_capabilities.iter().filter_map(|c| normalize(c)).collect();
    for (set, caps) in sets(plan) {
        for cap in caps {
            let field = format!("process.capabilities.{set}[{cap}]");
            let in_default = RUNTIME_DEFAULT.contains(&cap.as_str());
            if !in_default && !extra.contains(cap) {
                return Err(who.refuse(
                    field,
                    Rule::Capability,
                    format!(
                        "{cap} is beyond the runtime default capabilities allowed at level {}",
                        config.level
                    ),
                    format!("allowed_capabilities = [\"{cap}\"]"),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an exec asking for a capability its container does not hold, set by set.
pub(crate) fn check_within(
    exec: &CapabilityPlan,
    container: &CapabilityPlan,
    who: &Subject,
) -> Result<(), Refusal> {
    for ((set, asked), (_, held)) in sets(exec).into_iter().zip(sets(container)) {
        if let Some(cap) = asked.iter().find(|c| !held.contains(c)) {
            return Err(who.refuse_always(
                format!("process.capabilities.{set}[{cap}]"),
                Rule::Capability,
                format!("the exec asks for {cap}, which its container does not hold in {set}"),
                "an exec can never hold more than its container; change the container instead",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("net_admin").as_deref(), Some("CAP_NET_ADMIN"));
        assert_eq!(normalize("CAP_SYS_ADMIN").as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(normalize("CAP_FLY"), None);
        assert_eq!(oci_name(&Capability::NetBindService), "CAP_NET_BIND_SERVICE");
        assert_eq!(oci_name(&Capability::CheckpointRestore), "CAP_CHECKPOINT_RESTORE");
        for cap in RUNTIME_DEFAULT {
            assert!(ALL.contains(&cap), "{cap}");
        }
    }

    #[test]
    fn net_raw_from_the_default_set_is_capped_unless_allowed() {
        let full: Vec<String> = RUNTIME_DEFAULT.iter().map(|c| c.to_string()).collect();
        let mut plan = CapabilityPlan {
            bounding: full.clone(),
            effective: full.clone(),
            inheritable: vec![],
            permitted: full.clone(),
            ambient: vec![],
        };
        cap_defaults(&mut plan, &Config::default());
        for set in [&plan.bounding, &plan.effective, &plan.permitted] {
            assert!(!set.contains(&"CAP_NET_RAW".to_string()), "{set:?}");
            assert_eq!(set.len(), 13);
        }
        let mut plan = CapabilityPlan { bounding: full.clone(), ..Default::default() };
        let config = Config { allowed_capabilities: vec!["NET_RAW".into()], ..Default::default() };
        cap_defaults(&mut plan, &config);
        assert!(plan.bounding.contains(&"CAP_NET_RAW".to_string()));
    }

    #[test]
    fn host_owned_capabilities_are_named_and_found_in_any_set() {
        for (cap, _) in HOST_OWNED {
            assert!(ALL.contains(cap), "{cap}");
        }
        let plan = CapabilityPlan {
            bounding: vec!["CAP_CHOWN".into(), "CAP_NET_ADMIN".into()],
            ambient: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        };
        let found: Vec<&str> = acting_on_host_owned(&plan).into_iter().map(|(c, _)| c).collect();
        assert_eq!(found, ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
        let mut default = CapabilityPlan {
            bounding: RUNTIME_DEFAULT.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        cap_defaults(&mut default, &Config::default());
        assert!(acting_on_host_owned(&default).is_empty(), "the default set warns of nothing");
    }

    #[test]
    fn oci_names_round_trip_through_the_spec_types() {
        // Every name in ALL must be one oci-spec can parse, and print back identically.
        for name in ALL {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.into())).expect(name);
            assert_eq!(oci_name(&cap), name);
        }
    }
}
