//! The binary every helper is started from, sealed against CVE-2019-5736: a process in a
//! container must never get a writable handle on the host binary that builds it, even through
//! `/proc/<helper pid>/exe` or an `O_PATH` fd on it kept until the helper is gone.
//!
//! Why a read-only overlayfs view and not a copy: the shim used to keep a sealed memfd copy
//! of itself (as runc <= 1.1 did). That copy is shared memory the node pays once per pod (the
//! shim binary's size, 4+ MiB release, per shim), which made a moat pod cost the node more than
//! a runc pod (issue 11). runc 1.2 (`libcontainer/exeseal`) replaced the copy with a private,
//! detached, read-only overlayfs whose only layers are the binary's directory and an empty
//! directory; moat does the same, written for moat:
//! - the overlay is made with `fsopen`/`fsmount` and never attached anywhere: it is in no
//!   mount namespace, no path leads to it, it lives as long as an fd on it;
//! - an overlay with no upper layer cannot be written at all (EROFS for every open for
//!   writing, truncate, chmod) and cannot be "unwrapped": the file reached through it, through
//!   `/proc/<pid>/exe` of a process exec'd from it, or through an `O_PATH` fd re-opened via
//!   `/proc/self/fd`, is the overlay's file, not the layer's;
//! - reading and executing go through to the binary's own page cache: no byte is copied, so a
//!   pod pins no memory for it (the overlay's superblock is a few KiB of kernel memory);
//! - the running binary cannot be changed in place meanwhile: the shim itself runs from it,
//!   so the kernel refuses writes to it (ETXTBSY) while any shim lives.
//!
//! Why not the alternatives: a once-per-node sealed copy (a file on a read-only mount) needs
//! node state that must be created race-free, versioned across upgrades and cleaned up, and
//! still costs the binary's size once; executing the installed binary through a plain `O_PATH`
//! fd leaves `/proc/<pid>/exe` pointing at a writable host file (CVE-2019-5736 itself); a
//! separate small helper executable is a second binary to install and keep in step.
//!
//! Overlayfs needs two layers when it has no upper one. The empty second layer is a detached,
//! empty, read-only tmpfs (no node state; recent kernels, 6.18 here, accept a detached mount as a
//! layer); on older kernels it is the empty directory `/run/moat/empty`, created once per node,
//! root-owned and writable by nobody. Its content cannot matter: the binary's directory is the
//! top layer and the file opened through the overlay is checked to be the running binary.
//! Only where no overlay can be made (no overlayfs, no CAP_SYS_ADMIN, the running binary
//! replaced on disk) does the helper fall back to the sealed memfd copy (`memfd`), with a
//! warning: as safe, but it costs the binary's size per pod again.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, readlink, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode};

use super::memfd::memfd_copy_of_self;
use crate::sys::mount_api::{FsContext, MountAttrs};
use crate::sys::{Step, StepError};

/// How the helper binary is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeSeal {
    /// The running binary's own file through a private read-only overlayfs whose empty layer
    /// is `layer`: nothing copied.
    Overlay { layer: EmptyLayer },
    /// A sealed memfd copy of the binary: the binary's size in shared memory per shim.
    MemfdCopy,
}

/// The overlay's empty second layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyLayer {
    /// A detached, empty, read-only tmpfs (recent kernels accept it as a layer; 6.18 does).
    Detached,
    /// [`NODE_EMPTY_DIR`], made once per node.
    NodeDir,
}

/// The empty directory used as the overlay's second layer where the kernel refuses a
/// detached one. `/run/moat` is moat's and refused to pods as a host path (`policy::host_paths`).
pub const NODE_EMPTY_DIR: &str = "/run/moat/empty";

/// Why the helper binary could not be sealed.
#[derive(Debug, thiserror::Error)]
#[error("sealing the helper binary: {step}: {reason}",
    reason = super::describe(.errno, .detail))]
pub struct ExeSealError {
    /// What was being done (`fsmount the overlay`, `open /run/moat/empty`, ...).
    pub step: String,
    pub errno: Option<Errno>,
    pub detail: Option<String>,
}

impl From<StepError> for ExeSealError {
    fn from(e: StepError) -> Self {
        ExeSealError { step: e.step, errno: e.errno, detail: e.detail }
    }
}

/// The sealed binary: an fd the helper is exec'd through (`/proc/self/fd/N`, as runc does;
/// it works for ELF binaries although the fd is close-on-exec, so no helper inherits it).
#[derive(Debug)]
pub struct SealedExe {
    fd: OwnedFd,
    seal: ExeSeal,
}

impl SealedExe {
    /// The overlay view of the running binary (detached empty layer first, then the node's
    /// empty directory); the memfd copy when neither can be made. The error of the overlay is
    /// returned beside a working fallback, for the caller to log.
    pub fn open() -> Result<(SealedExe, Option<ExeSealError>), ExeSealError> {
        let overlay = SealedExe::open_with(EmptyLayer::Detached)
            .or_else(|_| SealedExe::open_with(EmptyLayer::NodeDir));
        match overlay {
            Ok(exe) => Ok((exe, None)),
            Err(why) => {
                let fd = memfd_copy_of_self().map_err(|(step, e)| StepError::io(step, &e))?;
                Ok((SealedExe { fd, seal: ExeSeal::MemfdCopy }, Some(why)))
            }
        }
    }

