//! `linux.sysctl`: only namespaced sysctls, only safe ones unless the operator allows more.
//!
//! Two checks, in order:
//! 1. built in, cannot be overridden: the sysctl must belong to a namespace the container does
//!    not share with the host (`net.*` needs its own network namespace; `kernel.shm*`,
//!    `kernel.msg*`, `kernel.sem`, `fs.mqueue.*` its own IPC namespace). Anything else
//!    (`kernel.panic`, `vm.*`, ...) would change the whole machine.
//! 2. it must be in Kubernetes' safe set or in `allowed_sysctls` (a trailing `*` matches a
//!    prefix).
//!
//! The pod's sandbox container additionally gets `net.ipv4.ip_unprivileged_port_start=0` and
//! `net.ipv4.ping_group_range=0 2147483647` (unless its spec sets them): the pod's network
//! namespace belongs to the host's user namespace, so container root holds no capability there;
//! these let it bind port 80 and ping, as it could under runc. Values are as a spec writes
//! them: ping_group_range names container gids (the spawn side maps them to the pod's host
//! range before writing).

use std::collections::BTreeMap;

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};

/// Kubernetes' safe sysctls (always allowed when namespaced).
pub const SAFE: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// What moat writes in every pod's own network namespace (via its sandbox container).
pub const SANDBOX_DEFAULTS: [(&str, &str); 2] =
    [("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ping_group_range", "0 2147483647")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Network,
    Ipc,
}

fn owner(name: &str) -> Option<Owner> {
    if name.starts_with("net.") {
        return Some(Owner::Network);
    }
    let ipc = name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.");
    ipc.then_some(Owner::Ipc)
}

fn allowed(name: &str, config: &Config) -> bool {
    SAFE.contains(&name)
        || config.allowed_sysctls.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
}

/// `net/ipv4/x` -> `net.ipv4.x`.
fn normalize(name: &str) -> String {
    name.trim().replace('/', ".")
}

pub(crate) fn plan<'a>(
    spec: impl IntoIterator<Item = (&'a String, &'a String)>,
    config: &Config,
    host_network: bool,
    host_ipc: bool,
    is_sandbox: bool,
    who: &Subject,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (raw, value) in spec {
        let name = normalize(raw);
        let field = format!("linux.sysctl[{raw}]");
        let shared = match owner(&name) {
            None => {
                return Err(who.refuse_always(
                    field,
                    Rule::Sysctl,
                    format!("sysctl {name} is not namespaced: setting it would change the host"),
                    "no setting allows it",
                ))
            }
            Some(Owner::Network) => host_network.then_some("network"),
            Some(Owner::Ipc) => host_ipc.then_some("IPC"),
        };
        if let Some(ns) = shared {
            return Err(who.refuse_always(
                field,
                Rule::Sysctl,
                format!("sysctl {name} would change the host: the container shares the host {ns} namespace"),
                "no setting allows it",
            ));
        }
        if !allowed(&name, config) {
            return Err(who.refuse(
                field,
                Rule::Sysctl,
                format!("sysctl {name} is not in the safe set allowed at level {}", config.level),
                format!("allowed_sysctls = [\"{name}\"]"),
            ));
        }
        if value.contains('\n') {
            return Err(who.refuse_always(
                field,
                Rule::InvalidSpec,
                format!("the value of sysctl {name} contains a newline"),
                "fix the container's spec",
            ));
        }
        out.insert(name, value.clone());
    }
    if is_sandbox && !host_network {
        for (name, value) in SANDBOX_DEFAULTS {
            out.entry(name.to_string()).or_insert_with(|| value.to_string());
        }
    }
    Ok(out)
}
