//! A process exec'd into a running container: the helper joins the init's namespaces through
//! the init's pidfd (user namespace last, in the child), moves the child into the container's
//! cgroup and reports its pid.
//!
//! Why a pidfd and not `/proc/<init pid>/ns/*`: the pid is a number the shim remembers, and
//! once the init has exited and been reaped another process (of another pod, or of the host)
//! may get it; joining by path would then put the exec in that process's namespaces. A
//! pidfd names one process for good: `setns(pidfd, ...)` joins that process's namespaces or
//! fails with ESRCH once it is gone. It also joins several at once, atomically, so there is
//! no window between opening the namespaces and checking that they are still the init's.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;

use super::channel::{Channel, ReceivedFds};
use super::child::{self, oom_score_adj, CgroupProcs, Forked};
use super::finish::exec_process;
use super::namespaces::join_process;
use super::stdio::{stdio_or_null, StdioFds};
use crate::plan::ExecPlan;
use crate::sys::StepError;

/// Everything but the user namespace, joined by the helper while it is host root: these
/// namespaces belong to the host's user namespace, so they cannot be joined from the pod's.
/// The mount namespace goes with them (one atomic setns): host paths are needed no more.
fn host_owned() -> CloneFlags {
    CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWNS
}

pub(super) fn run(
    channel: &Channel,
    plan: &ExecPlan,
    mut fds: ReceivedFds,
) -> Result<(), StepError> {
    let what = format!("the init (pid {}) of container {}", plan.init_pid, plan.container_id);
    let init = fds.init.take().ok_or_else(|| {
        StepError::refused("exec", format!("no pidfd of {what} came with the request"))
    })?;
    let stdio = stdio_or_null(&mut fds)?;
    oom_score_adj(channel, plan.process.oom_score_adj)?;
    let cgroup = CgroupProcs::open(&plan.cgroup_procs)?;
    join_process(init.as_fd(), host_owned(), &what)?;
    match child::fork("the exec process", cgroup)? {
        Forked::Child(go) => process(channel, plan, init, &what, stdio, go),
        Forked::Parent(parent) => {
            drop(init);
            parent.start(channel, None)
        }
    }
}

fn process(
    channel: &Channel,
    plan: &ExecPlan,
    init: OwnedFd,
    what: &str,
    stdio: StdioFds,
    go: child::Child,
) -> ! {
    go.wait_go();
    // The init's user namespace, from the same pidfd: never skipped (the kernel refuses to
    // "join" the one we are in), and ESRCH if the init died since the helper joined the rest.
    if let Err(f) = join_process(init.as_fd(), CloneFlags::CLONE_NEWUSER, what) {
        channel.failed(&f);
        std::process::exit(1);
    }
    drop(init);
    exec_process(channel, &plan.process, stdio)
}
