//! Masked paths (a file: /dev/null bound over it; a directory: an empty read-only tmpfs) and
//! read-only paths (bound onto themselves, read-only, submounts included). Paths missing from
//! the container are skipped.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};

use super::mount::fd_path;
use super::resolve::open_in_root;
use crate::sys::mount_api::{attach, clone_tree, set_attrs, MountAttrs};
use crate::sys::{Step, StepError};

fn existing(root: BorrowedFd<'_>, path: &Path) -> Result<Option<OwnedFd>, StepError> {
    match open_in_root(root, path) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(StepError::sys(format!("open {}", path.display()), e)),
    }
}

pub fn mask_paths(root: BorrowedFd<'_>, paths: &[PathBuf]) -> Result<(), StepError> {
    for path in paths {
        let Some(fd) = existing(root, path)? else { continue };
        let st = fstat(fd.as_fd()).step(|| format!("stat {}", path.display()))?;
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let target = fd_path(fd.as_fd());
        if is_dir {
            mount(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=0555"),
            )
            .step(|| format!("mask {} with an empty tmpfs", path.display()))?;
        } else {
            mount(Some("/dev/null"), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .step(|| format!("mask {} with /dev/null", path.display()))?;
        }
    }
    Ok(())
}

pub fn readonly_paths(root: BorrowedFd<'_>, paths: &[PathBuf]) -> Result<(), StepError> {
    for path in paths {
        let Some(fd) = existing(root, path)? else { continue };
        let step = || format!("make {} read-only", path.display());
        let tree = clone_tree(Some(fd.as_fd()), Path::new(""), true).step(step)?;
        set_attrs(
            tree.as_fd(),
            MountAttrs { readonly: true, ..Default::default() },
            None,
            true,
            path,
        )
        .step(step)?;
        attach(tree.as_fd(), fd.as_fd(), path).step(step)?;
    }
    Ok(())
}
