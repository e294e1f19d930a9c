//! One container of the pod: its plan, cgroup, init process and execs.

use std::collections::HashMap;

use moat_sandbox::cgroups::Cgroup;
use moat_sandbox::plan::ContainerPlan;

use super::oom::OomCount;
use super::process::Process;

pub struct Container {
    pub bundle: String,
    pub is_sandbox: bool,
    pub plan: ContainerPlan,
    pub cgroup: Option<Cgroup>,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    /// OOM kills reported so far.
    pub oom: OomCount,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}
