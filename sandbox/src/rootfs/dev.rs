//! A minimal /dev on the tmpfs the plan mounts there: null, zero, full, random, urandom, tty,
//! the fd/stdin/stdout/stderr/ptmx symlinks, and the pts, shm and mqueue directories. Nothing
//! else (no /dev/core, no host devices). Created as container root. Nodes are made with
//! mknod (we are host root); on a nodev /dev, host nodes are bound onto empty files instead.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::symlinkat;

use super::mount::fd_path;
use super::resolve::{create_in_root, open_in_root, Kind};
use super::Owner;
use crate::sys::{Step, StepError};

/// (name, major, minor) of the device nodes every container gets.
pub const NODES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// (link name, target).
pub const LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// (dir name, mode).
pub const DIRS: [(&str, u32); 3] = [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o1777)];

pub fn populate(root: BorrowedFd<'_>, owner: Owner, nodev: bool) -> Result<(), StepError> {
    let dev = open_in_root(root, Path::new("/dev")).step(|| "open /dev")?;
    owner.run(|| -> Result<(), StepError> {
        for (name, mode) in DIRS {
            mkdirat(dev.as_fd(), name, Mode::from_bits_truncate(mode))
                .step(|| format!("mkdir /dev/{name}"))?;
        }
        for (name, target) in LINKS {
            symlinkat(target, dev.as_fd(), name)
                .step(|| format!("symlink /dev/{name} -> {target}"))?;
        }
        if !nodev {
            for (name, major, minor) in NODES {
                mknodat(
                    dev.as_fd(),
                    name,
                    SFlag::S_IFCHR,
                    Mode::from_bits_truncate(0o666),
                    makedev(major, minor),
                )
                .step(|| format!("mknod /dev/{name}"))?;
            }
        }
        Ok(())
    })??;
    if nodev {
        for (name, _, _) in NODES {
            let path = Path::new("/dev").join(name);
            let fd = owner
                .run(|| create_in_root(root, &path, Kind::File))?
                .step(|| format!("create {}", path.display()))?;
            let host = format!("/dev/{name}");
            mount(
                Some(host.as_str()),
                fd_path(fd.as_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .step(|| format!("bind {host} on {}", path.display()))?;
        }
    }
    Ok(())
}
