//! Denial audit: every syscall moat's baseline refuses with EPERM is answered by the shim
//! instead of the kernel's filter alone, so the operator sees what each pod tried.
//!
//! Owns: turning the baseline's EPERM rules into seccomp user-notification rules (`audited`,
//! pure), the supervisor that answers each notification with the rule's errno and records it
//! (`PodSupervisor`: one thread per pod for all its listeners), the per-pod rate limit (`Pace`), the JSON log line (`Denial`) and the
//! per-pod counter file under the shim's state directory (`Counters`, read back by
//! `containerd-shim-moat-v2 audit <pod>`).
//!
//! Allowed syscalls never reach the supervisor: only the refusing rules notify, so they pay
//! nothing. A refused syscall costs a round trip to the shim's thread; past `Pace`'s rate the
//! supervisor waits before it answers, so a pod that spams refused syscalls slows itself (its
//! calls block) while the shim's thread stays cheap. If the listener is gone (the shim died),
//! the kernel answers the same syscalls ENOSYS: still refused.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::{SeccompAction, SeccompPlan};

mod supervisor;
pub use supervisor::PodSupervisor;

const EPERM: u32 = 1;

/// `[audit]` of moat's config (see `docs/config.example.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Answer the baseline's EPERM rules from the shim and record each attempt.
    pub enabled: bool,
    /// Where the per-pod counter files live (`<pod id>.json`).
    pub state_dir: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { enabled: true, state_dir: PathBuf::from("/run/moat/audit") }
    }
}

/// `plan` with its EPERM rules answered by the supervisor (`NotifyErrno(EPERM)`); other rules,
/// and the precompiled program, are rebuilt from it. Rules with other errnos (EAFNOSUPPORT for
/// an absent family, ENOSYS) stay with the kernel: they mimic a kernel without the feature.
pub fn audited(plan: &SeccompPlan) -> SeccompPlan {
    let mut out = plan.clone();
    out.bpf = None;
    for rule in &mut out.rules {
        if rule.action == SeccompAction::Errno(EPERM) {
            rule.action = SeccompAction::NotifyErrno(EPERM);
        }
    }
    out
}

/// One refused syscall, as logged (one JSON line) and counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub pod: String,
    pub container: String,
    /// Host pid of the caller.
    pub pid: u32,
    pub syscall: String,
    /// The first three arguments (flags, socket family, request: the ones the rules look at).
    pub args: [u64; 3],
    pub errno: &'static str,
}

impl Denial {
    pub fn json_line(&self) -> String {
        let mut line = String::from("{\"moat_audit\":\"denied\",");
        match serde_json::to_string(self) {
            Ok(body) => line.push_str(body.trim_start_matches('{')),
            Err(_) => line.push('}'),
        }
        line
    }
}

/// The per-pod pace: `rate` answers per second with bursts of `burst`; past it the supervisor
/// waits, which blocks the caller (the pod) and bounds the shim's work. Logging is paced more
/// tightly (`log_rate`); the counters count everything.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    log_rate: f64,
    log_tokens: f64,
    /// Denials not logged since the last logged one.
    pub unlogged: u64,
}

impl Pace {
    pub fn new(rate: u32, burst: u32, log_rate: u32, now: Instant) -> Pace {
        Pace {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
            log_rate: f64::from(log_rate),
            log_tokens: f64::from(log_rate),
            unlogged: 0,
        }
    }

    /// Takes one answer at `now`: how long to wait before answering, and whether to log it.
    pub fn take(&mut self, now: Instant) -> (Duration, bool) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.log_tokens = (self.log_tokens + elapsed * self.log_rate).min(self.log_rate.max(1.0));
        let wait = if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            self.tokens = 0.0;
            self.last = now + Duration::from_secs_f64(wait);
            Duration::from_secs_f64(wait)
        };
        let log = self.log_tokens >= 1.0;
        if log {
            self.log_tokens -= 1.0;
        }
        (wait, log)
    }
}

