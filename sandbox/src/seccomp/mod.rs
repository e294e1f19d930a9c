//! Seccomp: the embedded profiles, stacking the baseline under the spec's filter, loading.
//!
//! `plan.process.seccomp` holds the filters in load order: moat's baseline first, the spec's
//! own filter (if any) second. The kernel runs every loaded filter and applies the most
//! restrictive answer, so a later filter can only narrow what an earlier one allows.

mod profile;
#[cfg(test)]
mod tests;

pub use profile::{baseline, from_oci, BASELINE_JSON, BASELINE_NAME};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::features::{self, SeccompFlagEffect};
use crate::plan::{SeccompAction, SeccompOp, SeccompPlan};

/// Why a seccomp filter could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filter {filter}: {reason}")]
    Build { filter: String, reason: String },
    #[error("seccomp filter {filter}: loading it into the kernel failed: {reason}")]
    Load { filter: String, reason: String },
}

const ENOSYS: i32 = 38;

fn scmp_action(a: SeccompAction, filter: &str) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        SeccompAction::Allow => ScmpAction::Allow,
        SeccompAction::Errno(e) => ScmpAction::Errno(i32::from(u16::try_from(e).map_err(|_| {
            SeccompError::Build { filter: filter.into(), reason: format!("errno {e} is out of range") }
        })?)),
        SeccompAction::KillThread => ScmpAction::KillThread,
        SeccompAction::KillProcess => ScmpAction::KillProcess,
        SeccompAction::Trap => ScmpAction::Trap,
        SeccompAction::Log => ScmpAction::Log,
    })
}

fn compare(arg: &crate::plan::SeccompArg) -> ScmpArgCompare {
    let (op, datum) = match arg.op {
        SeccompOp::NotEqual => (ScmpCompareOp::NotEqual, arg.value),
        SeccompOp::LessThan => (ScmpCompareOp::Less, arg.value),
        SeccompOp::LessOrEqual => (ScmpCompareOp::LessOrEqual, arg.value),
        SeccompOp::EqualTo => (ScmpCompareOp::Equal, arg.value),
        SeccompOp::GreaterOrEqual => (ScmpCompareOp::GreaterEqual, arg.value),
        SeccompOp::GreaterThan => (ScmpCompareOp::Greater, arg.value),
        // OCI: `value` is the mask, `value_two` the expected masked value.
        SeccompOp::MaskedEqual => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
    };
    ScmpArgCompare::new(arg.index, op, datum)
}

/// Compiles `plan` into a libseccomp filter (not loaded). Syscall names libseccomp does not
/// know are skipped, as runc does (a profile may name syscalls newer than the library).
pub fn compile(plan: &SeccompPlan) -> Result<ScmpFilterContext, SeccompError> {
    let name = plan.name.as_str();
    let build = |reason: String| SeccompError::Build { filter: name.to_string(), reason };
    let default = scmp_action(plan.default_action, name)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| build(format!("new filter: {e}")))?;
    // A syscall from an architecture the filter does not list fails instead of killing.
    ctx.set_act_badarch(ScmpAction::Errno(ENOSYS))
        .map_err(|e| build(format!("bad-architecture action: {e}")))?;
    let native = ScmpArch::native();
    for arch_name in &plan.architectures {
        let arch: ScmpArch =
            arch_name.parse().map_err(|e| build(format!("architecture {arch_name}: {e}")))?;
        if arch == native || arch == ScmpArch::Native {
            continue;
        }
        // Some architectures cannot be mixed with the native one (e.g. x32 in an aarch64
        // filter is fine, but libseccomp refuses a few combinations): those cannot run here.
        if let Err(e) = ctx.add_arch(arch) {
            log::debug!("seccomp filter {name}: architecture {arch_name} not added: {e}");
        }
    }
    for flag in &plan.flags {
        match features::seccomp_flag(flag) {
            Some(SeccompFlagEffect::Log) => {
                ctx.set_ctl_log(true).map_err(|e| build(format!("{flag}: {e}")))?;
            }
            Some(SeccompFlagEffect::SpecAllow) => {
                ctx.set_ctl_ssb(true).map_err(|e| build(format!("{flag}: {e}")))?;
            }
            Some(SeccompFlagEffect::NoEffect) => {}
            None => return Err(build(format!("unknown flag {flag}"))),
        }
    }
    for rule in &plan.rules {
        let action = scmp_action(rule.action, name)?;
        if action == default {
            // libseccomp refuses a rule whose action equals the default: it would be a no-op.
            continue;
        }
        let compares: Vec<ScmpArgCompare> = rule.args.iter().map(compare).collect();
        for syscall in &rule.names {
            let Ok(nr) = ScmpSyscall::from_name(syscall) else {
                log::debug!("seccomp filter {name}: syscall {syscall} unknown to libseccomp, skipped");
                continue;
            };
            let added = if compares.is_empty() {
                ctx.add_rule(action, nr)
            } else {
                ctx.add_rule_conditional(action, nr, &compares)
            };
            added.map_err(|e| build(format!("rule for {syscall}: {e}")))?;
        }
    }
    Ok(ctx)
}

/// Compiles `plan` with libseccomp and loads it into the calling thread. Called in the helper
/// process just before exec, after no_new_privs is set (libseccomp sets it too).
pub fn load(plan: &SeccompPlan) -> Result<(), SeccompError> {
    let ctx = compile(plan)?;
    ctx.load().map_err(|e| SeccompError::Load { filter: plan.name.clone(), reason: e.to_string() })
}
