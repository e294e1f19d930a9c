//! Where the containerd that runs this pod keeps its files, derived from what it hands the
//! shim, so moat needs no setting for nodes that move containerd's `root` and `state` (k3s,
//! RKE2, microk8s, a test containerd under a temp dir).
//!
//! Only inputs containerd alone chooses are read, never the container's spec (whose mounts
//! and annotations carry what the pod's author wrote):
//! - `state` from the task's bundle directory, which containerd creates as
//!   `<state>/io.containerd.runtime.v2.task/<namespace>/<container id>`: accepted only in
//!   exactly that shape, ending in this container's id;
//! - `root` from the rootfs mounts containerd's snapshotter made:
//!   `<root>/io.containerd.snapshotter.v1.<name>/snapshots/<n>/...` (overlay `lowerdir`,
//!   `upperdir`, `workdir`, or a bind mount's source); every such path must agree.
//!
//! containerd's CRI keeps each pod's hostname, hosts, resolv.conf (under `root`) and /dev/shm
//! (under `state`) in `<dir>/io.containerd.grpc.v1.cri/sandboxes/<pod id>/`; `host_paths` accepts
//! only THIS pod's (and container's) entries there and denies the rest of `root` and `state`.
//! Whatever cannot be derived falls back to containerd's defaults (`/var/lib/containerd`,
//! `/run/containerd`); `cri_state_dirs` in moat's config, when set, replaces the derived CRI
//! directories (an override for layouts this derivation does not know).

use std::path::{Component, Path, PathBuf};

use super::lexical::normalize;
use crate::plan::RootfsMount;

/// The directory containerd's task service keeps bundles in, below `state`.
pub const TASK_DIR: &str = "io.containerd.runtime.v2.task";
/// The CRI plugin's directory, below `root` and below `state`.
pub const CRI_DIR: &str = "io.containerd.grpc.v1.cri";
/// The prefix of a snapshotter plugin's directory, below `root`.
pub const SNAPSHOTTER_PREFIX: &str = "io.containerd.snapshotter.v1.";
/// containerd's default `root`.
pub const DEFAULT_ROOT: &str = "/var/lib/containerd";
/// containerd's default `state`.
pub const DEFAULT_STATE: &str = "/run/containerd";

/// containerd's `root` and `state` for this container, where they could be derived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerdDirs {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
}

impl ContainerdDirs {
    /// Derives both from the task's `bundle` (for container `container_id`) and its rootfs
    /// mounts; see the module docs for the shapes accepted.
    pub fn derive(bundle: &Path, container_id: &str, rootfs_mounts: &[RootfsMount]) -> Self {
        ContainerdDirs {
            root: root_from_rootfs(rootfs_mounts),
            state: state_from_bundle(bundle, container_id),
        }
    }

    /// containerd's `root` (derived, else the default).
    pub fn root_or_default(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// containerd's `state` (derived, else the default).
    pub fn state_or_default(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE))
    }

    /// The CRI plugin's directories: `cri_state_dirs` when the operator set it, else
    /// `<root>/io.containerd.grpc.v1.cri` and `<state>/io.containerd.grpc.v1.cri`.
    pub fn cri_dirs(&self, configured: &[PathBuf]) -> Vec<PathBuf> {
        if !configured.is_empty() {
            return configured.iter().filter_map(|d| normalize(d)).collect();
        }
        vec![self.root_or_default().join(CRI_DIR), self.state_or_default().join(CRI_DIR)]
    }

    /// The directories to deny as a whole (with everything above them): containerd's root
    /// and state as derived (its snapshots, every pod's files and sockets live there).
    pub fn denied(&self) -> Vec<PathBuf> {
        [&self.root, &self.state].into_iter().flatten().cloned().collect()
    }
}

/// `<state>` of a bundle `<state>/io.containerd.runtime.v2.task/<namespace>/<container_id>`.
fn state_from_bundle(bundle: &Path, container_id: &str) -> Option<PathBuf> {
    let bundle = normalize(bundle)?;
    if bundle.file_name()? != container_id || !one_component(container_id) {
        return None;
    }
    let namespace_dir = bundle.parent()?;
    if !one_component(namespace_dir.file_name()?.to_str()?) {
        return None;
    }
    let task_dir = namespace_dir.parent()?;
    if task_dir.file_name()? != TASK_DIR {
        return None;
    }
    plausible(task_dir.parent()?)
}

/// `<root>` of every snapshot path in the rootfs mounts, if there is one and all agree.
fn root_from_rootfs(mounts: &[RootfsMount]) -> Option<PathBuf> {
    let mut paths: Vec<&str> = Vec::new();
    for m in mounts {
        if m.fstype == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind") {
            paths.push(&m.source);
        }
        for o in &m.options {
            if let Some(list) = o.strip_prefix("lowerdir=") {
                paths.extend(list.split(':'));
            } else if let Some(p) =
                o.strip_prefix("upperdir=").or_else(|| o.strip_prefix("workdir="))
            {
                paths.push(p);
            }
        }
    }
    let mut root: Option<PathBuf> = None;
    for p in paths {
        let candidate = snapshot_root(Path::new(p))?;
        match &root {
            Some(r) if *r != candidate => return None,
            Some(_) => {}
            None => root = Some(candidate),
        }
    }
    root
}

