//! What this host's kernel gives moat, tried rather than assumed: the probes behind
//! `containerd-shim-moat-v2 check` (a node's preflight). `features` says what moat recognises in
//! a spec; this module says whether the node can deliver it.
//!
//! Each probe returns a [`Finding`]: ok, or missing with the fix. The probes that change
//! anything do it in a throw-away child (own mount namespace) and a temp dir they remove.
//! Callers must be single-threaded (the probes fork, as `userns::holder` does).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::cgroups::{Layout, Mode};
use crate::plan::{IdMapping, UserNamespaceAction, UserNamespacePlan};

/// One requirement's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The requirement (`user namespaces`, `idmapped mounts on overlayfs`, ...).
    pub name: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do when it is not ok (empty when ok).
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Not required, but something to know (moat works without it).
    Warn,
    /// Pods will fail on this node.
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
        }
    }
}

impl Finding {
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Finding { name: name.into(), status: Status::Ok, detail: detail.into(), fix: String::new() }
    }
    pub fn missing(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            name: name.into(),
            status: Status::Missing,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { name: name.into(), status: Status::Warn, detail: detail.into(), fix: fix.into() }
    }
}

pub const USER_NAMESPACES: &str = "user namespaces";
pub const IDMAPPED_OVERLAY: &str = "idmapped mounts on overlayfs";
pub const CGROUPS: &str = "cgroups";
pub const SECCOMP: &str = "seccomp filters";
pub const SECCOMP_NOTIFY: &str = "seccomp user notification";

/// Host IDs the probes map to: far above any pool a node would configure.
const PROBE_HOST_ID: u32 = 2_000_000_000;

fn sysctl(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// What the user-namespace sysctls say (pure): `max_user_namespaces` of 0 blocks everyone,
/// root included; the others only limit unprivileged users (moat's shim runs as root).
pub fn user_namespace_sysctls(max_user_namespaces: Option<&str>) -> Result<String, String> {
    match max_user_namespaces.map(str::parse::<u64>) {
        Some(Ok(0)) => Err("user.max_user_namespaces = 0 blocks every user namespace".into()),
        Some(Ok(n)) if n < 1024 => Ok(format!("user.max_user_namespaces = {n} (low: one per pod)")),
        Some(Ok(n)) => Ok(format!("user.max_user_namespaces = {n}")),
        Some(Err(_)) => Err("user.max_user_namespaces is not a number".into()),
        None => Err("/proc/sys/user/max_user_namespaces is missing: no CONFIG_USER_NS".into()),
    }
}

/// User namespaces: the sysctls, then one really created with a mapping, as the shim does.
pub fn user_namespaces() -> Finding {
    let fix = "sysctl -w user.max_user_namespaces=65536 (and persist it in /etc/sysctl.d/); \
               a kernel built with CONFIG_USER_NS";
    let max = sysctl("/proc/sys/user/max_user_namespaces");
    let detail = match user_namespace_sysctls(max.as_deref()) {
        Ok(d) => d,
        Err(e) => return Finding::missing(USER_NAMESPACES, e, fix),
    };
    match probe_userns() {
        Ok(_) => Finding::ok(USER_NAMESPACES, format!("created one with a mapping; {detail}")),
        Err(e) => Finding::missing(
            USER_NAMESPACES,
            format!("creating one failed: {e}; {detail}"),
            format!("{fix}; run as root"),
        ),
    }
}

fn probe_plan() -> UserNamespacePlan {
    let m = vec![IdMapping { container_id: 0, host_id: PROBE_HOST_ID, size: 65_536 }];
    UserNamespacePlan {
        action: UserNamespaceAction::Create,
        uid_mappings: m.clone(),
        gid_mappings: m,
    }
}

fn probe_userns() -> Result<std::os::fd::OwnedFd, String> {
    crate::userns::holder::create(&probe_plan()).map_err(|e| e.to_string())
}

/// Idmapped mounts under overlayfs, as moat mounts every rootfs: in a temp dir under `base`
/// (use the filesystem containerd's snapshots live on), a file owned by 0 in a lower layer is
/// idmapped into a user namespace and an overlay is mounted over it; the file must show the
/// mapped owner. Done in a child with its own mount namespace.
pub fn idmapped_overlay(base: &Path) -> Finding {
    let fix = "Linux 5.19 or newer (overlayfs over idmapped layers), with the layers' \
               filesystem supporting idmapped mounts (ext4, xfs, btrfs, tmpfs >= 6.3)";
    let dir = match make_probe_dir(base) {
        Ok(d) => d,
        Err(e) => {
            return Finding::missing(
                IDMAPPED_OVERLAY,
                format!("cannot prepare a temp dir under {}: {e}", base.display()),
                "run as root with a writable directory",
            )
        }
    };
    let result = probe_userns().and_then(|userns| probe_overlay_in_child(&dir, &userns));
    let _ = fs::remove_dir_all(&dir);
    match result {
        Ok(()) => Finding::ok(
            IDMAPPED_OVERLAY,
            format!("overlay over an idmapped layer under {} shows mapped owners", base.display()),
        ),
        Err(e) => Finding::missing(IDMAPPED_OVERLAY, e, fix),
    }
}

fn make_probe_dir(base: &Path) -> Result<PathBuf, String> {
    let template = base.join("moat-check-XXXXXX");
    let dir = nix::unistd::mkdtemp(&template).map_err(|e| format!("mkdtemp: {e}"))?;
    for sub in ["lower", "idlower", "upper", "work", "merged"] {
        fs::create_dir(dir.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
    }
    fs::write(dir.join("lower/probe"), b"moat\n").map_err(|e| format!("write: {e}"))?;
    Ok(dir)
}

fn probe_overlay_in_child(dir: &Path, userns: &std::os::fd::OwnedFd) -> Result<(), String> {
    let (mut report_r, report_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the caller is single-threaded (module docs): the child may allocate; it only
    // runs `overlay_steps` and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(report_r);
            let mut w = report_w;
            let code = match overlay_steps(dir, userns) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = w.write_all(e.as_bytes());
                    1
                }
            };
            // SAFETY: ends the forked child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let mut text = String::new();
            let _ = report_r.read_to_string(&mut text);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(_) if !text.is_empty() => Err(text),
                Ok(status) => Err(format!("the probe child ended with {status:?}")),
                Err(e) => Err(format!("waitpid: {e}")),
            }
        }
    }
}

