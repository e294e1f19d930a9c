//! What the shim knows about a container beyond its OCI spec.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::plan::{NamespaceKind, RootfsMount, UserNamespacePlan};

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
    /// containerd's `root` and `state`, derived from the bundle path and the rootfs mounts
    /// (`ContainerdDirs::derive`); `Default` when unknown (containerd's defaults apply).
    pub containerd: super::containerd_dirs::ContainerdDirs,
    /// The pod's user namespace: action and mappings chosen by the shim (from the ID pool).
    pub user: UserNamespacePlan,
    /// The namespaces the pod's sandbox shares with the host (hostNetwork, hostPID, hostIPC
    /// pods, as policy allowed them for the sandbox); empty for the sandbox itself. containerd
    /// 1.6 points a container of such a pod at the sandbox's namespace by path, which then is
    /// the host's: the container shares the host's namespace like its sandbox does.
    pub pod_shares_host: Vec<NamespaceKind>,
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

/// The user namespace containerd hands over, if it does: containerd 2.x with
/// `hostUsers: false` creates the pod's user namespace itself and puts its path (and the
/// mappings it chose) in every container's spec. Then moat joins it instead of allocating a
/// range from its own pool; without it (containerd 1.6/1.7, or `hostUsers` unset) the shim
/// allocates. A user namespace entry without a path but with mappings asks moat to create one
/// with exactly those mappings.
pub fn spec_user_namespace(spec: &Spec) -> Option<UserNamespacePlan> {
    use oci_spec::runtime::LinuxNamespaceType;
    let linux = spec.linux().as_ref()?;
    let entry =
        linux.namespaces().as_ref()?.iter().find(|n| n.typ() == LinuxNamespaceType::User)?;
    let convert =
        |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<crate::plan::IdMapping> {
            maps.iter()
                .flatten()
                .map(|m| crate::plan::IdMapping {
                    container_id: m.container_id(),
                    host_id: m.host_id(),
                    size: m.size(),
                })
                .collect()
        };
    let uid_mappings = convert(linux.uid_mappings());
    let gid_mappings = convert(linux.gid_mappings());
    let action = match entry.path() {
        Some(path) => crate::plan::UserNamespaceAction::JoinPath(path.clone()),
        None if !uid_mappings.is_empty() && !gid_mappings.is_empty() => {
            crate::plan::UserNamespaceAction::Create
        }
        None => return None,
    };
    Some(UserNamespacePlan { action, uid_mappings, gid_mappings })
}

/// containerd 2.x passes idmapped rootfs layers as `uidmap=`/`gidmap=` options on the overlay
/// mount; moat idmaps the layers itself with the pod's user namespace, so those options are
/// dropped (the kernel's overlayfs does not know them).
pub fn rootfs_mount_without_idmap_options(mut mount: RootfsMount) -> RootfsMount {
    mount.options.retain(|o| !o.starts_with("uidmap=") && !o.starts_with("gidmap="));
    mount
}

#[cfg(test)]
mod handover_tests {
    use super::*;
    use crate::plan::{IdMapping, UserNamespaceAction};

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("spec")
    }

    #[test]
    fn containerd_2_user_namespace_path_and_mappings_are_joined() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.1.0",
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "user", "path": "/proc/42/ns/user"}],
                "uidMappings": [{"containerID": 0, "hostID": 3_000_000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 3_000_000, "size": 65536}]
            }
        }));
        let plan = spec_user_namespace(&s).expect("handed over");
        assert_eq!(plan.action, UserNamespaceAction::JoinPath("/proc/42/ns/user".into()));
        assert_eq!(
            plan.uid_mappings,
            vec![IdMapping { container_id: 0, host_id: 3_000_000, size: 65536 }]
        );
        assert_eq!(plan.host_gid(5), Some(3_000_005));
    }

    #[test]
    fn containerd_1_6_spec_has_no_user_namespace_so_moat_allocates() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/x"}]}
        }));
        assert_eq!(spec_user_namespace(&s), None);
        // Input: a user namespace entry with neither a path nor mappings: nothing usable.
        let s = spec(
            serde_json::json!({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "user"}]}}),
        );
        assert_eq!(spec_user_namespace(&s), None);
    }

    #[test]
    fn user_namespace_without_path_but_with_mappings_is_created() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.1.0",
            "linux": {
                "namespaces": [{"type": "user"}],
                "uidMappings": [{"containerID": 0, "hostID": 500_000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 500_000, "size": 65536}]
            }
        }));
        assert_eq!(spec_user_namespace(&s).map(|p| p.action), Some(UserNamespaceAction::Create));
    }

    #[test]
    fn idmap_options_are_dropped_from_rootfs_mounts() {
        let m = RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "lowerdir=/a".into(),
                "uidmap=0:3000000:65536".into(),
                "gidmap=0:3000000:65536".into(),
                "upperdir=/u".into(),
            ],
        };
        let m = rootfs_mount_without_idmap_options(m);
        assert_eq!(m.options, vec!["lowerdir=/a".to_string(), "upperdir=/u".to_string()]);
    }
}
