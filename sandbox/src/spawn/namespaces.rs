//! Namespaces: creating the pod's user namespace, opening and joining namespaces by path.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, stat, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, read, write, ForkResult, Pid};

use super::failure::{Failure, StepExt};
use crate::plan::{IdMapping, NamespaceKind, UserNamespaceAction, UserNamespacePlan};

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

    /// Joins it, unless this process is already a member (joining one's own user namespace
    /// is an error, and there is nothing to do for the others).
    pub fn join(&self) -> Result<(), Failure> {
        let theirs = fstat(&self.fd).step(|| format!("stat {}", self.path.display()))?;
        let own = format!("/proc/self/ns/{}", self.name);
        let ours = stat(own.as_str()).step(|| format!("stat {own}"))?;
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) {
            return Ok(());
        }
        setns(self.fd.as_fd(), self.flag).step(|| format!("join {} namespace {}", self.name, self.path.display()))
    }
}

/// The pod's user namespace as an fd: created (from the plan's mappings), passed by the
/// shim (`pod`), or opened by path.
pub(super) fn user_namespace(plan: &UserNamespacePlan, pod: Option<OwnedFd>) -> Result<OwnedFd, Failure> {
    match &plan.action {
        UserNamespaceAction::Create => create_user_namespace(plan),
        UserNamespaceAction::JoinPod => {
            pod.ok_or_else(|| Failure::refused("join the pod's user namespace", "no fd passed"))
        }
        UserNamespaceAction::JoinPath(path) => {
            open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).step(|| format!("open user namespace {}", path.display()))
        }
    }
}

fn map_text(mappings: &[IdMapping]) -> String {
    mappings.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

/// A throw-away child unshares a user namespace; we (host root) write its maps, keep an fd
/// to the namespace, and kill the child. `setgroups` stays allowed: the maps are written by
/// a privileged process, and the container needs `setgroups` for its supplementary groups.
fn create_user_namespace(plan: &UserNamespacePlan) -> Result<OwnedFd, Failure> {
    if plan.uid_mappings.is_empty() || plan.gid_mappings.is_empty() {
        return Err(Failure::refused("create the user namespace", "no uid or gid mappings"));
    }
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    let (hold_r, hold_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the helper is single-threaded, so the child may run any code (allocation included).
    match unsafe { fork() }.step(|| "fork the user namespace holder")? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            // Wait until the parent is done (it kills us, or its end closes).
            let mut b = [0u8; 1];
            let _ = read(&hold_r, &mut b);
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(hold_r);
            let result = finish_user_namespace(plan, child, &ready_r);
            drop(hold_w);
            // The holder has done its job; reap it so no zombie is left behind.
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn finish_user_namespace(plan: &UserNamespacePlan, child: Pid, ready: &OwnedFd) -> Result<OwnedFd, Failure> {
    let mut b = [0u8; 1];
    let n = read(ready, &mut b).step(|| "wait for the user namespace holder")?;
    if n != 1 || b[0] != b'1' {
        return Err(Failure::refused("unshare(CLONE_NEWUSER)", "the holder process could not create a user namespace"));
    }
    for (file, mappings) in [("uid_map", &plan.uid_mappings), ("gid_map", &plan.gid_mappings)] {
        let path = format!("/proc/{child}/{file}");
        let text = map_text(mappings);
        let mut f = File::options().write(true).open(&path).step(|| format!("open {path}"))?;
        f.write_all(text.as_bytes()).step(|| format!("write {:?} to {path}", text.trim_end()))?;
    }
    let path = format!("/proc/{child}/ns/user");
    open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).step(|| format!("open {path}"))
}
