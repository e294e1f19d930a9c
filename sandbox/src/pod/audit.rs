//! The pod's denial audit as containers see it: the audited baseline in their plans, and
//! their seccomp listeners handed to the pod's one supervisor thread (`crate::audit`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use log::warn;

use crate::audit::{PodAudit, PodSupervisor};
use crate::plan::SeccompPlan;
use crate::policy::Config;
use crate::spawn::Pending;

/// The denial audit's state and thread, by pod (one shim serves one pod; keyed for safety).
#[derive(Default)]
pub(crate) struct Audits {
    audits: Mutex<HashMap<String, Arc<PodAudit>>>,
    /// The audit thread of each pod (one for all its processes' seccomp listeners).
    supervisors: Mutex<HashMap<String, Arc<PodSupervisor>>>,
}

impl Audits {
    /// The audit state of `pod_id` (made on first use), `None` when the audit is off or its
    /// state directory is unusable (logged).
    pub fn pod(&self, config: &Config, pod_id: &str) -> Option<Arc<PodAudit>> {
        if !config.audit.enabled {
            return None;
        }
        let mut audits = self.audits.lock().ok()?;
        if let Some(pod) = audits.get(pod_id) {
            return Some(pod.clone());
        }
        match PodAudit::new(&config.audit.state_dir, pod_id) {
            Ok(pod) => {
                audits.insert(pod_id.to_string(), pod.clone());
                Some(pod)
            }
            Err(e) => {
                warn!("pod {pod_id}: the denial audit is off: {e}");
                None
            }
        }
    }

    /// With `[audit] enabled` (and its state usable), the baseline's EPERM rules notify the
    /// shim (`audit::audited`); otherwise the filter answers EPERM itself.
    pub fn baseline(&self, config: &Config, pod_id: &str, filters: &mut [SeccompPlan]) {
        if self.pod(config, pod_id).is_none() {
            return;
        }
        for filter in filters.iter_mut().filter(|f| f.name == crate::seccomp::BASELINE_NAME) {
            *filter = crate::audit::audited(filter);
        }
    }

    /// The process's seccomp listener (sent right before exec) goes to the pod's supervisor
    /// thread, which answers and records its refused syscalls.
    pub fn supervise(&self, config: &Config, pod_id: &str, pending: &mut Pending, who: &str) {
        if !config.audit.enabled {
            return;
        }
        // Without it refusals are still answered (ENOSYS by the kernel), only unrecorded.
        let Some(pod) = self.pod(config, pod_id) else { return };
        let Some(supervisor) = self.supervisor(pod_id, pod) else { return };
        let who = who.to_string();
        pending.on_seccomp_listener(move |listener| supervisor.add(listener, who));
    }

    /// The pod's one audit thread (started on first use); `None` (logged) when no thread can
    /// be started: the refused syscalls then answer ENOSYS, unrecorded.
    fn supervisor(&self, pod_id: &str, pod: Arc<PodAudit>) -> Option<Arc<PodSupervisor>> {
        let mut supervisors = self.supervisors.lock().ok()?;
        if let Some(s) = supervisors.get(pod_id) {
            return Some(s.clone());
        }
        match PodSupervisor::start(pod) {
            Ok(s) => {
                let s = Arc::new(s);
                supervisors.insert(pod_id.to_string(), s.clone());
                Some(s)
            }
            Err(e) => {
                warn!("pod {pod_id}: no audit thread ({e}); its refused syscalls answer ENOSYS");
                None
            }
        }
    }
}
