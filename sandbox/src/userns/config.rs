//! The `[userns]` section of the operator's config: where moat's pool of per-pod host ID
//! ranges lies (read by `policy::Config`, used by `pool::IdRangePool`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[userns]`: the host uid/gid ranges handed to pods (pod N gets `base + N*size ..+size`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsernsConfig {
    /// First host ID of the pool.
    pub base: u32,
    /// IDs per pod (container IDs `0..size`).
    pub size: u32,
    /// How many pods can hold a range at once.
    pub count: u32,
    /// Directory holding one file per allocated range (survives shim crashes).
    pub state_dir: PathBuf,
}

impl Default for UsernsConfig {
    /// Host IDs 2^30 .. 2^30 + 2^28 (1073741824 .. 1342177280): above the subordinate IDs
    /// `useradd` hands to host users (100000 .. 600100000 by default) and the ranges operators
    /// give kubelet for `hostUsers: false` pods (kubelet's docs: from 65536, 65536 per pod),
    /// below 2^31 (some tools read IDs as signed), 65536-aligned like kubelet's ranges. kubelet
    /// without a `kubelet` entry in /etc/subuid picks ranges at random from all of
    /// 65536 .. 2^32, which no pool can avoid: moat refuses such a range when it overlaps the
    /// pool (see `docs/config.example.toml`).
    fn default() -> Self {
        UsernsConfig {
            base: 1 << 30,
            size: 65_536,
            count: 4_096,
            state_dir: PathBuf::from("/var/lib/moat/userns"),
        }
    }
}
