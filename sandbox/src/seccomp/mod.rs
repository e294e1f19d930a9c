//! Seccomp: the embedded profiles, stacking the baseline under the spec's filter, loading.
//!
//! The baseline (`seccomp-profiles/baseline.json`) is an allowlist: what no rule allows answers
//! ENOSYS, and only the node's 64-bit ABI is listed, so compat ABIs (i386, x32) answer ENOSYS
//! too. `docs/security.md` explains its classes and argument filters.
//!
//! `plan.process.seccomp` holds the filters in load order: moat's baseline first, the spec's
//! own filter (if any) second. The kernel runs every loaded filter and applies the most
//! restrictive answer, so a later filter can only narrow what an earlier one allows.

mod cache;
mod profile;
#[cfg(test)]
mod tests;

pub use cache::FilterCache;
pub use profile::{baseline, from_oci, BASELINE_JSON, BASELINE_NAME};

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

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
        SeccompAction::Errno(e) => {
            ScmpAction::Errno(i32::from(u16::try_from(e).map_err(|_| SeccompError::Build {
                filter: filter.into(),
                reason: format!("errno {e} is out of range"),
            })?))
        }
        SeccompAction::NotifyErrno(_) => ScmpAction::Notify,
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

/// The compat ABIs a process on `native` can call the kernel through (`int 0x80` and the x32
/// syscall bit on x86_64, AArch32 on aarch64): the only other architectures worth filtering.
fn compat_abi_of(native: ScmpArch) -> &'static [ScmpArch] {
    match native {
        ScmpArch::X8664 => &[ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => &[ScmpArch::Arm],
        _ => &[],
    }
}

/// Compiles `plan` into a libseccomp filter (not loaded). Syscall names libseccomp does not
/// know are skipped, as runc does (a profile may name syscalls newer than the library); see
/// the loop below for why that never widens what a container may call.
pub fn compile(plan: &SeccompPlan) -> Result<ScmpFilterContext, SeccompError> {
    compile_for(plan, ScmpArch::native())
}

