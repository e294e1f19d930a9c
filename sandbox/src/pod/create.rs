//! Creating a container: the user namespace, the policy's plan, the cgroup, the egress guard,
//! the process, in that order, each step told to the caller's [`Journal`]; whatever a failed
//! step leaves taken is given back by one guard (`rollback::Taken`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};
use oci_spec::runtime::Spec;

use crate::cgroups::{Cgroup, Layout};
use crate::plan::{ContainerPlan, NamespaceAction, NamespaceKind, UserNamespaceAction};
use crate::policy::{self, Config, PodContext};
use crate::spawn::PidFd;

use super::rollback::Taken;
use super::user;
use super::{CreateContainer, CreatedContainer, Journal, Pod, PodError};

impl Pod {
    /// Blocking. Creates the container of `req` up to (not including) its exec; on any error
    /// nothing it took (ID range, cgroup, process) is left behind.
    pub fn create_container<J: Journal>(
        &self,
        req: CreateContainer,
        journal: &mut J,
    ) -> Result<CreatedContainer, J::Error> {
        let CreateContainer { container_id: id, spec, config, rootfs, rootfs_mounts, containerd } =
            req;
        let pod = self.shared();
        let is_sandbox = PodContext::spec_is_sandbox(&spec) || pod.is_none();
        let pod_id = PodContext::spec_pod_id(&spec, &id);
        journal.begin(&pod_id, is_sandbox)?;

        let mut taken = Taken::new(&id);
        let decision = user::decide(&spec, pod.as_ref(), is_sandbox, &config, &id, &pod_id)?;
        let user::Decision { user, mut shared, userns, handed_over, fresh } = decision;
        if fresh {
            if let Some(pool) = &shared.pool {
                taken.range(pool.clone(), &pod_id);
            }
            journal.range_taken();
        }

        let ctx = PodContext {
            pod_id: pod_id.clone(),
            container_id: id.clone(),
            pod_uid: shared.pod_uid.clone().or_else(|| PodContext::spec_pod_uid(&spec)),
            is_sandbox,
            rootfs,
            rootfs_mounts,
            containerd,
            user,
            pod_shares_host: if is_sandbox { Vec::new() } else { shared.host_namespaces.clone() },
        };
        // Every check below sees the CRI directories in effect: `cri_state_dirs`, else those
        // derived from containerd's bundle path and rootfs mounts.
        let config: Arc<Config> = match policy::effective_config(&config, &ctx) {
            std::borrow::Cow::Borrowed(_) => config.clone(),
            std::borrow::Cow::Owned(derived) => Arc::new(derived),
        };
        let sandbox_pid = if is_sandbox { None } else { shared.sandbox.as_ref().map(PidFd::pid) };
        if let Err(refusal) = policy::check_namespace_owner(&spec, &config, &ctx, sandbox_pid) {
            warn!("refused: {refusal}");
            return Err(PodError::Refused(refusal).into());
        }
        if handed_over && is_sandbox {
            let pool = user::claim_handed_over(&spec, &config, &ctx)?;
            taken.range(pool.clone(), &pod_id);
            shared.pool = Some(pool);
        }
        let mut plan = match policy::derive_container(&spec, &config, &ctx) {
            Ok(plan) => plan,
            Err(refusal) => {
                warn!("refused: {refusal}");
                journal.refused(&refusal, &config, &ctx.user);
                return Err(PodError::Refused(refusal).into());
            }
        };
        warn_host_owned_capabilities(&id, &plan.process.capabilities);
        journal.planned(&plan)?;

        self.audits.baseline(&config, &pod_id, &mut plan.process.seccomp);
        self.filters.precompile(&mut plan.process.seccomp);
        if let Some(cgroup) = self.create_cgroup(&spec, &id, config.default_pids_limit)? {
            plan.cgroup_procs = cgroup.procs_files();
            taken.cgroup(cgroup.clone());
            journal.cgroup_made(&cgroup)?;
        }
        // The egress guard goes into the pod's network namespace before any of its processes
        // runs: a namespace the spec names (CNI's) now, one the init makes once it exists.
        let egress = if is_sandbox { egress_target(&plan) } else { EgressTarget::Pod };
        if let EgressTarget::Path(netns) = &egress {
            guard_egress(&config, &pod_id, netns)?;
        }
        let stdio = journal.stdio()?;
        let mut pending = self
            .launcher
            .create(&plan, stdio, userns.as_ref().map(|fd| fd.as_fd()))
            .map_err(PodError::from)?;
        journal.spawned(pending.pid);
        if !is_sandbox {
            let joined = plan
                .namespaces
                .iter()
                .filter_map(|n| match &n.action {
                    NamespaceAction::Join(path) => Some(path.as_path()),
                    NamespaceAction::Create => None,
                })
                .chain(match &plan.user.action {
                    UserNamespaceAction::JoinPath(path) => Some(path.as_path()),
                    _ => None,
                });
            sandbox_paths_held(joined, shared.sandbox.as_ref(), &id)?;
        }
        if let EgressTarget::OfInit = egress {
            let netns = PathBuf::from(format!("/proc/{}/ns/net", pending.pid));
            guard_egress(&config, &pod_id, &netns)?;
        }
        self.audits.supervise(&config, &pod_id, &mut pending, &id);
        journal.ready(&mut pending)?;

        let cgroup = taken.commit();
        if is_sandbox {
            shared.userns = pending.userns.take().map(Arc::new);
            shared.sandbox = Some(pending.pidfd.clone());
            shared.host_namespaces = crate::features::NAMESPACE_KINDS
                .into_iter()
                .filter(|kind| policy::shares_host(&plan, *kind))
                .collect();
            self.set_shared(Some(shared));
        }
        Ok(CreatedContainer { is_sandbox, pod_id, plan, config, cgroup, pending })
    }

