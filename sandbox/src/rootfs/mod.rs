//! The container's root: rootfs mounts, spec mounts, /proc, a minimal /dev, /sys, masks,
//! pivot_root. Runs in the container's init, host root, inside its new private mount
//! namespace (owned by the host user namespace, so nothing set up here can be undone by the
//! container's root once it has joined the pod's user namespace).

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

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{umask, Mode};

use crate::plan::ContainerPlan;
use crate::userns::idmap::IdmapError;

pub use owner::Owner;

/// A rootfs step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{step}: {errno}")]
    Sys { step: String, errno: Errno },
    #[error("{step}: {reason}")]
    Refused { step: String, reason: String },
    #[error("{step}: {source}")]
    Idmap { step: String, source: IdmapError },
}

impl RootfsError {
    pub(crate) fn sys(step: impl Into<String>, errno: Errno) -> Self {
        RootfsError::Sys { step: step.into(), errno }
    }
    pub(crate) fn refused(step: impl Into<String>, reason: impl Into<String>) -> Self {
        RootfsError::Refused { step: step.into(), reason: reason.into() }
    }
    pub(crate) fn idmap(step: impl Into<String>, source: IdmapError) -> Self {
        RootfsError::Idmap { step: step.into(), source }
    }
}

/// `.step(|| "what")` on syscall results.
pub(crate) trait Step<T> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, RootfsError>;
}

impl<T> Step<T> for Result<T, Errno> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, RootfsError> {
        self.map_err(|e| RootfsError::sys(what(), e))
    }
}

impl<T> Step<T> for Result<T, IdmapError> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, RootfsError> {
        self.map_err(|e| RootfsError::idmap(what(), e))
    }
}

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
pub fn prepare(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), RootfsError> {
    let old_umask = umask(Mode::empty());
    let result = prepare_inner(plan, ctx);
    umask(old_umask);
    result
}

fn prepare_inner(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), RootfsError> {
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
