//! `containerd-shim-moat-v2 delete`: clean up after a shim that can no longer be asked.
//!
//! containerd runs it in the bundle directory when the pod's shim died (SIGKILL, OOM, a
//! crash). The bundle's `moat-state.json` names the container's cgroup and the pod; the
//! cgroup's processes are killed and the cgroup removed, and the sandbox container's ID range
//! goes back to the pool. Mounts need no cleanup: moat mounts only inside the container's
//! own mount namespace, which dies with its last process.

use std::path::Path;
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use log::warn;
use moat_sandbox::cgroups::{Cgroup, Layout};
use moat_sandbox::userns::pool::IdRangePool;

use crate::error::ShimError;
use crate::task::{timestamp, BundleState};

/// Exit status reported for a container whose shim is gone: as if SIGKILLed.
const KILLED: u32 = 128 + 9;

pub fn delete(bundle: &Path) -> Result<DeleteResponse, ShimError> {
    let mut response = DeleteResponse {
        exit_status: KILLED,
        exited_at: Some(timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    let Some(state) = BundleState::read(bundle)? else {
        return Ok(response);
    };
    response.pid = u32::try_from(state.pid).unwrap_or_default();
    if let Some(path) = &state.cgroups_path {
        match Layout::detect().and_then(|layout| Cgroup::open(&layout, path)) {
            Ok(cgroup) => cgroup.destroy().map_err(|e| {
                ShimError::Sandbox(format!("container {}: {e}", state.container_id))
            })?,
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!("container {}: cgroup {path}: {e}", state.container_id),
        }
    } else if state.pid > 0 {
        // No cgroup: at least the init (its pid namespace takes the rest with it).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(state.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if state.is_sandbox {
        let config = state.config.load()?;
        let pool =
            IdRangePool::open(&config.userns).map_err(|e| ShimError::Sandbox(e.to_string()))?;
        pool.release(&state.pod_id)
            .map_err(|e| ShimError::Sandbox(format!("pod {}: {e}", state.pod_id)))?;
    }
    Ok(response)
}
