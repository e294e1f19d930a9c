//! The thin syscall layer: safe wrappers over the raw syscalls nix does not cover (the mount
//! API: `open_tree`, `mount_setattr`, `move_mount`), and the one error type for "a syscall
//! step failed" ([`StepError`], with [`Step`] to name the step). It knows nothing about pods,
//! plans or policy: rootfs, userns, privileges and spawn build on it.

pub mod mount_api;
mod step;

pub use step::{Step, StepError};
