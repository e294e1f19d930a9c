//! `containerd-shim-moat-v2 delete`: clean up after a shim that can no longer be asked.
//!
//! containerd runs it in the bundle directory when the pod's shim died (SIGKILL, OOM, a
//! crash). The bundle's `moat-state.json` names the container's cgroup and the pod; the
//! cgroup's processes are killed and the cgroup removed, and the sandbox container's ID range
//! goes back to the pool, by the same teardown as the live shim's Delete
//! (`moat_sandbox::pod::teardown`). Mounts need no cleanup: moat mounts only inside the
//! container's own mount namespace, which dies with its last process.

use std::path::Path;
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use log::warn;
use moat_sandbox::pod::teardown::{self, CgroupToRemove, PoolOf, Teardown};
use moat_sandbox::userns::pool::Owner;

use crate::task::ShimError;
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
    // The config is read only for the sandbox's range; an unreadable one fails the delete
    // once the cgroup is gone.
    let userns = state.is_sandbox.then(|| state.config.load().map(|c| c.userns));
    let range = match &userns {
        Some(Ok(config)) => Some((PoolOf::Config(config.clone()), state.pod_id.clone())),
        _ => None,
    };
    teardown::remove_container(Teardown {
        container_id: &state.container_id,
        cgroup: state.cgroups_path.clone().map_or(CgroupToRemove::None, CgroupToRemove::Recorded),
        init: recorded_init(&state),
        range,
    })?;
    if let Some(Err(e)) = userns {
        return Err(e.into());
    }
    Ok(response)
}

/// Removes the pod shim's socket file at `path` once no shim listens there: a SIGKILLed shim
/// cannot remove its own, and containerd never does. A socket something still answers on
/// (containerd also runs `delete` after a failed start, the shim may live) stays.
pub fn remove_dead_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket || std::os::unix::net::UnixStream::connect(path).is_ok() {
        return;
    }
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!("removing the dead shim socket {}: {e}", path.display());
        }
    }
}

/// The init as the shim recorded it (pid, start time, boot). State without an identity (an
/// older shim's) names no process: its pid is never signalled by bare number.
fn recorded_init(state: &BundleState) -> Option<Owner> {
    let (Some(start_time), Some(boot)) = (state.pid_start_time, state.boot_id.clone()) else {
        return None;
    };
    let pid = u32::try_from(state.pid).ok().filter(|p| *p > 0)?;
    Some(Owner { pid, start_time, boot_id: boot })
}

/// The init's pid if that pid still names the process the shim started: same start time, same
/// boot. State without an identity (an older shim's) is not signalled by bare pid.
#[cfg(test)]
fn same_process(state: &BundleState) -> Option<i32> {
    teardown::still_running(&recorded_init(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    fn state_of(pid: i32, identity: Option<&Owner>) -> BundleState {
        BundleState {
            container_id: "c1".into(),
            pod_id: "p1".into(),
            is_sandbox: false,
            cgroups_path: None,
            pid,
            pid_start_time: identity.map(|o| o.start_time),
            boot_id: identity.map(|o| o.boot_id.clone()),
            config: ConfigSource::default(),
        }
    }

    #[test]
    fn only_a_dead_shims_socket_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        remove_dead_socket(&path);
        assert!(path.exists(), "a socket a shim still listens on was removed");
        drop(listener);
        remove_dead_socket(&path);
        assert!(!path.exists(), "a dead shim's socket was left");
        // Input: a regular file at the socket's path is never removed.
        std::fs::write(&path, "x").expect("write");
        remove_dead_socket(&path);
        assert!(path.exists(), "a file that is no socket was removed");
    }

    #[test]
    fn only_the_recorded_process_is_signalled_by_pid() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let raw = i32::try_from(pid).expect("pid");
        let identity = Owner::of(pid).expect("stat").expect("alive");
        assert_eq!(same_process(&state_of(raw, Some(&identity))), Some(raw));
        // Input: the same pid recorded with another start time (the pid was reused since).
        let other = Owner { start_time: identity.start_time + 1, ..identity.clone() };
        assert_eq!(same_process(&state_of(raw, Some(&other))), None);
        // Input: state of an older shim, without the identity: never signalled by bare pid.
        assert_eq!(same_process(&state_of(raw, None)), None);
        child.kill().expect("kill");
        child.wait().expect("reap");
        // Input: the recorded process is gone.
        assert_eq!(same_process(&state_of(raw, Some(&identity))), None);
    }
}