/// `<root>` of `<root>/io.containerd.snapshotter.v1.<name>/snapshots/<n>/...`.
fn snapshot_root(path: &Path) -> Option<PathBuf> {
    let path = normalize(path)?;
    let parts: Vec<Component<'_>> = path.components().collect();
    let at = parts.iter().position(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| s.strip_prefix(SNAPSHOTTER_PREFIX).is_some_and(one_component))
    })?;
    if parts.get(at + 1)?.as_os_str() != "snapshots" || parts.get(at + 2).is_none() {
        return None;
    }
    plausible(&parts[..at].iter().collect::<PathBuf>())
}

/// A derived directory is never `/` (that would deny, and open, the whole host).
fn plausible(dir: &Path) -> Option<PathBuf> {
    let dir = normalize(dir)?;
    (dir != Path::new("/")).then_some(dir)
}

fn one_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(lower: &str, upper: &str, work: &str) -> RootfsMount {
        RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("lowerdir={lower}"),
                format!("upperdir={upper}"),
                format!("workdir={work}"),
            ],
        }
    }

    const K3S_ROOT: &str = "/var/lib/rancher/k3s/agent/containerd";
    const K3S_STATE: &str = "/run/k3s/containerd";

    fn k3s_mounts() -> Vec<RootfsMount> {
        let s = format!("{K3S_ROOT}/io.containerd.snapshotter.v1.overlayfs/snapshots");
        vec![overlay(&format!("{s}/2/fs:{s}/1/fs"), &format!("{s}/7/fs"), &format!("{s}/7/work"))]
    }

    #[test]
    fn k3s_layout_is_derived_from_bundle_and_snapshots() {
        let bundle = format!("{K3S_STATE}/io.containerd.runtime.v2.task/k8s.io/c1");
        let dirs = ContainerdDirs::derive(Path::new(&bundle), "c1", &k3s_mounts());
        assert_eq!(dirs.root, Some(PathBuf::from(K3S_ROOT)));
        assert_eq!(dirs.state, Some(PathBuf::from(K3S_STATE)));
        assert_eq!(
            dirs.cri_dirs(&[]),
            vec![
                PathBuf::from(format!("{K3S_ROOT}/{CRI_DIR}")),
                PathBuf::from(format!("{K3S_STATE}/{CRI_DIR}"))
            ]
        );
        // The operator's cri_state_dirs replaces what was derived.
        assert_eq!(dirs.cri_dirs(&["/x/cri".into()]), vec![PathBuf::from("/x/cri")]);
    }

    #[test]
    fn native_snapshotter_bind_mount_gives_the_root() {
        let m = RootfsMount {
            fstype: "bind".into(),
            source: "/srv/ctd/io.containerd.snapshotter.v1.native/snapshots/12".into(),
            options: vec!["rbind".into(), "rw".into()],
        };
        assert_eq!(root_from_rootfs(&[m]), Some(PathBuf::from("/srv/ctd")));
    }

    #[test]
    fn bundles_of_another_shape_give_no_state() {
        // Input: each bundle path that is not <state>/io.containerd.runtime.v2.task/<ns>/c1.
        for bundle in [
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2",
            "/run/containerd/io.containerd.runtime.v1.linux/k8s.io/c1",
            "/run/containerd/k8s.io/c1",
            "/io.containerd.runtime.v2.task/k8s.io/c1",
            "relative/io.containerd.runtime.v2.task/k8s.io/c1",
            "",
        ] {
            assert_eq!(state_from_bundle(Path::new(bundle), "c1"), None, "{bundle}");
        }
        // `..` is resolved lexically before the shape is checked.
        assert_eq!(
            state_from_bundle(
                Path::new("/run/x/../containerd/io.containerd.runtime.v2.task/k8s.io/c1"),
                "c1"
            ),
            Some(PathBuf::from("/run/containerd"))
        );
        assert_eq!(
            state_from_bundle(Path::new("/a/io.containerd.runtime.v2.task/n/.."), ".."),
            None
        );
    }

    #[test]
    fn rootfs_paths_that_disagree_or_are_not_snapshots_give_no_root() {
        let a = "/a/io.containerd.snapshotter.v1.overlayfs/snapshots";
        let b = "/b/io.containerd.snapshotter.v1.overlayfs/snapshots";
        // Input: layers from two different roots.
        let two = overlay(&format!("{a}/1/fs"), &format!("{b}/2/fs"), &format!("{b}/2/work"));
        assert_eq!(root_from_rootfs(&[two]), None);
        // Input: an upperdir outside any snapshotter.
        let odd = overlay(&format!("{a}/1/fs"), "/tmp/upper", "/tmp/work");
        assert_eq!(root_from_rootfs(&[odd]), None);
        // Input: the snapshotter directory itself, no snapshot below it.
        let top = overlay("/a/io.containerd.snapshotter.v1.overlayfs/snapshots", "/a/x", "/a/y");
        assert_eq!(root_from_rootfs(&[top]), None);
        // Input: a snapshotter at the host root.
        let at_root = overlay(
            "/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs",
            "/io.containerd.snapshotter.v1.overlayfs/snapshots/2/fs",
            "/io.containerd.snapshotter.v1.overlayfs/snapshots/2/work",
        );
        assert_eq!(root_from_rootfs(&[at_root]), None);
        assert_eq!(root_from_rootfs(&[]), None);
    }

    #[test]
    fn nothing_derived_falls_back_to_containerd_defaults() {
        let dirs = ContainerdDirs::default();
        assert_eq!(
            dirs.cri_dirs(&[]),
            vec![
                PathBuf::from("/var/lib/containerd/io.containerd.grpc.v1.cri"),
                PathBuf::from("/run/containerd/io.containerd.grpc.v1.cri")
            ]
        );
        assert!(dirs.denied().is_empty());
    }
}
