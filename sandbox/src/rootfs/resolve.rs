//! Paths inside the container's root, resolved so that nothing (`..`, absolute or relative
//! symlinks) can lead outside it: `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from
//! an fd of the root. Missing components are created one by one, each re-resolved.
//!
//! Also host paths (bind sources), opened from the host's root with
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: the policy checked the path as
//! written, so a symlink anywhere in it is refused rather than followed, and the caller mounts
//! through the returned fd (see [`open_host_path`]).

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// The normal components of `path`, with `.` dropped and `..` applied lexically (clamped at
/// the root, as the kernel does at a root).
pub fn clean(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn relative(components: &[OsString]) -> PathBuf {
    if components.is_empty() {
        PathBuf::from(".")
    } else {
        components.iter().collect()
    }
}

/// An `O_PATH` fd of `path` inside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(&clean(path));
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, &rel, how)
}

/// Why a host path could not be opened as checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathError {
    /// A component of the path (the last one or a directory above it) is a symlink.
    Symlink,
    /// Any other failure of `openat2`.
    Sys(Errno),
}

/// An `O_PATH` fd of the absolute host path `path`, resolved from the host's root (`/` of
/// the calling process) component by component by the kernel, refusing every symlink and
/// magic link on the way (`RESOLVE_NO_SYMLINKS`): what the fd refers to is the path the
/// policy checked, whatever a writer of a parent directory swaps in meanwhile. `..` is
/// resolved lexically first (the policy compared the normalised path).
pub fn open_host_path(path: &Path) -> Result<OwnedFd, HostPathError> {
    if !path.is_absolute() {
        return Err(HostPathError::Sys(Errno::EINVAL));
    }
    let root = nix::fcntl::open(
        Path::new("/"),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(HostPathError::Sys)?;
    let rel = relative(&clean(path));
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root.as_fd(), &rel, how) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(HostPathError::Symlink),
        Err(e) => Err(HostPathError::Sys(e)),
    }
}

/// What `fd` refers to, as a mount target kind (a directory, or anything else as a file).
pub fn kind_of(fd: BorrowedFd<'_>) -> Result<Kind, Errno> {
    Ok(if is_dir(fd)? { Kind::Dir } else { Kind::File })
}

/// Whether `path` inside `root` is reached without following any symlink.
pub fn free_of_symlinks(root: BorrowedFd<'_>, path: &Path) -> Result<bool, Errno> {
    let rel = relative(&clean(path));
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(root, &rel, how) {
        Ok(_) => Ok(true),
        Err(Errno::ELOOP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What to create for a missing final component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

fn is_dir(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// An `O_PATH` fd of `path` inside `root`, creating missing directories on the way and the
/// last component as `kind` (mode 0755 / 0644) if missing.
pub fn create_in_root(root: BorrowedFd<'_>, path: &Path, kind: Kind) -> Result<OwnedFd, Errno> {
    let comps = clean(path);
    let mut parent = open_in_root(root, Path::new("."))?;
    for i in 0..comps.len() {
        let last = i + 1 == comps.len();
        let prefix = relative(&comps[..=i]);
        let fd = match open_in_root(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let name = comps[i].as_os_str();
                let created = if last && kind == Kind::File {
                    openat(
                        parent.as_fd(),
                        name,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755))
                };
                match created {
                    // EEXIST: created meanwhile, or a dangling symlink (reopening fails then).
                    Ok(()) | Err(Errno::EEXIST) => open_in_root(root, &prefix)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if !last && !is_dir(fd.as_fd())? {
            return Err(Errno::ENOTDIR);
        }
        parent = fd;
    }
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_open_only_without_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::fs::write(real.join("f"), "x").expect("write");
        // Input: a real directory and a real file: opened, with their kinds.
        let fd = open_host_path(&real).expect("real dir");
        assert_eq!(kind_of(fd.as_fd()), Ok(Kind::Dir));
        let fd = open_host_path(&real.join("f")).expect("real file");
        assert_eq!(kind_of(fd.as_fd()), Ok(Kind::File));
        // Input: the last component is a symlink (to a real directory).
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert_eq!(open_host_path(&link).err(), Some(HostPathError::Symlink));
        // Input: a directory above the last component is a symlink.
        assert_eq!(open_host_path(&link.join("f")).err(), Some(HostPathError::Symlink));
        // Input: a symlink to the host's root, and `..` that would climb through it.
        let up = dir.path().join("up");
        std::os::unix::fs::symlink("/", &up).expect("symlink");
        assert_eq!(open_host_path(&up.join("etc")).err(), Some(HostPathError::Symlink));
        assert_eq!(open_host_path(&real.join("../up/etc")).err(), Some(HostPathError::Symlink));
        // Input: a missing path and a relative one.
        assert_eq!(
            open_host_path(&dir.path().join("absent")).err(),
            Some(HostPathError::Sys(Errno::ENOENT))
        );
        assert_eq!(open_host_path(Path::new("rel")).err(), Some(HostPathError::Sys(Errno::EINVAL)));
    }

    #[test]
    fn dot_dot_cannot_climb_above_the_root() {
        let c = clean(Path::new("/../../etc/./passwd"));
        assert_eq!(c, vec![OsString::from("etc"), OsString::from("passwd")]);
        assert!(clean(Path::new("/..")).is_empty());
    }
}