fn overlay_steps(dir: &Path, userns: &std::os::fd::OwnedFd) -> Result<(), String> {
    use std::os::fd::AsFd;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making / private: {e}"))?;
    let lower = dir.join("lower");
    let tree = crate::sys::mount_api::idmapped_tree(&lower, userns.as_fd(), false)
        .map_err(|e| format!("idmapping the layer: {e}"))?;
    let target = nix::fcntl::open(
        &dir.join("idlower"),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open idlower: {e}"))?;
    crate::sys::mount_api::attach(tree.as_fd(), target.as_fd(), &dir.join("idlower"))
        .map_err(|e| format!("attaching the idmapped layer: {e}"))?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("idlower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    mount(Some("overlay"), &dir.join("merged"), Some("overlay"), MsFlags::empty(), Some(&*data))
        .map_err(|e| format!("mounting overlayfs over the idmapped layer: {e}"))?;
    let meta = fs::metadata(dir.join("merged/probe")).map_err(|e| format!("stat: {e}"))?;
    if meta.uid() != PROBE_HOST_ID {
        return Err(format!(
            "the overlay shows owner {} instead of the mapped {PROBE_HOST_ID}",
            meta.uid()
        ));
    }
    Ok(())
}

/// The controllers moat needs for a pod's limits, and for cgroup v1 the devices hierarchy.
pub const REQUIRED_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// Which controllers are missing from `layout` (pure, given the v2 `cgroup.controllers` text).
pub fn missing_controllers(layout: &Layout, v2_controllers: &str) -> Vec<String> {
    let v2: Vec<&str> = v2_controllers.split_whitespace().collect();
    let mut needed: Vec<&str> = REQUIRED_CONTROLLERS.to_vec();
    if layout.mode() != Mode::V2 {
        needed.push("devices");
    }
    needed
        .into_iter()
        .filter(|c| match layout.mode() {
            Mode::V2 => !v2.contains(c),
            _ => layout.v1_mount(c).is_none() && !v2.contains(c),
        })
        .map(str::to_string)
        .collect()
}

/// The cgroup layout and the controllers a pod's limits need.
pub fn cgroups() -> Finding {
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) => {
            return Finding::missing(CGROUPS, e.to_string(), "mount cgroup2 at /sys/fs/cgroup")
        }
    };
    let v2_text = layout
        .v2_mount()
        .and_then(|m| fs::read_to_string(m.join("cgroup.controllers")).ok())
        .unwrap_or_default();
    let mode = match layout.mode() {
        Mode::V1 => "v1",
        Mode::Hybrid => "hybrid (v1 controllers + v2)",
        Mode::V2 => "v2",
    };
    let missing = missing_controllers(&layout, &v2_text);
    if missing.is_empty() {
        Finding::ok(
            CGROUPS,
            format!("{mode}; cpu, memory, pids{} available", devices_note(&layout)),
        )
    } else {
        Finding::missing(
            CGROUPS,
            format!("{mode}; controllers missing: {}", missing.join(", ")),
            "enable them (kernel command line cgroup_enable=..., or on v2 the parent's \
             cgroup.subtree_control); moat refuses pods it cannot limit",
        )
    }
}

