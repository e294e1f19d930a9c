//! containerd's rootfs mounts onto `plan.rootfs`: overlay (idmapped lower layers) or bind
//! (idmapped). With no mounts, the populated rootfs directory is bound onto itself, idmapped.
//!
//! Every root is mounted `nodev`: an image's layers may carry device nodes, containerd (root)
//! unpacks them as real nodes, and the idmapped layer makes container root their owner, so
//! without `nodev` an image holding `b 8 0` would open the host's disk wherever the device
//! cgroup lets it. The minimal /dev is a mount of its own and is not affected. `nosuid`
//! follows the plan's `no_new_privileges`, see `root_flags` (in `rootfs`).

use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use super::{overlay, Context};
use crate::plan::{ContainerPlan, RootfsMount};
use crate::sys::mount_api::{attach, clone_tree, set_attrs, MountAttrs};
use crate::sys::{Step, StepError};

fn root_attrs(plan: &ContainerPlan, readonly: bool) -> MountAttrs {
    let flags = super::root_flags(plan);
    MountAttrs {
        readonly,
        nodev: flags.contains(MsFlags::MS_NODEV),
        nosuid: flags.contains(MsFlags::MS_NOSUID),
        noexec: false,
    }
}

pub fn mount_rootfs(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), StepError> {
    let target = plan.rootfs.as_path();
    if plan.rootfs_mounts.is_empty() {
        return bind(target, target, false, root_attrs(plan, false), ctx);
    }
    for m in &plan.rootfs_mounts {
        match m.fstype.as_str() {
            "overlay" => overlay::mount_overlay(m, plan, ctx)?,
            "bind" | "none" | "" if is_bind(m) => {
                let recursive = m.options.iter().any(|o| o == "rbind");
                let readonly = m.options.iter().any(|o| o == "ro");
                bind(Path::new(&m.source), target, recursive, root_attrs(plan, readonly), ctx)?
            }
            other => {
                return Err(StepError::refused(
                    format!("mount rootfs {} on {}", m.source, target.display()),
                    format!("unsupported rootfs mount type {other:?} (options {:?})", m.options),
                ))
            }
        }
    }
    Ok(())
}

fn is_bind(m: &RootfsMount) -> bool {
    m.fstype == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind")
}

/// An idmapped bind of `source` onto `target` (both host paths) with `attrs` (on every mount of
/// the tree when `recursive`).
fn bind(
    source: &Path,
    target: &Path,
    recursive: bool,
    attrs: MountAttrs,
    ctx: Context<'_>,
) -> Result<(), StepError> {
    let step = || format!("bind rootfs {} on {}", source.display(), target.display());
    let tree = clone_tree(None, source, recursive).step(step)?;
    set_attrs(tree.as_fd(), attrs, Some(ctx.userns), recursive, source).step(step)?;
    let dest = open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step(step)?;
    attach(tree.as_fd(), dest.as_fd(), target).step(step)
}
