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
//! * a path of a kind the pod's sandbox shares with the host (`PodContext::pod_shares_host`):
//!   containerd 1.6 joins a hostIPC pod's containers to the sandbox's IPC namespace by path,
//!   which is the host's; planned (and checked) as sharing the host's.
//! * mount: always created. user: always the pod's (`PodContext::user`); a path in the spec's
//!   user entry is checked like the others.
//! * time: not supported (refused when present).
//!
//! A path to join must be the pod's own namespace (`check_path`): `/proc/<pid>/ns/<kind>` of a
//! process (pid 2 or above, written plainly, the entry's own kind), or, for network only, a
//! file directly in a netns directory where containerd's CRI keeps the pod's CNI network
//! namespace (`/var/run/netns`, `/run/netns`, or `<dir>/netns` for each of `cri_state_dirs`,
//! with `netns_mounts_under_state_dir`). Which process: the pod's sandbox, which only the
//! shim knows (`check_owner`, with the sandbox's pid; a sandbox joins no process). Everything
//! else is refused (rule `namespace-path`, field `linux.namespaces[i].path`), and at join time
//! `spawn` refuses a namespace that is the host's (the same device and inode as the runtime's
//! own or `/proc/1/ns/<kind>`): a netns file can be a bind mount of the host's.
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

/// Directories whose files are network namespaces containerd's CRI made for pods.
pub const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

const PATH_REMEDY: &str = "moat joins only the pod's own namespaces: /proc/<pid of the pod's \
                           sandbox>/ns/<kind>, or a network namespace in /var/run/netns, /run/netns or \
                           <cri_state_dirs>/netns";

/// Whose namespace an accepted path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathOwner {
    /// `/proc/<pid>/ns/<kind>`.
    Process(i32),
    /// A file in one of `NETNS_DIRS`.
    NetnsFile,
}

/// The `/proc/<pid>/ns/` name of a namespace type (`None`: a kind that is never joined).
fn proc_name(typ: LinuxNamespaceType) -> Option<&'static str> {
    match typ {
        LinuxNamespaceType::Network => Some("net"),
        LinuxNamespaceType::Pid => Some("pid"),
        LinuxNamespaceType::Ipc => Some("ipc"),
        LinuxNamespaceType::Uts => Some("uts"),
        LinuxNamespaceType::Cgroup => Some("cgroup"),
        LinuxNamespaceType::User => Some("user"),
        _ => None,
    }
}

fn path_refusal(index: usize, who: &Subject, reason: String) -> Refusal {
    who.refuse_always(
        format!("linux.namespaces[{index}].path"),
        Rule::NamespacePath,
        reason,
        PATH_REMEDY,
    )
}

/// Checks the form of `linux.namespaces[index].path` (see the module docs). Compared as
/// text, exactly: no `.`, `..`, doubled or trailing slashes, no `self`.
pub(crate) fn check_path(
    index: usize,
    ns: &LinuxNamespace,
    config: &Config,
    who: &Subject,
) -> Result<Option<PathOwner>, Refusal> {
    let Some(path) = ns.path() else { return Ok(None) };
    let text = path.to_str().unwrap_or_default();
    let kind = proc_name(ns.typ());
    let refuse =
        |why: &str| Err(path_refusal(index, who, format!("joining {}: {why}", path.display())));
    if let Some(rest) = text.strip_prefix("/proc/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let [pid, "ns", name] = parts.as_slice() else {
            return refuse("not a /proc/<pid>/ns/<kind> path");
        };
        let Some(pid_n) = pid.parse::<i32>().ok().filter(|n| n.to_string() == *pid) else {
            return refuse("the pid must be a plain number");
        };
        if Some(*name) != kind {
            return refuse(&format!("it is not a {} namespace", spec_name(ns.typ())));
        }
        if pid_n < 2 {
            return refuse("that is the host's namespace (pid 1 is the host's init)");
        }
        return Ok(Some(PathOwner::Process(pid_n)));
    }
    if ns.typ() == LinuxNamespaceType::Network {
        let under_state = config.cri_state_dirs.iter().map(|d| d.join("netns"));
        let dirs: Vec<String> = NETNS_DIRS
            .iter()
            .map(|d| d.to_string())
            .chain(under_state.map(|d| d.to_string_lossy().into_owned()))
            .collect();
        for dir in &dirs {
            let name = text.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix('/'));
            if let Some(name) = name {
                if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                    return refuse("not a file directly in the netns directory");
                }
                return Ok(Some(PathOwner::NetnsFile));
            }
        }
    }
    refuse("not a namespace of the pod")
}

/// The `/proc/<pid>` paths of `spec_namespaces` must name the pod's sandbox (`sandbox_pid`);
/// a sandbox (`None`) joins no process's namespaces.
pub(crate) fn check_owner(
    spec_namespaces: &[LinuxNamespace],
    sandbox_pid: Option<i32>,
    config: &Config,
    who: &Subject,
) -> Result<(), Refusal> {
    for (index, ns) in spec_namespaces.iter().enumerate() {
        let Some(PathOwner::Process(pid)) = check_path(index, ns, config, who)? else { continue };
        if sandbox_pid != Some(pid) {
            let path = ns.path().as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            let whose = match sandbox_pid {
                Some(sandbox) => format!("the pod's sandbox is pid {sandbox}"),
                None => "the pod's sandbox creates its namespaces, it joins no process's".into(),
            };
            return Err(path_refusal(
                index,
                who,
                format!("joining {path}: pid {pid} is not the pod's sandbox ({whose})"),
            ));
        }
    }
    Ok(())
}

/// `pod_shares_host`: the kinds the pod's sandbox shares with the host (`PodContext`); a path
/// entry of such a kind names the sandbox's namespace, which is the host's, and is planned as
/// sharing the host's (checked against the config like an absent entry).
pub(crate) fn plan(
    spec_namespaces: &[LinuxNamespace],
    config: &Config,
    pod_shares_host: &[NamespaceKind],
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
    for (index, ns) in spec_namespaces.iter().enumerate() {
        check_path(index, ns, config, who)?;
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
        let entry =
            find(typ).filter(|ns| !(ns.path().is_some() && pod_shares_host.contains(&kind)));
        let action = match entry {
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
