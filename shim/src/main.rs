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
mod fault;
mod install;
mod options;
#[cfg(test)]
mod readme_fixture;
mod shim;
mod task;

/// containerd's name for this runtime.
///
/// moat serves the task API v2 (`containerd.task.v2.Task`) only, and `start` answers with a
/// bare socket address. Why not v3 as well: every containerd from 1.6 to 2.3 speaks v2 to a
/// shim that answers this way (measured), 1.7 rejects a shim that claims v3, and a shim that
/// claims v3 must really serve `containerd.task.v3.Task` (Rust ttrpc answers an unknown
/// service with InvalidArgument, so containerd's fallback to v2 never happens). The
/// containerd-shim crate 0.11 serves v2 and 0.12 only v3; serving both would mean two
/// generated services over one implementation for no containerd that needs it. One task
/// service, v2, is what every supported containerd can use.
pub const RUNTIME_ID: &str = "io.containerd.moat.v2";

fn main() {
    // The sandbox helper: this binary re-executed (through a sealed, read-only view of it,
    // `spawn::exe_seal`) to build one container process. It must run before anything else, on
    // the single thread it starts with.
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
    tune_allocator();
    shim::main();
}

/// glibc's malloc, sized for a small, long-lived process with a few threads (one per pod on
/// the node, so its anonymous memory is most of what a pod costs the node beyond its own
/// processes, see docs/performance.md): one arena instead of one per thread that ever
/// allocated (each keeps freed memory of its own), and freed memory at the top of the heap
/// returned to the kernel from 128 KiB on instead of glibc's adaptive threshold (which grows up
/// to 32 MiB after large frees). Measured by the bench's "RssAnon" rows.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets malloc parameters; it runs before this process starts any
    // other thread. A refused value (return 0) leaves glibc's default, which is still correct.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
