//! The error of one step inside the helper or the process it builds, as it travels back: a
//! `sys::StepError` (every layer the helper calls fails with one, so it travels as it is),
//! sent to the launcher as `Report::Failed` with the same three fields.

use super::wire::{Report, WireError};
pub(crate) use crate::sys::Step as StepExt;
use crate::sys::StepError;

/// The name spawn's files use for a failed step (the one step error of `sys`).
pub(crate) type Failure = StepError;

impl StepError {
    /// The report the helper sends the launcher; a detail longer than 4096 bytes is cut (at a
    /// char boundary).
    pub(crate) fn to_report(&self) -> Report {
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

impl From<WireError> for StepError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Sys(errno) => StepError::sys("control socket", errno),
            WireError::Malformed(m) => StepError::refused("control socket", m),
        }
    }
}
