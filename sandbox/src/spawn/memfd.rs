//! The fallback seal of the helper binary (see `exe_seal`): a sealed, read-only memfd copy of
//! the running binary. As safe as the overlay view, but every shim holding one pins the
//! binary's size in shared memory, so it is used only where no overlay can be made.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{fcntl, open, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;

/// A read-only fd on a sealed (no write, grow, shrink or new seals) memfd copy of
/// `/proc/self/exe`.
pub(crate) fn memfd_copy_of_self() -> Result<OwnedFd, (&'static str, std::io::Error)> {
    let mut exe = File::open("/proc/self/exe").map_err(|e| ("open /proc/self/exe", e))?;
    let memfd = memfd_create(c"moat-init", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| ("memfd_create", e.into()))?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy).map_err(|e| ("copy /proc/self/exe into the memfd", e))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| ("seal the memfd", e.into()))?;
    // Keep only a read-only handle on it.
    open(
        &PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd())),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("reopen the memfd read-only", e.into()))
}
