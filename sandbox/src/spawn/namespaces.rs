//! Namespaces: the pod's user namespace (created by `userns::holder`), opening and joining
//! namespaces by path, and joining the namespaces of one exact process through its pidfd.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::{fstat, stat, Mode};

use crate::plan::{NamespaceKind, UserNamespaceAction, UserNamespacePlan};
use crate::sys::{Step, StepError};

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
    pub fn open(flag: CloneFlags, name: &'static str, path: &Path) -> Result<Namespace, StepError> {
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
    ) -> Result<Namespace, StepError> {
        let ns = Namespace::open(flag, name, path)?;
        refuse_host(&ns.fd, name, path)?;
        Ok(ns)
    }

    /// Joins it. The helper runs in the host's namespaces, and a namespace to join that is
    /// the helper's own is the host's: a pod shares a host namespace only by not listing it
    /// (policy decides that), never through a path, so such a path names a host process
    /// (the pod's process died and its pid was reused, or a wrong path). It is refused, the
    /// user namespace above all, instead of being skipped as "already joined": skipping
    /// would leave the container in the host's namespace (as host root, for the user one).
    pub fn join(&self) -> Result<(), StepError> {
        let theirs = fstat(&self.fd).step(|| format!("stat {}", self.path.display()))?;
        let own = format!("/proc/self/ns/{}", self.name);
        let ours = stat(own.as_str()).step(|| format!("stat {own}"))?;
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) {
            return Err(StepError::refused(
                format!("join {} namespace {}", self.name, self.path.display()),
                "it is the host's own (the helper's): the process it belonged to is gone \
                 and its pid now belongs to a host process, or the path is wrong",
            ));
        }
        setns(self.fd.as_fd(), self.flag)
            .step(|| format!("join {} namespace {}", self.name, self.path.display()))
    }
}

/// Joins the namespaces `flags` of exactly the process behind `pidfd`, all at once
/// (`setns(pidfd, flags)`, Linux 5.8): the kernel takes them from that process, so a pid
/// number reused by another process can never be joined by mistake; if the process has
/// exited the call fails with ESRCH and nothing is joined. With CLONE_NEWUSER the kernel
/// refuses (EINVAL) a user namespace the caller is already in, so the host's user namespace
/// is never "joined" by skipping it. `what` names the process for errors.
pub(super) fn join_process(
    pidfd: BorrowedFd<'_>,
    flags: CloneFlags,
    what: &str,
) -> Result<(), StepError> {
    match setns(pidfd, flags) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(StepError {
            step: format!("join the namespaces of {what}"),
            errno: Some(Errno::ESRCH),
            detail: Some(format!("{what} has exited; its pid may belong to another process now")),
        }),
        Err(Errno::EINVAL) if flags.contains(CloneFlags::CLONE_NEWUSER) => Err(StepError {
            step: format!("join the user namespace of {what}"),
            errno: Some(Errno::EINVAL),
            detail: Some(format!(
                "{what} is not in a user namespace of its own (it is in the helper's, the host's)"
            )),
        }),
        Err(e) => Err(StepError::sys(format!("join the namespaces {flags:?} of {what}"), e)),
    }
}

/// The pod's user namespace as an fd: created (from the plan's mappings), passed by the
/// shim (`pod`), or opened by path.
pub(super) fn user_namespace(
    plan: &UserNamespacePlan,
    pod: Option<OwnedFd>,
) -> Result<OwnedFd, StepError> {
    match &plan.action {
        UserNamespaceAction::Create => Ok(crate::userns::holder::create(plan)?),
        UserNamespaceAction::JoinPod => {
            pod.ok_or_else(|| StepError::refused("join the pod's user namespace", "no fd passed"))
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
fn refuse_host(fd: &OwnedFd, name: &str, path: &Path) -> Result<(), StepError> {
    let theirs = fstat(fd).step(|| format!("stat {}", path.display()))?;
    let own = format!("/proc/self/ns/{name}");
    let mut hosts = vec![(own.clone(), stat(own.as_str()).step(|| format!("stat {own}"))?)];
    let init = format!("/proc/1/ns/{name}");
    if let Ok(st) = stat(init.as_str()) {
        hosts.push((init, st));
    }
    for (host, st) in hosts {
        if (theirs.st_dev, theirs.st_ino) == (st.st_dev, st.st_ino) {
            return Err(StepError::refused(
                format!("join {name} namespace {}", path.display()),
                format!("it is the host's {name} namespace (the same as {host})"),
            ));
        }
    }
    Ok(())
}
