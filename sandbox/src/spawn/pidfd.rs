//! Process file descriptors: a handle on one process that, unlike its pid number, can never
//! come to mean another process. Everything moat signals or joins after spawning it goes
//! through one of these (`pidfd_open(2)`, `pidfd_send_signal(2)`, `setns(2)` on a pidfd).
//!
//! nix 0.31 wraps neither `pidfd_open` nor `pidfd_send_signal`, so the two syscalls are made
//! here with libc, each in one small block.
//!
//! Where a pidfd is taken: by the helper, in the parent branch right after `fork`, before it
//! reports the pid. Until the helper exits it is the child's parent and never waits, so the
//! child cannot be reaped and its pid number cannot be reused: the pidfd is certain to be
//! the child's. (The shim could not do this as safely on receiving the pid: by then the
//! helper may have exited, the child been reparented to the shim, killed by the tenant and
//! reaped by the shim's reaper, and the number handed to someone else.)

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::signal::Signal;

/// A pidfd and the (host) pid it was opened for. Clones share the one fd.
#[derive(Debug, Clone)]
pub struct PidFd {
    fd: Arc<OwnedFd>,
    pid: i32,
}

impl PidFd {
    /// `pidfd_open(pid, 0)`. Only sound while `pid` cannot have been reused: the caller is
    /// its parent and has not reaped it (see the module comment).
    pub fn open(pid: i32) -> Result<PidFd, Errno> {
        if pid <= 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; no
        // memory is shared with the kernel.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let raw = RawFd::try_from(Errno::result(ret)?).map_err(|_| Errno::EBADF)?;
        // SAFETY: the kernel just created this fd (close-on-exec) for us alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PidFd { fd: Arc::new(fd), pid })
    }

    /// Wraps a pidfd received from the helper, for the process it said has `pid`.
    pub(crate) fn from_received(fd: OwnedFd, pid: i32) -> PidFd {
        PidFd { fd: Arc::new(fd), pid }
    }

    /// The host pid the fd was opened for (for messages and containerd; never to act on).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `pidfd_send_signal`: signals exactly this process. ESRCH once it has exited (even if
    /// its pid number now belongs to another process).
    pub fn send_signal(&self, signal: Signal) -> Result<(), Errno> {
        // SAFETY: a pidfd we own, a valid signal number, no siginfo (NULL) and no flags.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Errno::result(ret).map(drop)
    }
}

impl PidFd {
    /// Ok while the process has not been reaped (signal 0 through the pidfd: nothing is
    /// sent); ESRCH once it has. So a path `/proc/<pid>/...` opened *before* this returned Ok
    /// was this process's: its pid could not have been anyone else's in between.
    pub fn check_alive(&self) -> Result<(), Errno> {
        // SAFETY: a pidfd we own, signal 0 (permission and existence check only), no
        // siginfo (NULL) and no flags.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Errno::result(ret).map(drop)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
