//! Seccomp profiles in OCI form -> `SeccompPlan`: the embedded baseline and a spec's filter.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::SeccompError;
use crate::plan::{SeccompAction, SeccompArg, SeccompOp, SeccompPlan, SeccompRule};

/// moat's baseline profile (`seccomp-profiles/baseline.json`), embedded at build time.
pub const BASELINE_JSON: &str = include_str!("../../../seccomp-profiles/baseline.json");

/// The name the baseline carries in plans and messages.
pub const BASELINE_NAME: &str = "baseline";

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The baseline filter every container runs under.
pub fn baseline() -> SeccompPlan {
    // The profile is embedded and checked by `baseline_parses_and_converts`: it cannot fail
    // at run time unless the build embedded a broken file, which that test refuses.
    match serde_json::from_str::<LinuxSeccomp>(BASELINE_JSON)
        .map_err(|e| SeccompError::Build { filter: BASELINE_NAME.into(), reason: e.to_string() })
        .and_then(|profile| from_oci(&profile, BASELINE_NAME))
    {
        Ok(plan) => plan,
        Err(e) => panic!("the embedded baseline seccomp profile is broken: {e}"),
    }
}

fn action(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    filter: &str,
    what: &str,
) -> Result<SeccompAction, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        // With no tracer attached (moat never attaches one) the kernel fails a TRACE'd
        // syscall with ENOSYS: say so explicitly.
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Errno(ENOSYS),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Build {
                filter: filter.to_string(),
                reason: format!(
                    "{what}: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which moat \
                     does not support"
                ),
            })
        }
    })
}

fn op(op: LinuxSeccompOperator) -> SeccompOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => SeccompOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => SeccompOp::LessThan,
        LinuxSeccompOperator::ScmpCmpLe => SeccompOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => SeccompOp::EqualTo,
        LinuxSeccompOperator::ScmpCmpGe => SeccompOp::GreaterOrEqual,
        LinuxSeccompOperator::ScmpCmpGt => SeccompOp::GreaterThan,
        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompOp::MaskedEqual,
    }
}

/// Converts an OCI seccomp profile. Semantics follow runc: an errno action without `errnoRet`
/// returns EPERM; comparisons of one rule must all hold, EXCEPT when two of them test the same
/// argument (which libseccomp cannot combine): then each comparison becomes its own rule (any
/// one matching triggers the action). For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the expected result, as in OCI. `SCMP_ACT_TRACE` becomes ENOSYS (no tracer);
/// `SCMP_ACT_NOTIFY` is refused.
pub fn from_oci(profile: &LinuxSeccomp, name: &str) -> Result<SeccompPlan, SeccompError> {
    let default_action =
        action(profile.default_action(), profile.default_errno_ret(), name, "defaultAction")?;
    let architectures = profile
        .architectures()
        .iter()
        .flatten()
        .map(|a| match serde_json::to_value(a) {
            Ok(serde_json::Value::String(s)) => Ok(s),
            _ => Err(SeccompError::Build {
                filter: name.to_string(),
                reason: format!("architecture {a:?} has no name"),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let flags = profile
        .flags()
        .iter()
        .flatten()
        .map(|f| f.to_string())
        .collect::<Vec<_>>();
    let mut rules = Vec::new();
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let what = format!("syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), name, &what)?;
        let mut args = Vec::new();
        for a in sc.args().iter().flatten() {
            let index = u32::try_from(a.index()).ok().filter(|i| *i < 6).ok_or_else(|| {
                SeccompError::Build {
                    filter: name.to_string(),
                    reason: format!("{what}: argument index {} is beyond the 6 syscall arguments", a.index()),
                }
            })?;
            args.push(SeccompArg {
                index,
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
                op: op(a.op()),
            });
        }
        let names = sc.names().clone();
        let repeats = args.iter().enumerate().any(|(j, a)| args[..j].iter().any(|b| b.index == a.index));
        if repeats {
            for a in args {
                rules.push(SeccompRule { names: names.clone(), action: act, args: vec![a] });
            }
        } else {
            rules.push(SeccompRule { names, action: act, args });
        }
    }
    Ok(SeccompPlan { name: name.to_string(), default_action, architectures, rules, flags })
}
