//! Seccomp: the embedded profiles, stacking the baseline under the spec's filter, loading.
