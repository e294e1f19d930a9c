//! The container's cgroup view, read-only. Choice: fresh cgroup filesystem mounts made from
//! inside the container's own cgroup namespace (the init unshared it after it was moved into
//! its cgroup), so each hierarchy's root is the container's cgroup and nothing of the host's
//! tree shows. On a pure cgroup v2 host that is one cgroup2 mount; on a v1 or hybrid host, a
//! tmpfs with one mount per hierarchy listed in /proc/self/cgroup (`cpu,cpuacct` plus
//! `cpu` and `cpuacct` symlinks, `systemd` for name=systemd, `unified` for the v2 hierarchy),
//! as runc lays it out. Without a cgroup namespace of its own the mount is refused: a fresh
//! cgroupfs would show the whole host hierarchy.

use std::os::fd::AsFd;

use nix::unistd::symlinkat;

use super::mount::{mount_fs, remount_readonly, set_readonly, Target};
use super::options::translate_ids;
use super::resolve::{create_in_root, open_in_root, Kind};
use super::{Context, Owner};
use crate::plan::UserNamespacePlan;
use crate::sys::mount_api::MountAttrs;
use crate::sys::{Step, StepError};

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// `cpu,cpuacct`, `name=systemd`, empty for v2.
    pub controllers: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Hierarchy> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            parts.next()?;
            Some(Hierarchy { controllers: controllers.to_string() })
        })
        .collect()
}

pub fn mount_cgroups(
    target: Target<'_>,
    attrs: MountAttrs,
    ctx: Context<'_>,
    owner: Owner,
    user: &UserNamespacePlan,
) -> Result<(), StepError> {
    let dest = target.dest;
    if !ctx.new_cgroupns {
        return Err(StepError::refused(
            format!("mount cgroup on {}", dest.display()),
            "a cgroup mount needs the container to have its own cgroup namespace",
        ));
    }
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| {
        StepError::sys(
            "read /proc/self/cgroup",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let hierarchies = parse_proc_cgroup(&text);
    let fs_attrs = MountAttrs { readonly: false, ..attrs };
    if hierarchies.len() == 1 && hierarchies[0].controllers.is_empty() {
        mount_fs("cgroup2", "cgroup2", target, fs_attrs, "")?;
        if attrs.readonly {
            remount_readonly(target.root, dest)?;
        }
        return Ok(());
    }
    let data = translate_ids(Some("mode=755"), user, true, "tmpfs for cgroups")?;
    mount_fs(
        "tmpfs",
        "cgroup",
        target,
        MountAttrs { readonly: false, nosuid: true, nodev: true, noexec: true },
        &data,
    )?;
    for h in &hierarchies {
        let (name, fstype, data) = if h.controllers.is_empty() {
            ("unified".to_string(), "cgroup2", String::new())
        } else if let Some(n) = h.controllers.strip_prefix("name=") {
            (n.to_string(), "cgroup", format!("none,name={n}"))
        } else {
            (h.controllers.clone(), "cgroup", h.controllers.clone())
        };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            continue;
        }
        let sub = dest.join(&name);
        let fd = owner
            .run(|| create_in_root(target.root, &sub, Kind::Dir))?
            .step(|| format!("create {}", sub.display()))?;
        let sub_target = Target { root: target.root, dest: &sub, fd: fd.as_fd() };
        // The mount and the reopen for the read-only flag name the hierarchy's mount data.
        let with_data = |e: StepError| StepError { step: format!("{} ({data})", e.step), ..e };
        let sub_attrs = MountAttrs { readonly: false, nosuid: true, nodev: true, noexec: true };
        mount_fs(fstype, "cgroup", sub_target, sub_attrs, &data).map_err(with_data)?;
        let top = open_in_root(target.root, &sub)
            .step(|| format!("reopen {}", sub.display()))
            .map_err(with_data)?;
        set_readonly(top.as_fd(), &sub)?;
        if h.controllers.contains(',') && !h.controllers.starts_with("name=") {
            let dir =
                open_in_root(target.root, dest).step(|| format!("open {}", dest.display()))?;
            for c in h.controllers.split(',') {
                owner
                    .run(|| symlinkat(name.as_str(), dir.as_fd(), c))?
                    .step(|| format!("symlink {}/{c}", dest.display()))?;
            }
        }
    }
    if attrs.readonly {
        remount_readonly(target.root, dest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_proc_cgroup_lists_every_hierarchy() {
        let h = parse_proc_cgroup("12:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n");
        let c: Vec<_> = h.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(c, ["cpu,cpuacct", "name=systemd", ""]);
    }
}
