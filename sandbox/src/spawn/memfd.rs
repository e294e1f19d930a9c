//! A sealed, read-only memfd copy of the running binary (CVE-2019-5736: a container must
//! never get a writable handle on the host binary that builds it).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{fcntl, open, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;

/// The sealed copy, executable as `/proc/self/fd/N` (as runc does: it works for ELF
/// binaries although the fd is close-on-exec).
#[derive(Debug)]
pub(crate) struct SealedExe {
    fd: OwnedFd,
}

impl SealedExe {
    pub fn copy_of_self() -> Result<SealedExe, (&'static str, std::io::Error)> {
        let mut exe = File::open("/proc/self/exe").map_err(|e| ("open /proc/self/exe", e))?;
        let memfd = memfd_create(c"moat-init", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| ("memfd_create", e.into()))?;
        let mut copy = File::from(memfd);
        std::io::copy(&mut exe, &mut copy)
            .map_err(|e| ("copy /proc/self/exe into the memfd", e))?;
        let seals = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals))
            .map_err(|e| ("seal the memfd", e.into()))?;
        // Keep only a read-only handle on it.
        let ro = open(
            &PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd())),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ("reopen the memfd read-only", e.into()))?;
        Ok(SealedExe { fd: ro })
    }

    /// The path to exec it by, valid in this process and in children forked from it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}
