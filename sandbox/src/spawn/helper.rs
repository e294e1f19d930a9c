//! The helper process's `main`: a fresh, single-threaded exec of the sealed binary. It takes
//! the control socket off fd 0 (see `channel`), reads one request and hands it to `container`
//! or `exec`, which build that process.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use super::channel::{Channel, ReceivedFds};
use super::wire::{send_msg, Request};
use super::{container, exec};
use crate::sys::{Step, StepError};

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
fn take_control_socket() -> Result<OwnedFd, StepError> {
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
        let f = StepError::refused("moat helper", format!("panicked: {info}"));
        let _ = send_msg(sock, &f.to_report(), &[]);
    }));
}

fn serve(channel: &Channel) -> Result<(), StepError> {
    let Some((request, fds)) = channel.request()? else {
        return Err(StepError::refused("read the request", "the launcher closed the socket"));
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
