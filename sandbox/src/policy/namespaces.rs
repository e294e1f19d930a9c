//! `linux.namespaces` -> `NamespacePlan`s.
//!
//! In an OCI spec a namespace kind that is ABSENT from `linux.namespaces` means "share the
//! runtime's", i.e. the host's: that is how CRI expresses hostNetwork/hostPID/hostIPC. An entry
//! with a path joins that namespace (CRI points a pod's containers at the pause container's
//! namespaces and the sandbox at the CNI netns); an entry without a path creates one.
//!
//! * network, pid, ipc absent: refused unless `allow_host_network` / `allow_host_pid` /
//!   `allow_host_ipc`.
//! * uts absent: CRI drops uts together with network for hostNetwork pods, so it follows
//!   `allow_host_network`; the plan then carries no hostname (it would rename the host).
//! * cgroup absent: moat creates one anyway (the container sees only its own cgroup).
//! * mount: always created. user: always the pod's (`PodContext::user`), whatever the spec says.
//! * time: not supported (refused when present).
//!
//! The kinds planned, in order, are `features::NAMESPACE_KINDS` (what `-info` reports).
//!
//! A user namespace handed over by containerd 2.x (`hostUsers: false`: kubelet chose the
//! mappings) is checked by `check_user_mappings`: no host ID below 65536 (host root and the
//! host's own users; kubelet never hands those out), no overlap with moat's ID pool (moat hands
//! those IDs to other pods), no overlap with the range of another live pod.

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};
use crate::features::{namespace_type, NAMESPACE_KINDS};
use crate::plan::{NamespaceAction, NamespaceKind, NamespacePlan, UserNamespacePlan};
use crate::userns::pool::IdRange;

/// Host IDs below this are the host's own users and groups; kubelet never allocates them
/// (its first range starts at 65536).
pub const MIN_HANDED_OVER_HOST_ID: u32 = 65_536;

/// Checks the mappings of a user namespace containerd handed over (see the module docs)
/// against moat's pool and the ranges of live pods (`live`: pod id and range; the pod's own
/// entries are skipped).
pub(crate) fn check_user_mappings(
    user: &UserNamespacePlan,
    config: &Config,
    pod_id: &str,
    live: &[(String, IdRange)],
    who: &Subject,
) -> Result<(), Refusal> {
    let remedy = "the pod's user namespace comes from kubelet (hostUsers: false); give kubelet a \
                  range of its own (the `kubelet` entry of /etc/subuid and /etc/subgid) apart \
                  from moat's pool";
    let u = &config.userns;
    let pool_end = u64::from(u.base) + u64::from(u.size) * u64::from(u.count);
    for (name, mappings) in
        [("uidMappings", &user.uid_mappings), ("gidMappings", &user.gid_mappings)]
    {
        if mappings.is_empty() {
            return Err(who.refuse_always(
                format!("linux.{name}"),
                Rule::IdMapping,
                "the user namespace has no mappings",
                remedy,
            ));
        }
        for (i, m) in mappings.iter().enumerate() {
            let field = format!("linux.{name}[{i}]");
            let end = u64::from(m.host_id) + u64::from(m.size);
            let refuse =
                |reason: String| Err(who.refuse_always(&field, Rule::IdMapping, reason, remedy));
            if m.size == 0 || end > u64::from(u32::MAX) {
                return refuse(format!("host IDs {}..{end} are not a valid range", m.host_id));
            }
            if m.host_id == 0 {
                return refuse(format!(
                    "container ID {} would be host root (host ID 0)",
                    m.container_id
                ));
            }
            if m.host_id < MIN_HANDED_OVER_HOST_ID {
                return refuse(format!(
                    "host IDs {}..{end} reach below {MIN_HANDED_OVER_HOST_ID}, the host's own \
                     users and groups",
                    m.host_id
                ));
            }
            if u64::from(m.host_id) < pool_end && u64::from(u.base) < end {
                return Err(who.refuse_always(
                    &field,
                    Rule::IdMapping,
                    format!(
                        "host IDs {}..{end} overlap moat's ID pool {}..{pool_end} (userns.base, \
                         userns.size, userns.count), whose ranges moat gives to other pods",
                        m.host_id, u.base
                    ),
                    remedy,
                ));
            }
            let range = IdRange { host_base: m.host_id, size: m.size };
            if let Some((other, r)) =
                live.iter().find(|(other, r)| other != pod_id && r.overlaps(&range))
            {
                return refuse(format!(
                    "host IDs {}..{end} overlap the host IDs {}..{} of pod {other}, which is alive",
                    m.host_id,
                    r.host_base,
                    u64::from(r.host_base) + u64::from(r.size)
                ));
            }
        }
    }
    Ok(())
}

