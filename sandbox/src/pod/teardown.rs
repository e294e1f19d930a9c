//! Removing a container: its cgroup (killing what is left in it) or, without one, its init;
//! and, with the pod's sandbox container, the pod's ID range. One function for both the live
//! shim's Delete ([`Pod::remove_container`]) and the cleanup after a shim that died
//! (`containerd-shim-moat-v2 delete`, which works from what the shim recorded).

use std::sync::Arc;

use log::{info, warn};

use crate::cgroups::{Cgroup, Layout};
use crate::policy::UsernsConfig;
use crate::userns::pool::{IdRangePool, Owner, PoolError};

use super::{Pod, PodError};

/// The container's cgroup, as its remover knows it.
pub enum CgroupToRemove {
    /// The live shim's handle.
    Held(Cgroup),
    /// The `cgroupsPath` a dead shim recorded: opened on this machine's layout; one that no
    /// longer exists is already removed.
    Recorded(String),
    /// The container has no cgroup.
    None,
}

/// Where the pod's ID range goes back to.
pub enum PoolOf {
    /// The live shim's pool.
    Held(Arc<IdRangePool>),
    /// The pool the (dead shim's) config names.
    Config(UsernsConfig),
}

/// What to remove of one container.
pub struct Teardown<'a> {
    pub container_id: &'a str,
    pub cgroup: CgroupToRemove,
    /// Without a cgroup: the init as it was recorded (pid, start time, boot); it is killed
    /// only while its pid still names that process.
    pub init: Option<Owner>,
    /// The sandbox container's pod range: (pool, pod id).
    pub range: Option<(PoolOf, String)>,
}

/// Blocking. Gives back the ID ranges of pods whose shim is gone (killed, crashed, lost in a
/// reboot: nobody runs `delete` for those); the ids of the pods reclaimed.
pub fn reclaim_dead_ranges(config: &UsernsConfig) -> Result<Vec<String>, PoolError> {
    IdRangePool::open(config)?.reclaim_dead()
}

/// Blocking. Removes what `t` names: the cgroup (killing what is in it) or else the recorded
/// init, then the pod's ID range.
pub fn remove_container(t: Teardown<'_>) -> Result<(), PodError> {
    let id = t.container_id;
    let cgroup_error = |source| PodError::Cgroup { container: id.to_string(), source };
    match t.cgroup {
        CgroupToRemove::Held(cgroup) => cgroup.destroy().map_err(cgroup_error)?,
        CgroupToRemove::Recorded(path) => {
            match Layout::detect().and_then(|layout| Cgroup::open(&layout, &path)) {
                Ok(cgroup) => cgroup.destroy().map_err(cgroup_error)?,
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!("container {id}: cgroup {path}: {e}"),
            }
        }
        CgroupToRemove::None => {
            if let Some(init) = t.init.as_ref().and_then(still_running) {
                // No cgroup: at least the init (its pid namespace takes the rest with it),
                // and only while its pid still names it (the shim that held its pidfd is gone).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(init),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    match t.range {
        Some((PoolOf::Held(pool), pod_id)) => {
            pool.release(&pod_id)
                .map_err(|source| PodError::PodRange { pod: pod_id.clone(), source })?;
            info!("pod {pod_id}: ID range released");
        }
        Some((PoolOf::Config(config), pod_id)) => {
            let pool = IdRangePool::open(&config)?;
            pool.release(&pod_id).map_err(|source| PodError::PodRange { pod: pod_id, source })?;
        }
        None => {}
    }
    Ok(())
}

/// The pid of `recorded` if that pid still names the process recorded: same start time, same
/// boot. Uncertain (unreadable /proc) means `None`: a wrong kill is worse than a leftover.
pub fn still_running(recorded: &Owner) -> Option<i32> {
    let now = Owner::of(recorded.pid).ok().flatten()?;
    (now == *recorded).then_some(i32::try_from(recorded.pid).ok()?)
}

impl Pod {
    /// Blocking. Removes the container's cgroup and, for the sandbox container, gives the
    /// pod's ID range back (when it came from, or was claimed in, moat's pool).
    pub fn remove_container(
        &self,
        container_id: &str,
        cgroup: Option<Cgroup>,
        is_sandbox: bool,
    ) -> Result<(), PodError> {
        let shared = if is_sandbox { self.set_shared(None) } else { None };
        let range = shared.and_then(|pod| Some((PoolOf::Held(pod.pool?), pod.pod_id)));
        remove_container(Teardown {
            container_id,
            cgroup: cgroup.map_or(CgroupToRemove::None, CgroupToRemove::Held),
            init: None,
            range,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_cgroup_that_is_gone_and_no_init_leave_nothing_to_do() {
        // Input: a cgroupsPath no cgroup has on this machine (removed before the shim died).
        let t = Teardown {
            container_id: "c1",
            cgroup: CgroupToRemove::Recorded("/moat-test-never-made/c1".into()),
            init: None,
            range: None,
        };
        remove_container(t).expect("an absent cgroup is already removed");
        // Input: no cgroup, and an init recorded with a start time no process of its pid has.
        let me = Owner::current().expect("own identity");
        let gone = Owner { start_time: me.start_time + 1, ..me };
        assert_eq!(still_running(&gone), None);
        let t = Teardown {
            container_id: "c1",
            cgroup: CgroupToRemove::None,
            init: Some(gone),
            range: None,
        };
        remove_container(t).expect("nothing to kill");
    }
}
