//! What the process keeps: uid/gid/groups, capabilities, no_new_privs, rlimits, umask,
//! oom_score_adj. Called in the single-threaded helper's child, just before exec. Every step
//! fails with a `sys::StepError` naming it.

mod capabilities;
mod ids;
mod limits;

pub use capabilities::{apply_with_ids, CapabilitySets};
pub use limits::{set_no_new_privs, set_oom_score_adj, set_rlimits, set_umask, OomOutcome};