/// What `<state_dir>/<pod>.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountFile {
    pub pod: String,
    pub total: u64,
    /// Refusals per syscall name.
    pub syscalls: BTreeMap<String, u64>,
}

impl CountFile {
    /// What `containerd-shim-moat-v2 audit <pod>` prints.
    pub fn render(&self) -> String {
        let mut out = format!("pod {}: {} refused syscalls\n", self.pod, self.total);
        for (name, n) in &self.syscalls {
            out.push_str(&format!("{n:>10}  {name}\n"));
        }
        out
    }
}

/// Why the audit could not record or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit counters {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit counters {path}: not a counter file: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("audit: {0:?} is not a pod id (letters, digits, `-`, `_`, `.` only)")]
    BadPodId(String),
}

/// The counter file of `pod` under `state_dir`.
pub fn counter_path(state_dir: &Path, pod: &str) -> Result<PathBuf, AuditError> {
    let ok = !pod.is_empty()
        && pod != "."
        && pod != ".."
        && pod.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(AuditError::BadPodId(pod.to_string()));
    }
    Ok(state_dir.join(format!("{pod}.json")))
}

/// Reads `pod`'s counters (none recorded yet: zero).
pub fn read_counts(state_dir: &Path, pod: &str) -> Result<CountFile, AuditError> {
    let path = counter_path(state_dir, pod)?;
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| AuditError::Parse { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(CountFile { pod: pod.to_string(), ..CountFile::default() })
        }
        Err(source) => Err(AuditError::Io { path, source }),
    }
}

/// One pod's audit state in the shim, shared by the supervisors of its containers.
pub struct PodAudit {
    pub pod: String,
    path: PathBuf,
    state: Mutex<(CountFile, Pace, Option<Instant>)>,
}

impl PodAudit {
    /// Answers per second before the supervisor starts to wait, its burst, logged lines per
    /// second.
    pub const RATE: u32 = 1000;
    pub const BURST: u32 = 200;
    pub const LOG_RATE: u32 = 10;

    pub fn new(state_dir: &Path, pod: &str) -> Result<Arc<PodAudit>, AuditError> {
        let path = counter_path(state_dir, pod)?;
        std::fs::create_dir_all(state_dir)
            .map_err(|source| AuditError::Io { path: state_dir.to_path_buf(), source })?;
        let counts = CountFile { pod: pod.to_string(), ..CountFile::default() };
        let pace = Pace::new(Self::RATE, Self::BURST, Self::LOG_RATE, Instant::now());
        Ok(Arc::new(PodAudit {
            pod: pod.to_string(),
            path,
            state: Mutex::new((counts, pace, None)),
        }))
    }

    /// Counts `denial`, logs it if the pace allows, writes the counter file when a new name
    /// appears or a second passed; returns how long to wait before answering.
    pub fn record(&self, denial: &Denial) -> Duration {
        let Ok(mut state) = self.state.lock() else { return Duration::ZERO };
        let (counts, pace, written) = &mut *state;
        let now = Instant::now();
        let (wait, log) = pace.take(now);
        if log {
            if pace.unlogged > 0 {
                log::warn!(
                    "{{\"moat_audit\":\"suppressed\",\"pod\":{:?},\"count\":{}}}",
                    self.pod,
                    pace.unlogged
                );
                pace.unlogged = 0;
            }
            log::warn!("{}", denial.json_line());
        } else {
            pace.unlogged += 1;
        }
        counts.total += 1;
        let n = counts.syscalls.entry(denial.syscall.clone()).or_insert(0);
        *n += 1;
        let due =
            *n == 1 || written.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if due {
            *written = Some(now);
            if let Err(e) = write_counts(&self.path, counts) {
                log::warn!("{e}");
            }
        }
        wait
    }

