//! moat's own share of a container start, without containerd: what the shim does between
//! receiving Create and the process running — the container's cgroup, `Launcher::create`
//! (sealed helper exec, namespaces, idmapped overlay rootfs, mounts, pivot_root, privileges)
//! and `Pending::start` (seccomp, exec) — on a plan like the one the policy derives for a
//! kubelet's container, for /bin/true from a busybox layer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use moat_sandbox::cgroups::{Cgroup, Layout};
use moat_sandbox::plan::*;
use moat_sandbox::policy::capabilities::{CAPPED, RUNTIME_DEFAULT};
use moat_sandbox::spawn::{Launcher, Stdio};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::fixture::{Fixture, Layer};

/// Where one moat start spent its time.
#[derive(Debug, Clone, Copy)]
pub struct MoatStart {
    pub cgroup: Duration,
    /// `Launcher::create`: until the process waits for "start".
    pub create: Duration,
    /// `Pending::start`: until exec succeeded.
    pub start: Duration,
}

impl MoatStart {
    pub fn total(&self) -> Duration {
        self.cgroup + self.create + self.start
    }
}

/// containerd's default capabilities as moat's policy leaves them (CAP_NET_RAW capped): what
/// a kubelet container whose pod asks for nothing gets.
fn default_caps() -> Vec<String> {
    RUNTIME_DEFAULT.iter().filter(|c| !CAPPED.contains(c)).map(|c| c.to_string()).collect()
}

/// The plan of a pod's first container running /bin/true: new user namespace (container
/// 0..65535 -> host `base`..), new pid/ipc/uts/net namespaces, idmapped overlay rootfs,
/// containerd's default mounts, kubelet's masked and read-only paths, moat's baseline seccomp.
pub fn plan(fx: &Fixture, layer: &Layer, id: &str, base: u32) -> ContainerPlan {
    let map = vec![IdMapping { container_id: 0, host_id: base, size: 65_536 }];
    let ns = |kind| NamespacePlan { kind, action: NamespaceAction::Create };
    let mount = |dest: &str,
                 kind: MountKind,
                 data: Option<&str>,
                 readonly: bool,
                 nodev: bool,
                 noexec: bool| MountPlan {
        destination: dest.into(),
        kind,
        readonly,
        nosuid: true,
        nodev,
        noexec,
        data: data.map(str::to_string),
    };
    let caps = default_caps();
    let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
    ContainerPlan {
        container_id: id.into(),
        pod_id: "moat-bench".into(),
        rootfs: layer.rootfs.clone(),
        rootfs_mounts: vec![RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("workdir={}", layer.work.display()),
                format!("upperdir={}", layer.upper.display()),
                format!("lowerdir={}", fx.lower.display()),
            ],
        }],
        readonly_rootfs: false,
        namespaces: vec![
            ns(NamespaceKind::Pid),
            ns(NamespaceKind::Ipc),
            ns(NamespaceKind::Uts),
            ns(NamespaceKind::Network),
            ns(NamespaceKind::Cgroup),
        ],
        user: UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: map.clone(),
            gid_mappings: map,
        },
        hostname: Some("moat-bench".into()),
        mounts: vec![
            mount("/proc", MountKind::Proc, None, false, true, true),
            mount("/dev", MountKind::Tmpfs, Some("mode=755,size=65536k"), false, false, false),
            mount(
                "/dev/pts",
                MountKind::Devpts,
                Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
                false,
                false,
                true,
            ),
            mount("/dev/shm", MountKind::Tmpfs, Some("mode=1777,size=65536k"), false, true, true),
            mount("/dev/mqueue", MountKind::Mqueue, None, false, true, true),
            mount("/sys", MountKind::Sysfs, None, true, true, true),
            mount("/sys/fs/cgroup", MountKind::Cgroup, None, true, true, true),
        ],
        masked_paths: paths(moat_e2e::configs::KUBELET_MASKED_PATHS),
        readonly_paths: paths(moat_e2e::configs::KUBELET_READONLY_PATHS),
        sysctls: BTreeMap::new(),
        cgroup_procs: vec![],
        process: ProcessPlan {
            args: vec!["/bin/true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            umask: Some(0o022),
            terminal: false,
            console_size: None,
            rlimits: vec![],
            capabilities: CapabilityPlan {
                bounding: caps.clone(),
                effective: caps.clone(),
                inheritable: vec![],
                permitted: caps,
                ambient: vec![],
            },
            no_new_privileges: true,
            seccomp: vec![moat_sandbox::seccomp::baseline()],
            oom_score_adj: None,
        },
    }
}

/// One start, timed; then waits for /bin/true to exit and removes what it made.
/// The calling process must be a child subreaper (the init is the helper's child).
pub fn start_once(
    launcher: &Launcher,
    cgroups: Option<&Layout>,
    cgroup_parent: &str,
    fx: &Fixture,
    n: usize,
    base: u32,
) -> Result<MoatStart> {
    let layer = fx.layer(n)?;
    let mut plan = plan(fx, &layer, &format!("bench-{n}"), base);
    // The shim compiles each distinct filter to BPF once and caches it (the baseline is the
    // same for every container), so a start loads a finished program: do the same, untimed.
    for filter in &mut plan.process.seccomp {
        moat_sandbox::seccomp::precompile(filter).context("precompiling the seccomp filter")?;
    }
    let t0 = Instant::now();
    let cgroup = match cgroups {
        Some(layout) => Some(
            Cgroup::create(layout, &format!("{cgroup_parent}/c{n}"), None)
                .context("creating the cgroup")?,
        ),
        None => None,
    };
    plan.cgroup_procs = cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default();
    let t1 = Instant::now();
    let created = launcher.create(&plan, Stdio::default(), None);
    let t2 = Instant::now();
    let result = created.context("Launcher::create").and_then(|pending| {
        let pid = pending.pid;
        pending.start().context("Pending::start")?;
        Ok(pid)
    });
    let t3 = Instant::now();
    let outcome = result.and_then(reap);
    if let Some(cg) = &cgroup {
        cg.destroy().context("removing the cgroup")?;
    }
    layer.remove();
    let code = outcome?;
    if code != 0 {
        bail!("/bin/true under moat exited {code}");
    }
    Ok(MoatStart { cgroup: t1 - t0, create: t2 - t1, start: t3 - t2 })
}

/// Reaps children (helpers, reparented inits) until `pid` exited; its exit code.
fn reap(pid: i32) -> Result<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => bail!("waiting for the container process {pid}: {e}"),
        }
    }
}
