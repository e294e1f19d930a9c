//! containerd-shim-moat-v2: the containerd side of moat.
//!
//! Owns: the shim v2 protocol (the `start`/`delete` commands, `-info`, the ttrpc task
//! service), task events, stdio fifos, runtime options and moat's config source, and the
//! bookkeeping of a pod's containers and processes.
//!
//! Does not own: any confinement. Every namespace, mount, ID range, cgroup, capability and
//! seccomp decision is made and applied by `moat-sandbox`; this crate only turns containerd's
//! requests into calls there and never issues those syscalls itself.

mod audit;
mod bootstrap;
mod check;
mod config;
mod error;
mod fault;
mod install;
mod shim;
mod task;

fn main() {
    // The sandbox helper: this binary re-executed (from a sealed copy) to build one container
    // process. It must run before anything else, on the single thread it starts with.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(moat_sandbox::spawn::HELPER_ARG))
    {
        moat_sandbox::spawn::helper_main();
    }
    // `audit <pod>`: the pod's denial counters (issue 15), printed for the operator.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("audit")) {
        let args: Vec<String> =
            std::env::args_os().skip(2).map(|a| a.to_string_lossy().into_owned()).collect();
        std::process::exit(audit::run(&args));
    }
    shim::main();
}