    /// Counts and logs an exec the policy refused (`exec:<rule>` in the counters), e.g. an
    /// exec as another user or with more capabilities than its container.
    pub fn record_refused_exec(&self, container: &str, exec_id: &str, rule: &str, field: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        let (counts, _, written) = &mut *state;
        log::warn!(
            "{}",
            serde_json::json!({
                "moat_audit": "refused_exec",
                "pod": self.pod,
                "container": container,
                "exec": exec_id,
                "rule": rule,
                "field": field,
            })
        );
        counts.total += 1;
        *counts.syscalls.entry(format!("exec:{rule}")).or_insert(0) += 1;
        *written = Some(Instant::now());
        if let Err(e) = write_counts(&self.path, counts) {
            log::warn!("{e}");
        }
    }

    /// Writes the counters now (when a supervisor ends).
    pub fn flush(&self) {
        if let Ok(state) = self.state.lock() {
            if let Err(e) = write_counts(&self.path, &state.0) {
                log::warn!("{e}");
            }
        }
    }
}

fn write_counts(path: &Path, counts: &CountFile) -> Result<(), AuditError> {
    let io = |source| AuditError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(counts)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The syscall name of number `nr` on this node's architecture.
fn syscall_name(nr: i32) -> String {
    libseccomp::ScmpSyscall::from(nr).get_name().unwrap_or_else(|_| format!("syscall_{nr}"))
}

/// Receives one notification, waits as the pace says, answers EPERM. `None` when the caller
/// was gone already.
fn answer_one(listener: &OwnedFd, pod: &PodAudit, container: &str) -> Option<Denial> {
    // SAFETY: seccomp_notif is plain integers; all-zero is the state RECV requires.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV writes one seccomp_notif into `notif`, which lives on
    // this stack frame for the call.
    let rc = unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif as *mut _)
    };
    if rc < 0 {
        return None;
    }
    let args = notif.data.args;
    let denial = Denial {
        pod: pod.pod.clone(),
        container: container.to_string(),
        pid: notif.pid,
        syscall: syscall_name(notif.data.nr),
        args: [args[0], args[1], args[2]],
        errno: "EPERM",
    };
    let wait = pod.record(&denial);
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    let mut resp =
        libc::seccomp_notif_resp { id: notif.id, val: 0, error: -(EPERM as i32), flags: 0 };
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads one seccomp_notif_resp from `resp`, alive for
    // the call. ENOENT (the caller died meanwhile) needs no handling.
    unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp as *mut _)
    };
    Some(denial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_eperm_rules_notify() {
        let base = crate::seccomp::baseline();
        let audited = audited(&base);
        assert_eq!(audited.rules.len(), base.rules.len());
        let mut notify = 0;
        for (before, after) in base.rules.iter().zip(&audited.rules) {
            match before.action {
                SeccompAction::Errno(1) => {
                    assert_eq!(after.action, SeccompAction::NotifyErrno(1));
                    notify += 1;
                }
                other => assert_eq!(after.action, other, "{:?}", before.names),
            }
            assert_eq!(before.names, after.names);
            assert_eq!(before.args, after.args);
        }
        assert!(notify > 5, "{notify} notifying rules");
        for name in ["keyctl", "bpf", "unshare"] {
            assert!(
                audited.rules.iter().any(|r| r.names.iter().any(|n| n == name)
                    && r.action == SeccompAction::NotifyErrno(1)),
                "{name} does not notify"
            );
        }
        assert_eq!(audited.default_action, base.default_action);
        assert!(crate::seccomp::has_notify(&audited) && !crate::seccomp::has_notify(&base));
    }

    #[test]
    fn the_audited_baseline_compiles() {
        let mut plan = audited(&crate::seccomp::baseline());
        crate::seccomp::precompile(&mut plan).expect("compiles");
        assert!(plan.bpf.is_some());
    }

    #[test]
    fn allowed_syscalls_run_the_same_program_only_refusals_return_differently() {
        // The audited baseline's BPF is the baseline's, instruction for instruction, except
        // the return values of the EPERM rules: an allowed syscall takes the same path.
        let mut plain = crate::seccomp::baseline();
        let mut audit = audited(&plain);
        crate::seccomp::precompile(&mut plain).expect("baseline");
        crate::seccomp::precompile(&mut audit).expect("audited");
        let (plain, audit) = (plain.bpf.expect("bpf"), audit.bpf.expect("bpf"));
        assert_eq!(plain.len(), audit.len(), "the programs differ in length");
        const BPF_RET: u16 = 0x06;
        let mut changed = 0;
        for (p, a) in plain.chunks_exact(8).zip(audit.chunks_exact(8)) {
            if p == a {
                continue;
            }
            let code = u16::from_ne_bytes([p[0], p[1]]);
            let k = |i: &[u8]| u32::from_ne_bytes([i[4], i[5], i[6], i[7]]);
            assert_eq!(code & 0x07, BPF_RET, "a non-return instruction changed");
            assert_eq!(&p[..4], &a[..4]);
            assert_eq!(k(p), libc::SECCOMP_RET_ERRNO | 1, "only EPERM returns change");
            assert_eq!(k(a), libc::SECCOMP_RET_USER_NOTIF);
            changed += 1;
        }
        assert!(changed > 0);
    }

    #[test]
    fn the_pace_waits_past_its_rate_and_logs_less() {
        let t0 = Instant::now();
        let mut pace = Pace::new(100, 5, 2, t0);
        let mut logged = 0;
        for _ in 0..5 {
            let (wait, log) = pace.take(t0);
            assert_eq!(wait, Duration::ZERO);
            logged += usize::from(log);
        }
        assert_eq!(logged, 2, "two lines a second");
        // The burst is spent: the next answer waits about 1/100 s.
        let (wait, _) = pace.take(t0);
        assert!(wait > Duration::from_millis(5) && wait <= Duration::from_millis(11), "{wait:?}");
        // A second later the burst is back.
        let (wait, log) = pace.take(t0 + Duration::from_secs(1));
        assert_eq!(wait, Duration::ZERO);
        assert!(log);
    }

    #[test]
    fn the_log_line_is_one_json_object() {
        let d = Denial {
            pod: "p\"1".into(),
            container: "c".into(),
            pid: 42,
            syscall: "keyctl".into(),
            args: [1, 2, 3],
            errno: "EPERM",
        };
        let line = d.json_line();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["moat_audit"], "denied");
        assert_eq!(v["pod"], "p\"1");
        assert_eq!(v["syscall"], "keyctl");
        assert_eq!(v["args"][1], 2);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn counters_are_written_and_read_back_and_pod_ids_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = PodAudit::new(dir.path(), "pod-1").expect("audit");
        for syscall in ["keyctl", "bpf", "keyctl"] {
            let d = Denial {
                pod: "pod-1".into(),
                container: "c".into(),
                pid: 1,
                syscall: syscall.into(),
                args: [0; 3],
                errno: "EPERM",
            };
            audit.record(&d);
        }
        audit.record_refused_exec("c", "e1", "exec-user", "process.user.uid");
        audit.flush();
        let counts = read_counts(dir.path(), "pod-1").expect("read");
        assert_eq!(counts.syscalls.get("exec:exec-user"), Some(&1));
        assert_eq!(counts.total, 4);
        assert_eq!(counts.syscalls.get("keyctl"), Some(&2));
        assert!(counts.render().contains("bpf"));
        assert_eq!(read_counts(dir.path(), "other").expect("none").total, 0);
        for bad in ["../x", "", "a/b", ".."] {
            assert!(matches!(read_counts(dir.path(), bad), Err(AuditError::BadPodId(_))), "{bad}");
        }
        std::fs::write(dir.path().join("junk.json"), "{").expect("write");
        let err = read_counts(dir.path(), "junk").expect_err("junk").to_string();
        assert!(err.contains("junk.json"), "{err}");
    }
}
