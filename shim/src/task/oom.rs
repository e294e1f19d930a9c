//! Watching a container's cgroup for OOM kills and telling containerd (TaskOOM), which CRI
//! turns into the `OOMKilled` reason.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use log::{debug, warn};
use moat_sandbox::cgroups::{Cgroup, OomWatcher};
use tokio::io::unix::AsyncFd;

use super::events::EventSink;

/// How many OOM kills of a container have been reported so far.
#[derive(Clone, Default)]
pub struct OomCount(Arc<AtomicU64>);

impl OomCount {
    /// Publishes TaskOOM if the cgroup counts more kills than were reported. Returns whether
    /// it did. Called by the watcher and once more when the init exits, so the OOM event is
    /// not lost to a race with the exit.
    pub async fn report_new(&self, cgroup: &Cgroup, events: &EventSink, id: &str) -> bool {
        let Ok(now) = cgroup.oom_kill_count() else { return false };
        let before = self.0.fetch_max(now, Ordering::SeqCst);
        if now > before {
            events.oom(id).await;
            return true;
        }
        false
    }
}

struct Pollable(OomWatcher);

impl AsRawFd for Pollable {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Starts the watcher task; it ends when the cgroup goes away.
pub fn watch(cgroup: Cgroup, count: OomCount, events: EventSink, id: String) {
    let watcher = match cgroup.oom_watcher() {
        Ok(w) => w,
        Err(e) => {
            warn!("container {id}: OOM kills will not be reported: {e}");
            return;
        }
    };
    if let Ok(n) = cgroup.oom_kill_count() {
        count.0.store(n, Ordering::SeqCst);
    }
    tokio::spawn(async move {
        // SAFETY: the fd is owned by the watcher, which the AsyncFd owns for its whole life;
        // `as_raw_fd` always returns that same fd.
        let registered = unsafe { AsyncFd::register(Pollable(watcher)) };
        let fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                warn!("container {id}: OOM kills will not be reported: {e}");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.readable().await else { break };
            guard.clear_ready();
            if fd.get_ref().0.drain().is_err() {
                break;
            }
            count.report_new(&cgroup, &events, &id).await;
            if cgroup.oom_kill_count().is_err() {
                // The cgroup is gone: the container was deleted.
                break;
            }
        }
        debug!("container {id}: OOM watcher stopped");
    });
}
