//! Shared by the root test harnesses that run their own `main()` (spawn, pid_reuse): the
//! harness is the child subreaper of everything it starts; one thread reaps every child and
//! `wait_exit` waits for a given pid's status.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Exit statuses collected by the reaper, by pid.
static EXITS: Mutex<Option<HashMap<i32, WaitStatus>>> = Mutex::new(None);
static EXITED: Condvar = Condvar::new();

pub fn reaper() {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    let mut map = EXITS.lock().unwrap_or_else(|e| e.into_inner());
                    map.get_or_insert_with(HashMap::new).insert(pid.as_raw(), status);
                    EXITED.notify_all();
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Exit code (or 128+signal) of `pid`, as reaped by the reaper.
pub fn wait_exit(pid: i32, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let mut map = EXITS.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(status) = map.get_or_insert_with(HashMap::new).remove(&pid) {
            return match status {
                WaitStatus::Exited(_, code) => Ok(code),
                WaitStatus::Signaled(_, sig, _) => Ok(128 + sig as i32),
                other => bail!("unexpected status {other:?}"),
            };
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| anyhow!("pid {pid} did not exit in {timeout:?}"))?;
        map = EXITED.wait_timeout(map, left).unwrap_or_else(|e| e.into_inner()).0;
    }
}
