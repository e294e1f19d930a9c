//! The audit trail: one JSON object per container moat confines and per container or exec it
//! refuses, logged through the shim's log (which containerd copies into its own log), so an
//! operator can audit a node with `grep moat-audit` on containerd's log and a JSON parser.
//!
//! The log message is `moat-audit {json}`: containerd's logrus-style line (`time=... level=...
//! msg="..."`) wraps it, and the JSON runs from the first `{` to the last `}` of the line.
//! Fields: `event` (`created`: the confined process exists and waits for Start — moat builds
//! and confines it at Create; `refused`), `pod` (sandbox id), `pod_name` (`namespace/name`),
//! `container` (id), `container_name`, `exec` (exec id, for execs), `level`,
//! `host_uid_ranges`/`host_gid_ranges` (inclusive `[first, last]` host IDs of the pod's user
//! namespace), `seccomp` (the filters stacked, e.g. `baseline+RuntimeDefault`; `unconfined`
//! when none), `capabilities` (`effective` and `bounding`), and for a refusal `rule`, `field`
//! and `reason`.

use moat_sandbox::plan::{ContainerPlan, IdMapping, UserNamespacePlan};
use moat_sandbox::policy::{
    Config, Refusal, CONTAINER_NAME_ANNOTATION, SANDBOX_NAMESPACE_ANNOTATION,
    SANDBOX_NAME_ANNOTATION,
};
use oci_spec::runtime::Spec;
use serde::Serialize;

/// What every audit message starts with.
pub const PREFIX: &str = "moat-audit ";

/// Who the record is about.
pub struct Subject<'a> {
    pub pod_id: &'a str,
    pub container_id: &'a str,
    pub exec_id: Option<&'a str>,
    /// The container's spec (for the CRI names), when known.
    pub spec: Option<&'a Spec>,
}

#[derive(Debug, Serialize)]
struct Capabilities<'a> {
    effective: &'a [String],
    bounding: &'a [String],
}

#[derive(Debug, Serialize)]
struct Record<'a> {
    event: &'static str,
    pod: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_name: Option<String>,
    container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<&'a str>,
    level: &'static str,
    host_uid_ranges: Vec<[u64; 2]>,
    host_gid_ranges: Vec<[u64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seccomp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Capabilities<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn annotation<'a>(spec: Option<&'a Spec>, key: &str) -> Option<&'a str> {
    spec?.annotations().as_ref()?.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

fn ranges(maps: &[IdMapping]) -> Vec<[u64; 2]> {
    maps.iter()
        .filter(|m| m.size > 0)
        .map(|m| [u64::from(m.host_id), u64::from(m.host_id) + u64::from(m.size) - 1])
        .collect()
}

fn record<'a>(
    event: &'static str,
    who: &'a Subject<'a>,
    config: &Config,
    user: &UserNamespacePlan,
) -> Record<'a> {
    let pod_name = match (
        annotation(who.spec, SANDBOX_NAMESPACE_ANNOTATION),
        annotation(who.spec, SANDBOX_NAME_ANNOTATION),
    ) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name.to_string()),
        _ => None,
    };
    Record {
        event,
        pod: who.pod_id,
        pod_name,
        container: who.container_id,
        container_name: annotation(who.spec, CONTAINER_NAME_ANNOTATION),
        exec: who.exec_id,
        level: config.level.as_str(),
        host_uid_ranges: ranges(&user.uid_mappings),
        host_gid_ranges: ranges(&user.gid_mappings),
        seccomp: None,
        capabilities: None,
        rule: None,
        field: None,
        reason: None,
    }
}

fn render(record: &Record<'_>) -> String {
    match serde_json::to_string(record) {
        Ok(json) => format!("{PREFIX}{json}"),
        // Serializing strings and numbers cannot fail; keep a line anyway.
        Err(e) => format!("{PREFIX}{{\"event\":\"{}\",\"error\":\"{e}\"}}", record.event),
    }
}

/// The seccomp filters of a process, stacked in order (`unconfined` when none).
fn seccomp_mode(plan: &ContainerPlan) -> String {
    if plan.process.seccomp.is_empty() {
        return "unconfined".into();
    }
    plan.process.seccomp.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join("+")
}

/// The line for a container moat confined (`plan`) under `config`.
pub fn created(who: &Subject<'_>, config: &Config, plan: &ContainerPlan) -> String {
    let mut r = record("created", who, config, &plan.user);
    r.seccomp = Some(seccomp_mode(plan));
    r.capabilities = Some(Capabilities {
        effective: &plan.process.capabilities.effective,
        bounding: &plan.process.capabilities.bounding,
    });
    render(&r)
}

/// The line for a container or exec the policy refused; `user` is the pod's user namespace
/// (the ID range it had or would have had).
pub fn refused(
    who: &Subject<'_>,
    config: &Config,
    user: &UserNamespacePlan,
    refusal: &Refusal,
) -> String {
    let mut r = record("refused", who, config, user);
    r.rule = Some(refusal.rule().as_str());
    r.field = Some(refusal.field());
    r.reason = Some(refusal.reason());
    render(&r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_sandbox::plan::UserNamespaceAction;

    fn user() -> UserNamespacePlan {
        let m = vec![IdMapping { container_id: 0, host_id: 1_048_576, size: 65_536 }];
        UserNamespacePlan {
            action: UserNamespaceAction::Create,
            uid_mappings: m.clone(),
            gid_mappings: m,
        }
    }

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": {
                "io.kubernetes.cri.sandbox-namespace": "team-a",
                "io.kubernetes.cri.sandbox-name": "web",
                "io.kubernetes.cri.container-name": "app \"quoted\""
            }
        }))
        .expect("spec")
    }

    fn json_of(line: &str) -> serde_json::Value {
        let json = line.strip_prefix(PREFIX).expect("prefix");
        serde_json::from_str(json).expect("one JSON object")
    }

    #[test]
    fn a_refusal_is_one_json_line_with_the_rule() {
        // Input: a refusal from the real policy (a privileged container at level restricted).
        let spec_json = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
                        "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"]}},
            "linux": {"namespaces": [{"type": "mount"}]}
        });
        let bad: Spec = serde_json::from_value(spec_json).expect("spec");
        let config = Config::default();
        let ctx = moat_sandbox::policy::PodContext {
            pod_id: "p1".into(),
            container_id: "c1".into(),
            pod_uid: None,
            is_sandbox: false,
            rootfs: "/r".into(),
            rootfs_mounts: Vec::new(),
            containerd: Default::default(),
            pod_shares_host: Vec::new(),
            user: user(),
        };
        let refusal =
            moat_sandbox::policy::derive_container(&bad, &config, &ctx).expect_err("refused");
        let s = spec();
        let who = Subject { pod_id: "p1", container_id: "c1", exec_id: None, spec: Some(&s) };
        let line = refused(&who, &config, &user(), &refusal);
        assert!(!line.contains('\n'), "{line}");
        let v = json_of(&line);
        assert_eq!(v["event"], "refused");
        assert_eq!(v["pod"], "p1");
        assert_eq!(v["pod_name"], "team-a/web");
        assert_eq!(v["container_name"], "app \"quoted\"");
        assert_eq!(v["level"], "baseline");
        assert_eq!(v["host_uid_ranges"], serde_json::json!([[1_048_576u64, 1_114_111u64]]));
        assert_eq!(v["rule"], refusal.rule().as_str());
        assert!(v["field"].as_str().is_some_and(|f| !f.is_empty()), "{line}");
        assert!(v.get("seccomp").is_none());
    }
}
