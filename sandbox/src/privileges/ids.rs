//! Switching to the plan's uid, gid and supplementary groups (inside the user namespace).

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::sys::StepError;

/// `setgroups`, `setresgid`, `setresuid`, in that order (groups and gid need the
/// capabilities the uid change may take away).
pub(super) fn set_ids(uid: u32, gid: u32, additional_gids: &[u32]) -> Result<(), StepError> {
    let groups: Vec<Gid> = additional_gids.iter().copied().map(Gid::from_raw).collect();
    setgroups(&groups).map_err(|e| StepError::sys(format!("setgroups {additional_gids:?}"), e))?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(|e| StepError::sys(format!("setresgid {gid}"), e))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|e| StepError::sys(format!("setresuid {uid}"), e))?;
    Ok(())
}
