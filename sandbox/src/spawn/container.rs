//! A container's init: the helper joins the host-owned namespaces, forks the init into new
//! ones, moves it into its cgroup and reports its pid; the init builds the root, joins the
//! pod's user namespace last and runs the shared final steps.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{fork, pipe2, read, sethostname, write, ForkResult, Pid};

use super::failure::{Failure, StepExt};
use super::finish::{exec_process, StdioFds};
use super::helper::{Channel, ReceivedFds};
use super::namespaces::{flag_and_name, user_namespace, Namespace};
use super::sysctl;
use crate::plan::{ContainerPlan, NamespaceAction, NamespaceKind};
use crate::privileges::{set_oom_score_adj, OomOutcome};
use crate::rootfs;

/// stdio for the process, /dev/null (the host's, opened now) where none was given.
pub(super) fn stdio_or_null(fds: &mut ReceivedFds) -> Result<StdioFds, Failure> {
    let null = || {
        open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).step(|| "open /dev/null")
    };
    Ok(StdioFds {
        stdin: fds.stdin.take().map_or_else(null, Ok)?,
        stdout: fds.stdout.take().map_or_else(null, Ok)?,
        stderr: fds.stderr.take().map_or_else(null, Ok)?,
    })
}

/// Sets oom_score_adj in the helper (children inherit it); a refused lowering is logged once.
pub(super) fn oom_score_adj(channel: &Channel, value: Option<i32>) -> Result<(), Failure> {
    if let OomOutcome::Clamped { requested, kept } = set_oom_score_adj(value)? {
        channel.log(format!(
            "oom_score_adj {requested} refused by the host (no CAP_SYS_RESOURCE); keeping {kept}"
        ));
    }
    Ok(())
}

/// The cgroup.procs files, opened by the helper before it changes namespaces.
pub(super) fn open_cgroup_procs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, File)>, Failure> {
    paths
        .iter()
        .map(|p| {
            let f = File::options().write(true).open(p).step(|| format!("open {}", p.display()))?;
            Ok((p.clone(), f))
        })
        .collect()
}

pub(super) fn write_cgroup_procs(files: &mut [(PathBuf, File)], pid: Pid) -> Result<(), Failure> {
    for (path, f) in files.iter_mut() {
        f.write_all(pid.as_raw().to_string().as_bytes())
            .step(|| format!("write pid {pid} to {}", path.display()))?;
    }
    Ok(())
}

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
) -> Result<(), Failure> {
    let stdio = stdio_or_null(&mut fds)?;
    oom_score_adj(channel, plan.process.oom_score_adj)?;
    let userns = user_namespace(&plan.user, fds.userns.take())?;

    let mut new = NewNamespaces { before_fork: CloneFlags::CLONE_NEWNS, cgroup: false, uts: false };
    let mut joins = Vec::new();
    let mut seen = Vec::new();
    for ns in &plan.namespaces {
        if seen.contains(&ns.kind) {
            return Err(Failure::refused(
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
    let mut cgroup_files = open_cgroup_procs(&plan.cgroup_procs)?;

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

    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the helper is single-threaded, so the child may run any code (allocation included).
    match unsafe { fork() }.step(|| "fork the init")? {
        ForkResult::Child => {
            drop(go_w);
            drop(cgroup_files);
            init(channel, plan, userns, stdio, go_r, new)
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            let started = write_cgroup_procs(&mut cgroup_files, child)
                .and_then(|()| channel.spawned(child.as_raw(), Some(userns.as_fd())))
                .and_then(|()| write(&go_w, b"1").map(drop).step(|| "start the init"));
            if started.is_err() {
                // The init has not started anything yet; the shim's reaper collects it.
                let _ = kill(child, Signal::SIGKILL);
            }
            started
        }
    }
}

/// The init, from fork to exec.
fn init(
    channel: &Channel,
    plan: &ContainerPlan,
    userns: OwnedFd,
    stdio: StdioFds,
    go: OwnedFd,
    new: NewNamespaces,
) -> ! {
    let mut b = [0u8; 1];
    if !matches!(read(&go, &mut b), Ok(1)) {
        // The helper failed (and reported it) before letting us go.
        std::process::exit(1);
    }
    drop(go);
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
) -> Result<(), Failure> {
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
