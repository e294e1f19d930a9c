//! Seccomp: the embedded profiles, stacking the baseline under the spec's filter, loading.

use crate::plan::SeccompPlan;

/// Why a seccomp filter could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filter {filter}: {reason}")]
    Build { filter: String, reason: String },
}

/// Compiles `plan` with libseccomp and loads it into the calling thread. Called in the helper
/// process just before exec, after no_new_privs is set.
/// (Placeholder until the seccomp module lands: refuses, so nothing runs unfiltered.)
pub fn load(plan: &SeccompPlan) -> Result<(), SeccompError> {
    Err(SeccompError::Build { filter: plan.name.clone(), reason: "seccomp loading not built yet".into() })
}
