//! The last steps, shared by a container's init and an exec'd process: session, limits,
//! uid/gid/capabilities, stdio or terminal, umask, no_new_privs, cwd check, "ready", wait
//! for "start", then seccomp and exec. Runs single-threaded, after every namespace is joined.
//! A process the plan lets gain privileges by exec (no `no_new_privileges`) loads its seccomp
//! filters first instead, while it still holds CAP_SYS_ADMIN in the pod's user namespace:
//! without no_new_privs the kernel lets only such a process install a filter (as runc does).

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{chdir, execve, getcwd, setsid};

use super::channel::Channel;
use super::stdio::StdioFds;
use super::terminal;
use crate::plan::ProcessPlan;
use crate::privileges;
use crate::sys::{Step, StepError};

/// PATH used for the lookup when the process environment sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the last steps and execs; on failure reports it and exits. Never returns.
pub(super) fn exec_process(channel: &Channel, process: &ProcessPlan, stdio: StdioFds) -> ! {
    match prepare_and_exec(channel, process, stdio) {
        Ok(Some(never)) => match never {},
        // The launcher went away before "start": exit without running anything.
        Ok(None) => std::process::exit(1),
        Err(f) => {
            channel.failed(&f);
            std::process::exit(127)
        }
    }
}

fn prepare_and_exec(
    channel: &Channel,
    process: &ProcessPlan,
    stdio: StdioFds,
) -> Result<Option<Infallible>, StepError> {
    if process.args.is_empty() {
        return Err(StepError::refused("exec", "the process has no args"));
    }
    setsid().step(|| "setsid")?;
    let filters_first = !process.no_new_privileges;
    let early_listeners = if filters_first { load_filters(process)? } else { Vec::new() };
    privileges::set_rlimits(&process.rlimits)?;
    privileges::apply_with_ids(process)?;
    if process.terminal {
        let (master, slave) = terminal::open_controlling_pty(process.console_size)?;
        for fd in 0..3 {
            dup_onto(&slave, fd)?;
        }
        channel.console(master.as_fd())?;
    } else {
        dup_onto(&stdio.stdin, 0)?;
        dup_onto(&stdio.stdout, 1)?;
        dup_onto(&stdio.stderr, 2)?;
    }
    drop(stdio);
    privileges::set_umask(process.umask)?;
    // Unless policy allowed escalation (a setuid binary of the image, raising the process to
    // IDs of the pod's own range), nothing gains privileges by exec.
    if process.no_new_privileges {
        privileges::set_no_new_privs()?;
    }
    enter_cwd(&process.cwd)?;

    channel.ready()?;
    if !channel.wait_start()? {
        return Ok(None);
    }

    let program = find_executable(&process.args[0], &process.env)?;
    let args = cstrings(&process.args, "args")?;
    let env = cstrings(&process.env, "env")?;
    reset_signals()?;
    // Nothing but stdio and the (close-on-exec) control socket may survive exec.
    // SAFETY: close_range only changes fd flags here (CLOSE_RANGE_CLOEXEC).
    Errno::result(unsafe {
        libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int)
    })
    .step(|| "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)")?;
    // Seccomp last: after it, only exec (and reporting its failure) remains.
    let listeners = if filters_first { early_listeners } else { load_filters(process)? };
    // Audit (issue 15): a notifying filter's listener goes to the shim (sendmsg is allowed by
    // every filter that notifies: the baseline's); ours closes on exec. Sent here, after
    // "start", also when the filters were loaded early (the launcher takes listeners only
    // then); the setup steps in between make no syscall the baseline refuses.
    for listener in &listeners {
        channel.seccomp_listener(listener.as_fd())?;
    }
    let errno = match execve(&program, &args, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(StepError::sys(format!("execve {}", program.to_string_lossy()), errno))
}

/// Loads the filters in order; returns the listeners of the notifying ones (the audit's).
fn load_filters(process: &ProcessPlan) -> Result<Vec<OwnedFd>, StepError> {
    let mut listeners = Vec::new();
    for filter in &process.seccomp {
        let listener = crate::seccomp::load(filter).map_err(|e| {
            StepError::refused(format!("load seccomp filter {}", filter.name), e.to_string())
        })?;
        listeners.extend(listener);
    }
    Ok(listeners)
}

fn dup_onto(fd: &OwnedFd, target: i32) -> Result<(), StepError> {
    if fd.as_raw_fd() == target {
        // Already there; clear close-on-exec so it survives exec.
        // SAFETY: F_SETFD on our own fd changes only its flags.
        return Errno::result(unsafe { libc::fcntl(target, libc::F_SETFD, 0) })
            .map(drop)
            .step(|| format!("keep fd {target}"));
    }
    // SAFETY: dup2 onto a stdio number in this single-threaded process; `fd` stays owned.
    Errno::result(unsafe { libc::dup2(fd.as_raw_fd(), target) })
        .map(drop)
        .step(|| format!("dup2 onto fd {target}"))
}

/// chdir to the plan's cwd, then make sure it resolved inside the root: a directory reached
/// through an fd from outside the container (CVE-2024-21626) has no path from our root, and
/// getcwd reports it "(unreachable)".
fn enter_cwd(cwd: &Path) -> Result<(), StepError> {
    if !cwd.is_absolute() {
        return Err(StepError::refused(format!("chdir {}", cwd.display()), "cwd is not absolute"));
    }
    chdir(cwd).step(|| format!("chdir {}", cwd.display()))?;
    let now = getcwd().step(|| "getcwd")?;
    if !now.is_absolute() || now.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(StepError::refused(
            format!("verify cwd {}", cwd.display()),
            format!("cwd resolves outside the container root ({})", now.display()),
        ));
    }
    Ok(())
}

/// The program to exec: `args[0]` as given when it has a slash, else searched in the
/// process's own PATH (like runc).
fn find_executable(arg0: &str, env: &[String]) -> Result<CString, StepError> {
    let step = || format!("exec {arg0}");
    let as_c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| StepError::refused(step(), "NUL in path"))
    };
    if arg0.contains('/') {
        return as_c(Path::new(arg0));
    }
    if arg0.is_empty() {
        return Err(StepError::refused(step(), "empty program name"));
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let candidate = PathBuf::from(if dir.is_empty() { "." } else { dir }).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return as_c(&candidate);
            }
        }
    }
    Err(StepError {
        step: step(),
        errno: Some(Errno::ENOENT),
        detail: Some(format!("executable file not found in $PATH ({path})")),
    })
}

fn cstrings(items: &[String], what: &str) -> Result<Vec<CString>, StepError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| {
                StepError::refused(format!("exec: {what}"), format!("NUL byte in {s:?}"))
            })
        })
        .collect()
}

/// Default dispositions and an empty mask: ignored signals (SIGPIPE is ignored by the Rust
/// runtime) would otherwise stay ignored across exec. Every signal number is reset through
/// the raw syscall: glibc's sigaction refuses its internal real-time signals (32, 33).
fn reset_signals() -> Result<(), StepError> {
    let max = libc::SIGRTMAX();
    for sig in 1..=max {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction for rt_sigaction: handler, flags, restorer, mask.
        let act: [libc::c_ulong; 4] = [libc::SIG_DFL as libc::c_ulong, 0, 0, 0];
        // SAFETY: rt_sigaction reads `act` (a live array laid out as the kernel's struct with an
        // 8-byte mask) and writes nothing (null old action); SIG_DFL runs no code of ours.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                act.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            )
        };
        Errno::result(ret).step(|| format!("reset signal {sig}"))?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .step(|| "clear the signal mask")
}
