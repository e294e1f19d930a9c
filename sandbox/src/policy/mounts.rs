//! The spec's mounts -> `MountPlan`s.
//!
//! * bind: the source must pass `host_paths` (this pod's CRI/kubelet files, or
//!   `allowed_host_paths`, never the built-in denylist); always nosuid and nodev. The pod's own
//!   files are idmapped into the pod's user namespace (a file owned by 33 on disk is owned by
//!   33 in the container); an `allowed_host_paths` directory only when its entry says
//!   `idmap = true`, else its files keep their on-disk owners as host IDs. Propagation:
//!   `rprivate` (None) is moat's default; `rslave` (HostToContainer) makes the bind a slave of
//!   the host's mount, set up by moat from the host side, so mounts the host makes below the
//!   source appear in the container; `rshared` (Bidirectional) is refused: a pod's mounts
//!   must never reach the host.
//! * proc, sysfs, cgroup: always nosuid, nodev, noexec; sysfs and cgroup always read-only.
//! * tmpfs, devpts, mqueue: nosuid (tmpfs and mqueue also nodev). Their `uid=`/`gid=` data
//!   options stay container IDs in the plan (the rootfs code translates them to host IDs when
//!   host root mounts, and makes container root own a tmpfs that names no owner); policy only
//!   refuses IDs outside the pod's user namespace.
//! * any other type (overlay, nfs, ext4 of a block device, ...) is refused.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::config::Config;
use super::host_paths::{self, Verdict};
use super::refusal::{Refusal, Rule, Subject};
use crate::features::{mount_option, MountOptionEffect, Propagation};
use crate::plan::{MountKind, MountPlan, UserNamespacePlan};

/// What the mount code needs to know about the pod while mapping mounts.
pub(crate) struct MountContext<'a> {
    pub config: &'a Config,
    pub pod_id: &'a str,
    pub container_id: &'a str,
    pub pod_uid: Option<&'a str>,
    /// containerd's directories, as derived from what it handed the shim.
    pub containerd: &'a super::containerd_dirs::ContainerdDirs,
    pub user: &'a UserNamespacePlan,
    /// The container shares the host's IPC namespace (and policy allowed it): CRI then binds
    /// the host's /dev/shm, which is accepted for that destination only.
    pub host_ipc: bool,
}

#[derive(Default)]
struct Flags {
    bind: bool,
    /// The last propagation option (mount(8) applies them in order).
    propagation: Option<Propagation>,
    recursive: bool,
    readonly: bool,
    nosuid: bool,
    nodev: bool,
    noexec: bool,
    data: Vec<String>,
}

/// Reads the options `features::MOUNT_OPTIONS` recognises; the rest is filesystem data.
fn parse_options(options: &[String]) -> Flags {
    let mut f = Flags::default();
    for o in options {
        match mount_option(o) {
            Some(MountOptionEffect::Bind { recursive }) => {
                f.bind = true;
                f.recursive |= recursive;
            }
            Some(MountOptionEffect::ReadOnly(on)) => f.readonly = on,
            Some(MountOptionEffect::NoSuid(on)) => f.nosuid = on,
            Some(MountOptionEffect::NoDev(on)) => f.nodev = on,
            Some(MountOptionEffect::NoExec(on)) => f.noexec = on,
            Some(MountOptionEffect::Propagation(p)) => f.propagation = Some(p),
            // idmap: policy decides which binds are idmapped. Access-time and sync flags: no
            // effect.
            Some(MountOptionEffect::IdMap | MountOptionEffect::NoEffect) => {}
            None => f.data.push(o.clone()),
        }
    }
    f
}

/// Maps every spec mount, refusing what policy forbids. `index` in messages is the position
/// in the spec's `mounts` list.
pub(crate) fn plan_mounts(
    mounts: &[Mount],
    cx: &MountContext<'_>,
    who: &Subject,
) -> Result<Vec<MountPlan>, Refusal> {
    mounts.iter().enumerate().map(|(i, m)| plan_mount(i, m, cx, who)).collect()
}

fn plan_mount(
    i: usize,
    m: &Mount,
    cx: &MountContext<'_>,
    who: &Subject,
) -> Result<MountPlan, Refusal> {
    let dest_field = format!("mounts[{i}].destination={}", m.destination().display());
    let destination = host_paths::normalize(m.destination()).ok_or_else(|| {
        who.refuse_always(
            dest_field.clone(),
            Rule::InvalidSpec,
            "a mount destination must be an absolute path",
            "fix the container's spec",
        )
    })?;
    let options = m.options().clone().unwrap_or_default();
    let f = parse_options(&options);
    let typ = m.typ().as_deref().unwrap_or("");
    if f.bind || typ == "bind" {
        return plan_bind(i, m, destination, f, cx, who);
    }
    let (kind, readonly, nosuid, nodev, noexec, data) = match typ {
        "proc" => (MountKind::Proc, f.readonly, true, true, true, f.data),
        "sysfs" => (MountKind::Sysfs, true, true, true, true, f.data),
        "cgroup" | "cgroup2" => (MountKind::Cgroup, true, true, true, true, Vec::new()),
        "tmpfs" => {
            let data = check_id_options(i, f.data, cx.user, who)?;
            (MountKind::Tmpfs, f.readonly, true, true, f.noexec, data)
        }
        "devpts" => {
            let data = check_id_options(i, f.data, cx.user, who)?;
            // Never nodev: the pty nodes live on it.
            (MountKind::Devpts, f.readonly, true, false, true, data)
        }
        "mqueue" => (MountKind::Mqueue, f.readonly, true, true, true, f.data),
        other => {
            return Err(who.refuse_always(
                format!("mounts[{i}].type={other}"),
                Rule::MountType,
                format!(
                    "mount type {other:?} at {} is not supported (moat mounts bind, tmpfs, proc, \
                     sysfs, devpts, mqueue and cgroup only)",
                    destination.display()
                ),
                "use a volume type the kubelet provides as a bind mount",
            ))
        }
    };
    Ok(MountPlan {
        destination,
        kind,
        readonly,
        nosuid,
        nodev,
        noexec,
        data: (!data.is_empty()).then(|| data.join(",")),
    })
}

