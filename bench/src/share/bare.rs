//! The floor one sandbox start cannot go below: a bare clone into new user, mount, pid, ipc,
//! uts and network namespaces, uid/gid maps written by the parent, setresuid/gid to the
//! mapped root, the root bind-mounted and pivoted into, exec of /bin/true. Timed from before
//! clone until exec succeeded (the close-on-exec status pipe reaches end-of-file).
//!
//! Optionally with a cgroup: created before clone and the child moved into it before it is
//! released (what every runtime must do on a cgroup v1 host), timed as well.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use moat_sandbox::cgroups::{Cgroup, Layout};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, read, write};

/// Exit codes of the child, one per step, so a failure names its step.
const STEPS: &[&str] = &[
    "ok",
    "wait for the maps",
    "setresgid",
    "setresuid",
    "make / rprivate",
    "bind the root",
    "chdir into the root",
    "pivot_root",
    "detach the old root",
    "chdir /",
    "execve /bin/true",
];

/// One bare start of /bin/true in `root` with container root mapped to host `base`:
/// the time until exec succeeded (the process then runs to exit, which is not timed).
/// With `cgroup` (hierarchies, path), the child is put in a new cgroup first.
pub fn start_once(root: &Path, base: u32, cgroup: Option<(&Layout, &str)>) -> Result<Duration> {
    let root_c = CString::new(root.as_os_str().as_bytes()).context("root path")?;
    let true_c = c"/bin/true";
    let argv = [true_c.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let (maps_r, maps_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (status_r, status_w) = pipe2(OFlag::O_CLOEXEC)?;
    let mut stack = vec![0u8; 256 * 1024];
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET;
    let (maps_fd, status_fd) = (maps_r.as_raw_fd(), status_w.as_raw_fd());
    let root_ptr = root_c.as_ptr();
    let child = move || -> isize {
        // In the child (its own copy of memory, no other thread): raw syscalls only, on
        // buffers prepared before clone; no allocation.
        let fail = |step: u8| -> isize {
            // SAFETY: writes one byte from a live local to an fd the child owns, then exits
            // without running any destructor of the parent's state.
            unsafe {
                libc::write(status_fd, (&step as *const u8).cast(), 1);
                libc::_exit(i32::from(step))
            }
        };
        let mut b = 0u8;
        // SAFETY: plain syscalls on fds and NUL-terminated strings that live until exec
        // (the closure owns copies of the pointers; the strings outlive the child's use as the
        // child has its own copy of the parent's memory).
        unsafe {
            if libc::read(maps_fd, (&mut b as *mut u8).cast(), 1) != 1 {
                return fail(1);
            }
            if libc::setresgid(0, 0, 0) != 0 {
                return fail(2);
            }
            if libc::setresuid(0, 0, 0) != 0 {
                return fail(3);
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail(4);
            }
            if libc::mount(
                root_ptr,
                root_ptr,
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return fail(5);
            }
            if libc::chdir(root_ptr) != 0 {
                return fail(6);
            }
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
                return fail(7);
            }
            if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
                return fail(8);
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return fail(9);
            }
            libc::execve(true_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        fail(10)
    };
    let began = Instant::now();
    let cgroup = match cgroup {
        Some((layout, path)) => {
            Some(Cgroup::create(layout, path, None).context("creating the cgroup")?)
        }
        None => None,
    };
    // SAFETY: the child runs only the closure above (raw syscalls, no allocation, no locks)
    // on its own stack and copy of memory, and exits or execs.
    let pid = unsafe { nix::sched::clone(Box::new(child), &mut stack, flags, Some(libc::SIGCHLD)) }
        .context("clone")?;
    drop(maps_r);
    drop(status_w);
    let attached = match &cgroup {
        Some(cg) => cg.add_pid(pid.as_raw()).context("moving the child into its cgroup"),
        None => Ok(()),
    };
    let result = attached.and_then(|()| write_maps(pid.as_raw(), base)).and_then(|()| {
        write(&maps_w, b"1").context("releasing the child")?;
        wait_exec(&status_r)
    });
    let took = began.elapsed();
    let status = waitpid(pid, None).context("waitpid")?;
    if let Some(cg) = &cgroup {
        cg.destroy().context("removing the cgroup")?;
    }
    result?;
    if status != WaitStatus::Exited(pid, 0) {
        bail!("/bin/true in the bare sandbox ended with {status:?}");
    }
    Ok(took)
}

fn write_maps(pid: i32, base: u32) -> Result<()> {
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, format!("0 {base} 65536\n")).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

/// End-of-file on the status pipe means exec succeeded; a byte is the failed step.
fn wait_exec(status: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    match read(status, &mut b).context("reading the child's status")? {
        0 => Ok(()),
        _ => bail!("bare sandbox: {} failed", STEPS.get(usize::from(b[0])).unwrap_or(&"?")),
    }
}
