//! Attack test of the sealed helper binary (`spawn::exe_seal`, CVE-2019-5736). Needs root.
//!
//! The helper is exec'd from `SealedExe::path()`, so what a process in a container could reach
//! through `/proc/<helper pid>/exe` is that file. The attacker here is stronger than any
//! container: host root with every capability but CAP_SYS_RESOURCE. It opens the file of a
//! live process exec'd from the seal through `/proc/<pid>/exe` for writing, keeps an `O_PATH`
//! fd on it and re-opens that for writing once the process is gone (the original exploit),
//! and truncates it by path. Every attempt must fail; nothing is ever written (a success is
//! reported and the fd closed). The control, the binary exec'd straight from its installed
//! path, is where the delayed re-open succeeds.
//!
//! The live process is this test binary itself, exec'd from the seal with `argv[1] ==`
//! [`WAIT_FOR_STDIN_EOF`] (its own `main()` dispatches: `harness = false`).
//!
//! Run as root: `cargo test -p moat-sandbox --test exe_seal`.

#[path = "common/harness.rs"]
mod harness;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, ensure, Context, Result};
use moat_sandbox::spawn::{EmptyLayer, ExeSeal, SealedExe, NODE_EMPTY_DIR};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// `argv[1]` of this binary exec'd from the seal: it lives until its stdin closes.
const WAIT_FOR_STDIN_EOF: &str = "__wait_for_stdin_eof";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(WAIT_FOR_STDIN_EOF) {
        let mut buf = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut buf);
        return ExitCode::SUCCESS;
    }
    // Needs root everywhere (never skips).
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the exe_seal tests need root");
        return ExitCode::FAILURE;
    }
    harness::run(&[
        (
            "the_helper_binary_is_an_overlay_view_not_a_copy",
            the_helper_binary_is_an_overlay_view_not_a_copy,
        ),
        (
            "host_root_cannot_write_the_helper_binary_through_proc_pid_exe",
            host_root_cannot_write_the_helper_binary_through_proc_pid_exe,
        ),
        (
            "the_control_exec_from_the_installed_path_is_writable_after_exit",
            the_control_exec_from_the_installed_path_is_writable_after_exit,
        ),
        (
            "the_node_empty_layer_is_root_owned_and_writable_by_nobody_else",
            the_node_empty_layer_is_root_owned_and_writable_by_nobody_else,
        ),
    ])
}

/// What the attacker got: `None` when every attempt was refused.
fn attack_exe_of(exe_path: &Path) -> Result<(Option<String>, Vec<String>)> {
    let mut child = Command::new(exe_path)
        .arg(WAIT_FOR_STDIN_EOF)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("exec {}", exe_path.display()))?;
    let link = format!("/proc/{}/exe", child.id());
    let mut refused = Vec::new();
    let mut won = None;
    let mut attempt = |what: &str, r: Result<OwnedFd, Errno>| match r {
        Ok(_) => {
            if won.is_none() {
                won = Some(what.to_string());
            }
        }
        Err(e) => refused.push(format!("{what}: {e}")),
    };
    attempt("open /proc/PID/exe O_WRONLY", open(link.as_str(), OFlag::O_WRONLY, Mode::empty()));
    attempt("open /proc/PID/exe O_RDWR", open(link.as_str(), OFlag::O_RDWR, Mode::empty()));
    let kept = open(link.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .context("host root cannot even open /proc/PID/exe O_PATH")?;
    let via_kept = format!("/proc/self/fd/{}", kept.as_raw_fd());
    // The process ends: nothing is running from the file any more (no ETXTBSY).
    drop(child.stdin.take());
    let status = child.wait()?;
    ensure!(status.success(), "the child exec'd from {} failed: {status}", exe_path.display());
    attempt(
        "re-open a kept O_PATH fd O_WRONLY after the process exited",
        open(via_kept.as_str(), OFlag::O_WRONLY, Mode::empty()),
    );
    attempt(
        "re-open a kept O_PATH fd O_RDWR after the process exited",
        open(via_kept.as_str(), OFlag::O_RDWR, Mode::empty()),
    );
    // truncate(2) to the file's own size: would change nothing even if it worked.
    let size = std::fs::metadata(&via_kept)?.len();
    match nix::unistd::truncate(via_kept.as_str(), size as i64) {
        Ok(()) => attempt("truncate through the kept fd's path", Ok(kept)),
        Err(e) => refused.push(format!("truncate: {e}")),
    }
    Ok((won, refused))
}

