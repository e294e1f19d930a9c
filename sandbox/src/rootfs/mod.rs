//! The container's root: rootfs mounts, spec mounts, /proc, a minimal /dev, /sys, masks,
//! pivot_root. Runs in the container's init, host root, inside its new private mount
//! namespace (owned by the host user namespace, so nothing set up here can be undone by the
//! container's root once it has joined the pod's user namespace).
//!
//! Every step fails with a [`StepError`] naming it. The mount-API calls come from
//! `sys::mount_api`; the pod's user namespace is only an fd here ([`Context::userns`]).

mod cgroupfs;
mod dev;
mod masks;
mod mount;
mod options;
mod overlay;
mod owner;
mod pivot;
pub mod resolve;
mod rootfs_mounts;
mod spec_mounts;

use std::os::fd::{AsFd, BorrowedFd};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{umask, Mode};

use crate::plan::ContainerPlan;
use crate::sys::{Step, StepError};

pub use owner::Owner;

/// What the rootfs code needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The pod's user namespace (idmapped mounts shift into it).
    pub userns: BorrowedFd<'a>,
    /// The init is in a cgroup namespace of its own (cgroupfs mounts show only its cgroup).
    pub new_cgroupns: bool,
}

/// Builds the root and pivots into it. Afterwards `/` is the container's root and the
/// host's tree is no longer reachable from this mount namespace.
pub fn prepare(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), StepError> {
    let old_umask = umask(Mode::empty());
    let result = prepare_inner(plan, ctx);
    umask(old_umask);
    result
}

fn prepare_inner(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), StepError> {
    // HostToContainer binds are cloned while this namespace is still a copy of the host's:
    // their clones are slaves of the host's mounts.
    let from_host = spec_mounts::clone_from_host(plan)?;
    // Nothing mounted from here on may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .step(|| "make / rprivate")?;
    let owner = Owner::container_root(&plan.user);
    rootfs_mounts::mount_rootfs(plan, ctx)?;
    let root =
        open(&plan.rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| format!("open {}", plan.rootfs.display()))?;
    spec_mounts::mount_all(root.as_fd(), plan, ctx, owner, from_host)?;
    masks::mask_paths(root.as_fd(), &plan.masked_paths)?;
    masks::readonly_paths(root.as_fd(), &plan.readonly_paths)?;
    // The process's cwd exists in the image or is created, like runc does.
    owner
        .run(|| {
            resolve::create_in_root(root.as_fd(), &plan.process.cwd, resolve::Kind::Dir).map(drop)
        })
        .and_then(|r| r.step(|| format!("create cwd {}", plan.process.cwd.display())))?;
    pivot::pivot_into(root)?;
    if plan.readonly_rootfs {
        pivot::remount_root_readonly()?;
    }
    Ok(())
}

/// The flags every root mount gets: always `nodev`; `nosuid` when the process runs with
/// no_new_privs (under which setuid/setgid bits and file capabilities do nothing anyway). A
/// plan that lets the container escalate through setuid binaries (no_new_privs off: policy
/// allows it at level baseline, `policy::levels`) gets a root without `nosuid`; the image's
/// files are owned by IDs of the pod's range, so a setuid bit raises a process to those only.
fn root_flags(plan: &ContainerPlan) -> MsFlags {
    let mut flags = MsFlags::MS_NODEV;
    if plan.process.no_new_privileges {
        flags |= MsFlags::MS_NOSUID;
    }
    flags
}
