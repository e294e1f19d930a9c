//! The built process's stdio: the fds that came with the request, and the host's `/dev/null`
//! (opened by the helper, before it changes any namespace) for each one that did not.
//! `finish` puts them on fds 0-2 (unless the process gets a terminal).

use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::channel::ReceivedFds;
use crate::sys::{Step, StepError};

/// The process's stdio, `/dev/null` where the caller gave nothing.
#[derive(Debug)]
pub(super) struct StdioFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// stdio for the process, /dev/null (the host's, opened now) where none was given.
pub(super) fn stdio_or_null(fds: &mut ReceivedFds) -> Result<StdioFds, StepError> {
    let null = || {
        open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).step(|| "open /dev/null")
    };
    Ok(StdioFds {
        stdin: fds.stdin.take().map_or_else(null, Ok)?,
        stdout: fds.stdout.take().map_or_else(null, Ok)?,
        stderr: fds.stderr.take().map_or_else(null, Ok)?,
    })
}
