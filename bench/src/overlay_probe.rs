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
use moat_sandbox::plan::{IdMapping, UserNamespaceAction, UserNamespacePlan};
use moat_sandbox::sys::mount_api;
use moat_sandbox::userns::holder;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, Gid, Uid};

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
    fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n".repeat(20))?;
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
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private")?;
    let run_dir = dir.join(format!("run-{}", std::process::id()));
    let (upper, work, root, stage) =
        (run_dir.join("upper"), run_dir.join("work"), run_dir.join("root"), run_dir.join("stage"));
    for d in [&upper, &work, &root, &stage] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let userns = if idmapped { Some(user_namespace()?) } else { None };
    let lowerdir = match &userns {
        Some(ns) => {
            let tree = mount_api::idmapped_tree(&dir.join("lower"), ns.as_fd(), false)?;
            let target =
                open(&stage, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
            mount_api::attach(tree.as_fd(), target.as_fd(), &stage)?;
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
    mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
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

/// A user namespace mapping 0..65535 to `HOST_BASE`.., held by an fd: made the way moat
/// makes a pod's (`userns::holder`).
fn user_namespace() -> Result<OwnedFd> {
    let mapping = vec![IdMapping { container_id: 0, host_id: HOST_BASE, size: 65_536 }];
    let plan = UserNamespacePlan {
        action: UserNamespaceAction::Create,
        uid_mappings: mapping.clone(),
        gid_mappings: mapping,
    };
    Ok(holder::create(&plan)?)
}
