//! The shim's side: start the helper, hand it the plan, collect its reports.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
use nix::sys::time::TimeVal;

use super::exe_seal::{ExeSeal, SealedExe};
use super::pidfd::PidFd;
use super::wire::{recv_msg, send_large, send_msg, Control, FdLayout, Report, Request, WireError};
use super::{SpawnError, Stdio, HELPER_ARG};
use crate::plan::{ContainerPlan, ExecPlan, UserNamespaceAction};

/// How long the launcher waits for one report before giving up on the helper.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts helpers from a sealed view of the running binary (see `exe_seal`). Cheap to share
/// between threads.
#[derive(Debug)]
pub struct Launcher {
    exe: SealedExe,
}

/// Which process an error is about.
#[derive(Debug, Clone)]
struct Subject {
    container_id: String,
    exec_id: Option<String>,
}

impl Subject {
    fn error(
        &self,
        step: impl Into<String>,
        errno: Option<Errno>,
        detail: Option<String>,
    ) -> SpawnError {
        SpawnError {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            step: step.into(),
            errno,
            detail,
        }
    }
    fn wire(&self, step: &str, e: WireError) -> SpawnError {
        match e {
            WireError::Sys(Errno::EAGAIN) => {
                self.error(step, Some(Errno::ETIMEDOUT), Some("no answer from the helper".into()))
            }
            WireError::Sys(errno) => self.error(step, Some(errno), None),
            WireError::Malformed(m) => self.error(step, None, Some(m)),
        }
    }
}

/// A process built up to exec, waiting for [`Pending::start`]. Dropping it makes the process
/// exit without running anything.
#[derive(Debug)]
pub struct Pending {
    /// Host pid of the process that will exec.
    pub pid: i32,
    /// The process's pidfd, taken by the helper before the pid could be reused: signal it
    /// and pass it to [`Launcher::exec`] instead of using `pid`.
    pub pidfd: PidFd,
    /// The pty master when the plan asked for a terminal.
    pub console: Option<OwnedFd>,
    /// The user namespace the process runs in (the shim keeps the pod's).
    pub userns: Option<OwnedFd>,
    sock: OwnedFd,
    subject: Subject,
    /// Audit (issue 15): who takes the seccomp listener the process sends before exec.
    on_listener: Option<OnListener>,
}

/// Audit (issue 15): the receiver of a process's seccomp listener (`crate::audit`).
pub struct OnListener(Box<dyn FnOnce(OwnedFd) + Send>);

impl std::fmt::Debug for OnListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnListener")
    }
}

impl Pending {
    /// Audit (issue 15): `f` gets the listener of the process's notifying seccomp filter when
    /// it loads one (`audit::audited` plans). Without a receiver the listener is closed and
    /// the kernel answers the notifying rules ENOSYS.
    pub fn on_seccomp_listener(&mut self, f: impl FnOnce(OwnedFd) + Send + 'static) {
        self.on_listener = Some(OnListener(Box::new(f)));
    }
}

impl Launcher {
    /// Seals `/proc/self/exe` for the helpers: a read-only overlay view of it, or (logged as a
    /// warning) a sealed memfd copy where no overlay can be made.
    pub fn new() -> Result<Launcher, SpawnError> {
        let (exe, fallback) = SealedExe::open().map_err(|e| SpawnError {
            container_id: "-".into(),
            exec_id: None,
            step: e.step,
            errno: e.errno,
            detail: e.detail,
        })?;
        if let Some(why) = fallback {
            log::warn!(
                "{why}; the helper runs from a sealed memfd copy of the shim binary instead, \
                 which costs the node the binary's size in shared memory for every pod"
            );
        }
        Ok(Launcher { exe })
    }

    /// How the helper binary is sealed.
    pub fn exe_seal(&self) -> ExeSeal {
        self.exe.seal()
    }

    /// Blocking. Builds the container's init up to (not including) exec.
    /// `pod_userns`: the pod's user namespace fd when `plan.user.action == JoinPod`.
    pub fn create(
        &self,
        plan: &ContainerPlan,
        stdio: Stdio,
        pod_userns: Option<BorrowedFd<'_>>,
    ) -> Result<Pending, SpawnError> {
        let subject = Subject { container_id: plan.container_id.clone(), exec_id: None };
        let userns = match (&plan.user.action, pod_userns) {
            (UserNamespaceAction::JoinPod, Some(fd)) => Some(fd),
            (UserNamespaceAction::JoinPod, None) => {
                return Err(subject.error(
                    "join the pod's user namespace",
                    None,
                    Some("no pod user namespace fd given".into()),
                ))
            }
            _ => None,
        };
        let (layout, fds) = layout(&stdio, userns);
        let request = Request::Container { plan: Box::new(plan.clone()), fds: layout };
        self.run(subject, &request, &fds)
    }

    /// Blocking. Builds an exec'd process inside a running container, up to exec. `init` is
    /// the pidfd of the container's init ([`Pending::pidfd`] of its create): the exec joins
    /// that process's namespaces, or fails with ESRCH once it has exited.
    pub fn exec(&self, plan: &ExecPlan, stdio: Stdio, init: &PidFd) -> Result<Pending, SpawnError> {
        let subject = Subject {
            container_id: plan.container_id.clone(),
            exec_id: Some(plan.exec_id.clone()),
        };
        let (mut layout, mut fds) = layout(&stdio, None);
        layout.init = true;
        fds.push(init.as_fd());
        let request = Request::Exec { plan: Box::new(plan.clone()), fds: layout };
        self.run(subject, &request, &fds)
    }