fn plan_bind(
    i: usize,
    m: &Mount,
    destination: PathBuf,
    f: Flags,
    cx: &MountContext<'_>,
    who: &Subject,
) -> Result<MountPlan, Refusal> {
    let raw = m.source().clone().unwrap_or_default();
    let field = format!("mounts[{i}].source={}", raw.display());
    let source = host_paths::normalize(&raw).ok_or_else(|| {
        who.refuse_always(
            field.clone(),
            Rule::InvalidSpec,
            "a bind mount source must be an absolute host path",
            "fix the container's spec",
        )
    })?;
    let host_shm =
        cx.host_ipc && source == Path::new("/dev/shm") && destination == Path::new("/dev/shm");
    if f.propagation == Some(Propagation::Shared) {
        return Err(who.refuse_always(
            format!("mounts[{i}].options[rshared]"),
            Rule::MountPropagation,
            format!(
                "Bidirectional mount propagation of {} would let the pod's mounts reach the \
                 host's mount namespace",
                source.display()
            ),
            "no setting allows it; use mountPropagation HostToContainer (rslave) or None",
        ));
    }
    // The pod's own files (CRI's hostname/hosts/resolv.conf/shm, kubelet's per-pod volumes)
    // are idmapped into the pod's user namespace, so container root owns them as it would on
    // a plain runtime. A host directory from `allowed_host_paths` is mounted without an idmap
    // unless its entry says `idmap = true`: files keep their on-disk owners, and what the pod
    // writes there is owned by the pod's own host IDs. Idmapping it makes on-disk uid 0 the
    // root of every pod sharing it (host-root files readable, setuid-root files creatable,
    // pods reading each other): the operator's explicit choice per directory.
    let mut idmap = false;
    if !host_shm {
        match host_paths::classify(
            &source,
            cx.config,
            cx.containerd,
            cx.pod_id,
            cx.container_id,
            cx.pod_uid,
        ) {
            Verdict::PodFile => idmap = true,
            Verdict::Allowed { idmap: mapped } => idmap = mapped,
            Verdict::Denied(entry) => {
                return Err(who.refuse_always(
                    field,
                    Rule::HostPath,
                    format!(
                        "bind mounts of host path {} are never allowed (it is or contains {}, \
                         which moat protects)",
                        source.display(),
                        entry.display()
                    ),
                    "no setting allows it; mount a dedicated directory instead",
                ))
            }
            Verdict::NotAllowed => {
                return Err(who.refuse(
                    field,
                    Rule::HostPath,
                    format!(
                        "host path {} is not under any allowed_host_paths entry",
                        source.display()
                    ),
                    format!("allowed_host_paths = [\"{}\"]", source.display()),
                ))
            }
        }
    }
    Ok(MountPlan {
        destination,
        kind: MountKind::Bind {
            source,
            recursive: f.recursive,
            idmap,
            from_host: f.propagation == Some(Propagation::Slave),
        },
        readonly: f.readonly,
        nosuid: true,
        nodev: true,
        noexec: f.noexec,
        data: None,
    })
}

/// Refuses `uid=`/`gid=` data options naming IDs outside the pod's user namespace; the data
/// itself is kept as the spec wrote it (container IDs).
fn check_id_options(
    i: usize,
    data: Vec<String>,
    user: &UserNamespacePlan,
    who: &Subject,
) -> Result<Vec<String>, Refusal> {
    for opt in &data {
        let mapped = match opt.split_once('=') {
            Some(("uid", v)) => v.parse().ok().and_then(|id| user.host_uid(id)),
            Some(("gid", v)) => v.parse().ok().and_then(|id| user.host_gid(id)),
            _ => continue,
        };
        if mapped.is_none() {
            return Err(who.refuse(
                format!("mounts[{i}].options[{opt}]"),
                Rule::InvalidSpec,
                format!("{opt:?} is not an ID inside the pod's user namespace"),
                "userns.size (the IDs each pod gets)",
            ));
        }
    }
    Ok(data)
}

/// `tmpfs` mounts added when moat forces a read-only root: writable /tmp and /run (owned by
/// container root), unless the spec already mounts something there.
pub(crate) fn writable_scratch(existing: &[MountPlan]) -> Vec<MountPlan> {
    let mut out = Vec::new();
    for (dest, mode) in [("/tmp", "1777"), ("/run", "755")] {
        if existing.iter().any(|m| m.destination == Path::new(dest)) {
            continue;
        }
        out.push(MountPlan {
            destination: PathBuf::from(dest),
            kind: MountKind::Tmpfs,
            readonly: false,
            nosuid: true,
            nodev: true,
            noexec: false,
            data: Some(format!("mode={mode}")),
        });
    }
    out
}
