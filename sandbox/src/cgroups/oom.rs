//! Learning that the kernel's OOM killer killed something in the cgroup.
//!
//! The count: v2 `memory.events` `oom_kill` (hierarchical), v1 `memory.oom_control` `oom_kill`
//! (kernel >= 4.13). The wake-up: an [`OomWatcher`] whose fd becomes readable when an OOM
//! event may have happened (v2: inotify on memory.events; v1: an eventfd registered through
//! cgroup.event_control for memory.oom_control, which the kernel also signals when the cgroup
//! is removed). The shim polls the fd, calls [`OomWatcher::drain`], then compares
//! [`Cgroup::oom_kill_count`] with the last value it saw.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{fsio, Cgroup, CgroupError, Mode};

impl Cgroup {
    fn memory_events_file(&self) -> Result<(PathBuf, bool), CgroupError> {
        if self.mode() == Mode::V2 {
            if let Some(dir) = self.v2_dir() {
                return Ok((dir.join("memory.events"), true));
            }
        }
        match self.v1_dir("memory") {
            Some(dir) => Ok((dir.join("memory.oom_control"), false)),
            None => Err(CgroupError::Unsupported {
                path: self.path(),
                what: "the memory controller".into(),
            }),
        }
    }

    /// How many processes of the cgroup (and its descendants) the OOM killer has killed.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (path, _) = self.memory_events_file()?;
        let text = fsio::read(&path)?;
        parse_oom_kill(&text).ok_or_else(|| CgroupError::Parse {
            path,
            content: fsio::truncate(&text),
            reason: "no oom_kill counter (kernel older than 4.13?)",
        })
    }

    /// A pollable fd that wakes up on OOM events of this cgroup.
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        let (path, v2) = self.memory_events_file()?;
        if v2 {
            let sys = |source| CgroupError::Sys {
                op: "inotify on memory.events",
                path: path.clone(),
                source,
            };
            let inotify =
                Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(sys)?;
            inotify.add_watch(&path, AddWatchFlags::IN_MODIFY).map_err(sys)?;
            return Ok(OomWatcher { kind: Kind::Inotify(inotify) });
        }
        let control = path.with_file_name("cgroup.event_control");
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|source| CgroupError::Sys { op: "eventfd", path: path.clone(), source })?;
        let oom_control =
            File::open(&path).map_err(|source| CgroupError::Read { path: path.clone(), source })?;
        fsio::write(&control, &format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()))?;
        Ok(OomWatcher { kind: Kind::EventFd { efd, _oom_control: oom_control } })
    }
}

/// The `oom_kill` counter of a memory.events (v2) or memory.oom_control (v1) text.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    fsio::parse_flat_keyed(text).into_iter().find(|(k, _)| *k == "oom_kill").map(|(_, v)| v)
}

enum Kind {
    Inotify(Inotify),
    EventFd { efd: EventFd, _oom_control: File },
}

/// See the module documentation. Readable (poll/epoll, e.g. tokio's `AsyncFd`) after an OOM
/// event; non-blocking.
pub struct OomWatcher {
    kind: Kind,
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Inotify(_) => "inotify",
            Kind::EventFd { .. } => "eventfd",
        };
        f.debug_struct("OomWatcher").field("kind", &kind).finish()
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Inotify(i) => i.as_fd(),
            Kind::EventFd { efd, .. } => efd.as_fd(),
        }
    }
}

impl OomWatcher {
    /// Consumes pending wake-ups; returns whether there were any.
    pub fn drain(&self) -> Result<bool, CgroupError> {
        let sys = |source| CgroupError::Sys {
            op: "reading the OOM watcher",
            path: Path::new("").into(),
            source,
        };
        match &self.kind {
            Kind::Inotify(i) => match i.read_events() {
                Ok(events) => Ok(!events.is_empty()),
                Err(nix::Error::EAGAIN) => Ok(false),
                Err(e) => Err(sys(e)),
            },
            Kind::EventFd { efd, .. } => match efd.read() {
                Ok(n) => Ok(n > 0),
                Err(nix::Error::EAGAIN) => Ok(false),
                Err(e) => Err(sys(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counters() {
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
    }
}
