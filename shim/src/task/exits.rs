//! Exits nobody has claimed yet, and the exit status containerd is told.
//!
//! The shim is the child subreaper: containerd-shim's signal loop reaps every child
//! (`waitpid(-1)`) and notifies the monitor. Helper processes exit too, and a container's
//! process may die before the shim has registered its pid; such exits wait in a small
//! bounded buffer until the pid is claimed. The routing itself (which process, in which
//! order, once) is `state::ExitRouter`'s.

use std::collections::{HashMap, VecDeque};

use super::process::Exit;

/// Exits of pids nobody has claimed yet. Bounded: helper processes exit all the time and
/// are never claimed.
#[derive(Default)]
pub struct UnclaimedExits {
    /// Each exit with the sequence number of its reaping (see `claim`).
    by_pid: HashMap<i32, (Exit, u64)>,
    order: VecDeque<i32>,
}

const UNCLAIMED_LIMIT: usize = 1024;

impl UnclaimedExits {
    /// Keeps the exit of `pid`, the `seq`-th reaping the shim saw.
    pub fn record(&mut self, pid: i32, exit: Exit, seq: u64) {
        if self.by_pid.insert(pid, (exit, seq)).is_none() {
            self.order.push_back(pid);
        }
        while self.order.len() > UNCLAIMED_LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.by_pid.remove(&old);
            }
        }
    }

    /// Takes the exit of `pid` if it was reaped before being claimed, by a process spawned
    /// when `after` reapings had been seen. An exit reaped no later than that is another
    /// process's that had the pid before (a helper's, the pid since reused): it is dropped.
    pub fn claim(&mut self, pid: i32, after: u64) -> Option<Exit> {
        let (exit, seq) = self.by_pid.remove(&pid)?;
        self.order.retain(|p| *p != pid);
        (seq > after).then_some(exit)
    }
}

/// containerd's exit status for a wait status as containerd-shim reports it (128+signal for
/// a signal death, as runc's shim does).
pub fn exit_status(code: i32) -> u32 {
    u32::try_from(code).unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn an_early_exit_is_kept_until_claimed_once() {
        let mut exits = UnclaimedExits::default();
        let exit = Exit { status: 3, at: SystemTime::now() };
        exits.record(42, exit, 1);
        assert_eq!(exits.claim(42, 0), Some(exit));
        assert_eq!(exits.claim(42, 0), None);
    }

    #[test]
    fn the_buffer_forgets_the_oldest_beyond_its_bound() {
        let mut exits = UnclaimedExits::default();
        for pid in 0..(UNCLAIMED_LIMIT as i32 + 10) {
            exits.record(pid, Exit { status: 0, at: SystemTime::now() }, 1);
        }
        assert_eq!(exits.claim(0, 0), None);
        assert!(exits.claim(UNCLAIMED_LIMIT as i32 + 9, 0).is_some());
    }
}
