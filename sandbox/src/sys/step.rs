//! [`StepError`]: one step of building a process failed — what was being done, the errno if a
//! syscall failed, and anything more specific. Every syscall layer (rootfs, the user namespace
//! holder, privileges, the helper in spawn) reports with it, and the helper sends it to the
//! shim as it is (`spawn::wire::Report::Failed` carries the same three fields).

use nix::errno::Errno;

/// A failed step: what was being done, the errno if a syscall failed, and anything more.
/// Shown as `{step}: {errno}` or `{step}: {detail}` (both: `{step}: {detail} ({errno})`).
#[derive(Debug, thiserror::Error)]
#[error("{step}: {}", describe(.errno, .detail))]
pub struct StepError {
    pub step: String,
    pub errno: Option<Errno>,
    pub detail: Option<String>,
}

fn describe(errno: &Option<Errno>, detail: &Option<String>) -> String {
    match (errno, detail) {
        (Some(e), None) => e.to_string(),
        (None, Some(d)) => d.clone(),
        (Some(e), Some(d)) => format!("{d} ({e})"),
        (None, None) => String::new(),
    }
}

impl StepError {
    /// A syscall of `step` failed with `errno`.
    pub fn sys(step: impl Into<String>, errno: Errno) -> Self {
        StepError { step: step.into(), errno: Some(errno), detail: None }
    }

    /// `step` could not be done (or was refused) for the reason `detail`; no errno.
    pub fn refused(step: impl Into<String>, detail: impl Into<String>) -> Self {
        StepError { step: step.into(), errno: None, detail: Some(detail.into()) }
    }

    /// An `std::io` error of `step`: its errno when it has one, else its text.
    pub fn io(step: impl Into<String>, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => StepError::sys(step, Errno::from_raw(n)),
            None => StepError::refused(step, e.to_string()),
        }
    }

    /// This error as part of the larger step `outer`: `{outer}: {step}`, errno and detail kept.
    pub fn within(self, outer: impl Into<String>) -> Self {
        StepError { step: format!("{}: {}", outer.into(), self.step), ..self }
    }
}

/// `.step(|| "what")` on the results of syscalls (`Errno`), of `std` I/O (`io::Error`), and of
/// the wrappers of this layer (a [`StepError`] becomes part of the step `what`).
pub trait Step<T> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, StepError>;
}

impl<T> Step<T> for Result<T, Errno> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, StepError> {
        self.map_err(|e| StepError::sys(what(), e))
    }
}

impl<T> Step<T> for Result<T, std::io::Error> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, StepError> {
        self.map_err(|e| StepError::io(what(), &e))
    }
}

impl<T> Step<T> for Result<T, StepError> {
    fn step<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, StepError> {
        self.map_err(|e| e.within(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_step_and_the_errno_or_the_detail() {
        let e = StepError::sys("pivot_root", Errno::EPERM);
        assert_eq!(e.to_string(), format!("pivot_root: {}", Errno::EPERM));
        let e = StepError::refused("umask", "1777");
        assert_eq!(e.to_string(), "umask: 1777");
    }

    #[test]
    fn an_inner_step_becomes_part_of_the_outer_one() {
        let inner: Result<(), StepError> = Err(StepError::sys("move_mount /a", Errno::EINVAL));
        let e = inner.step(|| "bind rootfs /a on /b").err();
        let e = e.map(|e| (e.step, e.errno));
        assert_eq!(
            e,
            Some(("bind rootfs /a on /b: move_mount /a".to_string(), Some(Errno::EINVAL)))
        );
    }

    #[test]
    fn an_io_error_keeps_its_errno_or_its_text() {
        let e = StepError::io("open x", &std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!((e.errno, e.detail), (Some(Errno::ENOENT), None));
        let e = StepError::io("read x", &std::io::Error::other("short read"));
        assert_eq!((e.errno, e.detail), (None, Some("short read".to_string())));
    }
}
