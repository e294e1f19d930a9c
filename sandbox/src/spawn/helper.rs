//! The helper process: a fresh, single-threaded exec of the sealed binary. It reads one
//! request from the control socket (its fd 0) and builds that process.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use super::failure::{Failure, StepExt};
use super::pidfd::PidFd;
use super::wire::{recv_large, recv_msg, send_msg, Control, FdLayout, Report, Request};
use super::{container, exec};

/// The control socket's fd number, for the panic hook.
static CONTROL_FD: AtomicI32 = AtomicI32::new(-1);

/// Entry point of the re-executed binary: `main()` calls this first when argv[1] == HELPER_ARG.
pub fn helper_main() -> ! {
    // Not dumpable until exec (which restores it): processes already in the container cannot
    // ptrace or open /proc/<pid>/ files of a process we are still setting up (as runc does).
    if nix::sys::prctl::set_dumpable(false).is_err() {
        std::process::exit(2);
    }
    let code = match take_control_socket() {
        Ok(sock) => {
            let channel = Channel { sock };
            match serve(&channel) {
                Ok(()) => 0,
                Err(f) => {
                    channel.failed(&f);
                    1
                }
            }
        }
        Err(_) => 2,
    };
    std::process::exit(code)
}

/// Moves the control socket off fd 0 (close-on-exec) and makes sure 0, 1 and 2 are open,
/// so fds received later never land on them.
fn take_control_socket() -> Result<OwnedFd, Failure> {
    // SAFETY: fd 0 is the control socket the launcher handed us; we only borrow it to dup it.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let raw = fcntl(stdin, FcntlArg::F_DUPFD_CLOEXEC(3)).step(|| "dup the control socket")?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    CONTROL_FD.store(sock.as_raw_fd(), Ordering::SeqCst);
    install_panic_hook();
    for target in 0..3 {
        let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| "open /dev/null")?;
        // fd 0 is replaced; 1 and 2 only when they are not open.
        // SAFETY: fcntl(F_GETFD) on a number only queries; no fd is created or consumed.
        let open_already = target != 0 && unsafe { libc::fcntl(target, libc::F_GETFD) } >= 0;
        if !open_already {
            // SAFETY: dup2 onto a stdio number we own in this single-threaded process.
            let ret = unsafe { libc::dup2(null.as_raw_fd(), target) };
            nix::errno::Errno::result(ret).step(|| format!("put /dev/null on fd {target}"))?;
        }
    }
    Ok(sock)
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let raw: RawFd = CONTROL_FD.load(Ordering::SeqCst);
        if raw < 0 {
            return;
        }
        // SAFETY: the control socket stays open until exec or exit; a panic happens before either.
        let sock = unsafe { BorrowedFd::borrow_raw(raw) };
        let f = Failure::refused("moat helper", format!("panicked: {info}"));
        let _ = send_msg(sock, &f.to_report(), &[]);
    }));
}

fn serve(channel: &Channel) -> Result<(), Failure> {
    let Some((request, fds)) = recv_large::<Request>(channel.sock.as_fd())? else {
        return Err(Failure::refused("read the request", "the launcher closed the socket"));
    };
    match request {
        Request::Container { plan, fds: layout } => {
            let fds = ReceivedFds::split(layout, fds)?;
            container::run(channel, &plan, fds)
        }
        Request::Exec { plan, fds: layout } => {
            let fds = ReceivedFds::split(layout, fds)?;
            exec::run(channel, &plan, fds)
        }
    }
}

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
    fn split(layout: FdLayout, fds: Vec<OwnedFd>) -> Result<Self, Failure> {
        if fds.len() != layout.count() {
            return Err(Failure::refused(
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
    pub fn log(&self, message: impl Into<String>) {
        // Best effort: a log line that cannot be delivered changes nothing.
        let _ = send_msg(self.sock.as_fd(), &Report::Log { message: message.into() }, &[]);
    }
    pub fn failed(&self, f: &Failure) {
        // Best effort: if the launcher is gone there is nobody to tell.
        let _ = send_msg(self.sock.as_fd(), &f.to_report(), &[]);
    }
    /// Reports the forked process: its pid, its pidfd and (optionally) its user namespace.
    /// Called by the parent right after `fork`, before it lets the child go on: the child
    /// cannot have been reaped yet (we are its parent and never wait), so the pidfd taken
    /// here is the child's and no other process's (see `pidfd`).
    pub fn spawned(&self, pid: i32, userns: Option<BorrowedFd<'_>>) -> Result<(), Failure> {
        let pidfd = PidFd::open(pid).step(|| format!("pidfd_open of the new process {pid}"))?;
        let mut fds: Vec<BorrowedFd<'_>> = vec![pidfd.as_fd()];
        fds.extend(userns);
        let report = Report::Spawned { pid, userns: fds.len() > 1 };
        Ok(send_msg(self.sock.as_fd(), &report, &fds)?)
    }
    pub fn console(&self, master: BorrowedFd<'_>) -> Result<(), Failure> {
        Ok(send_msg(self.sock.as_fd(), &Report::Console, &[master])?)
    }
    /// Audit (issue 15): hands the seccomp listener to the launcher.
    pub fn seccomp_listener(&self, listener: BorrowedFd<'_>) -> Result<(), Failure> {
        Ok(send_msg(self.sock.as_fd(), &Report::SeccompListener, &[listener])?)
    }
    pub fn ready(&self) -> Result<(), Failure> {
        Ok(send_msg(self.sock.as_fd(), &Report::Ready, &[])?)
    }
    /// Waits for `Start`; `false` when the launcher went away instead.
    pub fn wait_start(&self) -> Result<bool, Failure> {
        // The launcher's receive timeout does not apply here: wait as long as it takes.
        match recv_msg::<Control>(self.sock.as_fd())? {
            Some((Control::Start, _)) => Ok(true),
            None => Ok(false),
        }
    }
}
