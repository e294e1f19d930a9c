//! pivot_root into the prepared root, dropping the host's tree from the mount namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fchdir, pivot_root};

use crate::sys::mount_api::{set_attrs, MountAttrs};
use crate::sys::{Step, StepError};

/// The `pivot_root(".", ".")` + `umount2(".", MNT_DETACH)` idiom: no directory for the old
/// root is needed, and afterwards only the new root is reachable.
pub fn pivot_into(root: OwnedFd) -> Result<(), StepError> {
    fchdir(root.as_fd()).step(|| "chdir to the new root")?;
    pivot_root(".", ".").step(|| "pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).step(|| "detach the old root")?;
    chdir("/").step(|| "chdir /")?;
    Ok(())
}

pub fn remount_root_readonly() -> Result<(), StepError> {
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step(|| "open /")?;
    set_attrs(
        root.as_fd(),
        MountAttrs { readonly: true, ..Default::default() },
        None,
        false,
        Path::new("/"),
    )
    .step(|| "make the root read-only")
}
