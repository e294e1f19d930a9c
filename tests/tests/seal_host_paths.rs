//! Host paths are bound as they were checked (issue 9, "Seal the boundary").
//!
//! moat's policy checks a bind source lexically (`allowed_host_paths`, the denylist). What the
//! kernel then mounts must be that very path, not what a symlink put there since: a tenant
//! that can write into an allowed directory could otherwise swap a directory it binds for a
//! symlink to `/` between containerd's CreateContainer (which resolves symlinks, and where the
//! policy's input is fixed) and the task's create (containerd 1.6 creates the task, where moat
//! mounts, in StartContainer), and its next container would get the host's root.
//!
//! - `a_symlink_swapped_in_after_create_is_refused`: deterministic: the directory (or a
//!   directory above it) becomes a symlink into the host between CreateContainer and
//!   StartContainer; the start is refused with a message naming the path and the symlink.
//! - `racing_symlink_swaps_never_expose_the_host`: a thread keeps exchanging the directory
//!   with a symlink to `/` (renameat2 RENAME_EXCHANGE) while containers binding it are
//!   created and started; every container that starts sees the directory's marker and never
//!   the host's root; every refusal names the symlink (or is the policy's refusal of `/`,
//!   when containerd itself resolved the symlink).
//!
//! - `an_unreadable_moat_config_refuses_the_pod_naming_the_file`: fail closed: with the
//!   handler's `ConfigPath` unreadable (a directory, then a file that is not UTF-8) a pod is
//!   refused with a message naming the file, never run under the built-in defaults.
//!
//! moat only: runc binds by name too (that is the OCI contract); the shim is what must not.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::sh;
use moat_e2e::bed::on_private;
use moat_e2e::{configs, Container, Pod, TestBed};

moat_only_tests!(
    a_symlink_swapped_in_after_create_is_refused,
    racing_symlink_swaps_never_expose_the_host,
    an_unreadable_moat_config_refuses_the_pod_naming_the_file,
);

/// The file every real volume directory holds.
const MARKER: &str = "marker-of-the-real-volume";

/// What a container sees at `/vol`: the marker (the real directory) or the host's files.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    RealVolume,
    HostTree(String),
    Neither(String),
}

fn look(pod: &Pod, c: &Container) -> Result<Seen> {
    // /vol/etc/passwd exists when /vol is the host root, /vol/passwd when it is the host's /etc.
    let out = sh(
        pod,
        c,
        &format!(
            "test -e /vol/{MARKER} && echo REAL; \
             for f in /vol/etc/passwd /vol/passwd /vol/etc/shadow /vol/shadow; do \
               test -e $f && echo HOST:$f; done; true"
        ),
    )?;
    if out.stdout.contains("HOST:") {
        return Ok(Seen::HostTree(out.stdout));
    }
    if out.stdout.contains("REAL") {
        return Ok(Seen::RealVolume);
    }
    Ok(Seen::Neither(format!("{out:?}")))
}

/// A new volume directory `<allowed>/<unique>/<name>` holding the marker; returns (parent, dir).
fn real_volume(bed: &TestBed, base: &str, name: &str) -> Result<(PathBuf, PathBuf)> {
    let parent = bed.volume_dir(base)?;
    let dir = parent.join(name);
    std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "real\n")?;
    Ok((parent, dir))
}

/// CreateContainer, then `between`, then StartContainer. Ok(Some(container)) when it started,
/// Ok(None) with the refusal message when the start (or the create) was refused.
fn create_then_start(
    pod: &Pod,
    name: &str,
    source: &Path,
    between: impl FnOnce() -> Result<()>,
) -> Result<std::result::Result<Container, String>> {
    let mut config = pod.container_config(name, &["sleep", "3600"]);
    config.mounts.push(configs::volume(source, "/vol", true));
    let created = match pod.bed.cri().create(&pod.id, &config, &pod.config) {
        Ok(id) => id,
        Err(e) => return Ok(Err(format!("{e:#}"))),
    };
    between()?;
    let c = Container {
        id: created.clone(),
        name: name.to_string(),
        log_path: pod.log_dir.join(&config.log_path),
    };
    match pod.bed.cri().start(&created) {
        Ok(()) => Ok(Ok(c)),
        Err(e) => {
            let _ = pod.bed.cri().rm(&created);
            Ok(Err(format!("{e:#}")))
        }
    }
}

