//! Lexical path normalisation: `.`, `..` and repeated `/` resolved on the path's text, no
//! filesystem access (what a bind source or a containerd directory names, before anything is
//! opened; opening is `rootfs::resolve`'s, with `openat2`).

use std::path::{Component, Path, PathBuf};

/// Lexically normalises an absolute path; `None` for a relative one.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}
