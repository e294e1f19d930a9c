//! A pty opened inside the container (its /dev/ptmx, after pivot_root and the uid change, so
//! the slave belongs to the container's user), made the controlling terminal.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::sys::{Step, StepError};

/// Opens a pty pair; the caller must already be a session leader. Returns (master, slave);
/// the slave is the controlling terminal of this process.
pub(super) fn open_controlling_pty(
    size: Option<(u16, u16)>,
) -> Result<(OwnedFd, OwnedFd), StepError> {
    let master =
        open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| "open /dev/ptmx in the container")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live local.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .step(|| "unlock the pty")?;
    // SAFETY: TIOCGPTPEER returns a new fd for the slave (no path lookup, so no race).
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = Errno::result(slave).step(|| "open the pty slave")?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a live winsize struct.
        Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
            .step(|| "set the console size")?;
    }
    // SAFETY: TIOCSCTTY takes an int argument, no pointer.
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })
        .step(|| "make the pty the controlling terminal")?;
    Ok((master, slave))
}
