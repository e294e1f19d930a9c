//! Mounting onto an already resolved target (an `O_PATH` fd), so the target cannot be swapped
//! between resolution and mount: through `/proc/self/fd/N` for mount(2) (the host's /proc,
//! before pivot_root), directly for the mount API. The kernel mounts on top of whatever is
//! already mounted there.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::resolve::open_in_root;
use crate::sys::mount_api::{set_attrs, MountAttrs};
use crate::sys::{Step, StepError};

pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Where a mount goes: the resolved target, and how to find it again in the root.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub root: BorrowedFd<'a>,
    pub dest: &'a Path,
    pub fd: BorrowedFd<'a>,
}

/// A new filesystem instance on the target; read-only is applied afterwards as a per-mount
/// flag (some filesystems share one superblock with the host's mount, which stays writable).
pub fn mount_fs(
    fstype: &str,
    source: &str,
    target: Target<'_>,
    attrs: MountAttrs,
    data: &str,
) -> Result<(), StepError> {
    let mut flags = MsFlags::empty();
    if attrs.nosuid {
        flags |= MsFlags::MS_NOSUID;
    }
    if attrs.nodev {
        flags |= MsFlags::MS_NODEV;
    }
    if attrs.noexec {
        flags |= MsFlags::MS_NOEXEC;
    }
    let data = (!data.is_empty()).then_some(data);
    mount(Some(source), fd_path(target.fd).as_str(), Some(fstype), flags, data)
        .step(|| format!("mount {fstype} on {}", target.dest.display()))?;
    if attrs.readonly {
        remount_readonly(target.root, target.dest)?;
    }
    Ok(())
}

/// Makes the topmost mount at `dest` read-only (that mount only, not its submounts).
pub fn remount_readonly(root: BorrowedFd<'_>, dest: &Path) -> Result<(), StepError> {
    // A fresh lookup crosses into the mount now on top; the old fd names the one beneath.
    let top = open_in_root(root, dest).step(|| format!("reopen {}", dest.display()))?;
    set_readonly(top.as_fd(), dest)
}

/// Makes the mount `top` (the topmost one at `dest`, freshly opened) read-only.
pub fn set_readonly(top: BorrowedFd<'_>, dest: &Path) -> Result<(), StepError> {
    set_attrs(top, MountAttrs { readonly: true, ..Default::default() }, None, false, dest)
        .step(|| format!("make {} read-only", dest.display()))
}
