//! The fork sequence, written once for both processes the helper builds: a container's init
//! (`container`) and an exec'd process (`exec`). What the child inherits from the helper
//! besides (`oom_score_adj`) and the cgroup it is put in (`CgroupProcs`) are set up here too.
//!
//! The sequence, in this order:
//! 1. Helper, before it changes any namespace: [`oom_score_adj`] on itself (the child
//!    inherits it) and [`CgroupProcs::open`] on the host paths of the cgroup.procs files.
//! 2. Helper: the path's own namespace steps (joins, unshare; see `container`, `exec`).
//! 3. [`fork`]: a close-on-exec pipe (the "go" pipe), then `fork`.
//!    - Child: closes the pipe's write end and the cgroup.procs files and gets a [`Child`];
//!      its first act is [`Child::wait_go`]: it blocks until the parent writes one byte, and
//!      exits (status 1, having run nothing) on end-of-file: the parent failed, reported
//!      it and killed it, or died.
//!    - Parent: closes the read end and gets a [`Parent`] (the exec path closes its init
//!      pidfd here), then [`Parent::start`]: writes the child's pid to every cgroup.procs
//!      file, opens the child's pidfd and reports pid, pidfd (and user namespace) on the
//!      channel, and last writes the go byte. If any of these fails it SIGKILLs the child,
//!      which has run nothing yet (the shim's reaper collects it), and returns the failure.
//!
//! Why the child waits: it must be in its cgroup before it does anything (a container's init
//! unshares its cgroup namespace first thing, rooted at that cgroup), and the shim must hold
//! its pidfd before it can act. The pidfd is certain to be the child's: until the parent
//! exits it never waits, so the child cannot be reaped and its pid reused (see `pidfd`).
//!
//! Between fork and exec: the helper is single-threaded, so the child may run any code,
//! allocation included (no other thread can hold a lock). Still, the sequence above makes
//! exactly the syscalls it made when each path had its own copy, in the same order.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{self, pipe2, read, write, ForkResult, Pid};

use super::channel::Channel;
use super::pidfd::PidFd;
use crate::privileges::{set_oom_score_adj, OomOutcome};
use crate::sys::{Step, StepError};

/// Sets oom_score_adj in the helper (children inherit it); a refused lowering is logged once.
pub(super) fn oom_score_adj(channel: &Channel, value: Option<i32>) -> Result<(), StepError> {
    if let OomOutcome::Clamped { requested, kept } = set_oom_score_adj(value)? {
        channel.log(format!(
            "oom_score_adj {requested} refused by the host (no CAP_SYS_RESOURCE); keeping {kept}"
        ));
    }
    Ok(())
}

/// The cgroup.procs files, opened by the helper before it changes namespaces; the parent
/// writes the child's pid to them before it lets the child go on.
#[derive(Debug)]
pub(super) struct CgroupProcs(Vec<(PathBuf, File)>);

impl CgroupProcs {
    pub fn open(paths: &[PathBuf]) -> Result<CgroupProcs, StepError> {
        let files = paths
            .iter()
            .map(|p| {
                let f =
                    File::options().write(true).open(p).step(|| format!("open {}", p.display()))?;
                Ok((p.clone(), f))
            })
            .collect::<Result<_, StepError>>()?;
        Ok(CgroupProcs(files))
    }

    fn join(&mut self, pid: Pid) -> Result<(), StepError> {
        for (path, f) in self.0.iter_mut() {
            f.write_all(pid.as_raw().to_string().as_bytes())
                .step(|| format!("write pid {pid} to {}", path.display()))?;
        }
        Ok(())
    }
}

/// Which side of [`fork`] this process is on.
#[derive(Debug)]
pub(super) enum Forked {
    Child(Child),
    Parent(Parent),
}

/// Forks the process `what` names ("the init", "the exec process"), held back until the
/// parent has put it in its cgroup and reported it (module doc, step 3).
pub(super) fn fork(what: &'static str, cgroup: CgroupProcs) -> Result<Forked, StepError> {
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the helper is single-threaded, so the child may run any code (allocation included).
    match unsafe { unistd::fork() }.step(|| format!("fork {what}"))? {
        ForkResult::Child => {
            drop(go_w);
            drop(cgroup);
            Ok(Forked::Child(Child { go: go_r }))
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            Ok(Forked::Parent(Parent { child, what, go: go_w, cgroup }))
        }
    }
}

/// The child's read end of the go pipe.
#[derive(Debug)]
#[must_use = "the child must wait for the parent's go"]
pub(super) struct Child {
    go: OwnedFd,
}

impl Child {
    /// Blocks until the parent lets the child go on; exits if it never will.
    pub fn wait_go(self) {
        let mut b = [0u8; 1];
        if !matches!(read(&self.go, &mut b), Ok(1)) {
            // The helper failed (and reported it) before letting us go.
            std::process::exit(1);
        }
        drop(self.go);
    }
}

/// The parent's side: the child's pid, the go pipe's write end, the cgroup.procs files.
/// Fields drop in this order (after the go byte or the kill).
#[derive(Debug)]
#[must_use = "the child waits until it is started (or the parent exits)"]
pub(super) struct Parent {
    child: Pid,
    what: &'static str,
    go: OwnedFd,
    cgroup: CgroupProcs,
}

impl Parent {
    /// Puts the child in its cgroup, reports it (with `userns` when given) and lets it go
    /// on; on failure kills it.
    pub fn start(
        mut self,
        channel: &Channel,
        userns: Option<BorrowedFd<'_>>,
    ) -> Result<(), StepError> {
        let child = self.child;
        let what = self.what;
        let started = self
            .cgroup
            .join(child)
            .and_then(|()| report(channel, child, userns))
            .and_then(|()| write(&self.go, b"1").map(drop).step(|| format!("start {what}")));
        if started.is_err() {
            // The child has not started anything yet; the shim's reaper collects it.
            let _ = kill(child, Signal::SIGKILL);
        }
        started
    }
}

/// Opens the child's pidfd (sound: we are its parent and have not reaped it) and reports it.
fn report(channel: &Channel, child: Pid, userns: Option<BorrowedFd<'_>>) -> Result<(), StepError> {
    let pid = child.as_raw();
    let pidfd = PidFd::open(pid).step(|| format!("pidfd_open of the new process {pid}"))?;
    channel.spawned(pid, pidfd.as_fd(), userns)
}
