//! The shim's error type and how each kind reaches containerd as a ttrpc status code.
//!
//! containerd turns NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION and INVALID_ARGUMENT into
//! its own errdefs, which CRI relies on (for example Kill on an exited process must be
//! NOT_FOUND), so every variant maps explicitly.

use containerd_shim_protos::ttrpc::{self, Code};
use moat_sandbox::cgroups::CgroupError;
use moat_sandbox::pod::PodError;
use moat_sandbox::spawn::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    /// The policy refused the container or exec; the message names field, rule and config key.
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Sandbox(String),
    /// The pod (the sandbox side) refused or failed a create, exec or removal.
    #[error(transparent)]
    Pod(#[from] PodError),
    /// A blocking task of the shim did not complete (it panicked or was cancelled).
    #[error("{context}: {source}")]
    Task { context: String, source: tokio::task::JoinError },
    /// A verb on a container's cgroup (kill all, pids, stats, update, pause, resume).
    #[error("{context}: {source}")]
    Cgroup { context: String, source: CgroupError },
    /// Starting a created process (the word to exec).
    #[error("{context}: {source}")]
    Spawn { context: String, source: Box<SpawnError> },
    /// Signalling a process through its pidfd.
    #[error("{context}: {errno}")]
    Signal { context: String, errno: nix::errno::Errno },
}

impl ShimError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShimError::Io { context: context.into(), source }
    }

    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Refused(_) => Code::PERMISSION_DENIED,
            ShimError::Io { .. } | ShimError::Start(_) | ShimError::Sandbox(_) => Code::UNKNOWN,
            ShimError::Pod(e) => pod_code(e),
            ShimError::Task { .. }
            | ShimError::Cgroup { .. }
            | ShimError::Spawn { .. }
            | ShimError::Signal { .. } => Code::UNKNOWN,
        }
    }
}

/// A refusal is PERMISSION_DENIED (as `Refused`); a container whose pod has no (live) sandbox
/// is FAILED_PRECONDITION; what failed on the node is UNKNOWN.
fn pod_code(e: &PodError) -> Code {
    match e {
        PodError::Refused(_) | PodError::MappingsDiffer { .. } => Code::PERMISSION_DENIED,
        PodError::NoSandbox { .. } | PodError::SandboxGone { .. } => Code::FAILED_PRECONDITION,
        PodError::Pool(_)
        | PodError::PodRange { .. }
        | PodError::NoCgroupLayout { .. }
        | PodError::Cgroup { .. }
        | PodError::Egress { .. }
        | PodError::Spawn(_)
        | PodError::Helper(_) => Code::UNKNOWN,
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::error::get_rpc_status(e.code(), e.to_string())
    }
}

impl From<ShimError> for containerd_shim::Error {
    fn from(e: ShimError) -> Self {
        containerd_shim::Error::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reaches_containerd_with_its_code() {
        let cases = [
            (ShimError::NotFound("process already finished".into()), Code::NOT_FOUND),
            (ShimError::AlreadyExists("container c1".into()), Code::ALREADY_EXISTS),
            (ShimError::FailedPrecondition("running".into()), Code::FAILED_PRECONDITION),
            (ShimError::Refused("refused".into()), Code::PERMISSION_DENIED),
            (ShimError::Unimplemented("checkpoint".into()), Code::UNIMPLEMENTED),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(status) => {
                    assert_eq!(status.code(), code);
                    assert_eq!(status.message(), msg);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn pod_errors_keep_their_codes_and_messages() {
        let pod = |e: PodError| ShimError::from(e);
        let cases = [
            (
                pod(PodError::MappingsDiffer { container: "c2".into(), pod: "p1".into() }),
                Code::PERMISSION_DENIED,
                "moat refused container c2 of pod p1: linux.uidMappings, linux.gidMappings: \
                 they differ from the mappings of the pod's sandbox",
            ),
            (
                pod(PodError::NoSandbox { container: "c2".into(), pod: "p1".into() }),
                Code::FAILED_PRECONDITION,
                "container c2: its pod p1 has no sandbox in this shim",
            ),
            (
                pod(PodError::NoCgroupLayout {
                    container: "c2".into(),
                    path: "/k8s.io/c2".into(),
                    cause: "no cgroup filesystem found in /proc/self/mountinfo".into(),
                }),
                Code::UNKNOWN,
                "container c2: its cgroup /k8s.io/c2 cannot be created: no cgroup filesystem \
                 found in /proc/self/mountinfo; moat does not run a container without its \
                 cgroup limits",
            ),
        ];
        for (err, code, msg) in cases {
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(status) => {
                    assert_eq!(status.code(), code);
                    assert_eq!(status.message(), msg);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
