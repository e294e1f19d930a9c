//! Filesystem data strings for mounts made by host root on behalf of the container: ids in
//! `uid=`/`gid=` options are container ids and must be translated to host ids (the kernel
//! reads them in the mounter's user namespace).

use crate::plan::UserNamespacePlan;
use crate::sys::StepError;

/// Translates `uid=`/`gid=` in `data`; with `default_owner`, adds container root's host ids
/// when the data names none (so a tmpfs's root belongs to root inside the container).
pub fn translate_ids(
    data: Option<&str>,
    user: &UserNamespacePlan,
    default_owner: bool,
    what: &str,
) -> Result<String, StepError> {
    let mut out: Vec<String> = Vec::new();
    let (mut has_uid, mut has_gid) = (false, false);
    for opt in data.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        if let Some(v) = opt.strip_prefix("uid=") {
            has_uid = true;
            out.push(format!("uid={}", map(v, |id| user.host_uid(id), "uid", what)?));
        } else if let Some(v) = opt.strip_prefix("gid=") {
            has_gid = true;
            out.push(format!("gid={}", map(v, |id| user.host_gid(id), "gid", what)?));
        } else {
            out.push(opt.to_string());
        }
    }
    if default_owner {
        if let (false, Some(uid)) = (has_uid, user.host_uid(0)) {
            out.push(format!("uid={uid}"));
        }
        if let (false, Some(gid)) = (has_gid, user.host_gid(0)) {
            out.push(format!("gid={gid}"));
        }
    }
    Ok(out.join(","))
}

fn map(
    value: &str,
    f: impl Fn(u32) -> Option<u32>,
    kind: &str,
    what: &str,
) -> Result<u32, StepError> {
    let id: u32 = value.parse().map_err(|_| {
        StepError::refused(what.to_string(), format!("{kind}={value} is not a number"))
    })?;
    f(id).ok_or_else(|| {
        StepError::refused(
            what.to_string(),
            format!("{kind} {id} is not mapped in the pod's user namespace"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{IdMapping, UserNamespaceAction};

    fn user() -> UserNamespacePlan {
        UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: vec![IdMapping { container_id: 0, host_id: 100_000, size: 65_536 }],
            gid_mappings: vec![IdMapping { container_id: 0, host_id: 200_000, size: 65_536 }],
        }
    }

    #[test]
    fn devpts_gid_is_translated() {
        let d = translate_ids(
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            &user(),
            false,
            "devpts",
        );
        assert_eq!(d.ok().as_deref(), Some("newinstance,ptmxmode=0666,mode=0620,gid=200005"));
    }

    #[test]
    fn tmpfs_gets_container_root_as_owner() {
        let d = translate_ids(Some("mode=755,size=65536k"), &user(), true, "tmpfs");
        assert_eq!(d.ok().as_deref(), Some("mode=755,size=65536k,uid=100000,gid=200000"));
    }

    #[test]
    fn unmapped_ids_are_refused() {
        assert!(translate_ids(Some("gid=70000"), &user(), false, "devpts").is_err());
        assert!(translate_ids(Some("uid=x"), &user(), false, "tmpfs").is_err());
    }
}