fn remove(pod: &Pod, c: &Container) {
    let _ = pod.bed.cri().stop(&c.id, 0);
    let _ = pod.bed.cri().rm(&c.id);
}

fn a_symlink_swapped_in_after_create_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let pod = bed.run_pod("swapped", "moat")?;

    // 1. The bound directory itself becomes a symlink to the host's /etc.
    let (parent, dir) = real_volume(bed, "swap-last", "data")?;
    let outcome = create_then_start(&pod, "last", &dir, || {
        std::fs::rename(&dir, parent.join("data.old"))?;
        std::os::unix::fs::symlink("/etc", &dir)?;
        Ok(())
    })?;
    check_refused(&pod, outcome, &dir, "the bound directory swapped for a symlink to /etc")?;

    // 2. A directory above it becomes a symlink to the host's root: `<p>/mid/etc` is /etc.
    let (parent, mid) = real_volume(bed, "swap-mid", "mid")?;
    let source = mid.join("etc");
    std::fs::create_dir(&source)?;
    std::fs::write(source.join(MARKER), "real\n")?;
    let outcome = create_then_start(&pod, "mid", &source, || {
        std::fs::rename(&mid, parent.join("mid.old"))?;
        std::os::unix::fs::symlink("/", &mid)?;
        Ok(())
    })?;
    check_refused(
        &pod,
        outcome,
        &source,
        "a directory above the source swapped for a symlink to /",
    )?;

    // The ordinary bind of a real directory still works in the same pod.
    let (_, plain) = real_volume(bed, "plain", "data")?;
    match create_then_start(&pod, "plain", &plain, || Ok(()))? {
        Ok(c) => {
            let seen = look(&pod, &c)?;
            ensure!(seen == Seen::RealVolume, "a plain volume shows {seen:?}");
            // containerd's per-pod files are real paths: they are still bound.
            let out = sh(
                &pod,
                &c,
                "test -s /etc/hosts && test -e /etc/resolv.conf && test -s /etc/hostname && \
                 grep -q ' /dev/shm ' /proc/self/mountinfo && echo PODFILES",
            )?;
            ensure!(out.stdout.contains("PODFILES"), "the pod's own files are missing: {out:?}");
        }
        Err(message) => bail!("a plain volume was refused: {message}"),
    }
    pod.teardown()
}

fn check_refused(
    pod: &Pod,
    outcome: std::result::Result<Container, String>,
    source: &Path,
    what: &str,
) -> Result<()> {
    match outcome {
        Ok(c) => {
            let seen = look(pod, &c)?;
            remove(pod, &c);
            bail!("{what}: the container STARTED and sees {seen:?}");
        }
        Err(message) => {
            eprintln!("{what}: refused: {message}");
            let shown = source.display().to_string();
            ensure!(
                message.contains(&shown) && message.contains("symlink"),
                "{what}: refused, but the message does not name {shown} and the symlink: {message}"
            );
            Ok(())
        }
    }
}

/// Exchanges `dir` and `link` (a symlink to `/`) as fast as it can until `stop`.
fn swapper(dir: PathBuf, link: PathBuf, stop: Arc<AtomicBool>, swaps: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        match nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &dir,
            nix::fcntl::AT_FDCWD,
            &link,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => {
                swaps.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("swapper: renameat2: {e}");
                return;
            }
        }
        std::thread::yield_now();
    }
}