/// `compile` for a node whose native architecture is `native` (tests build the aarch64
/// filter on x86_64 this way; names resolve per architecture inside libseccomp).
fn compile_for(plan: &SeccompPlan, native: ScmpArch) -> Result<ScmpFilterContext, SeccompError> {
    let name = plan.name.as_str();
    let build = |reason: String| SeccompError::Build { filter: name.to_string(), reason };
    let default = scmp_action(plan.default_action, name)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| build(format!("new filter: {e}")))?;
    // A syscall from an architecture the filter does not list fails instead of killing.
    ctx.set_act_badarch(ScmpAction::Errno(ENOSYS))
        .map_err(|e| build(format!("bad-architecture action: {e}")))?;
    if native != ScmpArch::native() {
        ctx.add_arch(native).map_err(|e| build(format!("architecture {native:?}: {e}")))?;
        ctx.remove_arch(ScmpArch::native())
            .map_err(|e| build(format!("removing the build host's architecture: {e}")))?;
    }
    for arch_name in &plan.architectures {
        let arch: ScmpArch =
            arch_name.parse().map_err(|e| build(format!("architecture {arch_name}: {e}")))?;
        if arch == native || arch == ScmpArch::Native {
            continue;
        }
        if !compat_abi_of(native).contains(&arch) {
            // A foreign architecture (aarch64 in a filter loaded on x86_64) never makes a
            // syscall here: adding it would only add dead code to every syscall's path.
            log::debug!("seccomp filter {name}: architecture {arch_name} cannot run here");
            continue;
        }
        // A compat ABI the profile lists (i386 or x32 on x86_64): filtered by the same rules.
        // The baseline lists none, so for it these ABIs meet the bad-architecture action.
        if let Err(e) = ctx.add_arch(arch) {
            log::debug!("seccomp filter {name}: architecture {arch_name} not added: {e}");
        }
    }
    // no_new_privs is the plan's decision (spawn sets it, or loads the filter while it still
    // holds CAP_SYS_ADMIN in the pod's user namespace): libseccomp must not set it on load.
    ctx.set_ctl_nnp(false).map_err(|e| build(format!("no_new_privs attribute: {e}")))?;
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
                // A name newer than this node's libseccomp. Skipping it never widens the
                // filters a container runs under: in an allow rule the syscall simply stays
                // out (the baseline answers ENOSYS). In a refusing rule of a spec filter the
                // syscall is refused all the same, because the baseline, loaded under every
                // spec filter, allows only what this libseccomp can name. Only a spec filter
                // without the baseline (`allow_unconfined_seccomp` drops it only when the spec
                // has no filter) could lose a refusal so, and there is no such case.
                if action == ScmpAction::Allow {
                    log::debug!(
                        "seccomp filter {name}: syscall {syscall} unknown to libseccomp, not allowed"
                    );
                } else {
                    log::warn!(
                        "seccomp filter {name}: syscall {syscall} unknown to libseccomp; its \
                         rule is skipped, the baseline filter refuses it (ENOSYS)"
                    );
                }
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
/// process just before exec, after no_new_privs is set, or earlier while the process still
/// holds CAP_SYS_ADMIN in the pod's user namespace when the plan leaves no_new_privs off. A
/// filter with `NotifyErrno` rules is loaded with a listener, returned for the audit supervisor
/// (closed, the kernel answers those syscalls ENOSYS; see `crate::audit`).
pub fn load(plan: &SeccompPlan) -> Result<Option<OwnedFd>, SeccompError> {
    if let Some(bpf) = &plan.bpf {
        return load_bpf(plan, bpf);
    }
    let load_err = |e: libseccomp::error::SeccompError| SeccompError::Load {
        filter: plan.name.clone(),
        reason: e.to_string(),
    };
    let ctx = compile(plan)?;
    ctx.load().map_err(load_err)?;
    if !has_notify(plan) {
        return Ok(None);
    }
    let fd = ctx.get_notify_fd().map_err(load_err)?;
    // SAFETY: libseccomp returns the listener the kernel just made for this filter; nothing
    // else owns it (the context is dropped without closing it).
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// True when the filter hands some syscalls to a supervisor (needs a listener).
pub fn has_notify(plan: &SeccompPlan) -> bool {
    plan.rules.iter().any(|r| matches!(r.action, SeccompAction::NotifyErrno(_)))
}

/// Compiles `plan` to its BPF program and stores it in `plan.bpf`. The shim does this once
/// per distinct filter (the baseline is the same for every container), so a container's start
/// or an exec does not pay libseccomp's compiler (1.5-3 ms here) on its way to exec.
pub fn precompile(plan: &mut SeccompPlan) -> Result<(), SeccompError> {
    plan.bpf = None;
    let ctx = compile(plan)?;
    plan.bpf = Some(export(&ctx, &plan.name)?);
    Ok(())
}

/// The BPF program of a compiled filter, as bytes of `struct sock_filter`.
fn export(ctx: &ScmpFilterContext, filter: &str) -> Result<Vec<u8>, SeccompError> {
    let build = |reason: String| SeccompError::Build { filter: filter.to_string(), reason };
    // libseccomp 2.5 exports only to an fd (export_bpf_mem needs 2.6): an anonymous memory file.
    // SAFETY: memfd_create with a NUL-terminated literal name; on success the fd is new and ours.
    let fd = unsafe { libc::memfd_create(c"moat-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(build(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` was just created above and nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&file).map_err(|e| build(format!("exporting BPF: {e}")))?;
    let mut bpf = Vec::new();
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(|e| build(format!("reading the exported BPF: {e}")))?;
    Ok(bpf)
}

/// Size of one `struct sock_filter`: u16 code, u8 jt, u8 jf, u32 k.
const SOCK_FILTER_LEN: usize = 8;

/// Loads a precompiled program with seccomp(2), with the flags the plan names (the ones
/// libseccomp would have passed: LOG, SPEC_ALLOW). no_new_privs is set by then, or the process
/// holds CAP_SYS_ADMIN in its user namespace (see `spawn::finish`).
fn load_bpf(plan: &SeccompPlan, bpf: &[u8]) -> Result<Option<OwnedFd>, SeccompError> {
    let load_err = |reason: String| SeccompError::Load { filter: plan.name.clone(), reason };
    if bpf.is_empty() || !bpf.len().is_multiple_of(SOCK_FILTER_LEN) {
        return Err(load_err(format!(
            "a BPF program of {} bytes is not whole instructions",
            bpf.len()
        )));
    }
    // Rebuilt as properly aligned sock_filter values (the bytes came through JSON).
    let program: Vec<libc::sock_filter> = bpf
        .chunks_exact(SOCK_FILTER_LEN)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let len = u16::try_from(program.len())
        .map_err(|_| load_err(format!("{} instructions is too long", program.len())))?;
    let mut flags: libc::c_ulong = 0;
    for flag in &plan.flags {
        match features::seccomp_flag(flag) {
            Some(SeccompFlagEffect::Log) => flags |= SECCOMP_FILTER_FLAG_LOG,
            Some(SeccompFlagEffect::SpecAllow) => flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Some(SeccompFlagEffect::NoEffect) => {}
            None => return Err(load_err(format!("unknown flag {flag}"))),
        }
    }
    let notify = has_notify(plan);
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `len` instructions from `filter`, which
    // points into `program`, alive and unchanged for the call; the kernel copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(load_err(format!(
            "seccomp(SECCOMP_SET_MODE_FILTER): {}",
            std::io::Error::last_os_error()
        )));
    }
    if !notify {
        return Ok(None);
    }
    let fd = i32::try_from(rc).map_err(|_| load_err(format!("listener fd {rc}")))?;
    // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER seccomp(2) returns a new fd (close-on-exec)
    // for the filter's listener; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;