    fn run(
        &self,
        subject: Subject,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Pending, SpawnError> {
        let sock = self.start_helper(&subject)?;
        send_large(sock.as_fd(), request, fds)
            .map_err(|e| subject.wire("send the plan to the helper", e))?;
        await_ready(subject, sock)
    }

    /// Starts a helper; returns our end of its control socket.
    fn start_helper(&self, subject: &Subject) -> Result<OwnedFd, SpawnError> {
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| subject.error("socketpair", Some(e), None))?;
        let timeout = TimeVal::new(REPORT_TIMEOUT.as_secs() as _, 0);
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| subject.error("set SO_RCVTIMEO", Some(e), None))?;
        // The child is never waited for here: the shim's reaper reaps it.
        let child = Command::new(self.exe.path())
            .arg0("moat-init")
            .arg(HELPER_ARG)
            .env_clear()
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(|e| {
                subject.error(
                    "start the helper",
                    e.raw_os_error().map(Errno::from_raw),
                    Some(e.to_string()),
                )
            })?;
        drop(child);
        Ok(ours)
    }
}

fn layout<'a>(stdio: &'a Stdio, userns: Option<BorrowedFd<'a>>) -> (FdLayout, Vec<BorrowedFd<'a>>) {
    let mut fds = Vec::new();
    let mut push = |fd: Option<BorrowedFd<'a>>| {
        let present = fd.is_some();
        fds.extend(fd);
        present
    };
    let layout = FdLayout {
        stdin: push(stdio.stdin.as_ref().map(|f| f.as_fd())),
        stdout: push(stdio.stdout.as_ref().map(|f| f.as_fd())),
        stderr: push(stdio.stderr.as_ref().map(|f| f.as_fd())),
        userns: push(userns),
        init: false,
    };
    (layout, fds)
}

/// Reads reports until the process is ready (or failed).
fn await_ready(subject: Subject, sock: OwnedFd) -> Result<Pending, SpawnError> {
    let mut spawned = None;
    let mut userns = None;
    let mut console = None;
    loop {
        let msg =
            recv_msg::<Report>(sock.as_fd()).map_err(|e| subject.wire("wait for the helper", e))?;
        let Some((report, mut fds)) = msg else {
            return Err(subject.error(
                "wait for the helper",
                None,
                Some("the helper exited before the process was ready (see the shim's log)".into()),
            ));
        };
        match report {
            Report::Log { message } => log_line(&subject, &message),
            Report::Spawned { pid, userns: has_ns } => {
                if has_ns {
                    userns = fds.pop();
                }
                let pidfd = fds.pop().ok_or_else(|| {
                    subject.error(
                        "wait for the helper",
                        None,
                        Some("spawned without a pidfd".into()),
                    )
                })?;
                spawned = Some(PidFd::from_received(pidfd, pid));
            }
            Report::Console => console = fds.pop(),
            Report::SeccompListener => {
                return Err(subject.error(
                    "wait for the helper",
                    None,
                    Some("a seccomp listener before the process was ready".into()),
                ));
            }
            Report::Ready => {
                let pidfd = spawned.ok_or_else(|| {
                    subject.error("wait for the helper", None, Some("ready before spawned".into()))
                })?;
                return Ok(Pending {
                    pid: pidfd.pid(),
                    pidfd,
                    console,
                    userns,
                    sock,
                    subject,
                    on_listener: None,
                });
            }
            Report::Failed { step, errno, detail } => {
                return Err(subject.error(step, errno.map(Errno::from_raw), detail));
            }
        }
    }
}

fn log_line(subject: &Subject, message: &str) {
    match &subject.exec_id {
        Some(e) => log::warn!("container {} exec {e}: {message}", subject.container_id),
        None => log::warn!("container {}: {message}", subject.container_id),
    }
}

impl Pending {
    /// Blocking. Lets the process exec; returns once exec succeeded, or the exec error.
    pub fn start(mut self) -> Result<(), SpawnError> {
        let subject = self.subject.clone();
        send_msg(self.sock.as_fd(), &Control::Start, &[])
            .map_err(|e| subject.wire("send start", e))?;
        loop {
            match recv_msg::<Report>(self.sock.as_fd())
                .map_err(|e| subject.wire("wait for exec", e))?
            {
                None => return Ok(()),
                Some((Report::Log { message }, _)) => log_line(&subject, &message),
                Some((Report::SeccompListener, mut fds)) => {
                    if let (Some(fd), Some(on)) = (fds.pop(), self.on_listener.take()) {
                        (on.0)(fd);
                    }
                }
                Some((Report::Failed { step, errno, detail }, _)) => {
                    return Err(subject.error(step, errno.map(Errno::from_raw), detail))
                }
                Some((other, _)) => {
                    return Err(subject.error(
                        "wait for exec",
                        None,
                        Some(format!("unexpected report {other:?}")),
                    ))
                }
            }
        }
    }
}