    /// The container's cgroup with the spec's resources, and the config's `default_pids_limit`
    /// when the spec sets no pids limit (per container: see `resources::with_default_pids`).
    fn create_cgroup(
        &self,
        spec: &Spec,
        id: &str,
        default_pids_limit: u64,
    ) -> Result<Option<Cgroup>, PodError> {
        let linux = spec.linux().as_ref();
        let Some(path) = linux.and_then(|l| l.cgroups_path().clone()) else { return Ok(None) };
        let path = path.display().to_string();
        let layout = usable_layout(&self.layout, id, &path)?;
        let resources = crate::cgroups::resources::with_default_pids(
            linux.and_then(|l| l.resources().as_ref()),
            default_pids_limit,
        );
        Cgroup::create(&layout, &path, resources.as_ref())
            .map(Some)
            .map_err(|source| PodError::Cgroup { container: id.to_string(), source })
    }
}

/// The cgroup layout for container `id`'s cgroup `path`; without one the container is
/// refused, naming the cause, rather than run without its limits.
fn usable_layout(
    layout: &Result<Layout, String>,
    id: &str,
    path: &str,
) -> Result<Layout, PodError> {
    layout.clone().map_err(|cause| PodError::NoCgroupLayout {
        container: id.to_string(),
        path: path.to_string(),
        cause,
    })
}

/// Checks, after the helper opened them, that the namespace paths naming the pod sandbox's
/// process (`/proc/<its pid>/ns/*`, as containerd writes them) were that process's and not
/// those of whoever got its pid after it died: the sandbox's pidfd, taken when it was
/// spawned, must still show it unreaped now. If it does, its pid was never free between its
/// spawn and now, so `/proc/<pid>` at the time of the opens was the sandbox. (A zombie
/// sandbox has no namespaces left to open, so its paths already failed in the helper.)
fn sandbox_paths_held<'a>(
    paths: impl Iterator<Item = &'a Path>,
    sandbox: Option<&PidFd>,
    id: &str,
) -> Result<(), PodError> {
    let Some(sandbox) = sandbox else { return Ok(()) };
    let dir = PathBuf::from(format!("/proc/{}", sandbox.pid()));
    let mut paths = paths;
    let Some(path) = paths.find(|p| p.starts_with(&dir)) else { return Ok(()) };
    sandbox.check_alive().map_err(|errno| PodError::SandboxGone {
        container: id.to_string(),
        path: path.to_path_buf(),
        pid: sandbox.pid(),
        errno,
    })
}