fn devices_note(layout: &Layout) -> &'static str {
    if layout.mode() == Mode::V2 {
        ""
    } else {
        ", devices"
    }
}

/// Seccomp filters (moat loads one into every container): the kernel's available actions.
/// Pure over the text of /proc/sys/kernel/seccomp/actions_avail (`None`: no such file).
pub fn seccomp_from_actions(actions_avail: Option<&str>) -> (Finding, Finding) {
    let Some(actions) = actions_avail else {
        return (
            Finding::missing(
                SECCOMP,
                "/proc/sys/kernel/seccomp/actions_avail is missing: no CONFIG_SECCOMP_FILTER",
                "a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER",
            ),
            Finding::warn(SECCOMP_NOTIFY, "no seccomp filters", "see the line above"),
        );
    };
    let list: Vec<&str> = actions.split_whitespace().collect();
    let needed = ["kill_process", "errno", "allow"];
    let missing: Vec<&str> = needed.iter().copied().filter(|a| !list.contains(a)).collect();
    let filters = if missing.is_empty() {
        Finding::ok(SECCOMP, format!("actions: {}", list.join(" ")))
    } else {
        Finding::missing(
            SECCOMP,
            format!("actions missing: {}", missing.join(", ")),
            "a kernel with these seccomp actions (Linux 4.14+)",
        )
    };
    let notify = if list.contains(&"user_notif") {
        Finding::ok(SECCOMP_NOTIFY, "available")
    } else {
        Finding::warn(
            SECCOMP_NOTIFY,
            "not available (moat does not need it today)",
            "Linux 5.0+ for SECCOMP_RET_USER_NOTIF",
        )
    };
    (filters, notify)
}

/// Seccomp, read from the kernel and checked with `prctl(PR_GET_SECCOMP)`.
pub fn seccomp() -> (Finding, Finding) {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only reads this thread's mode.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
    if mode < 0 {
        let e = std::io::Error::last_os_error();
        return seccomp_from_actions(None).pipe_detail(format!("prctl(PR_GET_SECCOMP): {e}"));
    }
    seccomp_from_actions(sysctl("/proc/sys/kernel/seccomp/actions_avail").as_deref())
}

trait PipeDetail {
    fn pipe_detail(self, extra: String) -> Self;
}

impl PipeDetail for (Finding, Finding) {
    fn pipe_detail(mut self, extra: String) -> Self {
        self.0.detail = format!("{}; {extra}", self.0.detail);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_user_namespaces_zero_blocks_root_too() {
        assert!(user_namespace_sysctls(Some("0")).is_err());
        assert!(user_namespace_sysctls(None).expect_err("no sysctl").contains("CONFIG_USER_NS"));
        assert!(user_namespace_sysctls(Some("x")).is_err());
        assert_eq!(
            user_namespace_sysctls(Some("63541")),
            Ok("user.max_user_namespaces = 63541".into())
        );
    }

    #[test]
    fn controllers_are_required_per_layout() {
        let hybrid = Layout::from_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             31 23 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 23 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             33 23 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
        );
        assert_eq!(missing_controllers(&hybrid, ""), vec!["devices".to_string()]);
        let v2 = Layout::from_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(missing_controllers(&v2, "cpuset cpu io memory pids"), Vec::<String>::new());
        assert_eq!(missing_controllers(&v2, "cpu io"), vec!["memory", "pids"]);
    }

    #[test]
    fn seccomp_actions_are_read() {
        let (f, n) = seccomp_from_actions(Some(
            "kill_process kill_thread trap errno user_notif trace log allow",
        ));
        assert_eq!((f.status, n.status), (Status::Ok, Status::Ok));
        let (f, n) = seccomp_from_actions(Some("kill_thread trap errno trace allow"));
        assert_eq!((f.status, n.status), (Status::Missing, Status::Warn));
        assert!(f.detail.contains("kill_process"), "{}", f.detail);
        let (f, _) = seccomp_from_actions(None);
        assert_eq!(f.status, Status::Missing);
    }
}
