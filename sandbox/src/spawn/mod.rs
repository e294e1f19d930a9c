//! Building the confined process: a sealed helper binary, namespaces, rootfs, privileges, exec.
//!
//! The shim (multi-threaded) never runs setup code after fork. [`Launcher::create`] and
//! [`Launcher::exec`] start a single-threaded helper: the shim's own binary, re-executed
//! through a sealed, read-only view of it (`exe_seal`: a private overlayfs, nothing copied)
//! with `argv[1] == HELPER_ARG`, whose `main()` calls [`helper_main`].
//! The helper gets the plan over a `SOCK_SEQPACKET` socketpair on its fd 0 (stdio fds and the
//! pod's user namespace beside it, `SCM_RIGHTS`), builds the process up to exec and reports
//! back on the same socket. The process execs once [`Pending::start`] says so; the socket is
//! close-on-exec, so end-of-stream after `Start` means exec succeeded.
//!
//! Nothing here waits for children: the shim is a child subreaper and reaps everything
//! (helpers included) with `waitpid(-1)`. Status travels over the socket.
//!
//! The process model is in the file list (the shim's side, then the helper's roles):
//! `launcher` starts the helper and collects its reports (in the shim); `helper` is the
//! re-executed single-threaded helper's `main`; `container` builds a container's init; `exec`
//! builds an exec'd process; `child` is the fork sequence both use; `finish` is the last
//! steps up to execve; `channel` is the helper's socket to the shim.
//! Which module uses which (`use super::...`; no circle, every arrow points down the list).
//! Every step fails with `sys::StepError`; `failure` is how one travels back (`Report`):
//!
//! ```text
//! launcher   -> exe_seal, pidfd, wire, (this file: Stdio, SpawnError, HELPER_ARG)
//! helper     -> container, exec, channel, wire
//! container  -> child, finish, namespaces, sysctl, stdio, channel
//! exec       -> child, finish, namespaces, stdio, channel
//! finish     -> terminal, stdio, channel
//! child      -> channel, pidfd
//! stdio      -> channel
//! channel    -> wire
//! failure    -> wire
//! exe_seal   -> memfd
//! namespaces, sysctl, terminal, wire, pidfd, memfd -> (nothing in spawn)
//! ```
//!
//! ```text
//! pub const HELPER_ARG: &str = "__moat_init";
//! pub fn helper_main() -> !;
//! impl Launcher {
//!     pub fn new() -> Result<Launcher, SpawnError>;
//!     pub fn create(&self, plan: &ContainerPlan, stdio: Stdio, pod_userns: Option<BorrowedFd<'_>>)
//!         -> Result<Pending, SpawnError>;
//!     pub fn exec(&self, plan: &ExecPlan, stdio: Stdio, init: &PidFd)
//!         -> Result<Pending, SpawnError>;
//! }
//! impl Pending { pub fn start(self) -> Result<(), SpawnError>; }
//! ```

mod channel;
mod child;
mod container;
mod exe_seal;
mod exec;
mod failure;
mod finish;
mod helper;
mod launcher;
mod memfd;
mod namespaces;
mod pidfd;
mod stdio;
mod sysctl;
mod terminal;
mod wire;

use std::os::fd::OwnedFd;

use nix::errno::Errno;

pub use exe_seal::{EmptyLayer, ExeSeal, ExeSealError, SealedExe, NODE_EMPTY_DIR};
pub use helper::helper_main;
pub use launcher::{Launcher, Pending};
pub use pidfd::PidFd;

/// `argv[1]` of the re-executed binary when it is to act as the helper.
pub const HELPER_ARG: &str = "__moat_init";

/// The stdio of the process to build. `None` means `/dev/null`.
/// Ignored when the plan asks for a terminal (the pty is its stdio then).
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Why a container or exec process could not be built or started.
#[derive(Debug, thiserror::Error)]
#[error("container {container_id}{exec}: {step}: {reason}",
    exec = .exec_id.as_ref().map(|e| format!(" exec {e}")).unwrap_or_default(),
    reason = describe(.errno, .detail))]
pub struct SpawnError {
    pub container_id: String,
    /// Set for errors of an exec'd process.
    pub exec_id: Option<String>,
    /// What was being done (`mount overlay on /run/.../rootfs`, `execve /bin/sh`, ...).
    pub step: String,
    /// The failing syscall's errno, when there was one.
    pub errno: Option<Errno>,
    /// Anything more specific than the errno.
    pub detail: Option<String>,
}

fn describe(errno: &Option<Errno>, detail: &Option<String>) -> String {
    match (errno, detail) {
        (Some(e), Some(d)) => format!("{d} ({})", e.desc()),
        (Some(e), None) => format!("{} ({e})", e.desc()),
        (None, Some(d)) => d.clone(),
        (None, None) => "failed".into(),
    }
}
