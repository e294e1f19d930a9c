//! `process` -> `ProcessPlan` (everything but seccomp, which depends on the whole spec).

use oci_spec::runtime::{PosixRlimitType, Process};

use super::capabilities;
use super::refusal::{Refusal, Rule, Subject};
use crate::plan::{ProcessPlan, RlimitPlan, RlimitResource, UserNamespacePlan};

fn resource(t: PosixRlimitType) -> RlimitResource {
    match t {
        PosixRlimitType::RlimitCpu => RlimitResource::Cpu,
        PosixRlimitType::RlimitFsize => RlimitResource::Fsize,
        PosixRlimitType::RlimitData => RlimitResource::Data,
        PosixRlimitType::RlimitStack => RlimitResource::Stack,
        PosixRlimitType::RlimitCore => RlimitResource::Core,
        PosixRlimitType::RlimitRss => RlimitResource::Rss,
        PosixRlimitType::RlimitNproc => RlimitResource::Nproc,
        PosixRlimitType::RlimitNofile => RlimitResource::Nofile,
        PosixRlimitType::RlimitMemlock => RlimitResource::Memlock,
        PosixRlimitType::RlimitAs => RlimitResource::As,
        PosixRlimitType::RlimitLocks => RlimitResource::Locks,
        PosixRlimitType::RlimitSigpending => RlimitResource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => RlimitResource::Msgqueue,
        PosixRlimitType::RlimitNice => RlimitResource::Nice,
        PosixRlimitType::RlimitRtprio => RlimitResource::Rtprio,
        PosixRlimitType::RlimitRttime => RlimitResource::Rttime,
    }
}

/// Maps the spec's process. `seccomp` is left empty for the caller. The uid/gid (and
/// additional gids) must lie inside the pod's user namespace. `no_new_privileges` starts set;
/// the caller decides it from the level and config (`levels::no_new_privileges`).
pub(crate) fn plan(
    p: &Process,
    user_ns: &UserNamespacePlan,
    who: &Subject,
) -> Result<ProcessPlan, Refusal> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(who.refuse_always(
            "process.args",
            Rule::InvalidSpec,
            "the process has no arguments (nothing to execute)",
            "fix the container's spec (an image without an entrypoint needs a command)",
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(who.refuse_always(
            format!("process.cwd={}", p.cwd().display()),
            Rule::InvalidSpec,
            "the working directory must be an absolute path",
            "fix the container's spec",
        ));
    }
    let user = p.user();
    let unmapped = |field: String, id: u32| {
        who.refuse(
            field,
            Rule::InvalidSpec,
            format!("ID {id} is outside the pod's user namespace"),
            "userns.size (the IDs each pod gets)",
        )
    };
    if user_ns.host_uid(user.uid()).is_none() {
        return Err(unmapped(format!("process.user.uid={}", user.uid()), user.uid()));
    }
    if user_ns.host_gid(user.gid()).is_none() {
        return Err(unmapped(format!("process.user.gid={}", user.gid()), user.gid()));
    }
    let additional_gids = user.additional_gids().clone().unwrap_or_default();
    if let Some(g) = additional_gids.iter().find(|g| user_ns.host_gid(**g).is_none()) {
        return Err(unmapped(format!("process.user.additionalGids[{g}]"), *g));
    }
    let rlimits = p
        .rlimits()
        .iter()
        .flatten()
        .map(|r| RlimitPlan { resource: resource(r.typ()), soft: r.soft(), hard: r.hard() })
        .collect();
    let console_size = p.console_size().map(|b| {
        let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        (clamp(b.height()), clamp(b.width()))
    });
    Ok(ProcessPlan {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids,
        umask: user.umask(),
        terminal: p.terminal().unwrap_or(false),
        console_size,
        rlimits,
        capabilities: capabilities::from_spec(p.capabilities().as_ref()),
        no_new_privileges: true,
        seccomp: Vec::new(),
        oom_score_adj: p.oom_score_adj(),
    })
}
