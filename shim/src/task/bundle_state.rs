//! What the shim writes into each bundle so that `containerd-shim-moat-v2 delete` can clean
//! up after a shim that was killed: the pod, the cgroup and the ID pool to release from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigSource;

pub const FILE_NAME: &str = "moat-state.json";

/// Writing or reading a bundle's state file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleStateError {
    #[error("encoding {}: {source}", path.display())]
    Encode { path: PathBuf, source: serde_json::Error },
    /// Writing the temporary file (`path`) that is then renamed over the state file.
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("renaming to {}: {source}", path.display())]
    Rename { path: PathBuf, source: std::io::Error },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is there but is not a state a shim wrote.
    #[error("{} is not moat state: {source}", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleState {
    pub container_id: String,
    pub pod_id: String,
    pub is_sandbox: bool,
    pub cgroups_path: Option<String>,
    pub pid: i32,
    /// The init's start time and the boot it started in, beside `pid`: `delete` after a dead
    /// shim signals that pid only while it is still this process (a pid number alone may
    /// belong to another process by then). Absent in state written by older shims.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    #[serde(default)]
    pub boot_id: Option<String>,
    pub config: ConfigSource,
}

impl BundleState {
    pub fn write(&self, bundle: &Path) -> Result<(), BundleStateError> {
        let path = bundle.join(FILE_NAME);
        let text = match serde_json::to_vec(self) {
            Ok(text) => text,
            Err(source) => return Err(BundleStateError::Encode { path, source }),
        };
        let tmp = bundle.join(format!("{FILE_NAME}.tmp"));
        if let Err(source) = std::fs::write(&tmp, text) {
            return Err(BundleStateError::Write { path: tmp, source });
        }
        std::fs::rename(&tmp, &path).map_err(|source| BundleStateError::Rename { path, source })
    }

    /// `Ok(None)` when the bundle has no state (the container never got that far).
    pub fn read(bundle: &Path) -> Result<Option<BundleState>, BundleStateError> {
        let path = bundle.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|source| BundleStateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BundleStateError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(BundleState::read(dir.path()).expect("no state"), None);
        let state = BundleState {
            container_id: "c1".into(),
            pod_id: "p1".into(),
            is_sandbox: true,
            cgroups_path: Some("/k8s.io/c1".into()),
            pid: 1234,
            pid_start_time: Some(99),
            boot_id: Some("b".into()),
            config: ConfigSource::default(),
        };
        state.write(dir.path()).expect("write");
        assert_eq!(BundleState::read(dir.path()).expect("read"), Some(state));
        // Input: a state file truncated to garbage.
        std::fs::write(dir.path().join(FILE_NAME), "{\"container_id\":").expect("write");
        let err = BundleState::read(dir.path()).expect_err("garbage").to_string();
        assert!(err.contains(FILE_NAME), "{err}");
    }

    #[test]
    fn state_of_an_older_shim_without_the_init_identity_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: moat-state.json as shims before the identity fields wrote it.
        let old = r#"{"container_id":"c1","pod_id":"p1","is_sandbox":false,"cgroups_path":null,"pid":42,"config":{"path":null,"body":null}}"#;
        std::fs::write(dir.path().join(FILE_NAME), old).expect("write");
        let state = BundleState::read(dir.path()).expect("read").expect("state");
        assert_eq!((state.pid, state.pid_start_time, state.boot_id), (42, None, None));
    }
}