    /// The overlay view with the given empty layer, or why it cannot be made.
    pub fn open_with(layer: EmptyLayer) -> Result<SealedExe, ExeSealError> {
        let fd = overlay_view(layer)?;
        Ok(SealedExe { fd, seal: ExeSeal::Overlay { layer } })
    }

    pub fn seal(&self) -> ExeSeal {
        self.seal
    }

    /// The path to exec it by, valid in this process and in children forked from it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

impl AsFd for SealedExe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An `O_PATH` fd on the running binary as seen through a new, detached, read-only overlay.
fn overlay_view(layer: EmptyLayer) -> Result<OwnedFd, StepError> {
    let path_flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let exe = open("/proc/self/exe", path_flags, Mode::empty()).step(|| "open /proc/self/exe")?;
    let running = fstat(&exe).step(|| "fstat /proc/self/exe")?;
    let target = readlink("/proc/self/exe").step(|| "readlink /proc/self/exe")?;
    let target = PathBuf::from(target);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(StepError::refused("split /proc/self/exe", format!("{target:?}")));
    };
    // The binary's directory, and the binary in it: the running one (not a file that replaced
    // it since the shim started: then there is nothing on disk to show, and a copy is made).
    let dir_fd = open(dir, path_flags | OFlag::O_DIRECTORY, Mode::empty())
        .step(|| format!("open {}", dir.display()))?;
    let on_disk = openat(&dir_fd, name, path_flags | OFlag::O_NOFOLLOW, Mode::empty())
        .and_then(|fd| fstat(&fd))
        .step(|| format!("open {}", target.display()))?;
    if (on_disk.st_dev, on_disk.st_ino) != (running.st_dev, running.st_ino) {
        return Err(StepError::refused(
            format!("open {}", target.display()),
            "it is not the running binary (replaced on disk since the shim started)",
        ));
    }
    let empty = match layer {
        EmptyLayer::Detached => detached_empty_tmpfs()?,
        EmptyLayer::NodeDir => node_empty_dir()?,
    };
    let fs = FsContext::open(c"overlay")?;
    // The binary's directory on top, so nothing in the empty layer can hide the binary.
    // `/proc/self/fd/N` paths: no ':' or '\' to escape, and no path to race.
    let lower = format!("/proc/self/fd/{}:/proc/self/fd/{}", dir_fd.as_raw_fd(), empty.as_raw_fd());
    fs.set("lowerdir", &lower)?;
    // xino would remap the inode numbers the check below compares (and logs to dmesg when the
    // layers are on different filesystems); older kernels without it are fine.
    let _ = fs.set("xino", "off");
    let mnt = fs.mount(SEALED)?;
    let view = openat(&mnt, name, path_flags | OFlag::O_NOFOLLOW, Mode::empty())
        .step(|| format!("open {name:?} on the overlay"))?;
    let seen = fstat(&view).step(|| "fstat the overlay's file")?;
    if !same_file_content(&seen, &running) {
        return Err(StepError::refused(
            "check the overlay's file",
            format!("{name:?} there is not the running binary"),
        ));
    }
    Ok(view)
}

/// An overlay shows a layer's file with the overlay's device number but the layer's inode
/// number (xino off), size and times.
fn same_file_content(a: &FileStat, b: &FileStat) -> bool {
    let is_reg = |s: &FileStat| s.st_mode & libc::S_IFMT == libc::S_IFREG;
    is_reg(a)
        && is_reg(b)
        && (a.st_ino, a.st_size, a.st_mtime, a.st_mtime_nsec)
            == (b.st_ino, b.st_size, b.st_mtime, b.st_mtime_nsec)
}

/// How the overlay and the empty tmpfs are mounted: read-only, nodev, nosuid.
const SEALED: MountAttrs = MountAttrs { readonly: true, nodev: true, nosuid: true, noexec: false };

/// A new, empty, read-only tmpfs in no mount namespace.
fn detached_empty_tmpfs() -> Result<OwnedFd, StepError> {
    let fs = FsContext::open(c"tmpfs")?;
    // Nothing is ever written to it: the smallest size there is.
    fs.set("size", "4k")?;
    fs.set("mode", "0555")?;
    fs.mount(SEALED)
}

/// [`NODE_EMPTY_DIR`], created if missing; it and `/run/moat` must be directories owned by
/// root and writable by nobody else (a symlink is not followed).
fn node_empty_dir() -> Result<OwnedFd, StepError> {
    let dir = Path::new(NODE_EMPTY_DIR);
    let mut fd = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step(|| "open /")?;
    let mut so_far = PathBuf::from("/");
    let parts: Vec<&OsStr> = dir.iter().skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        so_far.push(part);
        let ours = i > 0; // `/run` is the system's; `moat` and `empty` are made here.
        if ours {
            let mode = if i + 1 == parts.len() { 0o555 } else { 0o711 };
            match mkdirat(&fd, *part, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(StepError::sys(format!("mkdir {}", so_far.display()), e)),
            }
        }
        let next = openat(
            &fd,
            *part,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| format!("open {}", so_far.display()))?;
        let st = fstat(&next).step(|| format!("fstat {}", so_far.display()))?;
        if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
            return Err(StepError::refused(
                format!("check {}", so_far.display()),
                format!(
                    "owned by uid {} with mode {:o}: not root's alone",
                    st.st_uid,
                    st.st_mode & 0o7777
                ),
            ));
        }
        fd = next;
    }
    Ok(fd)
}
