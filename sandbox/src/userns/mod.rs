//! User namespaces: per-pod host ID ranges (`pool`, configured by `[userns]`: `config`) and the
//! namespace itself, made with the plan's mappings and held by an fd (`holder`). Idmapped
//! mounts are `sys::mount_api`'s.
mod config;
pub mod holder;
pub mod pool;
pub use config::UsernsConfig;
