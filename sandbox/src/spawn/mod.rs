//! Building the confined process: a sealed helper binary, namespaces, rootfs, privileges, exec.
//!
//! CONTRACT (the shim codes against this API; the implementation replaces these bodies):
//!
//! ```ignore
//! pub const HELPER_ARG: &str = "__moat_init";
//! /// Entry point of the re-executed binary: `main()` calls this first when argv[1] == HELPER_ARG.
//! pub fn helper_main() -> !;
//! pub struct Launcher { .. }            // holds a sealed memfd copy of /proc/self/exe
//! impl Launcher {
//!     pub fn new() -> Result<Launcher, SpawnError>;
//!     /// Blocking. Builds the container's init up to (not including) exec.
//!     /// `pod_userns`: the pod's user namespace fd when plan.user.action == JoinPod.
//!     pub fn create(&self, plan: &ContainerPlan, stdio: Stdio, pod_userns: Option<BorrowedFd<'_>>)
//!         -> Result<Pending, SpawnError>;
//!     /// Blocking. Builds an exec'd process inside a running container, up to exec.
//!     pub fn exec(&self, plan: &ExecPlan, stdio: Stdio) -> Result<Pending, SpawnError>;
//! }
//! pub struct Stdio { pub stdin: Option<OwnedFd>, pub stdout: Option<OwnedFd>, pub stderr: Option<OwnedFd> }
//! pub struct Pending {
//!     pub pid: i32,                      // host pid of the process that will exec
//!     pub console: Option<OwnedFd>,      // pty master when plan.process.terminal
//!     pub userns: Option<OwnedFd>,       // the user namespace it runs in (kept by the shim for the pod)
//!     ..
//! }
//! impl Pending {
//!     /// Blocking. Lets the process exec; returns once exec succeeded, or the exec error.
//!     pub fn start(self) -> Result<(), SpawnError>;
//! }
//! // Dropping a Pending without start() makes the process exit without running anything.
//! ```
