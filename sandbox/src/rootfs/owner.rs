//! Creating files as the container's root: mount targets and /dev nodes are created with the
//! fsuid/fsgid of container root's host ids, so they belong to root inside the container, and
//! so creation through an idmapped mount works (host uid 0 has no mapping there). Capabilities
//! are kept across the fsuid change (SECBIT_NO_SETUID_FIXUP) for the duration.

use crate::plan::UserNamespacePlan;
use crate::sys::StepError;

/// Host ids of the container's root (none when root is not mapped: then files are created as
/// host root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

impl Owner {
    pub fn container_root(user: &UserNamespacePlan) -> Owner {
        Owner { uid: user.host_uid(0), gid: user.host_gid(0) }
    }

    /// Runs `f` with fsuid/fsgid switched to the owner, then switches back.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, StepError> {
        let (Some(uid), Some(gid)) = (self.uid, self.gid) else { return Ok(f()) };
        // SAFETY: prctl(PR_GET_SECUREBITS) takes no pointers.
        let old = unsafe { libc::prctl(libc::PR_GET_SECUREBITS) };
        let old = nix::errno::Errno::result(old)
            .map_err(|e| StepError::sys("prctl(PR_GET_SECUREBITS)", e))?;
        let old = libc::c_ulong::try_from(old)
            .map_err(|_| StepError::refused("prctl(PR_GET_SECUREBITS)", "negative"))?;
        set_securebits(old | SECBIT_NO_SETUID_FIXUP)?;
        // SAFETY: setfsgid/setfsuid take plain ids and cannot fail in a way that harms memory.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
        }
        let switched = current_fsuid() == uid;
        let value = switched.then(f);
        // SAFETY: as above; back to host root.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
        set_securebits(old)?;
        if current_fsuid() != 0 {
            return Err(StepError::refused("setfsuid 0", "could not switch back to host root"));
        }
        value.ok_or_else(|| StepError::refused(format!("setfsuid {uid}"), "fsuid did not change"))
    }
}

fn set_securebits(bits: libc::c_ulong) -> Result<(), StepError> {
    // SAFETY: prctl(PR_SET_SECUREBITS) takes an integer, no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits) };
    nix::errno::Errno::result(ret)
        .map(drop)
        .map_err(|e| StepError::sys(format!("prctl(PR_SET_SECUREBITS, {bits:#x})"), e))
}

fn current_fsuid() -> u32 {
    // SAFETY: setfsuid with an invalid id (-1) changes nothing and returns the current fsuid.
    let cur = unsafe { libc::setfsuid(u32::MAX) };
    // The kernel returns the uid_t in an int: reinterpret the bits (ids above 2^31 are valid).
    cur as u32
}
