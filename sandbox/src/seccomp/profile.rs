//! Seccomp profiles in OCI form -> `SeccompPlan`: the embedded baseline and a spec's filter.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::SeccompError;
use crate::features::{self, SeccompActionEffect};
use crate::plan::{SeccompAction, SeccompArg, SeccompOp, SeccompPlan, SeccompRule};

/// moat's baseline profile (`seccomp-profiles/baseline.json`), embedded at build time.
pub const BASELINE_JSON: &str = include_str!("../../../seccomp-profiles/baseline.json");

/// The name the baseline carries in plans and messages.
pub const BASELINE_NAME: &str = "baseline";

const EPERM: u32 = 1;

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

/// Converts an action through `features::SECCOMP_ACTIONS`; unlisted (`SCMP_ACT_NOTIFY`) is refused.
fn action(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    filter: &str,
    what: &str,
) -> Result<SeccompAction, SeccompError> {
    match features::seccomp_action(action) {
        Some(SeccompActionEffect::Is(a)) => Ok(a),
        Some(SeccompActionEffect::Errno) => Ok(SeccompAction::Errno(errno.unwrap_or(EPERM))),
        None if action == LinuxSeccompAction::ScmpActNotify => Err(SeccompError::Build {
            filter: filter.to_string(),
            reason: format!(
                "{what}: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which moat \
                 does not support"
            ),
        }),
        None => Err(unsupported(filter, what, format!("action {action}"))),
    }
}

/// Converts a comparison through `features::SECCOMP_OPERATORS`.
fn op(op: LinuxSeccompOperator, filter: &str, what: &str) -> Result<SeccompOp, SeccompError> {
    features::seccomp_operator(op)
        .ok_or_else(|| unsupported(filter, what, format!("comparison {op}")))
}

fn unsupported(filter: &str, what: &str, thing: String) -> SeccompError {
    SeccompError::Build {
        filter: filter.to_string(),
        reason: format!("{what}: {thing} is not supported by moat"),
    }
}

/// Converts an OCI seccomp profile. Semantics follow runc: an errno action without `errnoRet`
/// returns EPERM; comparisons of one rule must all hold, EXCEPT when two of them test the same
/// argument (which libseccomp cannot combine): then each comparison becomes its own rule (any
/// one matching triggers the action). For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the expected result, as in OCI. Actions, comparisons and architectures are those
/// of `features` (`SCMP_ACT_TRACE` becomes ENOSYS: no tracer; `SCMP_ACT_NOTIFY` is refused).
pub fn from_oci(profile: &LinuxSeccomp, name: &str) -> Result<SeccompPlan, SeccompError> {
    let default_action =
        action(profile.default_action(), profile.default_errno_ret(), name, "defaultAction")?;
    let architectures = profile
        .architectures()
        .iter()
        .flatten()
        .map(|a| match serde_json::to_value(a) {
            Ok(serde_json::Value::String(s)) if features::seccomp_arch_supported(*a) => Ok(s),
            Ok(serde_json::Value::String(s)) => Err(unsupported(name, "architectures", s)),
            _ => Err(SeccompError::Build {
                filter: name.to_string(),
                reason: format!("architecture {a:?} has no name"),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let flags = profile.flags().iter().flatten().map(|f| f.to_string()).collect::<Vec<_>>();
    let mut rules = Vec::new();
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let what = format!("syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), name, &what)?;
        let mut args = Vec::new();
        for a in sc.args().iter().flatten() {
            let index = u32::try_from(a.index()).ok().filter(|i| *i < 6).ok_or_else(|| {
                SeccompError::Build {
                    filter: name.to_string(),
                    reason: format!(
                        "{what}: argument index {} is beyond the 6 syscall arguments",
                        a.index()
                    ),
                }
            })?;
            args.push(SeccompArg {
                index,
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
                op: op(a.op(), name, &what)?,
            });
        }
        let names = sc.names().clone();
        let repeats =
            args.iter().enumerate().any(|(j, a)| args[..j].iter().any(|b| b.index == a.index));
        if repeats {
            for a in args {
                rules.push(SeccompRule { names: names.clone(), action: act, args: vec![a] });
            }
        } else {
            rules.push(SeccompRule { names, action: act, args });
        }
    }
    Ok(SeccompPlan {
        name: name.to_string(),
        default_action,
        architectures,
        rules,
        flags,
        bpf: None,
    })
}
