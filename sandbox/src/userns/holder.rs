//! A user namespace with given mappings, held by an fd: a throw-away child unshares it, we
//! (host root) write its maps, open `/proc/<child>/ns/user` and let the child go. The
//! namespace lives as long as the fd (or any process in it). `setgroups` stays allowed: the
//! maps are written by a privileged process, and containers need `setgroups` for their
//! supplementary groups. The caller must be single-threaded (it forks).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, read, write, ForkResult, Pid};

use crate::plan::{IdMapping, UserNamespacePlan};
use crate::sys::{Step, StepError};

/// Creates a user namespace mapped as `plan` says and returns an fd to it.
pub fn create(plan: &UserNamespacePlan) -> Result<OwnedFd, StepError> {
    if plan.uid_mappings.is_empty() || plan.gid_mappings.is_empty() {
        return Err(StepError::refused("create the user namespace", "no uid or gid mappings"));
    }
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    let (hold_r, hold_w) = pipe2(OFlag::O_CLOEXEC).step(|| "pipe")?;
    // SAFETY: the caller is single-threaded (see the module doc), so the child may run any
    // code (allocation included).
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
            let result = finish(plan, child, &ready_r);
            drop(hold_w);
            // The holder has done its job; reap it so no zombie is left behind.
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn finish(plan: &UserNamespacePlan, child: Pid, ready: &OwnedFd) -> Result<OwnedFd, StepError> {
    let mut b = [0u8; 1];
    let n = read(ready, &mut b).step(|| "wait for the user namespace holder")?;
    if n != 1 || b[0] != b'1' {
        return Err(StepError::refused(
            "unshare(CLONE_NEWUSER)",
            "the holder process could not create a user namespace",
        ));
    }
    for (file, mappings) in [("uid_map", &plan.uid_mappings), ("gid_map", &plan.gid_mappings)] {
        let path = format!("/proc/{child}/{file}");
        let text = map_text(mappings);
        let mut f = File::options().write(true).open(&path).step(|| format!("open {path}"))?;
        f.write_all(text.as_bytes()).step(|| format!("write {:?} to {path}", text.trim_end()))?;
    }
    let path = format!("/proc/{child}/ns/user");
    open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .step(|| format!("open {path}"))
}

fn map_text(mappings: &[IdMapping]) -> String {
    mappings.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}
