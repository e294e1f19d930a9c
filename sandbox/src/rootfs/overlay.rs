//! containerd's overlay rootfs with its lower layers idmapped into the pod's user namespace.
//!
//! Each lowerdir gets an idmapped copy (open_tree + mount_setattr(IDMAP)) attached on a
//! directory of a small staging tmpfs mounted on the rootfs directory itself (in this private
//! mount namespace only); the overlay is mounted on top of that staging tmpfs. An idmapped
//! upperdir does not work (EOVERFLOW creating work/work), so upperdir and workdir stay plain and
//! their top directories are chowned to container root's host ids: files created in the
//! container land in the upperdir owned by the mapped host ids. pivot_root + the detach of the
//! old root later drop the staging tmpfs from the namespace (the overlay keeps its own
//! references to the layers).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, AtFlags, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{fchownat, Gid, Uid};

use super::Context;
use crate::plan::{ContainerPlan, RootfsMount};
use crate::sys::mount_api::{attach, idmapped_tree};
use crate::sys::{Step, StepError};

/// The parsed options of an overlay mount.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    pub lower: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub readonly: bool,
    /// Everything else, passed on as given.
    pub other: Vec<String>,
}

pub fn parse(options: &[String]) -> Result<OverlayOptions, String> {
    let mut o = OverlayOptions::default();
    for opt in options {
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            o.lower = v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        } else if let Some(v) = opt.strip_prefix("upperdir=") {
            o.upper = Some(PathBuf::from(v));
        } else if let Some(v) = opt.strip_prefix("workdir=") {
            o.work = Some(PathBuf::from(v));
        } else if opt == "ro" {
            o.readonly = true;
        } else if opt == "rw" {
            o.readonly = false;
        } else if opt.contains(',') {
            return Err(format!("option {opt:?} contains a comma"));
        } else {
            o.other.push(opt.clone());
        }
    }
    if o.lower.is_empty() {
        return Err("no lowerdir".into());
    }
    if o.upper.is_some() != o.work.is_some() {
        return Err("upperdir and workdir go together".into());
    }
    for p in o.lower.iter().chain(&o.upper).chain(&o.work) {
        if !p.is_absolute() {
            return Err(format!("{} is not absolute", p.display()));
        }
    }
    Ok(o)
}

pub fn mount_overlay(
    m: &RootfsMount,
    plan: &ContainerPlan,
    ctx: Context<'_>,
) -> Result<(), StepError> {
    let target = plan.rootfs.as_path();
    let step = |what: &str| format!("mount overlay on {}: {what}", target.display());
    let opts = parse(&m.options).map_err(|e| StepError::refused(step("options"), e))?;

    // The staging tmpfs, on the rootfs directory (private to this mount namespace).
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=64k"),
    )
    .step(|| step("staging tmpfs"))?;
    let staging =
        open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| step("open the staging tmpfs"))?;
    let mut layer_names = Vec::with_capacity(opts.lower.len());
    for (i, lower) in opts.lower.iter().enumerate() {
        let name = format!("l{i}");
        mkdirat(staging.as_fd(), name.as_str(), Mode::from_bits_truncate(0o700))
            .step(|| step(&format!("mkdir {name}")))?;
        let dir = nix::fcntl::openat(
            staging.as_fd(),
            name.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .step(|| step(&format!("open {name}")))?;
        let tree = idmapped_tree(lower, ctx.userns, false)
            .step(|| step(&format!("idmap lowerdir {}", lower.display())))?;
        attach(tree.as_fd(), dir.as_fd(), lower)
            .step(|| step(&format!("attach lowerdir {}", lower.display())))?;
        layer_names.push(name);
    }

    let owner = (plan.user.host_uid(0), plan.user.host_gid(0));
    for dir in opts.upper.iter().chain(&opts.work) {
        if let (Some(uid), Some(gid)) = owner {
            chown_top(dir, uid, gid).map_err(|e| {
                StepError::sys(step(&format!("chown {} to {uid}:{gid}", dir.display())), e)
            })?;
        }
    }

    let mut data = vec![format!("lowerdir={}", layer_names.join(":"))];
    if let (Some(upper), Some(work)) = (&opts.upper, &opts.work) {
        data.push(format!("upperdir={}", upper.display()));
        data.push(format!("workdir={}", work.display()));
    }
    data.extend(opts.other.iter().cloned());
    let data = data.join(",");
    let page = 4096;
    if data.len() >= page {
        return Err(StepError::refused(
            step("options"),
            format!("{} bytes of options (limit {page})", data.len()),
        ));
    }
    let mut flags = super::root_flags(plan);
    if opts.readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    // Layers are named relative to the staging directory (short options whatever the depth).
    nix::unistd::fchdir(staging.as_fd()).step(|| step("chdir to the staging tmpfs"))?;
    let mounted = mount(Some("overlay"), target, Some("overlay"), flags, Some(data.as_str()))
        .step(|| step(&data));
    nix::unistd::chdir("/").step(|| step("chdir /"))?;
    mounted
}

/// chown of the directory itself (not its contents, not through a symlink).
fn chown_top(dir: &Path, uid: u32, gid: u32) -> Result<(), nix::errno::Errno> {
    fchownat(
        nix::fcntl::AT_FDCWD,
        dir,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_options_parse() {
        let o = parse(&[
            "index=off".into(),
            "workdir=/s/2/work".into(),
            "upperdir=/s/2/fs".into(),
            "lowerdir=/s/1/fs:/s/0/fs".into(),
        ]);
        let o = o.ok();
        assert_eq!(o.as_ref().map(|o| o.lower.len()), Some(2));
        assert_eq!(o.as_ref().and_then(|o| o.upper.clone()), Some(PathBuf::from("/s/2/fs")));
        assert_eq!(o.map(|o| o.other), Some(vec!["index=off".to_string()]));
    }

    #[test]
    fn relative_or_missing_layers_are_refused() {
        assert!(parse(&["upperdir=/u".into(), "workdir=/w".into()]).is_err());
        assert!(parse(&["lowerdir=a:b".into()]).is_err());
        assert!(parse(&["lowerdir=/a".into(), "upperdir=/u".into()]).is_err());
    }
}
