//! Test-only fault injection: the shim SIGKILLs itself at a named point of Create, Start,
//! Exec or Delete when `MOAT_FAULT` names that point, so the end-to-end tests
//! (`tests/tests/faults.rs`) can check that nothing leaks whatever step a shim dies at.
//!
//! Compiled in debug builds only (`cfg(debug_assertions)`): the test bed runs the debug shim
//! (`target/debug`), and a release build has no such hook, whatever its environment says. A
//! cargo feature would do the same but needs every build the tests use to remember to enable
//! it; `debug_assertions` is on exactly for the builds the tests run and off for `--release`.

/// The environment variable naming the point to die at (read by debug builds only).
#[cfg(debug_assertions)]
pub const FAULT_ENV: &str = "MOAT_FAULT";

/// The points, in lifecycle order.
pub const AFTER_ID_RANGE: &str = "after-id-range";
pub const AFTER_CGROUP: &str = "after-cgroup";
pub const AFTER_HELPER_SPAWNED: &str = "after-helper-spawned";
pub const AFTER_START: &str = "after-start";
pub const DURING_EXEC: &str = "during-exec";
pub const DURING_DELETE: &str = "during-delete";

/// Dies here (SIGKILL, as the OOM killer or a crash would) if `MOAT_FAULT` names `point`;
/// the log line says where, and for which container, before.
#[cfg(debug_assertions)]
pub fn point(point: &str, container: &str) {
    if std::env::var_os(FAULT_ENV).is_some_and(|v| v == point) {
        log::warn!("{FAULT_ENV}={point}: container {container}: the shim SIGKILLs itself");
        log::logger().flush();
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Release builds: no fault injection.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_point: &str, _container: &str) {}
