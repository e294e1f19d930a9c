//! User namespaces: per-pod host ID ranges and idmapped mounts.
pub mod holder;
pub mod idmap;
pub mod pool;
