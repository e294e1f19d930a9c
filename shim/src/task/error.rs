//! The shim's error type and how each kind reaches containerd as a ttrpc status code.
//!
//! containerd turns NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION and INVALID_ARGUMENT into
//! its own errdefs, which CRI relies on (for example Kill on an exited process must be
//! NOT_FOUND), so every variant maps explicitly.

use containerd_shim_protos::ttrpc::{self, Code};
use moat_sandbox::cgroups::CgroupError;
use moat_sandbox::pod::PodError;
use moat_sandbox::spawn::SpawnError;

use super::bundle_state::BundleStateError;
use super::io_owner::IoOwnerError;
use super::metrics::MetricsError;
use super::stdio::StdioError;
use crate::config::ConfigLoadError;

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
    /// Subscribing to the exits containerd-shim's reaper sees.
    #[error("subscribing to reaped exits: {0}")]
    ExitSubscription(#[source] containerd_shim::Error),
    /// A process's stdio fifos, pipes and pty.
    #[error(transparent)]
    Stdio(#[from] StdioError),
    /// The bundle's `moat-state.json`.
    #[error(transparent)]
    BundleState(#[from] BundleStateError),
    /// The stdio owner (`IoUid`/`IoGid`) of the task options.
    #[error(transparent)]
    IoOwner(#[from] IoOwnerError),
    /// The pod's moat config does not read or parse (the pod is refused, naming the file).
    #[error(transparent)]
    Config(#[from] ConfigLoadError),
    /// Packing a container's cgroup stats for Stats.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

impl ShimError {
    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::ExitSubscription(_) => Code::UNKNOWN,
            ShimError::Pod(e) => pod_code(e),
            ShimError::Task { .. }
            | ShimError::Cgroup { .. }
            | ShimError::Spawn { .. }
            | ShimError::Signal { .. } => Code::UNKNOWN,
            ShimError::Stdio(e) => match e {
                StdioError::NoTerminal => Code::FAILED_PRECONDITION,
                StdioError::Pipe { .. }
                | StdioError::OpenFifoReader { .. }
                | StdioError::OpenFifo { .. }
                | StdioError::OpenFile { .. }
                | StdioError::Fcntl { .. }
                | StdioError::DupPty(_)
                | StdioError::NoPty { .. }
                | StdioError::Thread { .. }
                | StdioError::Resize(_) => Code::UNKNOWN,
            },
            ShimError::BundleState(e) => match e {
                BundleStateError::Corrupt { .. } => Code::INVALID_ARGUMENT,
                BundleStateError::Encode { .. }
                | BundleStateError::Write { .. }
                | BundleStateError::Rename { .. }
                | BundleStateError::Read { .. } => Code::UNKNOWN,
            },
            ShimError::IoOwner(e) => match e {
                IoOwnerError::Options { .. } | IoOwnerError::NotThePods { .. } => {
                    Code::INVALID_ARGUMENT
                }
                IoOwnerError::Chown { .. } => Code::UNKNOWN,
            },
            ShimError::Config(_) => Code::INVALID_ARGUMENT,
            ShimError::Metrics(MetricsError::Encode { .. }) => Code::UNKNOWN,
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
    use crate::options::IoOwner;

    fn enoent() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }

    fn json_err() -> serde_json::Error {
        serde_json::from_str::<u32>("{").expect_err("not a number")
    }

    /// The typed errors print what the string errors they replaced printed: containerd's log
    /// and CRI's messages are unchanged.
    #[test]
    fn typed_errors_keep_their_texts() {
        let cases: [(ShimError, &str); 5] = [
            (
                StdioError::OpenFifoReader { path: "/run/c1/o".into(), source: enoent() }.into(),
                "opening output fifo /run/c1/o for reading: No such file or directory (os error 2)",
            ),
            (
                StdioError::Pipe { which: "stdin stop pipe", source: enoent() }.into(),
                "creating the stdin stop pipe: No such file or directory (os error 2)",
            ),
            (
                StdioError::Fcntl { op: "F_SETFL", source: enoent() }.into(),
                "F_SETFL: No such file or directory (os error 2)",
            ),
            (
                IoOwnerError::Chown {
                    what: "container c1".into(),
                    name: "stdout",
                    owner: IoOwner { uid: 7, gid: 8 },
                    source: enoent(),
                }
                .into(),
                "container c1: giving its stdout to IoUid 7 / IoGid 8: No such file or directory \
                 (os error 2)",
            ),
            (
                IoOwnerError::NotThePods {
                    id: "c1".into(),
                    owner: IoOwner { uid: 0, gid: 5 },
                    uid_map: vec![],
                    gid_map: vec![],
                }
                .into(),
                "container c1: the task options' IoUid 0 / IoGid 5 are not host IDs of the pod's \
                 user namespace (uid map [], gid map []); refusing to hand the container stdio \
                 owned by another user",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        // The cause stays reachable for logs that walk the chain.
        let err = ShimError::from(StdioError::Resize(enoent()));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn each_kind_reaches_containerd_with_its_code() {
        let cases = [
            (ShimError::NotFound("process already finished".into()), Code::NOT_FOUND),
            (ShimError::AlreadyExists("container c1".into()), Code::ALREADY_EXISTS),
            (ShimError::FailedPrecondition("running".into()), Code::FAILED_PRECONDITION),
            (ShimError::Unimplemented("checkpoint".into()), Code::UNIMPLEMENTED),
            (StdioError::NoTerminal.into(), Code::FAILED_PRECONDITION),
            (
                ConfigLoadError::Unreadable("ConfigBody is not UTF-8".into()).into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                StdioError::OpenFifo { path: "/run/c1/stdout".into(), source: enoent() }.into(),
                Code::UNKNOWN,
            ),
            (StdioError::NoPty { what: "container c1".into() }.into(), Code::UNKNOWN),
            (
                BundleStateError::Corrupt { path: "/b/moat-state.json".into(), source: json_err() }
                    .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                BundleStateError::Read { path: "/b/moat-state.json".into(), source: enoent() }
                    .into(),
                Code::UNKNOWN,
            ),
            (
                IoOwnerError::NotThePods {
                    id: "c1".into(),
                    owner: IoOwner { uid: 0, gid: 0 },
                    uid_map: vec![],
                    gid_map: vec![],
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                IoOwnerError::Chown {
                    what: "container c1".into(),
                    name: "stdin",
                    owner: IoOwner { uid: 1, gid: 2 },
                    source: enoent(),
                }
                .into(),
                Code::UNKNOWN,
            ),
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
