//! moat-sandbox: the pod's isolation boundary, built from Linux primitives.
//!
//! Owns: turning an OCI spec and the operator's policy into a confinement plan (`policy`,
//! `plan`), the per-pod host ID ranges (`userns`), seccomp filters (`seccomp`), cgroups
//! (`cgroups`), and building the confined process itself (`spawn`: a sealed helper binary,
//! namespaces, rootfs and mounts, capabilities, exec).
//!
//! Does not own: anything about containerd (task ids, events, ttrpc, fifos). The shim turns
//! containerd's requests into calls here; this crate never imports containerd types.

pub mod audit;
pub mod cgroups;
pub mod egress;
pub mod features;
pub mod host_support;
pub mod plan;
pub mod pod;
pub mod policy;
pub mod privileges;
pub mod rootfs;
pub mod seccomp;
pub mod spawn;
pub mod sys;
pub mod userns;
