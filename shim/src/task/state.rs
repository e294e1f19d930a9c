//! Exit routing as a synchronous state machine: which process a reaped pid belongs to, when
//! its exit is recorded and told to containerd, and in which order.
//!
//! No I/O and no tokio here. Each input (`registered_*`, `reaped`, `start_*`, `grace_over`,
//! `deleted_*`) updates the routing state and returns the [`Effect`]s to run, in order; the
//! task service runs them under its state lock (closing stdin, filling the process's exit
//! channel, publishing TaskExit, reporting OOM kills, killing the cgroup, arming a timer).
//!
//! The rules (each has a unit test named for it below):
//! - A reaped pid leaves the pid table at once, before the kernel can give it to another
//!   process: a later registration of the same pid is a new process.
//! - A pid nobody registered (a helper process, or a container process that died before the
//!   shim registered it) has its exit kept in a bounded buffer ([`UnclaimedExits`]); when the
//!   pid is registered the exit is recorded on the process and its stdin closed, but not
//!   published (containerd never saw it start). Helper pids are never claimed and age out.
//! - Only an exit reaped after a process was spawned can be its: an exit kept under the pid
//!   from before (a helper's, the pid since given to the new process) is dropped.
//! - A process's stdin copy is closed as soon as its exit is reaped.
//! - An exit reaped while Start is under way is held and applied once Start has been
//!   reported, so containerd hears of the start before the exit.
//! - Each exit is recorded and published once: a second exit for a process is dropped.
//! - When a container's init exits, its new OOM kills are reported first, whatever else runs
//!   in its cgroup is killed, and its exit is held back until every exec of the container has
//!   exited (their exits are published first), or until the grace period ends.
//! - Deleting an exec drops its pid only if the pid still names that exec (it may have been
//!   reaped and given to a newer process); deleting a container drops all its pids.
//! - An exec registered after its container was deleted is refused; its pid stays registered
//!   and its exit, when reaped, changes nothing.

use std::collections::HashMap;

use super::exits::UnclaimedExits;
use super::process::Exit;

/// When a process was spawned, in the router's count of reapings (`ExitRouter::spawn_ticket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnTicket(u64);

/// A container's init (`exec` empty) or one of its execs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub container: String,
    pub exec: String,
}

impl ProcessKey {
    pub fn new(container: &str, exec: &str) -> Self {
        ProcessKey { container: container.to_string(), exec: exec.to_string() }
    }

    pub fn is_init(&self) -> bool {
        self.exec.is_empty()
    }
}

/// What the task service does for an input, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Close the process's stdin copy: nobody is left to read it.
    CloseStdin(ProcessKey),
    /// Record the exit on the process (Wait and State see it from now on).
    Record(ProcessKey, Exit),
    /// Tell containerd the process exited (TaskExit).
    Publish { process: ProcessKey, pid: i32, exit: Exit },
    /// Report the container's new OOM kills (before its init's exit).
    ReportOom(String),
    /// SIGKILL whatever is left in the container's cgroup.
    KillRemaining(String),
    /// Call [`ExitRouter::grace_over`] for the container once the exec exit grace has passed.
    StartGrace(String),
}

/// What the router knows of one process.
#[derive(Debug)]
struct Tracked {
    pid: i32,
    /// Start is under way: an exit reaped meanwhile waits in `held`.
    starting: bool,
    held: Option<Exit>,
    /// Recorded (and, unless claimed at registration, published).
    exit: Option<Exit>,
}

impl Tracked {
    fn new(pid: i32) -> Self {
        Tracked { pid, starting: false, held: None, exit: None }
    }
}

#[derive(Debug)]
struct Routed {
    init: Tracked,
    execs: HashMap<String, Tracked>,
    /// The init exited while execs still ran: its exit waits until they are reaped.
    deferred_init_exit: Option<Exit>,
}

impl Routed {
    fn process_mut(&mut self, exec: &str) -> Option<&mut Tracked> {
        if exec.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec)
        }
    }

    fn running_execs(&self) -> usize {
        self.execs.values().filter(|p| p.pid > 0 && p.exit.is_none()).count()
    }
}

/// The pod's exit routing: the pid table, exits nobody claimed yet, and per process whether
/// its exit is held, deferred or already recorded.
#[derive(Default)]
pub struct ExitRouter {
    pids: HashMap<i32, ProcessKey>,
    unclaimed: UnclaimedExits,
    /// How many exits were reaped so far: orders an exit against a process's spawn.
    reapings: u64,
    containers: HashMap<String, Routed>,
}

