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

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};
use crate::features::{namespace_type, NAMESPACE_KINDS};
use crate::plan::{NamespaceAction, NamespaceKind, NamespacePlan};

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
