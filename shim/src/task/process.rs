//! One process the shim supervises (a container's init or an exec) and its exit.
//!
//! The exit is recorded exactly once, in a `watch` channel: Wait on a process that has not
//! even started yet simply waits on that channel until the reaper fills it.

use std::time::SystemTime;

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::types::task::Status;
use moat_sandbox::spawn::{Pending, PidFd};
use tokio::sync::watch;

use super::stdio::{IoHandle, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn timestamp(&self) -> Timestamp {
        timestamp(self.at)
    }
}

/// A point in time as containerd's protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

pub struct Process {
    /// For containerd and messages only: never signal or join by it (it may be reused).
    pub pid: i32,
    /// The process itself, taken before its pid could be reused: Kill signals it, an exec
    /// joins the init's namespaces through it.
    pub pidfd: PidFd,
    pub stdio: StdioPaths,
    /// Until Start: the process waits inside the sandbox for the word to exec.
    pub pending: Option<Pending>,
    pub started: bool,
    pub paused: bool,
    pub io: IoHandle,
    exit_tx: watch::Sender<Option<Exit>>,
}

impl Process {
    pub fn new(pid: i32, stdio: StdioPaths, pending: Pending, io: IoHandle) -> Self {
        let (exit_tx, _) = watch::channel(None);
        Process {
            pid,
            pidfd: pending.pidfd.clone(),
            stdio,
            pending: Some(pending),
            started: false,
            paused: false,
            io,
            exit_tx,
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit_tx.borrow()
    }

    /// Records the exit; returns false if one was recorded already (reported once only).
    pub fn set_exit(&self, exit: Exit) -> bool {
        self.exit_tx.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(exit);
            true
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Exit>> {
        self.exit_tx.subscribe()
    }

    pub fn status(&self) -> Status {
        if self.exit().is_some() {
            Status::STOPPED
        } else if self.paused {
            Status::PAUSED
        } else if self.started {
            Status::RUNNING
        } else {
            Status::CREATED
        }
    }

    pub fn is_running(&self) -> bool {
        self.started && self.exit().is_none()
    }
}
