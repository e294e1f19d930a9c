//! What the shim knows about a container beyond its OCI spec.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::plan::{RootfsMount, UserNamespacePlan};

/// Annotation CRI sets on every container: `sandbox` for the pod's pause container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Annotation CRI sets on every container: the pod's sandbox id.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// Annotation CRI sets (on the sandbox at least): kubelet's pod UID.
pub const SANDBOX_UID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-uid";
pub const SANDBOX_NAME_ANNOTATION: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";

/// The shim's knowledge about the container being derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContext {
    /// The pod's sandbox id (the pause container's id; `io.kubernetes.cri.sandbox-id`).
    pub pod_id: String,
    /// This container's id (containerd's task id).
    pub container_id: String,
    /// kubelet's pod UID, when known: the `io.kubernetes.cri.sandbox-uid` annotation of the
    /// sandbox container (remember it for the pod's later containers in case CRI does not
    /// repeat it on them). Needed to accept kubelet's per-pod bind mounts
    /// (`<kubelet_root_dir>/pods/<uid>/...`); without it those are refused like any host path.
    pub pod_uid: Option<String>,
    /// True for the pod's pause container (`io.kubernetes.cri.container-type == "sandbox"`).
    pub is_sandbox: bool,
    /// The directory that becomes the container's `/`.
    pub rootfs: PathBuf,
    /// containerd's rootfs mounts for this container.
    pub rootfs_mounts: Vec<RootfsMount>,
    /// The pod's user namespace: action and mappings chosen by the shim (from the ID pool).
    pub user: UserNamespacePlan,
}

impl PodContext {
    /// True when the spec's annotations mark the pod's sandbox (pause) container.
    pub fn spec_is_sandbox(spec: &Spec) -> bool {
        annotation(spec, CONTAINER_TYPE_ANNOTATION) == Some("sandbox")
    }

    /// The pod's sandbox id from the annotations; a sandbox container is its own pod.
    pub fn spec_pod_id(spec: &Spec, container_id: &str) -> String {
        annotation(spec, SANDBOX_ID_ANNOTATION)
            .filter(|id| !id.is_empty())
            .unwrap_or(container_id)
            .to_string()
    }

    /// kubelet's pod UID from the annotations, if CRI set it.
    pub fn spec_pod_uid(spec: &Spec) -> Option<String> {
        annotation(spec, SANDBOX_UID_ANNOTATION).filter(|u| !u.is_empty()).map(str::to_string)
    }
}

pub(crate) fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations().as_ref()?.get(key).map(String::as_str)
}
