//! A refusal: the one message an operator or tenant reads when moat will not run a container.

use std::fmt;

/// Which rule refused. `as_str()` is stable (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Privileged,
    HostNetwork,
    HostPid,
    HostIpc,
    HostDevice,
    Capability,
    HostPath,
    MountType,
    Sysctl,
    Seccomp,
    ExecUser,
    ExecRlimit,
    /// A user namespace mapping handed over by containerd (host root, moat's pool, another pod).
    IdMapping,
    /// A namespace path that is not the pod's own.
    NamespacePath,
    /// Bidirectional (rshared) mount propagation.
    MountPropagation,
    /// `restricted`: container root (uid 0).
    RunAsNonRoot,
    /// `restricted`: a spec without `noNewPrivileges` (allowPrivilegeEscalation).
    PrivilegeEscalation,
    /// `restricted`: a spec without a seccomp profile.
    SeccompProfile,
    InvalidSpec,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Privileged => "privileged",
            Rule::HostNetwork => "host-network",
            Rule::HostPid => "host-pid",
            Rule::HostIpc => "host-ipc",
            Rule::HostDevice => "host-device",
            Rule::Capability => "capability",
            Rule::HostPath => "host-path",
            Rule::MountType => "mount-type",
            Rule::Sysctl => "sysctl",
            Rule::Seccomp => "seccomp",
            Rule::ExecUser => "exec-user",
            Rule::ExecRlimit => "exec-rlimit",
            Rule::IdMapping => "id-mapping",
            Rule::NamespacePath => "namespace-path",
            Rule::MountPropagation => "mount-propagation",
            Rule::RunAsNonRoot => "run-as-non-root",
            Rule::PrivilegeEscalation => "privilege-escalation",
            Rule::SeccompProfile => "seccomp-profile",
            Rule::InvalidSpec => "invalid-spec",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the operator can change the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// `set KEY in FILE`, e.g. `allow_host_network = true`.
    SetKey { setting: String, file: String },
    /// Built into moat; no configuration allows it. The text says why / what to do instead.
    None(String),
}

/// moat will not run this container (or exec) as specified. Its Display is the one message
/// for the operator and the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal(Box<Detail>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Detail {
    pod: String,
    container: String,
    field: String,
    rule: Rule,
    reason: String,
    remedy: Remedy,
}

impl Refusal {
    /// Which rule refused.
    pub fn rule(&self) -> Rule {
        self.0.rule
    }
    /// The pod, as `namespace/name (sandbox id)` when CRI annotations name it, else the id.
    pub fn pod(&self) -> &str {
        &self.0.pod
    }
    /// The container, as `name (id)` when named, else the id; for an exec, also the exec id.
    pub fn container(&self) -> &str {
        &self.0.container
    }
    /// The spec field, e.g. `linux.namespaces[network]`, `mounts[3].source=/etc`.
    pub fn field(&self) -> &str {
        &self.0.field
    }
    /// What the rule says, e.g. `the host network namespace is not allowed at level restricted`.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
    /// How the operator can change the outcome.
    pub fn remedy(&self) -> &Remedy {
        &self.0.remedy
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "moat refused container {} of pod {}: {}: {}",
            d.container, d.pod, d.field, d.reason
        )?;
        match &d.remedy {
            Remedy::SetKey { setting, file } => write!(f, "; to allow it, set {setting} in {file}"),
            Remedy::None(why) => write!(f, "; {why}"),
        }
    }
}

/// Who a refusal is about; builds refusals with the right names filled in.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub pod: String,
    pub container: String,
    /// The config file remedies point to.
    pub file: String,
}

impl Subject {
    pub fn refuse(
        &self,
        field: impl Into<String>,
        rule: Rule,
        reason: impl Into<String>,
        setting: impl Into<String>,
    ) -> Refusal {
        let remedy = Remedy::SetKey { setting: setting.into(), file: self.file.clone() };
        self.refusal(field.into(), rule, reason.into(), remedy)
    }

    /// A refusal no configuration can lift.
    pub fn refuse_always(
        &self,
        field: impl Into<String>,
        rule: Rule,
        reason: impl Into<String>,
        why: impl Into<String>,
    ) -> Refusal {
        self.refusal(field.into(), rule, reason.into(), Remedy::None(why.into()))
    }

    fn refusal(&self, field: String, rule: Rule, reason: String, remedy: Remedy) -> Refusal {
        Refusal(Box::new(Detail {
            pod: self.pod.clone(),
            container: self.container.clone(),
            field,
            rule,
            reason,
            remedy,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_pod_container_field_rule_and_remedy() {
        let s = Subject {
            pod: "default/web (abc)".into(),
            container: "nginx (def)".into(),
            file: "/etc/moat/config.toml".into(),
        };
        let r = s.refuse(
            "linux.namespaces[network]",
            Rule::HostNetwork,
            "host network namespace is not allowed at level restricted",
            "allow_host_network = true",
        );
        assert_eq!(
            r.to_string(),
            "moat refused container nginx (def) of pod default/web (abc): linux.namespaces[network]: \
             host network namespace is not allowed at level restricted; to allow it, set \
             allow_host_network = true in /etc/moat/config.toml"
        );
        assert_eq!(r.rule(), Rule::HostNetwork);
        let r =
            s.refuse_always("mounts[0].source=/proc", Rule::HostPath, "x", "no setting allows it");
        assert!(r.to_string().ends_with("x; no setting allows it"), "{r}");
    }
}
