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

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, pipe2, read, write, ForkResult};

use super::container::{oom_score_adj, open_cgroup_procs, stdio_or_null, write_cgroup_procs};
use super::failure::{Failure, StepExt};
use super::finish::{exec_process, StdioFds};
use super::helper::{Channel, ReceivedFds};
use super::namespaces::join_process;
use crate::plan::ExecPlan;

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

pub(super) fn run(channel: &Channel, plan: &ExecPlan, mut fds: ReceivedFds) -> Result<(), Failure> {
    let what = format!("the init (pid {}) of container {}", plan.init_pid, plan.container_id);
    let init = fds.init.take().ok_or_else(|| {
        Failure::refused("exec", format!("no pidfd of {what} came with the request"))
    })?;
    let stdio = stdio_or_null(&mut fds)?;
    oom_score_adj(channel, plan.process.oom_score_adj)?;
    let mut cgroup_files = open_cgroup_procs(&plan.cgroup_procs)?;
    join_process(init.as_fd(), host_owned(), &what)?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the helper is single-threaded, so the child may run any code (allocation included).
    match unsafe { fork() }.step(|| "fork the exec process")? {
        ForkResult::Child => {
            drop(go_w);
            drop(cgroup_files);
            process(channel, plan, init, &what, stdio, go_r)
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            drop(init);
            let started = write_cgroup_procs(&mut cgroup_files, child)
                .and_then(|()| channel.spawned(child.as_raw(), None))
                .and_then(|()| write(&go_w, b"1").map(drop).step(|| "start the exec process"));
            if started.is_err() {
                let _ = kill(child, Signal::SIGKILL);
            }
            started
        }
    }
}

fn process(
    channel: &Channel,
    plan: &ExecPlan,
    init: OwnedFd,
    what: &str,
    stdio: StdioFds,
    go: OwnedFd,
) -> ! {
    let mut b = [0u8; 1];
    if !matches!(read(&go, &mut b), Ok(1)) {
        std::process::exit(1);
    }
    drop(go);
    // The init's user namespace, from the same pidfd: never skipped (the kernel refuses to
    // "join" the one we are in), and ESRCH if the init died since the helper joined the rest.
    if let Err(f) = join_process(init.as_fd(), CloneFlags::CLONE_NEWUSER, what) {
        channel.failed(&f);
        std::process::exit(1);
    }
    drop(init);
    exec_process(channel, &plan.process, stdio)
}
