//! Namespaces: the pod's user namespace (created by `userns::holder`), opening and joining
//! namespaces by path.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::{fstat, stat, Mode};

use super::failure::{Failure, StepExt};
use crate::plan::{NamespaceKind, UserNamespaceAction, UserNamespacePlan};

/// The clone flag and `/proc/<pid>/ns/<name>` of a namespace kind.
pub(super) fn flag_and_name(kind: NamespaceKind) -> (CloneFlags, &'static str) {
    match kind {
        NamespaceKind::Pid => (CloneFlags::CLONE_NEWPID, "pid"),
        NamespaceKind::Network => (CloneFlags::CLONE_NEWNET, "net"),
        NamespaceKind::Ipc => (CloneFlags::CLONE_NEWIPC, "ipc"),
        NamespaceKind::Uts => (CloneFlags::CLONE_NEWUTS, "uts"),
        NamespaceKind::Cgroup => (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    }
}

/// An opened namespace, to be joined.
#[derive(Debug)]
pub(super) struct Namespace {
    pub flag: CloneFlags,
    pub name: &'static str,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

impl Namespace {
    pub fn open(flag: CloneFlags, name: &'static str, path: &Path) -> Result<Namespace, Failure> {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| format!("open {name} namespace {}", path.display()))?;
        Ok(Namespace { flag, name, path: path.to_path_buf(), fd })
    }

    /// `open`, refusing the host's namespace (the same as `/proc/1/ns/<name>`): a spec path
    /// joins only the pod's own namespaces, whatever the path looked like to the policy (a
    /// netns file can be a bind mount of the host's).
    pub fn open_not_host(
        flag: CloneFlags,
        name: &'static str,
        path: &Path,
    ) -> Result<Namespace, Failure> {
        let ns = Namespace::open(flag, name, path)?;
        refuse_host(&ns.fd, name, path)?;
        Ok(ns)
    }

    /// Joins it, unless this process is already a member (joining one's own user namespace
    /// is an error, and there is nothing to do for the others).
    pub fn join(&self) -> Result<(), Failure> {
        let theirs = fstat(&self.fd).step(|| format!("stat {}", self.path.display()))?;
        let own = format!("/proc/self/ns/{}", self.name);
        let ours = stat(own.as_str()).step(|| format!("stat {own}"))?;
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) {
            return Ok(());
        }
        setns(self.fd.as_fd(), self.flag)
            .step(|| format!("join {} namespace {}", self.name, self.path.display()))
    }
}

/// The pod's user namespace as an fd: created (from the plan's mappings), passed by the
/// shim (`pod`), or opened by path.
pub(super) fn user_namespace(
    plan: &UserNamespacePlan,
    pod: Option<OwnedFd>,
) -> Result<OwnedFd, Failure> {
    match &plan.action {
        UserNamespaceAction::Create => Ok(crate::userns::holder::create(plan)?),
        UserNamespaceAction::JoinPod => {
            pod.ok_or_else(|| Failure::refused("join the pod's user namespace", "no fd passed"))
        }
        UserNamespaceAction::JoinPath(path) => {
            let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .step(|| format!("open user namespace {}", path.display()))?;
            refuse_host(&fd, "user", path)?;
            Ok(fd)
        }
    }
}

/// Fails when `fd` is the host's namespace of kind `name`, compared by device and inode with
/// this process's own (the helper has joined nothing yet: it runs in the namespaces of the
/// shim, which are the host's) and with `/proc/1/ns/<name>` (the host's init; skipped where
/// it cannot be read: some hosts deny even root that).
fn refuse_host(fd: &OwnedFd, name: &str, path: &Path) -> Result<(), Failure> {
    let theirs = fstat(fd).step(|| format!("stat {}", path.display()))?;
    let own = format!("/proc/self/ns/{name}");
    let mut hosts = vec![(own.clone(), stat(own.as_str()).step(|| format!("stat {own}"))?)];
    let init = format!("/proc/1/ns/{name}");
    if let Ok(st) = stat(init.as_str()) {
        hosts.push((init, st));
    }
    for (host, st) in hosts {
        if (theirs.st_dev, theirs.st_ino) == (st.st_dev, st.st_ino) {
            return Err(Failure::refused(
                format!("join {name} namespace {}", path.display()),
                format!("it is the host's {name} namespace (the same as {host})"),
            ));
        }
    }
    Ok(())
}
