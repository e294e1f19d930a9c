//! moat-e2e: the end-to-end test bed.
//!
//! - `images`: builds `moat.test/busybox:1` and `moat.test/pause:1` locally (umoci, gcc) and
//!   imports them with `ctr`.
//! - `containerd`: a private containerd (own root, state, socket, CNI, `runc` and `moat`
//!   handlers) and the cleanup of everything it leaves.
//! - `moat_config`: the moat config file the test containerd hands the shim.
//! - `cri`: a blocking CRI client with crictl-like verbs; `configs`: kubelet-like configs;
//!   `cri_log`: the CRI log format.
//! - `host`: what a test observes on the host (mounts, shims, processes, cgroups).
//! - `bed`: the shared per-process fixture (`bed(test, handler)`) and `Pod`.
//! - `prereq`: `MOAT_E2E=1` turns a missing prerequisite into a failure instead of a skip.

pub mod bed;
pub mod configs;
pub mod containerd;
pub mod containerd_version;
pub mod cri;
pub mod cri_log;
pub mod host;
pub mod images;
pub mod moat_config;
pub mod paths;
pub mod prereq;
pub mod stream;

pub use bed::{bed, Container, Pod, PodFootprint, TestBed};
pub use configs::{BUSYBOX, PAUSE};
pub use cri::{Cri, ExecOutput};
pub use cri_log::LogLine;

/// The runtime handlers every lifecycle test runs under.
pub const HANDLERS: [&str; 2] = ["moat", "runc"];

/// Runs one end-to-end test body for `handler`: gets the shared test bed (or skips, see
/// `prereq`), runs `body`, and fails the test with the error's whole chain.
pub fn run_e2e(test: &str, handler: &str, body: fn(&TestBed, &str) -> anyhow::Result<()>) {
    let Some(bed) = bed(test, handler) else {
        return;
    };
    if let Err(e) = body(bed, handler) {
        let message = format!("{e:#}");
        if message.contains("---- containerd log tail") {
            panic!("{test} (handler {handler}): {message}");
        }
        panic!(
            "{test} (handler {handler}): {message}\n---- containerd log tail ({}):\n{}\n----",
            bed.layout().log.display(),
            bed.log_tail(40)
        );
    }
}

/// Polls `excess` every 200 ms until it answers `None` (what it measures is back within its
/// bound) or `within` has passed. Then its last answer fails the test under moat, and under
/// runc is only logged: runc is the baseline a test compares with, not its subject.
pub fn settles_within(
    handler: &str,
    within: std::time::Duration,
    mut excess: impl FnMut() -> anyhow::Result<Option<String>>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let Some(what) = excess()? else {
            return Ok(());
        };
        if std::time::Instant::now() > deadline {
            if handler == "runc" {
                eprintln!("runc: {what}");
                return Ok(());
            }
            anyhow::bail!("{what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// For a `#[test]` that needs no containerd: runs `body` in a scratch directory of its own
/// (`<tmp>/moat-e2e-<name>-<pid>`, made first and removed afterwards) when `handler`'s
/// prerequisites are met (see `prereq`), and fails the test with the error's whole chain.
pub fn run_in_scratch_dir(
    test: &str,
    handler: &str,
    name: &str,
    body: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) {
    if !prereq::gate(test, handler) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("moat-e2e-{name}-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
        .and_then(|()| body(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{test}: {e:#}");
    }
}

/// Declares, for each `fn name(bed: &TestBed, handler: &str) -> anyhow::Result<()>` listed,
/// a module `name` with one test per runtime handler: `name::moat` and `name::runc`.
#[macro_export]
macro_rules! e2e_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn moat() {
                    $crate::run_e2e(concat!(stringify!($name), "::moat"), "moat", super::$name);
                }
                #[test]
                fn runc() {
                    $crate::run_e2e(concat!(stringify!($name), "::runc"), "runc", super::$name);
                }
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::settles_within;
    use std::time::Duration;

    #[test]
    fn what_does_not_settle_fails_under_moat_and_is_logged_under_runc() {
        let polls = std::cell::Cell::new(0);
        let stuck = || {
            polls.set(polls.get() + 1);
            Ok(Some("still 5 threads over".to_string()))
        };
        let err = settles_within("moat", Duration::from_millis(300), stuck)
            .expect_err("moat must be held to the bound");
        assert_eq!(err.to_string(), "still 5 threads over");
        assert!(polls.get() >= 2, "polled until the deadline, not once: {}", polls.get());
        settles_within("runc", Duration::ZERO, stuck).expect("runc is only logged");
    }

    #[test]
    fn what_settles_returns_at_once() {
        let mut left = 2;
        settles_within("moat", Duration::from_secs(5), || {
            left -= 1;
            Ok((left > 0).then(|| "one over".to_string()))
        })
        .expect("settled on the second poll");
        assert_eq!(left, 0);
    }
}
