//! rlimits, umask, no_new_privs and oom_score_adj.

use std::io::{Read, Write};

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};

use crate::plan::{RlimitPlan, RlimitResource};
use crate::sys::StepError;

fn resource(r: RlimitResource) -> Resource {
    match r {
        RlimitResource::As => Resource::RLIMIT_AS,
        RlimitResource::Core => Resource::RLIMIT_CORE,
        RlimitResource::Cpu => Resource::RLIMIT_CPU,
        RlimitResource::Data => Resource::RLIMIT_DATA,
        RlimitResource::Fsize => Resource::RLIMIT_FSIZE,
        RlimitResource::Locks => Resource::RLIMIT_LOCKS,
        RlimitResource::Memlock => Resource::RLIMIT_MEMLOCK,
        RlimitResource::Msgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitResource::Nice => Resource::RLIMIT_NICE,
        RlimitResource::Nofile => Resource::RLIMIT_NOFILE,
        RlimitResource::Nproc => Resource::RLIMIT_NPROC,
        RlimitResource::Rss => Resource::RLIMIT_RSS,
        RlimitResource::Rtprio => Resource::RLIMIT_RTPRIO,
        RlimitResource::Rttime => Resource::RLIMIT_RTTIME,
        RlimitResource::Sigpending => Resource::RLIMIT_SIGPENDING,
        RlimitResource::Stack => Resource::RLIMIT_STACK,
    }
}

/// Sets every rlimit of the plan; raising one above the host's hard limit fails.
pub fn set_rlimits(limits: &[RlimitPlan]) -> Result<(), StepError> {
    for l in limits {
        setrlimit(resource(l.resource), l.soft, l.hard).map_err(|e| {
            StepError::sys(format!("setrlimit {:?} {}:{}", l.resource, l.soft, l.hard), e)
        })?;
    }
    Ok(())
}

pub fn set_umask(mask: Option<u32>) -> Result<(), StepError> {
    if let Some(m) = mask {
        let mode = Mode::from_bits(m & 0o777)
            .ok_or_else(|| StepError::refused("umask", format!("{m:o}")))?;
        umask(mode);
    }
    Ok(())
}

/// Always set under moat; a failure fails the process.
pub fn set_no_new_privs() -> Result<(), StepError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| StepError::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))
}

/// What became of the requested oom_score_adj.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OomOutcome {
    Unchanged,
    Set(i32),
    /// The host refused to lower it (no CAP_SYS_RESOURCE): the current value is kept.
    Clamped {
        requested: i32,
        kept: i32,
    },
}

/// Writes `/proc/self/oom_score_adj` (inherited by children). Lowering it needs
/// CAP_SYS_RESOURCE on the host; when that is refused the current value is kept.
pub fn set_oom_score_adj(value: Option<i32>) -> Result<OomOutcome, StepError> {
    let Some(v) = value else { return Ok(OomOutcome::Unchanged) };
    const PATH: &str = "/proc/self/oom_score_adj";
    let io = |e: std::io::Error| {
        StepError::sys(
            format!("write {v} to {PATH}"),
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    };
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(PATH).map_err(io)?;
    match f.write_all(v.to_string().as_bytes()) {
        Ok(()) => Ok(OomOutcome::Set(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            let mut cur = String::new();
            std::fs::File::open(PATH).and_then(|mut r| r.read_to_string(&mut cur)).map_err(io)?;
            let kept = cur
                .trim()
                .parse()
                .map_err(|_| StepError::refused(format!("read {PATH}"), cur.clone()))?;
            Ok(OomOutcome::Clamped { requested: v, kept })
        }
        Err(e) => Err(io(e)),
    }
}
