//! The root prerequisite of the sandbox harnesses that skip without it outside CI.

/// Whether the harness `what` may run. Not root: with `MOAT_E2E` set (CI sets it to 1) a
/// missing prerequisite fails the run (exit 1); otherwise the harness says it skipped.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("MOAT_E2E").is_some() {
        eprintln!("{what} tests need root, and MOAT_E2E=1 forbids skipping them");
        std::process::exit(1);
    }
    eprintln!("{what} tests need root; skipped");
    false
}
