//! Removing a container: its cgroup (killing what is left in it) and, with the pod's sandbox
//! container, the pod's ID range.

use log::info;

use crate::cgroups::Cgroup;

use super::{Pod, PodError};

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
        if let Some(cgroup) = cgroup {
            cgroup.destroy().map_err(|source| PodError::Cgroup {
                container: container_id.to_string(),
                source,
            })?;
        }
        if let Some(pod) = shared {
            if let Some(pool) = &pod.pool {
                pool.release(&pod.pod_id)
                    .map_err(|source| PodError::PodRange { pod: pod.pod_id.clone(), source })?;
                info!("pod {}: ID range released", pod.pod_id);
            }
        }
        Ok(())
    }
}
