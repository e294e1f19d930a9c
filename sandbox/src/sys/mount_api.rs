//! The new mount API, wrapped: detached copies of mount trees (`open_tree(OPEN_TREE_CLONE)`),
//! their attributes and propagation (`mount_setattr`, idmapping into a user namespace
//! included), attaching them onto an already resolved target (`move_mount`), and new
//! filesystems that start detached (`fsopen`/`fsconfig`/`fsmount`).
//!
//! Hand-written over `libc::syscall`: nix (0.31) has no `open_tree`, `move_mount`,
//! `mount_setattr` or `fsopen`/`fsconfig`/`fsmount`. Errors are [`StepError`]s whose step names
//! the syscall and what it was about (`open_tree /path`, `fsmount the overlay`).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use super::StepError;

fn err(op: &str, path: &Path, errno: Errno) -> StepError {
    StepError::sys(format!("{op} {}", path.display()), errno)
}

fn cstring(op: &str, what: &Path, path: &Path) -> Result<CString, StepError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| err(op, what, Errno::EINVAL))
}

/// Mount attributes to set on a detached or attached mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountAttrs {
    fn bits(self) -> u64 {
        let mut bits = 0;
        if self.readonly {
            bits |= libc::MOUNT_ATTR_RDONLY;
        }
        if self.nosuid {
            bits |= libc::MOUNT_ATTR_NOSUID;
        }
        if self.nodev {
            bits |= libc::MOUNT_ATTR_NODEV;
        }
        if self.noexec {
            bits |= libc::MOUNT_ATTR_NOEXEC;
        }
        bits
    }
}

/// A detached copy of the mount at `path` (relative to `dirfd`, or the fd itself when `path`
/// is empty), with its submounts when `recursive`.
pub fn clone_tree(
    dirfd: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
) -> Result<OwnedFd, StepError> {
    open_tree_clone(dirfd, path, recursive, path)
}

/// A detached copy of the mount tree at what `fd` (an `O_PATH` fd, typically from
/// `openat2`) refers to, with its submounts when `recursive`: `open_tree(fd, "",
/// AT_EMPTY_PATH | OPEN_TREE_CLONE)`, so what is cloned is what was opened, not whatever a path
/// names now. `what` names it in errors.
pub fn clone_tree_of_fd(
    fd: BorrowedFd<'_>,
    recursive: bool,
    what: &Path,
) -> Result<OwnedFd, StepError> {
    open_tree_clone(Some(fd), Path::new(""), recursive, what)
}

