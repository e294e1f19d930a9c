//! The error of one step inside the helper or the process it builds, as it travels back.

use nix::errno::Errno;

use super::wire::{Report, WireError};
use crate::privileges::PrivilegeError;
use crate::rootfs::RootfsError;
use crate::userns::holder::HolderError;
use crate::userns::idmap::IdmapError;

/// A failed step: what was being done, the errno if a syscall failed, and anything more.
#[derive(Debug)]
pub(crate) struct Failure {
    pub step: String,
    pub errno: Option<Errno>,
    pub detail: Option<String>,
}

impl Failure {
    pub fn sys(step: impl Into<String>, errno: Errno) -> Self {
        Failure { step: step.into(), errno: Some(errno), detail: None }
    }
    pub fn refused(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure { step: step.into(), errno: None, detail: Some(detail.into()) }
    }
    pub fn io(step: impl Into<String>, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => Failure::sys(step, Errno::from_raw(n)),
            None => Failure::refused(step, e.to_string()),
        }
    }
    pub fn to_report(&self) -> Report {
        let mut detail = self.detail.clone();
        if let Some(d) = detail.as_mut() {
            if d.len() > 4096 {
                let mut cut = 4096;
                while !d.is_char_boundary(cut) {
                    cut -= 1;
                }
                d.truncate(cut);
            }
        }
        Report::Failed { step: self.step.clone(), errno: self.errno.map(|e| e as i32), detail }
    }
}

/// `.step(|| "what")` on syscall results.
pub(crate) trait StepExt<T> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Failure>;
}

impl<T> StepExt<T> for Result<T, Errno> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Failure> {
        self.map_err(|e| Failure::sys(what(), e))
    }
}

impl<T> StepExt<T> for Result<T, std::io::Error> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Failure> {
        self.map_err(|e| Failure::io(what(), &e))
    }
}

impl From<RootfsError> for Failure {
    fn from(e: RootfsError) -> Self {
        match e {
            RootfsError::Sys { step, errno } => Failure::sys(step, errno),
            RootfsError::Refused { step, reason } => Failure::refused(step, reason),
            RootfsError::Idmap { step, source } => {
                Failure::sys(format!("{step}: {} {}", source.op, source.path), source.errno)
            }
        }
    }
}

impl From<PrivilegeError> for Failure {
    fn from(e: PrivilegeError) -> Self {
        match e {
            PrivilegeError::Sys { step, errno } => Failure::sys(step, errno),
            PrivilegeError::Invalid { step, reason } => Failure::refused(step, reason),
        }
    }
}

impl From<HolderError> for Failure {
    fn from(e: HolderError) -> Self {
        Failure { step: e.step, errno: e.errno, detail: e.detail }
    }
}

impl From<IdmapError> for Failure {
    fn from(e: IdmapError) -> Self {
        Failure::sys(format!("{} {}", e.op, e.path), e.errno)
    }
}

impl From<WireError> for Failure {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Sys(errno) => Failure::sys("control socket", errno),
            WireError::Malformed(m) => Failure::refused("control socket", m),
        }
    }
}
