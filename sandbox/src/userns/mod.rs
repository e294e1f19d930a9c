//! User namespaces: per-pod host ID ranges and idmapped mounts.
mod config;
pub mod holder;
pub mod idmap;
pub mod pool;
pub use config::UsernsConfig;
