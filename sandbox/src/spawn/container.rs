//! A container's init: the helper joins the host-owned namespaces, forks the init into new
//! ones, moves it into its cgroup and reports its pid; the init builds the root, joins the
//! pod's user namespace last and runs the shared final steps.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::sethostname;

use super::channel::{Channel, ReceivedFds};
use super::child::{self, oom_score_adj, CgroupProcs, Forked};
use super::finish::exec_process;
use super::namespaces::{flag_and_name, user_namespace, Namespace};
use super::stdio::{stdio_or_null, StdioFds};
use super::sysctl;
use crate::plan::{ContainerPlan, NamespaceAction, NamespaceKind};
use crate::rootfs;
use crate::sys::{Step, StepError};

/// What the init creates for itself.
#[derive(Debug, Clone, Copy)]
struct NewNamespaces {
    /// Unshared by the helper before fork (mount always).
    before_fork: CloneFlags,
    /// The cgroup namespace is unshared by the init once it is in its cgroup.
    cgroup: bool,
    uts: bool,
}

pub(super) fn run(
    channel: &Channel,
    plan: &ContainerPlan,
    mut fds: ReceivedFds,
) -> Result<(), StepError> {
    let stdio = stdio_or_null(&mut fds)?;
    oom_score_adj(channel, plan.process.oom_score_adj)?;
    let userns = user_namespace(&plan.user, fds.userns.take())?;

    let mut new = NewNamespaces { before_fork: CloneFlags::CLONE_NEWNS, cgroup: false, uts: false };
    let mut joins = Vec::new();
    let mut seen = Vec::new();
    for ns in &plan.namespaces {
        if seen.contains(&ns.kind) {
            return Err(StepError::refused(
                "namespaces",
                format!("{:?} namespace listed twice", ns.kind),
            ));
        }
        seen.push(ns.kind);
        let (flag, name) = flag_and_name(ns.kind);
        match &ns.action {
            NamespaceAction::Join(path) => joins.push(Namespace::open_not_host(flag, name, path)?),
            NamespaceAction::Create if ns.kind == NamespaceKind::Cgroup => new.cgroup = true,
            NamespaceAction::Create => {
                new.before_fork |= flag;
                new.uts |= ns.kind == NamespaceKind::Uts;
            }
        }
    }
    let cgroup = CgroupProcs::open(&plan.cgroup_procs)?;

    // Host-owned namespaces first, while we are host root (net, ipc, uts, pid, cgroup).
    let order = [
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWIPC,
        CloneFlags::CLONE_NEWUTS,
        CloneFlags::CLONE_NEWPID,
        CloneFlags::CLONE_NEWCGROUP,
    ];
    for flag in order {
        for ns in joins.iter().filter(|n| n.flag == flag) {
            ns.join()?;
        }
    }
    unshare(new.before_fork).step(|| format!("unshare {:?}", new.before_fork))?;

    match child::fork("the init", cgroup)? {
        Forked::Child(go) => init(channel, plan, userns, stdio, go, new),
        Forked::Parent(parent) => parent.start(channel, Some(userns.as_fd())),
    }
}

/// The init, from fork to exec.
fn init(
    channel: &Channel,
    plan: &ContainerPlan,
    userns: OwnedFd,
    stdio: StdioFds,
    go: child::Child,
    new: NewNamespaces,
) -> ! {
    go.wait_go();
    if let Err(f) = build(channel, plan, &userns, new) {
        channel.failed(&f);
        std::process::exit(1);
    }
    drop(userns);
    exec_process(channel, &plan.process, stdio)
}

fn build(
    channel: &Channel,
    plan: &ContainerPlan,
    userns: &OwnedFd,
    new: NewNamespaces,
) -> Result<(), StepError> {
    if new.cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP).step(|| "unshare the cgroup namespace")?;
    }
    sysctl::apply(&plan.sysctls, &plan.user)?;
    rootfs::prepare(plan, rootfs::Context { userns: userns.as_fd(), new_cgroupns: new.cgroup })?;
    if let Some(hostname) = &plan.hostname {
        if new.uts {
            sethostname(hostname).step(|| format!("sethostname {hostname}"))?;
        } else {
            channel.log(format!(
                "hostname {hostname:?} not set: the container shares its UTS namespace"
            ));
        }
    }
    // Last: from here on the mount namespace (owned by the host user namespace) is out of reach.
    setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER).step(|| "join the pod's user namespace")?;
    Ok(())
}