/// The namespaces of the plan, and which host namespaces are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespaces {
    pub plans: Vec<NamespacePlan>,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_uts: bool,
}

/// The name a spec gives `typ` ("network": oci-spec's `Display` says "net").
fn spec_name(typ: LinuxNamespaceType) -> String {
    match serde_json::to_value(typ) {
        Ok(serde_json::Value::String(name)) => name,
        _ => typ.to_string(),
    }
}

pub(crate) fn plan(
    spec_namespaces: &[LinuxNamespace],
    config: &Config,
    who: &Subject,
) -> Result<Namespaces, Refusal> {
    let find = |typ: LinuxNamespaceType| spec_namespaces.iter().find(|n| n.typ() == typ);
    if find(LinuxNamespaceType::Time).is_some() {
        return Err(who.refuse_always(
            "linux.namespaces[time]",
            Rule::InvalidSpec,
            "time namespaces are not supported by moat",
            "remove the time namespace from the spec",
        ));
    }
    if let Some(path) = find(LinuxNamespaceType::Mount).and_then(|n| n.path().as_ref()) {
        return Err(who.refuse_always(
            "linux.namespaces[mount]",
            Rule::InvalidSpec,
            format!("joining the mount namespace {} is not supported", path.display()),
            "moat always gives a container its own mount namespace",
        ));
    }
    let mut out = Namespaces {
        plans: Vec::new(),
        host_network: false,
        host_pid: false,
        host_ipc: false,
        host_uts: false,
    };
    for kind in NAMESPACE_KINDS {
        let typ = namespace_type(kind);
        let action = match find(typ) {
            Some(ns) => match ns.path() {
                Some(path) => NamespaceAction::Join(path.clone()),
                None => NamespaceAction::Create,
            },
            None => {
                let (allowed, setting, what) = match kind {
                    NamespaceKind::Network => {
                        (config.allow_host_network, "allow_host_network", "network")
                    }
                    NamespaceKind::Pid => (config.allow_host_pid, "allow_host_pid", "pid"),
                    NamespaceKind::Ipc => (config.allow_host_ipc, "allow_host_ipc", "IPC"),
                    NamespaceKind::Uts => (config.allow_host_network, "allow_host_network", "UTS"),
                    NamespaceKind::Cgroup => {
                        out.plans.push(NamespacePlan { kind, action: NamespaceAction::Create });
                        continue;
                    }
                };
                if !allowed {
                    let rule = match kind {
                        NamespaceKind::Pid => Rule::HostPid,
                        NamespaceKind::Ipc => Rule::HostIpc,
                        _ => Rule::HostNetwork,
                    };
                    let name = spec_name(typ);
                    return Err(who.refuse(
                        format!("linux.namespaces[{name}]"),
                        rule,
                        format!(
                            "the host {what} namespace is not allowed at level {} (the spec has \
                             no {name} namespace entry, which shares the host's)",
                            config.level,
                        ),
                        format!("{setting} = true"),
                    ));
                }
                match kind {
                    NamespaceKind::Network => out.host_network = true,
                    NamespaceKind::Pid => out.host_pid = true,
                    NamespaceKind::Ipc => out.host_ipc = true,
                    _ => out.host_uts = true,
                }
                continue;
            }
        };
        out.plans.push(NamespacePlan { kind, action });
    }
    Ok(out)
}
