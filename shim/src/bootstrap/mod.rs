//! The shim binary's commands other than serving: `start`, `delete`, `-info`.

pub mod cleanup;
pub mod info;
pub mod start;
