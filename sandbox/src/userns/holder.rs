//! A user namespace with given mappings, held by an fd: a throw-away child unshares it, we
//! (host root) write its maps, open `/proc/<child>/ns/user` and let the child go. The
//! namespace lives as long as the fd (or any process in it). `setgroups` stays allowed: the
//! maps are written by a privileged process, and containers need `setgroups` for their
//! supplementary groups. The caller must be single-threaded (it forks).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, read, write, ForkResult, Pid};

use crate::plan::{IdMapping, UserNamespacePlan};

/// One step of making the namespace failed: the step, and the errno or what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {}", errno.map(|e| e.to_string()).or_else(|| detail.clone()).unwrap_or_default())]
pub struct HolderError {
    pub step: String,
    pub errno: Option<Errno>,
    pub detail: Option<String>,
}

fn sys(step: impl Into<String>, errno: Errno) -> HolderError {
    HolderError { step: step.into(), errno: Some(errno), detail: None }
}

fn refused(step: impl Into<String>, detail: impl Into<String>) -> HolderError {
    HolderError { step: step.into(), errno: None, detail: Some(detail.into()) }
}

fn io(step: String, e: std::io::Error) -> HolderError {
    match e.raw_os_error() {
        Some(n) => sys(step, Errno::from_raw(n)),
        None => refused(step, e.to_string()),
    }
}

/// Creates a user namespace mapped as `plan` says and returns an fd to it.
pub fn create(plan: &UserNamespacePlan) -> Result<OwnedFd, HolderError> {
    if plan.uid_mappings.is_empty() || plan.gid_mappings.is_empty() {
        return Err(refused("create the user namespace", "no uid or gid mappings"));
    }
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
    let (hold_r, hold_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
    // SAFETY: the caller is single-threaded (see the module doc), so the child may run any
    // code (allocation included).
    match unsafe { fork() }.map_err(|e| sys("fork the user namespace holder", e))? {
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

fn finish(plan: &UserNamespacePlan, child: Pid, ready: &OwnedFd) -> Result<OwnedFd, HolderError> {
    let mut b = [0u8; 1];
    let n = read(ready, &mut b).map_err(|e| sys("wait for the user namespace holder", e))?;
    if n != 1 || b[0] != b'1' {
        return Err(refused(
            "unshare(CLONE_NEWUSER)",
            "the holder process could not create a user namespace",
        ));
    }
    for (file, mappings) in [("uid_map", &plan.uid_mappings), ("gid_map", &plan.gid_mappings)] {
        let path = format!("/proc/{child}/{file}");
        let text = map_text(mappings);
        let mut f =
            File::options().write(true).open(&path).map_err(|e| io(format!("open {path}"), e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| io(format!("write {:?} to {path}", text.trim_end()), e))?;
    }
    let path = format!("/proc/{child}/ns/user");
    open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys(format!("open {path}"), e))
}

fn map_text(mappings: &[IdMapping]) -> String {
    mappings.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}
