//! The error of one step inside the helper or the process it builds, as it travels back: a
//! `sys::StepError` (every layer the helper calls fails with one, so it travels as it is),
//! sent to the launcher as `Report::Failed` with the same three fields.

use super::wire::{Report, WireError};
use crate::sys::StepError;

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

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::*;
    use crate::sys::Step;

    fn fields(r: Report) -> Option<(String, Option<i32>, Option<String>)> {
        match r {
            Report::Failed { step, errno, detail } => Some((step, errno, detail)),
            _ => None,
        }
    }

    #[test]
    fn a_failed_mount_api_call_reports_the_outer_step_then_the_call() {
        let call: Result<(), StepError> = Err(StepError::sys("move_mount /a", Errno::EINVAL));
        let e = call.step(|| "bind rootfs /a on /b").err();
        let r = e.map(|e| fields(e.to_report()));
        let want = ("bind rootfs /a on /b: move_mount /a".to_string(), Some(libc::EINVAL), None);
        assert_eq!(r, Some(Some(want)));
    }

    #[test]
    fn a_long_detail_is_cut_at_a_char_boundary() {
        let e = StepError::refused("exec", "é".repeat(3000));
        let detail = fields(e.to_report()).and_then(|(_, _, d)| d);
        assert_eq!(detail.map(|d| d.len()), Some(4096));
        let e = StepError::refused("exec", format!("x{}", "é".repeat(3000)));
        let detail = fields(e.to_report()).and_then(|(_, _, d)| d);
        assert_eq!(detail.map(|d| d.len()), Some(4095));
    }
}
