//! A process exec'd into a running container: the helper joins the init's namespaces (user
//! last, in the child), moves the child into the container's cgroup and reports its pid.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, pipe2, read, write, ForkResult};

use super::container::{oom_score_adj, open_cgroup_procs, stdio_or_null, write_cgroup_procs};
use super::failure::{Failure, StepExt};
use super::finish::{exec_process, StdioFds};
use super::helper::{Channel, ReceivedFds};
use super::namespaces::Namespace;
use crate::plan::ExecPlan;

pub(super) fn run(channel: &Channel, plan: &ExecPlan, mut fds: ReceivedFds) -> Result<(), Failure> {
    if plan.init_pid <= 0 {
        return Err(Failure::refused("exec", format!("bad init pid {}", plan.init_pid)));
    }
    let stdio = stdio_or_null(&mut fds)?;
    oom_score_adj(channel, plan.process.oom_score_adj)?;
    let dir = PathBuf::from(format!("/proc/{}/ns", plan.init_pid));
    let open = |flag, name| Namespace::open(flag, name, &dir.join(name));
    let userns = open(CloneFlags::CLONE_NEWUSER, "user")?;
    // Mount last: after it, host paths are gone.
    let joins = [
        open(CloneFlags::CLONE_NEWIPC, "ipc")?,
        open(CloneFlags::CLONE_NEWUTS, "uts")?,
        open(CloneFlags::CLONE_NEWNET, "net")?,
        open(CloneFlags::CLONE_NEWPID, "pid")?,
        open(CloneFlags::CLONE_NEWCGROUP, "cgroup")?,
        open(CloneFlags::CLONE_NEWNS, "mnt")?,
    ];
    let mut cgroup_files = open_cgroup_procs(&plan.cgroup_procs)?;
    for ns in &joins {
        ns.join()?;
    }
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the helper is single-threaded, so the child may run any code (allocation included).
    match unsafe { fork() }.step(|| "fork the exec process")? {
        ForkResult::Child => {
            drop(go_w);
            drop(cgroup_files);
            process(channel, plan, userns, stdio, go_r)
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            let started = write_cgroup_procs(&mut cgroup_files, child)
                .and_then(|()| channel.spawned(child.as_raw(), Some(userns.fd.as_fd())))
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
    userns: Namespace,
    stdio: StdioFds,
    go: OwnedFd,
) -> ! {
    let mut b = [0u8; 1];
    if !matches!(read(&go, &mut b), Ok(1)) {
        std::process::exit(1);
    }
    drop(go);
    if let Err(f) = userns.join() {
        channel.failed(&f);
        std::process::exit(1);
    }
    drop(userns);
    exec_process(channel, &plan.process, stdio)
}
