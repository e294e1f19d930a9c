//! Namespaced sysctls, written under /proc/sys by the process once it is in its namespaces
//! (net and ipc sysctls apply to the namespaces of the process that writes them).

use std::collections::BTreeMap;
use std::io::Write;

use crate::plan::UserNamespacePlan;
use crate::sys::{Step, StepError};

/// `/proc/sys/...` path of a sysctl name (`net.ipv4.ping_group_range`), refusing anything
/// that could name a file outside /proc/sys.
pub(super) fn sysctl_path(name: &str) -> Result<String, StepError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && name.split(['.', '/']).all(|part| !part.is_empty());
    if !ok {
        return Err(StepError::refused(format!("sysctl {name:?}"), "not a sysctl name"));
    }
    Ok(format!("/proc/sys/{}", name.replace('.', "/")))
}

/// Writes each sysctl. Values naming ids are container ids; the kernel reads them in the
/// writer's (the host's) user namespace, so they are translated first.
pub(super) fn apply(
    sysctls: &BTreeMap<String, String>,
    user: &UserNamespacePlan,
) -> Result<(), StepError> {
    for (name, value) in sysctls {
        let path = sysctl_path(name)?;
        let value = match name.replace('/', ".").as_str() {
            "net.ipv4.ping_group_range" => host_gid_range(value, user)?,
            _ => value.clone(),
        };
        let mut f =
            std::fs::OpenOptions::new().write(true).open(&path).step(|| format!("open {path}"))?;
        f.write_all(value.as_bytes()).step(|| format!("set sysctl {name}={value}"))?;
    }
    Ok(())
}

/// `lo hi` in container gids -> the host gids of the part of that range the pod's gid
/// mapping covers (the mapping that holds `lo`). Kubernetes' usual "0 2147483647" becomes the
/// pod's whole mapped range. `1 0` (nobody may ping) stays as it is.
fn host_gid_range(value: &str, user: &UserNamespacePlan) -> Result<String, StepError> {
    let step = || format!("sysctl net.ipv4.ping_group_range={value}");
    let mut parts = value.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(lo)), Some(Ok(hi)), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(StepError::refused(step(), "expected two gids"));
    };
    if lo > hi {
        return Ok(format!("{lo} {hi}"));
    }
    let m = user
        .gid_mappings
        .iter()
        .find(|m| lo >= m.container_id && lo - m.container_id < m.size)
        .ok_or_else(|| {
            StepError::refused(
                step(),
                format!("gid {lo} is not mapped in the pod's user namespace"),
            )
        })?;
    let last_mapped = m.container_id + (m.size - 1);
    let hi = hi.min(last_mapped);
    Ok(format!("{} {}", m.host_id + (lo - m.container_id), m.host_id + (hi - m.container_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_become_slashes() {
        assert_eq!(
            sysctl_path("net.ipv4.ping_group_range").ok().as_deref(),
            Some("/proc/sys/net/ipv4/ping_group_range")
        );
    }

    #[test]
    fn ping_group_range_is_translated_to_the_pod_range() {
        use crate::plan::{IdMapping, UserNamespaceAction};
        let user = UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: vec![],
            gid_mappings: vec![IdMapping { container_id: 0, host_id: 3_000_000_000, size: 65_536 }],
        };
        assert_eq!(
            host_gid_range("0 2147483647", &user).ok().as_deref(),
            Some("3000000000 3000065535")
        );
        assert_eq!(host_gid_range("1 0", &user).ok().as_deref(), Some("1 0"));
        assert!(host_gid_range("70000 80000", &user).is_err());
        assert!(host_gid_range("0", &user).is_err());
    }

    #[test]
    fn names_cannot_climb_out_of_proc_sys() {
        for bad in ["..", "net/../../etc/passwd", "net..x", "", "a b", "/net"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
