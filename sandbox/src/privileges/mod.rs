//! What the process keeps: uid/gid/groups, capabilities, no_new_privs, rlimits, umask,
//! oom_score_adj. Called in the single-threaded helper's child, just before exec.

mod capabilities;
mod ids;
mod limits;

pub use capabilities::{apply_with_ids, CapabilitySets};
pub use limits::{set_no_new_privs, set_oom_score_adj, set_rlimits, set_umask, OomOutcome};

use nix::errno::Errno;

/// A privilege step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("{step}: {errno}")]
    Sys { step: String, errno: Errno },
    #[error("{step}: {reason}")]
    Invalid { step: String, reason: String },
}

impl PrivilegeError {
    pub(crate) fn sys(step: impl Into<String>, errno: Errno) -> Self {
        PrivilegeError::Sys { step: step.into(), errno }
    }
    pub(crate) fn invalid(step: impl Into<String>, reason: impl Into<String>) -> Self {
        PrivilegeError::Invalid { step: step.into(), reason: reason.into() }
    }
}