impl ExitRouter {
    /// The process a live pid belongs to.
    pub fn owner(&self, pid: i32) -> Option<&ProcessKey> {
        self.pids.get(&pid)
    }

    /// Whether Start is under way for the process.
    pub fn is_starting(&self, key: &ProcessKey) -> bool {
        self.tracked(key).is_some_and(|p| p.starting)
    }

    /// Taken right before a process is spawned and handed back with its pid when it is
    /// registered: only an exit reaped after it can be that process's.
    pub fn spawn_ticket(&self) -> SpawnTicket {
        SpawnTicket(self.reapings)
    }

    /// Create registered the init of `container` as `pid` (spawned after `ticket`). The
    /// container's process must be in the service's table before the effects run.
    pub fn registered_init(
        &mut self,
        container: &str,
        pid: i32,
        ticket: SpawnTicket,
    ) -> Vec<Effect> {
        let key = ProcessKey::new(container, "");
        let mut init = Tracked::new(pid);
        let effects = self.claim(&key, pid, ticket, &mut init);
        let routed = Routed { init, execs: HashMap::new(), deferred_init_exit: None };
        self.containers.insert(container.to_string(), routed);
        effects
    }

    /// Exec registered `exec` of `container` as `pid` (spawned after `ticket`). `None` when
    /// the container is gone (deleted during the exec): the pid stays registered and its early
    /// exit is dropped.
    pub fn registered_exec(
        &mut self,
        container: &str,
        exec: &str,
        pid: i32,
        ticket: SpawnTicket,
    ) -> Option<Vec<Effect>> {
        let key = ProcessKey::new(container, exec);
        let mut tracked = Tracked::new(pid);
        let effects = self.claim(&key, pid, ticket, &mut tracked);
        let routed = self.containers.get_mut(container)?;
        routed.execs.insert(exec.to_string(), tracked);
        Some(effects)
    }

    /// Registers `pid` for `key`; an exit reaped before (but after the process's spawn) is
    /// recorded now, not published.
    fn claim(
        &mut self,
        key: &ProcessKey,
        pid: i32,
        ticket: SpawnTicket,
        tracked: &mut Tracked,
    ) -> Vec<Effect> {
        self.pids.insert(pid, key.clone());
        match self.unclaimed.claim(pid, ticket.0) {
            Some(exit) => {
                tracked.exit = Some(exit);
                vec![Effect::Record(key.clone(), exit), Effect::CloseStdin(key.clone())]
            }
            None => Vec::new(),
        }
    }

    /// The reaper saw `pid` exit (after its terminal output, if any, was drained).
    pub fn reaped(&mut self, pid: i32, exit: Exit) -> Vec<Effect> {
        self.reapings += 1;
        // The pid is reaped: it leaves the table now, before it can go to a new process.
        let Some(key) = self.pids.remove(&pid) else {
            self.unclaimed.record(pid, exit, self.reapings);
            return Vec::new();
        };
        let mut effects = Vec::new();
        if let Some(process) = self.tracked_mut(&key) {
            effects.push(Effect::CloseStdin(key.clone()));
            if process.starting {
                // Applied by `start_ended` once containerd has seen the process start.
                process.held = Some(exit);
                return effects;
            }
        }
        self.apply_exit(&key, pid, exit, &mut effects);
        effects
    }

    /// Start begins: exits reaped from now on are held. False if the process is unknown.
    pub fn start_began(&mut self, key: &ProcessKey) -> bool {
        match self.tracked_mut(key) {
            Some(process) => {
                process.starting = true;
                true
            }
            None => false,
        }
    }

    /// Start ended (and its success, if any, was reported): a held exit is applied now.
    pub fn start_ended(&mut self, key: &ProcessKey) -> Vec<Effect> {
        let Some(process) = self.tracked_mut(key) else { return Vec::new() };
        process.starting = false;
        let pid = process.pid;
        let mut effects = Vec::new();
        if let Some(exit) = process.held.take() {
            self.apply_exit(key, pid, exit, &mut effects);
        }
        effects
    }

    /// The exec exit grace of `container` has passed: its init's exit is published if it
    /// still waits.
    pub fn grace_over(&mut self, container: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.finish_init_exit(container, &mut effects);
        effects
    }

