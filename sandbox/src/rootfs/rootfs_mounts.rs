//! containerd's rootfs mounts onto `plan.rootfs`: overlay (idmapped lower layers) or bind
//! (idmapped). With no mounts, the populated rootfs directory is bound onto itself, idmapped.

use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{overlay, Context, RootfsError, Step};
use crate::plan::{ContainerPlan, RootfsMount};
use crate::userns::idmap::{attach, clone_tree, set_attrs, MountAttrs};

pub fn mount_rootfs(plan: &ContainerPlan, ctx: Context<'_>) -> Result<(), RootfsError> {
    let target = plan.rootfs.as_path();
    if plan.rootfs_mounts.is_empty() {
        return bind(target, target, false, false, ctx);
    }
    for m in &plan.rootfs_mounts {
        match m.fstype.as_str() {
            "overlay" => overlay::mount_overlay(m, plan, ctx)?,
            "bind" | "none" | "" if is_bind(m) => {
                let recursive = m.options.iter().any(|o| o == "rbind");
                let readonly = m.options.iter().any(|o| o == "ro");
                bind(Path::new(&m.source), target, recursive, readonly, ctx)?
            }
            other => {
                return Err(RootfsError::refused(
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

/// An idmapped bind of `source` onto `target` (both host paths).
fn bind(
    source: &Path,
    target: &Path,
    recursive: bool,
    readonly: bool,
    ctx: Context<'_>,
) -> Result<(), RootfsError> {
    let step = || format!("bind rootfs {} on {}", source.display(), target.display());
    let tree = clone_tree(None, source, recursive).step(step)?;
    let attrs = MountAttrs { readonly, ..Default::default() };
    set_attrs(tree.as_fd(), attrs, Some(ctx.userns), recursive, source).step(step)?;
    let dest = open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step(step)?;
    attach(tree.as_fd(), dest.as_fd(), target).step(step)
}
