//! Why a pod could not create, exec into or remove a container. Each variant keeps its
//! source error and the context (container, pod, path) its message names; the messages are
//! the ones containerd and the tenant have always seen.

use nix::errno::Errno;

use crate::cgroups::CgroupError;
use crate::egress::EgressError;
use crate::policy::Refusal;
use crate::spawn::SpawnError;
use crate::userns::pool::PoolError;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The policy refused the container or exec; the message names field, rule and config key.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// containerd 2.x handed over a later container with other mappings than its sandbox's.
    #[error(
        "moat refused container {container} of pod {pod}: linux.uidMappings, \
         linux.gidMappings: they differ from the mappings of the pod's sandbox"
    )]
    MappingsDiffer { container: String, pod: String },
    /// A container that is not the sandbox, in a shim that holds no sandbox.
    #[error("container {container}: its pod {pod} has no sandbox in this shim")]
    NoSandbox { container: String, pod: String },
    /// A namespace path of the container names the pod sandbox's process, which is gone.
    #[error(
        "container {container}: {path} names the pod sandbox's process (pid {pid}), which has \
         exited (that pid may belong to another process now): {errno}"
    )]
    SandboxGone { container: String, path: std::path::PathBuf, pid: i32, errno: Errno },
    /// The ID pool (opening it, taking a range for a pod).
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// The ID pool, about one pod's range (claiming or releasing it).
    #[error("pod {pod}: {source}")]
    PodRange { pod: String, source: PoolError },
    /// The container names a cgroup and the machine has no usable hierarchy.
    #[error(
        "container {container}: its cgroup {path} cannot be created: {cause}; moat does not \
         run a container without its cgroup limits"
    )]
    NoCgroupLayout { container: String, path: String, cause: String },
    #[error("container {container}: {source}")]
    Cgroup { container: String, source: CgroupError },
    #[error("pod {pod}: {source}; the pod does not start without it")]
    Egress { pod: String, source: EgressError },
    /// Building or starting the process (the message names container, exec and step).
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    /// The helper binary could not be sealed.
    #[error("preparing the sandbox helper: {0}")]
    Helper(SpawnError),
}
