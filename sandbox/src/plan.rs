//! The confinement plan: every decision about one container (or one exec) made up front.
//!
//! `policy` turns an OCI spec plus the operator's config into a plan; it is pure and never
//! touches the system. `spawn` consumes a plan and builds the process it describes. The plan
//! is serialised to JSON and sent to the single-threaded helper process over a socketpair, so
//! it holds only plain data (no fds: those travel beside it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything needed to build one container's init process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// The container's id (containerd's task id), for messages.
    pub container_id: String,
    /// The pod (sandbox) id the container belongs to.
    pub pod_id: String,
    /// The directory that becomes the container's `/` (normally `<bundle>/rootfs`).
    pub rootfs: PathBuf,
    /// containerd's rootfs mounts, mounted onto `rootfs` inside the container's private mount
    /// namespace (never in the host's). Empty when `rootfs` is already populated.
    pub rootfs_mounts: Vec<RootfsMount>,
    /// Remount `/` read-only after all mounts are in place.
    pub readonly_rootfs: bool,
    /// Namespaces other than user and mount: created or joined. Mount is always created.
    pub namespaces: Vec<NamespacePlan>,
    /// The pod's user namespace.
    pub user: UserNamespacePlan,
    /// `hostname` of the spec, set in a new UTS namespace.
    pub hostname: Option<String>,
    /// The spec's mounts (after policy), applied in order under `rootfs`.
    pub mounts: Vec<MountPlan>,
    /// Paths masked (a file: bind of /dev/null; a directory: read-only empty tmpfs).
    pub masked_paths: Vec<PathBuf>,
    /// Paths remounted read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Namespaced sysctls written under /proc/sys before the process starts.
    pub sysctls: BTreeMap<String, String>,
    /// `cgroup.procs` files the init is written to before it unshares its cgroup namespace.
    /// Filled by the caller after it created the container's cgroup; empty means none.
    pub cgroup_procs: Vec<PathBuf>,
    /// The process to run.
    pub process: ProcessPlan,
}

/// Everything needed to run one more process inside a running container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecPlan {
    pub container_id: String,
    pub exec_id: String,
    /// Host pid of the container's init, for messages and policy only: its namespaces (all of
    /// them, user included) are joined through its pidfd (`Launcher::exec`), never by this
    /// number, which another process may have taken since.
    pub init_pid: i32,
    /// `cgroup.procs` files the exec is written to (the container's cgroup).
    pub cgroup_procs: Vec<PathBuf>,
    /// The process to run; policy has already checked it asks no more than its container.
    pub process: ProcessPlan,
}

/// One mount containerd hands over for the rootfs (`CreateTaskRequest.rootfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsMount {
    /// `overlay`, `bind`, ...
    pub fstype: String,
    pub source: String,
    /// Options as containerd gives them (`lowerdir=...`, `upperdir=...`, `ro`, `rbind`...).
    pub options: Vec<String>,
}

/// The namespaces moat handles besides user and mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NamespaceKind {
    Pid,
    Network,
    Ipc,
    Uts,
    Cgroup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceAction {
    /// A new namespace of this kind.
    Create,
    /// Join the namespace at this host path (`/var/run/netns/...`, `/proc/<pid>/ns/ipc`).
    Join(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePlan {
    pub kind: NamespaceKind,
    pub action: NamespaceAction,
}

/// One line of a uid_map / gid_map: `container_id host_id size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserNamespaceAction {
    /// Create the pod's user namespace with the mappings below (the pod's first container).
    Create,
    /// Join the pod's user namespace; its fd is passed to `Launcher::create` by the caller.
    JoinPod,
    /// Join the user namespace at this path (containerd 2.x with `hostUsers: false`).
    JoinPath(PathBuf),
}

/// The pod's user namespace. The mappings are always known (also when joining), because
/// idmapped mounts and the ownership of the writable layer depend on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespacePlan {
    pub action: UserNamespaceAction,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
}

