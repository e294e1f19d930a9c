//! The denial audit with a real kernel (needs root): a process under the audited baseline
//! tries keyctl, bpf and unshare(CLONE_NEWUSER); each fails with EPERM, answered by
//! `audit::PodSupervisor` (the shim's) on the listener the process handed over, and the pod's counter file
//! names all three.

#[path = "common/harness.rs"]
mod harness;
#[path = "common/root.rs"]
mod root;

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use moat_sandbox::audit;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{fork, ForkResult};

fn main() -> ExitCode {
    if !root::root_or_skip("audit") {
        return ExitCode::SUCCESS;
    }
    harness::run(&[(
        "refused_syscalls_are_answered_eperm_and_counted_by_name",
        refused_syscalls_are_answered_eperm_and_counted_by_name,
    )])
}

const ATTEMPTS: [&str; 3] = ["keyctl", "bpf", "unshare"];
/// Refused calls timed after the attempts (all within the pace's burst).
const TIMED: u64 = 100;

/// In the child, under the filter: each attempt's errno (0 when it succeeded).
fn attempt(name: &str) -> i32 {
    // SAFETY: raw syscalls with integer arguments (and a null attr pointer for bpf, which the
    // kernel would reject with EFAULT rather than dereference): nothing of ours is touched.
    let rc = unsafe {
        match name {
            "keyctl" => libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0),
            "bpf" => libc::syscall(libc::SYS_bpf, 0 /* BPF_MAP_CREATE */, 0usize, 0),
            _ => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
        }
    };
    if rc < 0 {
        nix::errno::Errno::last_raw()
    } else {
        0
    }
}

fn refused_syscalls_are_answered_eperm_and_counted_by_name() -> Result<()> {
    let mut plan = audit::audited(&moat_sandbox::seccomp::baseline());
    moat_sandbox::seccomp::precompile(&mut plan).context("compiling the audited baseline")?;
    let state = tempfile::tempdir()?;
    let pod = audit::PodAudit::new(state.path(), "audit-pod")?;
    let (parent_sock, child_sock) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;

    // SAFETY: this test's process is single-threaded here (harness = false, no thread yet);
    // the child only makes syscalls and leaves with _exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(parent_sock);
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(10) };
            }
            let listener = match moat_sandbox::seccomp::load(&plan) {
                Ok(Some(fd)) => fd,
                // SAFETY: as above.
                _ => unsafe { libc::_exit(11) },
            };
            let fds = [listener.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            let iov = [IoSlice::new(b"L")];
            if sendmsg::<()>(child_sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).is_err()
            {
                // SAFETY: as above.
                unsafe { libc::_exit(12) };
            }
            drop(listener);
            let mut report: Vec<u8> =
                ATTEMPTS.iter().map(|a| u8::try_from(attempt(a)).unwrap_or(255)).collect();
            // The cost of one refused call through the shim's supervisor (within the burst).
            let began = std::time::Instant::now();
            for _ in 0..TIMED {
                attempt("keyctl");
            }
            let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX) / TIMED;
            report.extend(ns.to_ne_bytes());
            let _ = nix::unistd::write(&child_sock, &report);
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            drop(child_sock);
            let mut byte = [0u8; 1];
            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = recvmsg::<()>(
                parent_sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )?;
            let mut listener = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
                    listener = fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
            let listener = listener.context("the child sent no listener")?;
            let supervisor = audit::PodSupervisor::start(pod.clone())?;
            supervisor.add(listener, "ctr".into());
            let mut report = [0u8; 11];
            let mut got = 0;
            while got < report.len() {
                let n = nix::unistd::read(&parent_sock, &mut report[got..])?;
                ensure!(n > 0, "the child ended without reporting (see its exit status)");
                got += n;
            }
            let status = nix::sys::wait::waitpid(child, None)?;
            ensure!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "child: {status:?}"
            );
            supervisor.finish();
            let mut ns = [0u8; 8];
            ns.copy_from_slice(&report[3..]);
            let ns = u64::from_ne_bytes(ns);
            eprintln!("one refused syscall answered by the supervisor: {} us", ns / 1000);
            ensure!(ns < 2_000_000, "a refused syscall took {ns} ns through the supervisor");
            for (name, errno) in ATTEMPTS.iter().zip(report) {
                ensure!(
                    i32::from(errno) == libc::EPERM,
                    "{name} returned errno {errno}, not EPERM"
                );
            }
            let counts = audit::read_counts(state.path(), "audit-pod")?;
            eprintln!("{}", counts.render());
            for name in ATTEMPTS {
                let want = if name == "keyctl" { 1 + TIMED } else { 1 };
                ensure!(counts.syscalls.get(name) == Some(&want), "{name}: {counts:?}");
            }
            ensure!(counts.total == 3 + TIMED, "{counts:?}");
        }
    }
    Ok(())
}
