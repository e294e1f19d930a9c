//! Exec into a running container: the policy's exec plan, the container's cgroup and the
//! pod's audit wired in, the process built inside the init's namespaces.

use log::warn;

use crate::policy;
use crate::spawn::Pending;

use super::{ExecRequest, Journal, Pod, PodError};

impl Pod {
    /// Blocking. Builds the exec of `req` up to (not including) its exec.
    pub fn exec<J: Journal>(&self, req: ExecRequest, journal: &mut J) -> Result<Pending, J::Error> {
        let ExecRequest { container_id: id, exec_id, process, container, config, init, cgroup } =
            req;
        let mut plan =
            match policy::derive_exec(&process, &container, &config, &exec_id, init.pid()) {
                Ok(plan) => plan,
                Err(refusal) => {
                    warn!("refused: {refusal}");
                    journal.refused(&refusal, &config, &container.user);
                    if let Some(pod) = self.audits.pod(&config, &container.pod_id) {
                        let rule = refusal.rule().as_str();
                        pod.record_refused_exec(&id, &exec_id, rule, refusal.field());
                    }
                    return Err(PodError::Refused(refusal).into());
                }
            };
        plan.cgroup_procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        self.audits.baseline(&config, &container.pod_id, &mut plan.process.seccomp);
        self.filters.precompile(&mut plan.process.seccomp);
        let stdio = journal.stdio()?;
        let mut pending = self.launcher.exec(&plan, stdio, &init).map_err(PodError::from)?;
        let who = format!("{id}/exec {exec_id}");
        self.audits.supervise(&config, &container.pod_id, &mut pending, &who);
        journal.ready(&mut pending)?;
        Ok(pending)
    }
}