    /// Delete removed the exec. Its pid is dropped only if it still names this exec.
    pub fn deleted_exec(&mut self, container: &str, exec: &str) {
        let Some(routed) = self.containers.get_mut(container) else { return };
        let Some(tracked) = routed.execs.remove(exec) else { return };
        let key = ProcessKey::new(container, exec);
        if self.pids.get(&tracked.pid) == Some(&key) {
            self.pids.remove(&tracked.pid);
        }
    }

    /// Delete removed the container: it and every pid of it are forgotten.
    pub fn deleted_container(&mut self, container: &str) {
        self.containers.remove(container);
        self.pids.retain(|_, key| key.container != container);
    }

    fn tracked(&self, key: &ProcessKey) -> Option<&Tracked> {
        let routed = self.containers.get(&key.container)?;
        if key.is_init() {
            Some(&routed.init)
        } else {
            routed.execs.get(&key.exec)
        }
    }

    fn tracked_mut(&mut self, key: &ProcessKey) -> Option<&mut Tracked> {
        self.containers.get_mut(&key.container)?.process_mut(&key.exec)
    }

    /// The exit of the init or an exec, no longer held.
    fn apply_exit(&mut self, key: &ProcessKey, pid: i32, exit: Exit, effects: &mut Vec<Effect>) {
        let Some(routed) = self.containers.get_mut(&key.container) else { return };
        if !key.is_init() {
            if let Some(process) = routed.execs.get_mut(&key.exec) {
                if process.exit.is_none() {
                    process.exit = Some(exit);
                    effects.push(Effect::Record(key.clone(), exit));
                    effects.push(Effect::Publish { process: key.clone(), pid, exit });
                }
            }
            if routed.deferred_init_exit.is_some() && routed.running_execs() == 0 {
                self.finish_init_exit(&key.container, effects);
            }
            return;
        }
        // An OOM kill is reported before the exit it caused; the init exited, so whatever
        // else runs in the container goes with it.
        effects.push(Effect::ReportOom(key.container.clone()));
        effects.push(Effect::KillRemaining(key.container.clone()));
        routed.deferred_init_exit = Some(exit);
        if routed.running_execs() == 0 {
            self.finish_init_exit(&key.container, effects);
        } else {
            effects.push(Effect::StartGrace(key.container.clone()));
        }
    }

