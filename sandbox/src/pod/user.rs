//! The pod's user namespace: handed over by containerd 2.x (`hostUsers: false`), else a fresh
//! range from moat's pool for the pod's first (sandbox) container, else the pod's. What the
//! sandbox container decided is kept for the others ([`PodShared`]).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use log::warn;
use oci_spec::runtime::Spec;

use crate::plan::{NamespaceKind, UserNamespaceAction, UserNamespacePlan};
use crate::policy::{self, Config, PodContext};
use crate::spawn::PidFd;
use crate::userns::pool::{IdRange, IdRangePool};

use super::PodError;

/// What the pod's first (sandbox) container leaves for the others.
#[derive(Clone)]
pub(crate) struct PodShared {
    pub pod_id: String,
    pub pod_uid: Option<String>,
    pub user: UserNamespacePlan,
    /// The pod's user namespace, joined by every later container and exec.
    pub userns: Option<Arc<OwnedFd>>,
    /// The ID range came from moat's pool (and goes back to it with the pod).
    pub pool: Option<Arc<IdRangePool>>,
    /// The sandbox container's init: containerd names the pod's namespaces to the other
    /// containers as `/proc/<its pid>/ns/*`, checked against it (see `sandbox_paths_held`).
    pub sandbox: Option<PidFd>,
    /// The namespaces the sandbox shares with the host (policy allowed them): the pod's
    /// containers that join the sandbox's namespace of such a kind share the host's.
    pub host_namespaces: Vec<NamespaceKind>,
}

/// The user namespace decided for one container.
pub(crate) struct Decision {
    pub user: UserNamespacePlan,
    /// What the pod has (for the sandbox: what it will leave to the others).
    pub shared: PodShared,
    /// The pod's user namespace to join (later containers).
    pub userns: Option<Arc<OwnedFd>>,
    /// containerd handed the mappings over (kubelet chose them).
    pub handed_over: bool,
    /// A fresh range was taken from the pool for this (sandbox) container.
    pub fresh: bool,
}

/// Decides container `id`'s user namespace. A sandbox without handed-over mappings takes a
/// fresh range from the pool here (`Decision::fresh`; the caller gives it back on failure).
pub(crate) fn decide(
    spec: &Spec,
    pod: Option<&PodShared>,
    is_sandbox: bool,
    config: &Config,
    id: &str,
    pod_id: &str,
) -> Result<Decision, PodError> {
    if let Some(user) = policy::spec_user_namespace(spec) {
        if let Some(p) = pod.filter(|_| !is_sandbox) {
            if (&p.user.uid_mappings, &p.user.gid_mappings)
                != (&user.uid_mappings, &user.gid_mappings)
            {
                return Err(PodError::MappingsDiffer {
                    container: id.to_string(),
                    pod: pod_id.to_string(),
                });
            }
        }
        let shared = PodShared {
            pod_id: pod_id.to_string(),
            pod_uid: PodContext::spec_pod_uid(spec).or_else(|| pod.and_then(|p| p.pod_uid.clone())),
            user: user.clone(),
            userns: pod.and_then(|p| p.userns.clone()),
            pool: None,
            sandbox: pod.and_then(|p| p.sandbox.clone()),
            host_namespaces: pod.map(|p| p.host_namespaces.clone()).unwrap_or_default(),
        };
        return Ok(Decision { user, shared, userns: None, handed_over: true, fresh: false });
    }
    if is_sandbox {
        let pool = IdRangePool::open(&config.userns)?;
        let range = pool.allocate(pod_id)?;
        let user = range.user_namespace_plan(UserNamespaceAction::Create);
        let shared = PodShared {
            pod_id: pod_id.to_string(),
            pod_uid: PodContext::spec_pod_uid(spec),
            user: user.clone(),
            userns: None,
            pool: Some(Arc::new(pool)),
            sandbox: None,
            host_namespaces: Vec::new(),
        };
        return Ok(Decision { user, shared, userns: None, handed_over: false, fresh: true });
    }
    let pod = pod.ok_or_else(|| PodError::NoSandbox {
        container: id.to_string(),
        pod: pod_id.to_string(),
    })?;
    let mut user = pod.user.clone();
    user.action = UserNamespaceAction::JoinPod;
    Ok(Decision {
        user,
        shared: pod.clone(),
        userns: pod.userns.clone(),
        handed_over: false,
        fresh: false,
    })
}

/// The handed-over mappings of a sandbox: kubelet chose the pod's host IDs, which must never
/// be moat's pool or another live pod's range; recorded in the pool so no later pod gets them
/// while this one lives. Returns the pool they are recorded in.
pub(crate) fn claim_handed_over(
    spec: &Spec,
    config: &Config,
    ctx: &PodContext,
) -> Result<Arc<IdRangePool>, PodError> {
    let range_error = |source| PodError::PodRange { pod: ctx.pod_id.clone(), source };
    let pool = IdRangePool::open(&config.userns).map_err(range_error)?;
    let live = pool.allocations().map_err(range_error)?;
    policy::check_handed_over_user(spec, config, ctx, &live).map_err(|refusal| {
        warn!("refused: {refusal}");
        PodError::Refused(refusal)
    })?;
    let ranges: Vec<_> = ctx
        .user
        .uid_mappings
        .iter()
        .chain(&ctx.user.gid_mappings)
        .map(|m| IdRange { host_base: m.host_id, size: m.size })
        .collect();
    pool.claim(&ctx.pod_id, &ranges).map_err(range_error)?;
    Ok(Arc::new(pool))
}
