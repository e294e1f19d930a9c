//! The spec's mounts (after policy), in order, under the container's root.
//!
//! Host paths are opened without following symlinks and bound through that fd. A bind the
//! plan marks `from_host` (HostToContainer) is cloned by [`clone_from_host`] BEFORE the
//! container's mount namespace is made private: the clone of a shared host mount joins its
//! peer group, and is then made a slave of it (from the host side, by moat as host root), so
//! later host mounts below the source reach the container and nothing flows back.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::mount::{mount_fs, Target};
use super::options::translate_ids;
use super::resolve::{clean, create_in_root, free_of_symlinks, kind_of, open_host_path};
use super::resolve::{HostPathError, Kind};
use super::{cgroupfs, dev, Context, Owner};
use crate::plan::{ContainerPlan, MountKind, MountPlan};
use crate::sys::mount_api::{attach, clone_tree_of_fd, make_slave, set_attrs, MountAttrs};
use crate::sys::{Step, StepError};

/// For each of `plan.mounts`, in order: the slave clone of a `from_host` bind, else `None`.
/// Must run while the mount namespace is still a copy of the host's (before it is made
/// private), or the clone would be private too.
pub fn clone_from_host(plan: &ContainerPlan) -> Result<Vec<Option<OwnedFd>>, StepError> {
    plan.mounts
        .iter()
        .map(|m| match &m.kind {
            MountKind::Bind { source, recursive, from_host: true, .. } => {
                let step = || format!("bind {} (HostToContainer)", source.display());
                let opened = open_source(source, &m.destination)?;
                let tree = clone_tree_of_fd(opened.as_fd(), *recursive, source).step(step)?;
                make_slave(tree.as_fd(), source).step(step)?;
                Ok(Some(tree))
            }
            _ => Ok(None),
        })
        .collect()
}

/// Opens a bind's host source exactly as policy checked it (no symlink on the way).
fn open_source(source: &Path, dest: &Path) -> Result<OwnedFd, StepError> {
    let step = || format!("bind {} on {}", source.display(), dest.display());
    open_host_path(source).map_err(|e| match e {
        HostPathError::Symlink => StepError::refused(
            step(),
            format!(
                "host path {} is reached through a symlink (it, or a directory above it, is \
                 one); moat binds host paths only as the policy checked them, without \
                 following symlinks",
                source.display()
            ),
        ),
        HostPathError::Sys(errno) => StepError::sys(step(), errno),
    })
}

/// Mounts `plan.mounts` in order; `from_host` holds [`clone_from_host`]'s trees.
pub fn mount_all(
    root: BorrowedFd<'_>,
    plan: &ContainerPlan,
    ctx: Context<'_>,
    owner: Owner,
    mut from_host: Vec<Option<OwnedFd>>,
) -> Result<(), StepError> {
    for (i, m) in plan.mounts.iter().enumerate() {
        let cloned = from_host.get_mut(i).and_then(Option::take);
        mount_one(root, m, plan, ctx, owner, cloned)?;
        if m.kind == MountKind::Tmpfs && clean(&m.destination) == clean(Path::new("/dev")) {
            dev::populate(root, owner, m.nodev)?;
        }
    }
    Ok(())
}

fn attrs(m: &MountPlan) -> MountAttrs {
    MountAttrs { readonly: m.readonly, nosuid: m.nosuid, nodev: m.nodev, noexec: m.noexec }
}

/// Creates the mount target (as container root) inside the root.
fn target(
    root: BorrowedFd<'_>,
    dest: &Path,
    kind: Kind,
    owner: Owner,
) -> Result<std::os::fd::OwnedFd, StepError> {
    owner
        .run(|| create_in_root(root, dest, kind))?
        .step(|| format!("create mount target {}", dest.display()))
}

/// proc, sysfs, devpts, mqueue and cgroup go where the spec says, never where an image's
/// symlink redirects them (masks and read-only paths name their files by those paths).
fn kernel_fs_target_is_real(
    root: BorrowedFd<'_>,
    dest: &Path,
    kind: &MountKind,
) -> Result<(), StepError> {
    if matches!(kind, MountKind::Bind { .. } | MountKind::Tmpfs) {
        return Ok(());
    }
    let step = || format!("mount {kind:?} on {}", dest.display());
    if free_of_symlinks(root, dest).step(step)? {
        Ok(())
    } else {
        Err(StepError::refused(step(), "the destination is reached through a symlink in the image"))
    }
}

fn mount_one(
    root: BorrowedFd<'_>,
    m: &MountPlan,
    plan: &ContainerPlan,
    ctx: Context<'_>,
    owner: Owner,
    cloned: Option<OwnedFd>,
) -> Result<(), StepError> {
    let dest = m.destination.as_path();
    if !dest.is_absolute() || clean(dest).is_empty() {
        return Err(StepError::refused(
            format!("mount on {}", dest.display()),
            "destination must be an absolute path below /",
        ));
    }
    let data = m.data.as_deref();
    let what = |fs: &str| format!("{fs} on {}", dest.display());
    let fs = |fstype: &str, data: String| -> Result<(), StepError> {
        let fd = target(root, dest, Kind::Dir, owner)?;
        kernel_fs_target_is_real(root, dest, &m.kind)?;
        mount_fs(fstype, fstype, Target { root, dest, fd: fd.as_fd() }, attrs(m), &data)
    };
    match &m.kind {
        MountKind::Bind { source, recursive, idmap, .. } => {
            let step = || format!("bind {} on {}", source.display(), dest.display());
            // The policy checked `source` as written: open exactly that, refusing any symlink
            // on the way, and take the kind and the mount from the same fd, so a writer of an
            // allowed directory cannot swap in a symlink (to /, /etc, kubelet's directory)
            // between the check and the mount. A HostToContainer tree was cloned earlier,
            // through such an fd too; its kind is the tree's own.
            let tree = match cloned {
                Some(tree) => tree,
                None => {
                    let opened = open_source(source, dest)?;
                    clone_tree_of_fd(opened.as_fd(), *recursive, source).step(step)?
                }
            };
            let kind = kind_of(tree.as_fd()).step(step)?;
            let fd = target(root, dest, kind, owner)?;
            let userns = idmap.then_some(ctx.userns);
            set_attrs(tree.as_fd(), attrs(m), userns, *recursive, source).step(step)?;
            attach(tree.as_fd(), fd.as_fd(), dest).step(step)
        }
        MountKind::Tmpfs => fs("tmpfs", translate_ids(data, &plan.user, true, &what("tmpfs"))?),
        MountKind::Proc => fs("proc", translate_ids(data, &plan.user, false, &what("proc"))?),
        MountKind::Sysfs => fs("sysfs", data.unwrap_or("").to_string()),
        MountKind::Devpts => fs("devpts", translate_ids(data, &plan.user, false, &what("devpts"))?),
        MountKind::Mqueue => fs("mqueue", data.unwrap_or("").to_string()),
        MountKind::Cgroup => {
            let fd = target(root, dest, Kind::Dir, owner)?;
            kernel_fs_target_is_real(root, dest, &m.kind)?;
            cgroupfs::mount_cgroups(
                Target { root, dest, fd: fd.as_fd() },
                attrs(m),
                ctx,
                owner,
                &plan.user,
            )
        }
    }
}
