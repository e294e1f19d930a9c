//! The helper's end of the control socket to the shim (`SOCK_SEQPACKET`, its fd 0 at start):
//! the request and the fds that came with it, and every report back (log lines, the new
//! process's pid and pidfd, its console, seccomp listeners, "ready", failures), sent with
//! `SCM_RIGHTS` through `wire`. Used by the helper and, after fork, by the process it builds
//! (the socket is close-on-exec: end-of-stream after `Start` tells the launcher exec worked).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::wire::{recv_large, recv_msg, send_msg, Control, FdLayout, Report, Request};
use crate::sys::StepError;

/// The fds that came with the request.
#[derive(Debug)]
pub(super) struct ReceivedFds {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub userns: Option<OwnedFd>,
    /// An exec's: the pidfd of the container's init.
    pub init: Option<OwnedFd>,
}

impl ReceivedFds {
    /// Names the received fds by the request's layout (they come in its order).
    pub fn split(layout: FdLayout, fds: Vec<OwnedFd>) -> Result<Self, StepError> {
        if fds.len() != layout.count() {
            return Err(StepError::refused(
                "read the request",
                format!("{} fds for {layout:?}", fds.len()),
            ));
        }
        let mut it = fds.into_iter();
        let mut take = |present: bool| if present { it.next() } else { None };
        Ok(ReceivedFds {
            stdin: take(layout.stdin),
            stdout: take(layout.stdout),
            stderr: take(layout.stderr),
            userns: take(layout.userns),
            init: take(layout.init),
        })
    }
}

/// The helper's (and its child's) end of the control socket.
#[derive(Debug)]
pub(super) struct Channel {
    pub sock: OwnedFd,
}

impl Channel {
    /// The one request and the fds that came with it; `None` when the launcher closed the
    /// socket first.
    pub fn request(&self) -> Result<Option<(Request, Vec<OwnedFd>)>, StepError> {
        Ok(recv_large::<Request>(self.sock.as_fd())?)
    }
    pub fn log(&self, message: impl Into<String>) {
        // Best effort: a log line that cannot be delivered changes nothing.
        let _ = send_msg(self.sock.as_fd(), &Report::Log { message: message.into() }, &[]);
    }
    pub fn failed(&self, f: &StepError) {
        // Best effort: if the launcher is gone there is nobody to tell.
        let _ = send_msg(self.sock.as_fd(), &f.to_report(), &[]);
    }
    /// Reports the forked process: its pid, its pidfd and (optionally) its user namespace.
    /// The pidfd is taken by the parent right after `fork`, before it lets the child go on
    /// (see `child` and `pidfd`).
    pub fn spawned(
        &self,
        pid: i32,
        pidfd: BorrowedFd<'_>,
        userns: Option<BorrowedFd<'_>>,
    ) -> Result<(), StepError> {
        let mut fds: Vec<BorrowedFd<'_>> = vec![pidfd];
        fds.extend(userns);
        let report = Report::Spawned { pid, userns: fds.len() > 1 };
        Ok(send_msg(self.sock.as_fd(), &report, &fds)?)
    }
    pub fn console(&self, master: BorrowedFd<'_>) -> Result<(), StepError> {
        Ok(send_msg(self.sock.as_fd(), &Report::Console, &[master])?)
    }
    /// Audit (issue 15): hands the seccomp listener to the launcher.
    pub fn seccomp_listener(&self, listener: BorrowedFd<'_>) -> Result<(), StepError> {
        Ok(send_msg(self.sock.as_fd(), &Report::SeccompListener, &[listener])?)
    }
    pub fn ready(&self) -> Result<(), StepError> {
        Ok(send_msg(self.sock.as_fd(), &Report::Ready, &[])?)
    }
    /// Waits for `Start`; `false` when the launcher went away instead.
    pub fn wait_start(&self) -> Result<bool, StepError> {
        // The launcher's receive timeout does not apply here: wait as long as it takes.
        match recv_msg::<Control>(self.sock.as_fd())? {
            Some((Control::Start, _)) => Ok(true),
            None => Ok(false),
        }
    }
}