impl UserNamespacePlan {
    /// Host uid that container uid `id` maps to, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        map_id(&self.uid_mappings, id)
    }
    /// Host gid that container gid `id` maps to, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        map_id(&self.gid_mappings, id)
    }
}

fn map_id(mappings: &[IdMapping], id: u32) -> Option<u32> {
    mappings.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id)?;
        (offset < m.size).then(|| m.host_id + offset)
    })
}

/// What kind of filesystem a spec mount is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind mount of a host path; `idmap` maps its ownership into the pod's user namespace;
    /// `from_host`: a slave of the host's mount (HostToContainer), so mounts the host makes
    /// below `source` later appear in the container (nothing ever propagates back).
    Bind {
        source: PathBuf,
        recursive: bool,
        idmap: bool,
        #[serde(default)]
        from_host: bool,
    },
    Tmpfs,
    Proc,
    Sysfs,
    Devpts,
    Mqueue,
    /// A read-only view of the container's own cgroup.
    Cgroup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub kind: MountKind,
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    /// Filesystem data (`size=65536k`, `mode=755`, `newinstance,ptmxmode=0666`, ...).
    pub data: Option<String>,
}

/// The process and every privilege it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Absolute path inside the container; verified to resolve inside the root before exec.
    pub cwd: PathBuf,
    /// Container uid/gid (inside the user namespace).
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    /// Allocate a pty inside the container and hand its master back.
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub rlimits: Vec<RlimitPlan>,
    pub capabilities: CapabilityPlan,
    /// Set no_new_privs (policy decides: `policy::levels::no_new_privileges`). Without it the
    /// seccomp filters are loaded before the uid change, and the root is not `nosuid`.
    pub no_new_privileges: bool,
    /// Filters loaded in order just before exec (baseline first); each can only narrow.
    pub seccomp: Vec<SeccompPlan>,
    /// Requested oom_score_adj; clamped (never fatal) when the host forbids lowering it.
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitPlan {
    /// `RLIMIT_NOFILE`, ...
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RlimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

/// Capability names as in the OCI spec (`CAP_CHOWN`), per set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityPlan {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

/// One seccomp filter, in a form the helper compiles with libseccomp just before exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompPlan {
    /// Where the filter came from (`baseline`, `RuntimeDefault`, `localhost/x.json`), for errors.
    pub name: String,
    pub default_action: SeccompAction,
    /// Architectures besides the native one (`SCMP_ARCH_X86`, ...).
    pub architectures: Vec<String>,
    pub rules: Vec<SeccompRule>,
    /// `SECCOMP_FILTER_FLAG_*` names from the spec.
    pub flags: Vec<String>,
    /// The same filter already compiled to a BPF program (`seccomp::precompile`), so the
    /// process loads it without running libseccomp's compiler on its way to exec. `None`: the
    /// helper compiles `rules` itself.
    #[serde(default)]
    pub bpf: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompRule {
    pub names: Vec<String>,
    pub action: SeccompAction,
    /// All comparisons must hold for the rule to match.
    pub args: Vec<SeccompArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompAction {
    Allow,
    /// Fail the syscall with this errno.
    Errno(u32),
    /// Fail the syscall with this errno, answered by the shim's audit supervisor through
    /// seccomp user notification, which records the attempt (`crate::audit`).
    NotifyErrno(u32),
    KillThread,
    KillProcess,
    Trap,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: SeccompOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompOp {
    NotEqual,
    LessThan,
    LessOrEqual,
    EqualTo,
    GreaterOrEqual,
    GreaterThan,
    MaskedEqual,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_follow_the_mapping() {
        let plan = UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: vec![IdMapping { container_id: 0, host_id: 100_000, size: 65_536 }],
            gid_mappings: vec![IdMapping { container_id: 0, host_id: 200_000, size: 10 }],
        };
        assert_eq!(plan.host_uid(0), Some(100_000));
        assert_eq!(plan.host_uid(33), Some(100_033));
        assert_eq!(plan.host_uid(65_536), None);
        assert_eq!(plan.host_gid(9), Some(200_009));
        assert_eq!(plan.host_gid(10), None);
    }
}
