//! One supervisor thread per pod for every seccomp listener of that pod's processes.
//!
//! A listener stays open for as long as any process that inherited its filter lives: an exec
//! that leaves a background child keeps its filter alive long after the exec itself ended. A
//! thread per listener (the first design) therefore grew the shim by one thread per such exec;
//! here one thread polls all of the pod's listeners and a wake pipe, so the shim's thread
//! count does not depend on what tenants leave running. The pace (`PodAudit::record`) is per
//! pod anyway, so one thread answering in turn changes nothing a tenant can observe.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{answer_one, PodAudit};

/// The listeners handed over but not yet polled.
type Queue = Arc<Mutex<Vec<(OwnedFd, String)>>>;

/// The pod's supervisor: `add` hands it a listener. Dropping it lets the thread end once the
/// listeners it holds have all hung up.
#[derive(Debug)]
pub struct PodSupervisor {
    queue: Queue,
    wake: OwnedFd,
    thread: std::thread::JoinHandle<()>,
}

impl PodSupervisor {
    /// Starts the pod's thread.
    pub fn start(pod: Arc<PodAudit>) -> std::io::Result<PodSupervisor> {
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let queue: Queue = Arc::default();
        let theirs = queue.clone();
        let thread = std::thread::Builder::new()
            .name("moat-audit".into())
            // poll, two ioctls, a name lookup and a log line: a small stack is plenty.
            .stack_size(256 * 1024)
            .spawn(move || run(pod, theirs, wake_r))?;
        Ok(PodSupervisor { queue, wake: wake_w, thread })
    }

    /// Waits until every listener handed over has hung up (their processes are gone) and the
    /// counts are written; then the thread ends.
    pub fn finish(self) {
        let PodSupervisor { wake, thread, .. } = self;
        drop(wake);
        if thread.join().is_err() {
            log::warn!("the audit thread panicked");
        }
    }

    /// Supervises `listener` (a process's seccomp listener; `label` names the container or
    /// exec in the records) from now on.
    pub fn add(&self, listener: OwnedFd, label: String) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.push((listener, label));
        }
        // A full pipe already holds a wake-up; any other error means the thread is gone and
        // the listener closes with the queue (the kernel then answers ENOSYS: still refused).
        let _ = nix::unistd::write(&self.wake, b"+");
    }
}

fn run(pod: Arc<PodAudit>, queue: Queue, wake: OwnedFd) {
    let mut listeners: Vec<(OwnedFd, String)> = Vec::new();
    let mut supervisor_gone = false;
    loop {
        if let Ok(mut queued) = queue.lock() {
            listeners.append(&mut queued);
        }
        if supervisor_gone && listeners.is_empty() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(listeners.len() + 1);
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        fds.extend(listeners.iter().map(|(l, _)| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("audit of pod {}: poll: {e}", pod.pod);
                break;
            }
        }
        let revents: Vec<PollFlags> =
            fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        if revents[0].contains(PollFlags::POLLIN) {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(&wake, &mut buf), Ok(n) if n > 0) {}
        } else if revents[0].intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // The PodSupervisor was dropped: no more listeners will come.
            supervisor_gone = true;
        }
        // Answer what is ready; drop listeners whose processes are all gone.
        let mut i = listeners.len();
        while i > 0 {
            i -= 1;
            let flags = revents[i + 1];
            if flags.contains(PollFlags::POLLIN) {
                answer_one(&listeners[i].0, &pod, &listeners[i].1);
            } else if flags
                .intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
            {
                listeners.swap_remove(i);
                // That process tree is done: its counts reach the file now, not when the
                // pod ends.
                pod.flush();
            }
        }
    }
    pod.flush();
}