/// Where the pod's egress guard goes (see `crate::egress`).
enum EgressTarget {
    /// The network namespace the sandbox joins (CNI's on containerd 1.6, 2.x's own).
    Path(PathBuf),
    /// The namespace the sandbox's init creates: guarded once the init exists, before it runs.
    OfInit,
    /// Not the sandbox: the pod's namespace is already guarded.
    Pod,
    /// The host's network (`hostNetwork`, allowed by `allow_host_network`): outside the guard.
    Host,
}

fn egress_target(plan: &ContainerPlan) -> EgressTarget {
    match plan.namespaces.iter().find(|ns| ns.kind == NamespaceKind::Network) {
        Some(ns) => match &ns.action {
            NamespaceAction::Join(path) => EgressTarget::Path(path.clone()),
            NamespaceAction::Create => EgressTarget::OfInit,
        },
        None => {
            info!(
                "pod {}: on the host's network namespace (hostNetwork): outside the egress guard",
                plan.pod_id
            );
            EgressTarget::Host
        }
    }
}

/// Installs the `[egress]` rules in `netns`; the pod is refused when they cannot be.
fn guard_egress(config: &Config, pod_id: &str, netns: &Path) -> Result<(), PodError> {
    let refuse = |source| PodError::Egress { pod: pod_id.to_string(), source };
    let ruleset = crate::egress::ruleset_for_node(&config.egress).map_err(refuse)?;
    crate::egress::install(netns, &ruleset).map_err(refuse)?;
    if !ruleset.is_empty() {
        info!("pod {pod_id}: egress guard in {}: {}", netns.display(), ruleset.describe());
    }
    Ok(())
}

/// One warning line when a container is granted capabilities that act on namespaces moat
/// keeps owned by the host's user namespace (or on the host kernel): they are granted, but do
/// not reach what they name (issue 12; `docs/security.md`).
fn warn_host_owned_capabilities(container_id: &str, caps: &crate::plan::CapabilityPlan) {
    let found = policy::capabilities::acting_on_host_owned(caps);
    if found.is_empty() {
        return;
    }
    let list: Vec<String> = found.iter().map(|(cap, what)| format!("{cap} ({what})")).collect();
    warn!(
        "container {container_id}: granted {}: these act on namespaces that belong to the \
         host's user namespace (or on the host kernel), which a capability of the pod's user \
         namespace does not reach; operations that need them fail with EPERM (see moat's \
         docs/security.md, \"Namespaces the pod does not own\")",
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cgroup_hierarchy_refuses_the_container_naming_the_cause() {
        // Input: no cgroup filesystem in mountinfo (what Layout::detect reports).
        let missing: Result<Layout, String> = Err(crate::cgroups::CgroupError::NoCgroupFs {
            mountinfo: "/proc/self/mountinfo".into(),
        }
        .to_string());
        let err = usable_layout(&missing, "ctr1", "/k8s.io/ctr1").expect_err("must refuse");
        let msg = err.to_string();
        for part in ["ctr1", "/k8s.io/ctr1", "no cgroup filesystem", "/proc/self/mountinfo"] {
            assert!(msg.contains(part), "the refusal does not name {part:?}: {msg}");
        }
        let v2 = Layout::from_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(usable_layout(&Ok(v2.clone()), "c", "/p").ok(), Some(v2));
    }
    #[test]
    fn sandbox_paths_are_refused_once_the_sandbox_is_gone() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        // We are its parent and have not reaped it: the pidfd is certainly this child's.
        let sandbox = PidFd::open(pid).expect("pidfd_open");
        let ipc = PathBuf::from(format!("/proc/{pid}/ns/ipc"));
        let other = Path::new("/var/run/netns/cni-1");
        let check =
            |paths: &[&Path]| sandbox_paths_held(paths.iter().copied(), Some(&sandbox), "c1");
        assert!(check(&[other, &ipc]).is_ok(), "alive sandbox refused");
        child.kill().expect("kill");
        child.wait().expect("wait");
        let err = check(&[other, &ipc]).expect_err("a reaped sandbox's path was accepted");
        let text = err.to_string();
        assert!(
            text.contains("container c1") && text.contains(&ipc.display().to_string()),
            "{text}"
        );
        assert!(check(&[other]).is_ok(), "a path that does not name the sandbox was refused");
        assert!(sandbox_paths_held([ipc.as_path()].into_iter(), None, "c1").is_ok());
    }
}