fn racing_symlink_swaps_never_expose_the_host(bed: &TestBed, _handler: &str) -> Result<()> {
    // At least CONTAINERS attempts and, within the budget, until a few containers started
    // (most attempts are refused while the swapper runs).
    const CONTAINERS: usize = 24;
    const MAX_ATTEMPTS: usize = 80;
    const MIN_STARTED: usize = 3;
    const BUDGET: Duration = Duration::from_secs(90);
    let pod = bed.run_pod("race", "moat")?;
    let (parent, dir) = real_volume(bed, "race", "data")?;
    let link = parent.join("link");
    std::os::unix::fs::symlink("/", &link)?;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let worker = {
        let (dir, link, stop, swaps) = (dir.clone(), link.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || swapper(dir, link, stop, swaps))
    };

    let began = Instant::now();
    let mut started = 0;
    let mut refused = Vec::new();
    let mut exposed = Vec::new();
    let mut result = Ok(());
    for i in 0..MAX_ATTEMPTS {
        if began.elapsed() > BUDGET || (i >= CONTAINERS && started >= MIN_STARTED) {
            break;
        }
        let outcome = match create_then_start(&pod, &format!("racer{i}"), &dir, || Ok(())) {
            Ok(outcome) => outcome,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        match outcome {
            Ok(c) => {
                started += 1;
                // What the container's mount is does not change with later swaps: look now or
                // later, it is the tree that was mounted.
                match look(&pod, &c) {
                    Ok(Seen::RealVolume) => {}
                    Ok(other) => exposed.push(format!("{}: {other:?}", c.name)),
                    Err(e) => exposed.push(format!("{}: exec failed: {e:#}", c.name)),
                }
                remove(&pod, &c);
            }
            Err(message) => refused.push(message),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    // Leave the real directory in place for the clean-up.
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &dir,
            nix::fcntl::AT_FDCWD,
            &link,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        );
    }
    result?;
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "race: {started} started, {} refused, {} exposed the host, {swaps} swaps in {:?}",
        refused.len(),
        exposed.len(),
        began.elapsed()
    );
    ensure!(
        exposed.is_empty(),
        "{} of {started} started containers did NOT see the real volume:\n{}",
        exposed.len(),
        exposed.join("\n")
    );
    ensure!(swaps > 100, "the swapper made only {swaps} swaps: the race was not run");
    let shown = dir.display().to_string();
    for message in &refused {
        // moat's refusal names the path and the symlink; when containerd's CreateContainer
        // itself resolved the symlink, the policy refuses the host root lexically.
        let moat_named_the_symlink = message.contains(&shown) && message.contains("symlink");
        let policy_refused_the_root = message.contains("moat refused")
            && message.contains("bind mounts of host path / are never allowed");
        ensure!(
            moat_named_the_symlink || policy_refused_the_root,
            "a refusal names neither {shown} and the symlink nor the host root: {message}"
        );
    }
    ensure!(started > 0, "no container started at all (refusals: {refused:?})");
    pod.teardown()
}

fn an_unreadable_moat_config_refuses_the_pod_naming_the_file(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    // A bed of its own: its moat config file is broken on purpose.
    let test = format!("an_unreadable_moat_config_refuses_the_pod_naming_the_file::{handler}");
    on_private(TestBed::private(&test, handler, "badconfig")?, |bed| {
        let config = bed.layout().moat_config.clone();
        let shown = config.display().to_string();
        // Input 1: the config path is a directory.
        std::fs::remove_file(&config)?;
        std::fs::create_dir(&config)?;
        pod_is_refused_naming(bed, &shown, "a directory as the config")?;
        // Input 2: a config file that is not UTF-8.
        std::fs::remove_dir(&config)?;
        std::fs::write(&config, b"# caf\xe9\nlevel = \"baseline\"\n")?;
        pod_is_refused_naming(bed, &shown, "a config that is not UTF-8")?;
        // The real config again: pods run.
        moat_e2e::moat_config::write(bed.layout())?;
        bed.run_pod("goodconfig", handler)?.teardown()
    })
}

fn pod_is_refused_naming(bed: &TestBed, file: &str, what: &str) -> Result<()> {
    let config = bed.pod_config("badconfig")?;
    match bed.cri().runp(&config, "moat") {
        Ok(id) => {
            let _ = bed.cri().stopp(&id);
            let _ = bed.cri().rmp(&id);
            bail!("{what}: the pod RAN (under the built-in defaults?)");
        }
        Err(e) => {
            let message = format!("{e:#}");
            ensure!(
                message.contains(file) && message.contains("cannot read moat config"),
                "{what}: refused, but the message does not name {file}: {message}"
            );
            Ok(())
        }
    }
}
