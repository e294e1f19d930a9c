//! A pod driven through the CRI with every call timed. Like the test bed's `Pod`, but the
//! bench times each call alone (no status queries in between) and drives pods from several
//! threads. Stopped and removed when dropped, unless `teardown` did it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_cri::v1::{ContainerConfig, Mount, PodSandboxConfig};
use moat_e2e::{configs, host, TestBed};

/// The container command of the bench's long-running containers.
pub const SLEEP: &[&str] = &["sleep", "3600"];

pub struct BenchPod<'a> {
    bed: &'a TestBed,
    pub id: String,
    pub name: String,
    pub handler: String,
    config: PodSandboxConfig,
    pub containers: Vec<String>,
    removed: bool,
}

/// The three calls of a pod start, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct PodStart {
    pub run_pod_sandbox: f64,
    pub create_container: f64,
    pub start_container: f64,
}

impl PodStart {
    pub fn total(&self) -> f64 {
        self.run_pod_sandbox + self.create_container + self.start_container
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, ms(t.elapsed())))
}

impl<'a> BenchPod<'a> {
    /// RunPodSandbox with `handler`; the call's duration in ms.
    pub fn run(bed: &'a TestBed, base: &str, handler: &str) -> Result<(BenchPod<'a>, f64)> {
        let config = bed.pod_config(base)?;
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let cri = bed.cri();
        let (id, took) = timed(|| cri.runp(&config, handler).map_err(|e| bed.with_log(e)))?;
        let pod = BenchPod {
            bed,
            id,
            name,
            handler: handler.into(),
            config,
            containers: Vec::new(),
            removed: false,
        };
        Ok((pod, took))
    }

    /// CreateContainer of a busybox container running `command` with `mounts`; its id and ms.
    pub fn create(
        &mut self,
        name: &str,
        command: &[&str],
        mounts: Vec<Mount>,
    ) -> Result<(String, f64)> {
        self.create_with(name, command, mounts, |_| {})
    }

    /// CreateContainer like `create`, with `adjust` applied to the config first.
    pub fn create_with(
        &mut self,
        name: &str,
        command: &[&str],
        mounts: Vec<Mount>,
        adjust: impl FnOnce(&mut ContainerConfig),
    ) -> Result<(String, f64)> {
        let mut config = configs::container_config(&self.name, name, configs::BUSYBOX, command);
        config.mounts = mounts;
        adjust(&mut config);
        let cri = self.bed.cri();
        let (id, took) = timed(|| {
            cri.create(&self.id, &config, &self.config).map_err(|e| self.bed.with_log(e))
        })?;
        self.containers.push(id.clone());
        Ok((id, took))
    }

    /// StartContainer; ms.
    pub fn start(&self, id: &str) -> Result<f64> {
        let cri = self.bed.cri();
        Ok(timed(|| cri.start(id).map_err(|e| self.bed.with_log(e)))?.1)
    }

    /// RunPodSandbox + CreateContainer + StartContainer of a sleeping busybox container.
    pub fn start_pod(
        bed: &'a TestBed,
        base: &str,
        handler: &str,
    ) -> Result<(BenchPod<'a>, PodStart)> {
        let (mut pod, run_pod_sandbox) = BenchPod::run(bed, base, handler)?;
        let (id, create_container) = pod.create("main", SLEEP, Vec::new())?;
        let start_container = pod.start(&id)?;
        Ok((pod, PodStart { run_pod_sandbox, create_container, start_container }))
    }

    /// ExecSync in the first container; ms. The command must succeed.
    pub fn exec(&self, cmd: &[&str]) -> Result<f64> {
        let Some(id) = self.containers.first() else { bail!("pod {} has no container", self.name) };
        let cri = self.bed.cri();
        let (out, took) = timed(|| cri.exec_sync(id, cmd, moat_e2e::bed::EXEC_TIMEOUT))?;
        if out.exit_code != 0 {
            bail!(
                "ExecSync {cmd:?} in pod {} ({}) exited {}: {}",
                self.name,
                self.handler,
                out.exit_code,
                out.stderr.trim()
            );
        }
        Ok(took)
    }

    /// Host pids of the shim processes serving this pod.
    pub fn shim_pids(&self) -> Vec<i32> {
        let ids: Vec<&String> = std::iter::once(&self.id).chain(&self.containers).collect();
        host::shims(&self.bed.layout().socket)
            .into_iter()
            .filter(|s| ids.contains(&&s.id))
            .map(|s| s.pid)
            .collect()
    }

    /// StopPodSandbox + RemovePodSandbox; ms.
    pub fn teardown(mut self) -> Result<f64> {
        self.removed = true;
        let cri = self.bed.cri();
        let t = Instant::now();
        cri.stopp(&self.id).map_err(|e| self.bed.with_log(e))?;
        cri.rmp(&self.id).map_err(|e| self.bed.with_log(e))?;
        Ok(ms(t.elapsed()))
    }
}

impl Drop for BenchPod<'_> {
    fn drop(&mut self) {
        if !self.removed {
            let cri = self.bed.cri();
            let _ = cri.stopp(&self.id);
            let _ = cri.rmp(&self.id);
        }
    }
}