fn attack_fails_on(seal: &SealedExe) -> Result<()> {
    let (won, refused) = attack_exe_of(&seal.path())?;
    if let Some(what) = won {
        bail!("{:?}: the attacker could {what} (refused: {refused:?})", seal.seal());
    }
    ensure!(
        refused.iter().all(|r| r.contains("EROFS")),
        "refused, but not because the file is read-only: {refused:?}"
    );
    Ok(())
}

fn the_helper_binary_is_an_overlay_view_not_a_copy() -> Result<()> {
    let (seal, fallback) = SealedExe::open()?;
    ensure!(fallback.is_none(), "fell back to a copy: {fallback:?}");
    ensure!(
        matches!(seal.seal(), ExeSeal::Overlay { .. }),
        "the helper binary is sealed as {:?}",
        seal.seal()
    );
    // The same file as the running binary (inode, size, times; the device is the overlay's),
    // and no memfd was made for it.
    let view = std::fs::metadata(seal.path())?;
    let running = std::fs::metadata("/proc/self/exe")?;
    ensure!(
        (view.ino(), view.size(), view.mtime()) == (running.ino(), running.size(), running.mtime()),
        "the overlay shows another file: {view:?} vs {running:?}"
    );
    let target = std::fs::read_link(seal.path())?;
    ensure!(!target.to_string_lossy().starts_with("/memfd:"), "a memfd: {target:?}");
    Ok(())
}

fn host_root_cannot_write_the_helper_binary_through_proc_pid_exe() -> Result<()> {
    let sha_before = sha_of_self()?;
    attack_fails_on(&SealedExe::open_with(EmptyLayer::Detached)?)?;
    attack_fails_on(&SealedExe::open_with(EmptyLayer::NodeDir)?)?;
    ensure!(sha_of_self()? == sha_before, "the running binary changed");
    Ok(())
}

fn the_control_exec_from_the_installed_path_is_writable_after_exit() -> Result<()> {
    // Without the seal the attack works. The installed binary is a copy of this one: this
    // test process runs from its own file, which makes that file busy (ETXTBSY) for as long
    // as it lives, like a shim's; the copy is busy only while the child runs from it (a
    // runtime binary exec'd by path, like runc's).
    let dir = tempfile::tempdir()?;
    let installed = dir.path().join("runtime");
    std::fs::copy("/proc/self/exe", &installed)?;
    let (won, refused) = attack_exe_of(&installed)?;
    ensure!(
        won.as_deref() == Some("re-open a kept O_PATH fd O_WRONLY after the process exited"),
        "the control attack did not work as expected: won {won:?}, refused {refused:?}"
    );
    Ok(())
}

fn the_node_empty_layer_is_root_owned_and_writable_by_nobody_else() -> Result<()> {
    let _seal = SealedExe::open_with(EmptyLayer::NodeDir)?;
    for dir in [Path::new(NODE_EMPTY_DIR), Path::new(NODE_EMPTY_DIR).parent().context("parent")?] {
        let m = std::fs::symlink_metadata(dir)?;
        ensure!(m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0, "{}: {m:?}", dir.display());
    }
    Ok(())
}

fn sha_of_self() -> Result<Vec<u8>> {
    // Hashed by path: /proc/self/exe of sha256sum would be sha256sum.
    let path = std::fs::read_link("/proc/self/exe")?;
    let out = Command::new("sha256sum").arg(&path).output().context("sha256sum")?;
    ensure!(out.status.success(), "sha256sum {}: {out:?}", path.display());
    Ok(out.stdout)
}
