//! `moat-bench __moat_bench_overlay VARIANT DIR PROGRAM [ARGS...]`: builds an overlay root
//! like a container's (a busybox lower layer in DIR/lower, fresh upper and work dirs) in a
//! private mount namespace and runs PROGRAM with its working directory there, so relative
//! paths resolve through the overlay only. Separates what moat's rootfs costs each file
//! operation from everything else a container changes. Variants:
//! - `plain`: lower layer as is, host root (what runc does);
//! - `idmap`: lower layer idmapped into a user namespace (moat's rootfs), host root;
//! - `idmap-userns`: the same, PROGRAM running as root of that user namespace (as under moat).
//!
//! Must run single-threaded (it unshares its mount namespace): it is its own process.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use moat_sandbox::userns::idmap;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fork, pipe2, read, write, ForkResult, Gid, Uid};

pub const SUBCOMMAND: &str = "__moat_bench_overlay";

/// Host uid/gid the user namespace's root maps to.
const HOST_BASE: u32 = 3_500_000_000;

pub fn main(args: &[String]) -> ! {
    let e = match run(args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("moat-bench overlay probe: {e:#}");
    std::process::exit(1)
}

/// Prepares `dir/lower` (a busybox layer) for the probe; returns the file to read, relative to
/// the overlay root.
pub fn prepare_lower(dir: &Path) -> Result<&'static str> {
    let lower = dir.join("lower");
    for sub in ["bin", "etc", "tmp"] {
        fs::create_dir_all(lower.join(sub))
            .with_context(|| format!("creating {sub} in {}", lower.display()))?;
    }
    let busybox = moat_e2e::images::static_busybox()?;
    fs::copy(&busybox, lower.join("bin/busybox"))?;
    fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n".repeat(20),
    )?;
    Ok("etc/passwd")
}

fn run(args: &[String]) -> Result<std::convert::Infallible> {
    let [variant, dir, program, rest @ ..] = args else {
        bail!("usage: {SUBCOMMAND} plain|idmap|idmap-userns DIR PROGRAM [ARGS...]")
    };
    let dir = PathBuf::from(dir);
    let (idmapped, join_userns) = match variant.as_str() {
        "plain" => (false, false),
        "idmap" => (true, false),
        "idmap-userns" => (true, true),
        other => bail!("unknown variant {other:?}"),
    };
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    let run_dir = dir.join(format!("run-{}", std::process::id()));
    let (upper, work, root, stage) = (
        run_dir.join("upper"),
        run_dir.join("work"),
        run_dir.join("root"),
        run_dir.join("stage"),
    );
    for d in [&upper, &work, &root, &stage] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let userns = if idmapped {
        Some(user_namespace()?)
    } else {
        None
    };
    let lowerdir = match &userns {
        Some(ns) => {
            let tree = idmap::idmapped_tree(&dir.join("lower"), ns.as_fd(), false)?;
            let target = open(
                &stage,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            idmap::attach(tree.as_fd(), target.as_fd(), &stage)?;
            // The container's root owns the top of the writable layer, as moat sets it up.
            for d in [&upper, &work] {
                nix::unistd::chown(
                    d,
                    Some(Uid::from_raw(HOST_BASE)),
                    Some(Gid::from_raw(HOST_BASE)),
                )?;
            }
            stage.clone()
        }
        None => dir.join("lower"),
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        lowerdir.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .context("mounting the overlay")?;
    chdir(&root)?;
    if let (true, Some(ns)) = (join_userns, &userns) {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).context("joining the user namespace")?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
    }
    let argv: Vec<CString> = std::iter::once(program)
        .chain(rest)
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("NUL in an argument")?;
    let path = CString::new(Path::new(program).as_os_str().as_bytes())?;
    let env: Vec<CString> = Vec::new();
    match nix::unistd::execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(e) => bail!("execve {program:?}: {e}"),
    }
}

/// A user namespace mapping 0..65535 to `HOST_BASE`.., held by an fd (a child unshares it,
/// we write its maps, keep the namespace, let the child go).
fn user_namespace() -> Result<OwnedFd> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (hold_r, hold_w) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: this process is single-threaded (the probe runs alone), so the child may run
    // anything; it only unshares, reports and waits.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = read(&hold_r, &mut b);
            std::process::exit(0)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(hold_r);
            let mut b = [0u8; 1];
            if read(&ready_r, &mut b)? != 1 || b[0] != b'1' {
                bail!("the child could not create a user namespace");
            }
            for file in ["uid_map", "gid_map"] {
                fs::write(
                    format!("/proc/{child}/{file}"),
                    format!("0 {HOST_BASE} 65536\n"),
                )?;
            }
            let ns = open(
                format!("/proc/{child}/ns/user").as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            drop(hold_w);
            nix::sys::wait::waitpid(child, None)?;
            Ok(ns)
        }
    }
}