    fn finish_init_exit(&mut self, container: &str, effects: &mut Vec<Effect>) {
        let Some(routed) = self.containers.get_mut(container) else { return };
        let Some(exit) = routed.deferred_init_exit.take() else { return };
        if routed.init.exit.is_none() {
            routed.init.exit = Some(exit);
            let key = ProcessKey::new(container, "");
            effects.push(Effect::Record(key.clone(), exit));
            effects.push(Effect::Publish { process: key, pid: routed.init.pid, exit });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn exit(status: u32) -> Exit {
        Exit { status, at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(status)) }
    }

    fn init(c: &str) -> ProcessKey {
        ProcessKey::new(c, "")
    }

    fn exec(c: &str, e: &str) -> ProcessKey {
        ProcessKey::new(c, e)
    }

    fn published(effects: &[Effect]) -> Vec<(ProcessKey, i32, u32)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Publish { process, pid, exit } => {
                    Some((process.clone(), *pid, exit.status))
                }
                _ => None,
            })
            .collect()
    }

    /// A container `c` with init pid 10, started, and an exec `e` with pid 20, started.
    fn running_with_exec() -> ExitRouter {
        let mut r = ExitRouter::default();
        assert!(r.registered_init("c", 10, r.spawn_ticket()).is_empty());
        assert_eq!(r.registered_exec("c", "e", 20, r.spawn_ticket()), Some(vec![]));
        r
    }

    #[test]
    fn an_exec_exit_is_published_before_its_init_exit() {
        let mut r = running_with_exec();
        let on_init = r.reaped(10, exit(1));
        assert!(published(&on_init).is_empty(), "the init's exit waits: {on_init:?}");
        assert!(on_init.contains(&Effect::StartGrace("c".into())));
        let on_exec = r.reaped(20, exit(137));
        assert_eq!(
            on_exec,
            vec![
                Effect::CloseStdin(exec("c", "e")),
                Effect::Record(exec("c", "e"), exit(137)),
                Effect::Publish { process: exec("c", "e"), pid: 20, exit: exit(137) },
                Effect::Record(init("c"), exit(1)),
                Effect::Publish { process: init("c"), pid: 10, exit: exit(1) },
            ]
        );
    }

    #[test]
    fn the_init_exit_waits_for_the_last_running_exec() {
        let mut r = running_with_exec();
        assert_eq!(r.registered_exec("c", "f", 30, r.spawn_ticket()), Some(vec![]));
        r.reaped(10, exit(1));
        assert_eq!(published(&r.reaped(20, exit(2))), vec![(exec("c", "e"), 20, 2)]);
        assert_eq!(
            published(&r.reaped(30, exit(3))),
            vec![(exec("c", "f"), 30, 3), (init("c"), 10, 1)]
        );
    }

    #[test]
    fn an_init_exit_with_no_running_exec_is_published_at_once() {
        let mut r = ExitRouter::default();
        r.registered_init("c", 10, r.spawn_ticket());
        assert_eq!(r.registered_exec("c", "e", 20, r.spawn_ticket()), Some(vec![]));
        r.reaped(20, exit(0));
        let effects = r.reaped(10, exit(1));
        assert_eq!(published(&effects), vec![(init("c"), 10, 1)]);
        assert!(!effects.contains(&Effect::StartGrace("c".into())));
    }

    #[test]
    fn oom_kills_are_reported_and_the_rest_killed_before_the_init_exit() {
        let mut r = ExitRouter::default();
        r.registered_init("c", 10, r.spawn_ticket());
        assert_eq!(
            r.reaped(10, exit(137)),
            vec![
                Effect::CloseStdin(init("c")),
                Effect::ReportOom("c".into()),
                Effect::KillRemaining("c".into()),
                Effect::Record(init("c"), exit(137)),
                Effect::Publish { process: init("c"), pid: 10, exit: exit(137) },
            ]
        );
    }

    #[test]
    fn the_init_exit_is_published_when_the_grace_ends_though_an_exec_still_runs() {
        let mut r = running_with_exec();
        r.reaped(10, exit(1));
        assert_eq!(published(&r.grace_over("c")), vec![(init("c"), 10, 1)]);
        // The exec's exit, reaped late, is still published, once; the init's is not again.
        assert_eq!(published(&r.reaped(20, exit(9))), vec![(exec("c", "e"), 20, 9)]);
    }

    #[test]
    fn an_exit_is_published_once() {
        let mut r = running_with_exec();
        r.reaped(10, exit(1));
        let all: Vec<_> = [r.reaped(20, exit(2)), r.grace_over("c"), r.grace_over("c")].concat();
        assert_eq!(published(&all), vec![(exec("c", "e"), 20, 2), (init("c"), 10, 1)]);
        // The same pid reaped again is no longer in the table: nothing happens.
        assert!(r.reaped(20, exit(2)).is_empty());
        assert!(r.reaped(10, exit(1)).is_empty());
    }

    #[test]
    fn a_second_exit_for_a_recorded_process_is_dropped() {
        let mut r = ExitRouter::default();
        r.registered_init("c", 10, r.spawn_ticket());
        let ticket = r.spawn_ticket(); // the exec is spawned
        r.reaped(99, exit(5)); // and dies before it is registered: kept
        r.registered_exec("c", "e", 99, ticket); // claims it: recorded, and 99 stays registered
                                                 // Another exit under that pid: stdin closed again, nothing recorded or published.
        let effects = r.reaped(99, exit(6));
        assert_eq!(effects, vec![Effect::CloseStdin(exec("c", "e"))]);
    }

    #[test]
    fn an_exit_reaped_before_registration_is_applied_once_claimed() {
        let mut r = ExitRouter::default();
        let ticket = r.spawn_ticket();
        assert!(r.reaped(10, exit(3)).is_empty(), "nobody to tell yet");
        assert_eq!(
            r.registered_init("c", 10, ticket),
            vec![Effect::Record(init("c"), exit(3)), Effect::CloseStdin(init("c"))]
        );
        let ticket = r.spawn_ticket();
        assert!(r.reaped(20, exit(4)).is_empty());
        assert_eq!(
            r.registered_exec("c", "e", 20, ticket),
            Some(vec![Effect::Record(exec("c", "e"), exit(4)), Effect::CloseStdin(exec("c", "e"))])
        );
        // Claimed once: a new process with the pid does not get the old exit.
        r.deleted_exec("c", "e");
        assert_eq!(r.registered_exec("c", "e3", 20, r.spawn_ticket()), Some(vec![]));
    }

    #[test]
    fn an_exit_reaped_before_the_process_was_spawned_is_not_its_exit() {
        let mut r = ExitRouter::default();
        // A helper with pid 10 exits; nobody claims it.
        r.reaped(10, exit(0));
        // Later the pid space wraps and a new container's init, spawned now, is given pid 10.
        let ticket = r.spawn_ticket();
        let effects = r.registered_init("c", 10, ticket);
        assert!(effects.is_empty(), "the new process took the old exit: {effects:?}");
        assert_eq!(r.owner(10), Some(&init("c")));
    }

    #[test]
    fn a_claimed_early_exit_is_recorded_but_not_published() {
        let mut r = ExitRouter::default();
        let ticket = r.spawn_ticket();
        r.reaped(10, exit(3));
        let effects = r.registered_init("c", 10, ticket);
        assert_eq!(
            effects,
            vec![Effect::Record(init("c"), exit(3)), Effect::CloseStdin(init("c"))]
        );
        assert!(published(&effects).is_empty());
        // The pid stays registered; an exit reaped under it again is not published either.
        assert!(published(&r.reaped(10, exit(3))).is_empty());
    }

    #[test]
    fn helper_pids_are_never_claimed() {
        let mut r = ExitRouter::default();
        r.registered_init("c", 10, r.spawn_ticket());
        // A helper's exit: no process of the pod, no effect.
        assert!(r.reaped(7, exit(0)).is_empty());
        assert_eq!(r.owner(7), None);
        assert_eq!(r.owner(10), Some(&init("c")));
    }

    #[test]
    fn stdin_is_closed_as_soon_as_the_exit_is_reaped() {
        let mut r = running_with_exec();
        assert!(r.start_began(&exec("c", "e")));
        assert_eq!(r.reaped(20, exit(0)), vec![Effect::CloseStdin(exec("c", "e"))]);
    }

    #[test]
    fn an_exit_reaped_during_start_is_published_after_the_start() {
        let mut r = running_with_exec();
        assert!(r.start_began(&init("c")));
        assert!(r.is_starting(&init("c")));
        let during = r.reaped(10, exit(2));
        assert!(published(&during).is_empty(), "held during the start: {during:?}");
        // Still held: the exec's exit comes and goes on its own.
        assert_eq!(published(&r.reaped(20, exit(0))), vec![(exec("c", "e"), 20, 0)]);
        let after = r.start_ended(&init("c"));
        assert!(!r.is_starting(&init("c")));
        assert_eq!(published(&after), vec![(init("c"), 10, 2)]);
        assert_eq!(after.first(), Some(&Effect::ReportOom("c".into())));
        assert!(r.start_ended(&init("c")).is_empty(), "released once");
    }

    #[test]
    fn a_start_of_an_unknown_process_holds_nothing() {
        let mut r = ExitRouter::default();
        assert!(!r.start_began(&init("c")));
        assert!(r.start_ended(&init("c")).is_empty());
    }

    #[test]
    fn a_reaped_pid_leaves_the_table_so_its_reuse_names_the_new_process() {
        let mut r = running_with_exec();
        r.reaped(20, exit(1));
        assert_eq!(r.owner(20), None);
        assert_eq!(r.registered_exec("c", "f", 20, r.spawn_ticket()), Some(vec![]));
        assert_eq!(published(&r.reaped(20, exit(2))), vec![(exec("c", "f"), 20, 2)]);
    }

    #[test]
    fn deleting_an_exec_keeps_the_newer_owner_of_its_pid() {
        let mut r = running_with_exec();
        r.reaped(20, exit(1));
        r.registered_exec("c", "f", 20, r.spawn_ticket());
        r.deleted_exec("c", "e");
        assert_eq!(r.owner(20), Some(&exec("c", "f")));
        r.deleted_exec("c", "f");
        assert_eq!(r.owner(20), None);
    }

    #[test]
    fn deleting_a_container_forgets_its_pids() {
        let mut r = running_with_exec();
        r.registered_init("d", 30, r.spawn_ticket());
        r.deleted_container("c");
        assert_eq!((r.owner(10), r.owner(20)), (None, None));
        assert_eq!(r.owner(30), Some(&init("d")));
        assert!(r.reaped(10, exit(0)).is_empty());
        assert!(r.grace_over("c").is_empty());
    }

    #[test]
    fn an_exec_registered_after_its_container_was_deleted_is_refused() {
        let mut r = ExitRouter::default();
        assert_eq!(r.registered_exec("gone", "e", 20, r.spawn_ticket()), None);
        // Its pid stays registered; its exit changes nothing.
        assert_eq!(r.owner(20), Some(&exec("gone", "e")));
        assert!(r.reaped(20, exit(0)).is_empty());
    }
}
