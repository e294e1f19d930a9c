//! The one error type of the cgroups module: every variant names the path and what was being done.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// containerd's systemd cgroup driver hands `slice:prefix:name`; moat only drives cgroupfs.
    #[error(
        "cgroupsPath {path:?} is in the systemd driver's form (slice:prefix:name); moat supports only \
         the cgroupfs driver: set SystemdCgroup = false for the moat runtime in containerd's config"
    )]
    SystemdDriverUnsupported { path: String },

    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    #[error("invalid resources for cgroup {path:?}: {reason}")]
    InvalidResources { path: String, reason: String },

    #[error("no cgroup filesystem found in {mountinfo}")]
    NoCgroupFs { mountinfo: PathBuf },

    #[error("{what} is not available for cgroup {path:?} on this machine's cgroup layout")]
    Unsupported { path: String, what: String },

    #[error("cgroup {path:?} does not exist (looked for {dir})")]
    NotFound { path: String, dir: PathBuf },

    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("writing {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: io::Error },

    #[error("{path}: cannot parse {content:?}: {reason}")]
    Parse { path: PathBuf, content: String, reason: &'static str },

    #[error("creating cgroup directory {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },

    #[error("removing cgroup directory {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },

    #[error(
        "memory limit {limit} for {path} is below the cgroup's current usage {usage} and the kernel \
         could not reclaim enough (EBUSY); the old limit stays"
    )]
    MemoryLimitBelowUsage { path: PathBuf, limit: i64, usage: u64 },

    #[error("timed out after {waited:?} waiting for {path} to {what}")]
    Timeout { path: PathBuf, what: &'static str, waited: Duration },

    #[error("sending {signal} to pid {pid} of cgroup {path:?}: {source}")]
    Signal { path: String, pid: i32, signal: String, source: nix::Error },

    #[error(
        "loading the eBPF device program for {path}: {errno}{}",
        if log.is_empty() { String::new() } else { format!("; verifier log:\n{log}") }
    )]
    DeviceProgram { path: PathBuf, errno: nix::Error, log: String },

    #[error("{op} for {path}: {source}")]
    Sys { op: &'static str, path: PathBuf, source: nix::Error },
}

impl CgroupError {
    /// True when the error is the kernel saying "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        match self {
            CgroupError::NotFound { .. } => true,
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Mkdir { source, .. }
            | CgroupError::Rmdir { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