/// `open_tree(dirfd, path, OPEN_TREE_CLONE)`; errors name `what`.
fn open_tree_clone(
    dirfd: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
    what: &Path,
) -> Result<OwnedFd, StepError> {
    let c_path = cstring("open_tree", what, path)?;
    let dir: RawFd = dirfd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call; it returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dir, c_path.as_ptr(), flags) };
    let fd = Errno::result(ret).map_err(|e| err("open_tree", what, e))?;
    let fd = RawFd::try_from(fd).map_err(|_| err("open_tree", what, Errno::EBADF))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mount_setattr` on the mount `fd` refers to (and below it when `recursive`).
/// `userns` makes a detached tree idmapped into that user namespace.
pub fn set_attrs(
    fd: BorrowedFd<'_>,
    attrs: MountAttrs,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
    what: &Path,
) -> Result<(), StepError> {
    let mut attr =
        libc::mount_attr { attr_set: attrs.bits(), attr_clr: 0, propagation: 0, userns_fd: 0 };
    if let Some(ns) = userns {
        attr.attr_set |= libc::MOUNT_ATTR_IDMAP;
        attr.userns_fd =
            u64::try_from(ns.as_raw_fd()).map_err(|_| err("mount_setattr", what, Errno::EBADF))?;
    }
    if attr.attr_set == 0 {
        return Ok(());
    }
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    mount_setattr(fd, flags, &attr).map_err(|e| err("mount_setattr", what, e))
}

/// Makes the detached tree `fd` (and every mount below it) a slave of the mounts it was cloned
/// from: `mount_setattr(propagation = MS_SLAVE, AT_RECURSIVE)`. A tree cloned from a shared
/// mount of the host's mount namespace then receives what the host mounts below it, and
/// nothing mounted in it propagates back.
pub fn make_slave(fd: BorrowedFd<'_>, what: &Path) -> Result<(), StepError> {
    let attr =
        libc::mount_attr { attr_set: 0, attr_clr: 0, propagation: libc::MS_SLAVE, userns_fd: 0 };
    mount_setattr(fd, libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, &attr)
        .map_err(|e| err("mount_setattr(MS_SLAVE)", what, e))
}

/// `mount_setattr(fd, "", flags, attr)`: the attributes of the mount (tree) `fd` itself.
fn mount_setattr(
    fd: BorrowedFd<'_>,
    flags: libc::c_int,
    attr: &libc::mount_attr,
) -> Result<(), Errno> {
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (a live, correctly sized struct) and an empty
    // NUL-terminated path; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// A detached, idmapped copy of `path` (a directory or file on the host).
pub fn idmapped_tree(
    path: &Path,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> Result<OwnedFd, StepError> {
    let tree = clone_tree(None, path, recursive)?;
    set_attrs(tree.as_fd(), MountAttrs::default(), Some(userns), recursive, path)?;
    Ok(tree)
}

/// Attaches the detached tree `tree` onto the file or directory `target` refers to (an
/// `O_PATH` fd, so the target cannot be swapped for a symlink after it was resolved).
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>, what: &Path) -> Result<(), StepError> {
    let empty = c"";
    // SAFETY: move_mount reads two empty NUL-terminated paths that outlive the call; both fds
    // are borrowed for its duration.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop).map_err(|e| err("move_mount", what, e))
}

/// A filesystem context (`fsopen`): options are set with `fsconfig`, and [`FsContext::mount`]
/// creates the superblock and a detached mount of it (`fsmount`), in no mount namespace until
/// attached. Errors name the filesystem type.
#[derive(Debug)]
pub struct FsContext {
    fd: OwnedFd,
    name: &'static str,
}

impl FsContext {
    pub fn open(fstype: &'static CStr) -> Result<FsContext, StepError> {
        let name = fstype.to_str().unwrap_or("?");
        // SAFETY: fsopen reads a NUL-terminated literal; it returns a new fd or -1.
        let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
        let raw = Errno::result(ret)
            .and_then(|r| RawFd::try_from(r).map_err(|_| Errno::EBADF))
            .map_err(|e| StepError::sys(format!("fsopen {name}"), e))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(FsContext { fd: unsafe { OwnedFd::from_raw_fd(raw) }, name })
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), StepError> {
        let step = || format!("fsconfig {} {key}={value}", self.name);
        let k = CString::new(key).map_err(|_| StepError::refused(step(), "NUL in the key"))?;
        let v = CString::new(OsStr::new(value).as_bytes())
            .map_err(|_| StepError::refused(step(), "NUL in the value"))?;
        // SAFETY: fsconfig reads two NUL-terminated strings that outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        Errno::result(ret).map(drop).map_err(|e| StepError::sys(step(), e))
    }

    /// Creates the superblock and a detached mount of it with `attrs`.
    pub fn mount(self, attrs: MountAttrs) -> Result<OwnedFd, StepError> {
        // SAFETY: fsconfig with a command and null key and value reads no memory.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                libc::FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        Errno::result(ret).map_err(|e| StepError::sys(format!("create the {}", self.name), e))?;
        // SAFETY: fsmount takes an fd and two integers; it returns a new fd or -1.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs.bits(),
            )
        };
        let raw = Errno::result(ret)
            .and_then(|r| RawFd::try_from(r).map_err(|_| Errno::EBADF))
            .map_err(|e| StepError::sys(format!("fsmount the {}", self.name), e))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}
