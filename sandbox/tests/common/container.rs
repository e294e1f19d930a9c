//! Shared by the root harnesses that start containers through `Launcher` (spawn, pid_reuse):
//! the container they all start from — its own namespace of every kind, its own user namespace
//! on a random host id range, an overlay root — to which each harness adds its mounts, paths,
//! hostname and process.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::Result;
use moat_sandbox::plan::*;

/// Size of a pod's host id range.
pub const RANGE: u32 = 65_536;

/// First host uid/gid of a pod's range: random, so that runs at the same time (and what an
/// earlier, killed run left) rarely share one.
pub fn random_base() -> Result<u32> {
    let mut b = [0u8; 4];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(2_000_000_000 + (u32::from_le_bytes(b) % 30_000) * RANGE)
}

/// Where a container's overlay root lives: the image layer, the upper and work dirs, and the
/// directory it is mounted on.
pub struct OverlayRoot<'a> {
    pub lower: &'a Path,
    pub upper: &'a Path,
    pub work: &'a Path,
    pub rootfs: &'a Path,
}

/// Container `id` (of pod "pod") running `process`: new pid, ipc, uts, net and cgroup
/// namespaces, a new user namespace mapping container ids 0..RANGE to host ids `base`..,
/// `root` as its root; no mounts, masked or read-only paths, hostname, sysctls or cgroup.
pub fn own_container(
    id: &str,
    root: OverlayRoot<'_>,
    base: u32,
    process: ProcessPlan,
) -> ContainerPlan {
    let map = || vec![IdMapping { container_id: 0, host_id: base, size: RANGE }];
    let ns = |kind| NamespacePlan { kind, action: NamespaceAction::Create };
    ContainerPlan {
        container_id: id.into(),
        pod_id: "pod".into(),
        rootfs: root.rootfs.to_path_buf(),
        rootfs_mounts: vec![RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("workdir={}", root.work.display()),
                format!("upperdir={}", root.upper.display()),
                format!("lowerdir={}", root.lower.display()),
            ],
        }],
        readonly_rootfs: false,
        namespaces: vec![
            ns(NamespaceKind::Pid),
            ns(NamespaceKind::Ipc),
            ns(NamespaceKind::Uts),
            ns(NamespaceKind::Network),
            ns(NamespaceKind::Cgroup),
        ],
        user: UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: map(),
            gid_mappings: map(),
        },
        hostname: None,
        mounts: vec![],
        masked_paths: vec![],
        readonly_paths: vec![],
        sysctls: BTreeMap::new(),
        cgroup_procs: vec![],
        process,
    }
}
