//! User namespaces: per-pod host ID ranges (`pool`) and the namespace itself, made with the
//! plan's mappings and held by an fd (`holder`). Idmapped mounts are `sys::mount_api`'s.
pub mod holder;
pub mod pool;
