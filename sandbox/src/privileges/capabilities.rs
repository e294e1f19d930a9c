//! The five capability sets, applied around the uid/gid change.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use super::ids;
use crate::plan::{CapabilityPlan, ProcessPlan};
use crate::sys::StepError;

/// The plan's capability names, parsed (unknown names are refused, never skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapabilitySets {
    pub fn parse(plan: &CapabilityPlan) -> Result<Self, StepError> {
        fn set(names: &[String], which: &str) -> Result<CapsHashSet, StepError> {
            names
                .iter()
                .map(|n| {
                    Capability::from_str(n).map_err(|_| {
                        StepError::refused(
                            format!("{which} capabilities"),
                            format!("unknown capability {n:?}"),
                        )
                    })
                })
                .collect()
        }
        Ok(CapabilitySets {
            bounding: set(&plan.bounding, "bounding")?,
            effective: set(&plan.effective, "effective")?,
            inheritable: set(&plan.inheritable, "inheritable")?,
            permitted: set(&plan.permitted, "permitted")?,
            ambient: set(&plan.ambient, "ambient")?,
        })
    }
}

fn caps_err(step: impl Into<String>, e: caps::errors::CapsError) -> StepError {
    StepError::refused(step, e.to_string())
}

/// Drops the bounding set to the plan, switches uid/gid/groups keeping the permitted set,
/// then sets effective, inheritable, permitted and ambient exactly as planned.
pub fn apply_with_ids(process: &ProcessPlan) -> Result<(), StepError> {
    let sets = CapabilitySets::parse(&process.capabilities)?;
    nix::sys::prctl::set_keepcaps(true)
        .map_err(|e| StepError::sys("prctl(PR_SET_KEEPCAPS, 1)", e))?;

    let supported = caps::runtime::thread_all_supported();
    for cap in supported.iter().filter(|c| !sets.bounding.contains(c)) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| caps_err(format!("drop {cap} from the bounding set"), e))?;
    }

    ids::set_ids(process.uid, process.gid, &process.additional_gids)?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(|e| StepError::sys("prctl(PR_SET_KEEPCAPS, 0)", e))?;

    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear the ambient set", e))?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &sets.effective)
        .map_err(|e| caps_err("set the effective set", e))?;
    caps::set(None, CapSet::Inheritable, &sets.inheritable)
        .map_err(|e| caps_err("set the inheritable set", e))?;
    caps::set(None, CapSet::Permitted, &sets.permitted)
        .map_err(|e| caps_err("set the permitted set", e))?;
    for cap in &sets.ambient {
        caps::raise(None, CapSet::Ambient, *cap)
            .map_err(|e| caps_err(format!("raise {cap} in the ambient set"), e))?;
    }
    Ok(())
}
