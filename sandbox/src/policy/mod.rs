//! Policy: the operator's config plus an OCI spec in, a confinement plan or a refusal out. Pure.
//!
//! `derive_container` reads these spec fields (everything else is ignored: `root.path` — the
//! shim passes the rootfs —, `linux.resources` and `linux.cgroupsPath` — the cgroups module's —,
//! apparmor/selinux labels, `domainname`, `linux.rootfsPropagation`, `linux.uidMappings`):
//!
//! | spec field | plan | policy |
//! |---|---|---|
//! | `process.args/env/cwd/terminal/consoleSize` | `process.*` | args non-empty, cwd absolute |
//! | `process.user.uid/gid/additionalGids/umask` | `process.*` | IDs inside the pod's user namespace |
//! | `process.rlimits`, `process.oomScoreAdj` | `process.*` | passed through |
//! | `process.capabilities` | `process.capabilities` | `capabilities` module |
//! | `process.noNewPrivileges` | `process.no_new_privileges` | `levels::no_new_privileges` |
//! | `linux.namespaces` | `namespaces`, `user` | `namespaces` module; user ns from `PodContext` |
//! | `hostname` | `hostname` | only with the container's own UTS namespace |
//! | `mounts` | `mounts` | `mounts` and `host_paths` modules |
//! | `linux.devices` | extra bind `mounts` | `devices` module |
//! | `linux.maskedPaths/readonlyPaths` | `masked_paths/readonly_paths` | union with moat's lists |
//! | `root.readonly` | `readonly_rootfs` | or `force_readonly_rootfs` |
//! | `linux.sysctl` | `sysctls` | `sysctls` module |
//! | `linux.seccomp` | `process.seccomp` | baseline first, the spec's filter second |
//! | (the level) | — | `levels`: Pod Security Standards rows |
//! | `hooks`, `linux.netDevices`, `linux.timeOffsets`, `linux.personality` | — | refused (unsupported) |
//!
//! Privileged containers: CRI 1.6 passes no privileged flag; its privileged spec holds every
//! capability and clears maskedPaths and readonlyPaths (and adds every host device, makes /sys
//! and the cgroup mount writable, drops seccomp). moat recognises one as: CAP_SYS_ADMIN in the
//! bounding set AND no masked paths AND no read-only paths. Refused unless `allow_privileged`;
//! when allowed, the capability ceiling is lifted, but the container still runs in the pod's
//! user namespace under the baseline filter with moat's masks and a read-only /sys, and host
//! devices are passed only with `allow_host_devices`.

pub mod capabilities;
mod config;
pub mod containerd_dirs;
mod context;
pub mod devices;
pub mod host_paths;
pub mod levels;
mod lexical;
mod mounts;
mod namespaces;
mod process;
mod refusal;
pub mod sysctls;

#[cfg(test)]
mod tests;

pub use config::{AllowedHostPath, Config, ConfigError, Level, UsernsConfig, DEFAULT_CONFIG_PATH};
pub use containerd_dirs::ContainerdDirs;
pub use context::{
    rootfs_mount_without_idmap_options, spec_user_namespace, PodContext, CONTAINER_NAME_ANNOTATION,
    CONTAINER_TYPE_ANNOTATION, SANDBOX_ID_ANNOTATION, SANDBOX_NAMESPACE_ANNOTATION,
    SANDBOX_NAME_ANNOTATION, SANDBOX_UID_ANNOTATION,
};
pub use refusal::{Refusal, Remedy, Rule};

use oci_spec::runtime::{Process, Spec};

use crate::plan::{ContainerPlan, ExecPlan, NamespaceKind};
use context::annotation;
use refusal::Subject;

/// True when the spec looks like CRI's privileged container (see the module docs).
pub fn is_privileged(spec: &Spec) -> bool {
    let sys_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysAdmin));
    let empty = |l: Option<&Vec<String>>| l.is_none_or(|v| v.is_empty());
    let linux = spec.linux().as_ref();
    sys_admin
        && empty(linux.and_then(|l| l.masked_paths().as_ref()))
        && empty(linux.and_then(|l| l.readonly_paths().as_ref()))
}

fn subject(spec: &Spec, ctx: &PodContext, config: &Config) -> Subject {
    let pod = match (
        annotation(spec, SANDBOX_NAMESPACE_ANNOTATION),
        annotation(spec, SANDBOX_NAME_ANNOTATION),
    ) {
        (Some(ns), Some(name)) if !name.is_empty() => format!("{ns}/{name} ({})", ctx.pod_id),
        _ => ctx.pod_id.clone(),
    };
    let container = match annotation(spec, CONTAINER_NAME_ANNOTATION) {
        Some(name) if !name.is_empty() => format!("{name} ({})", ctx.container_id),
        _ if ctx.is_sandbox => format!("{} (the pod's sandbox)", ctx.container_id),
        _ => ctx.container_id.clone(),
    };
    Subject { pod, container, file: config.file_for_messages().to_string() }
}

fn refuse_unsupported(spec: &Spec, who: &Subject) -> Result<(), refusal::Refusal> {
    let hooks = spec.hooks().as_ref().is_some_and(|h| {
        let n =
            |v: &Option<Vec<oci_spec::runtime::Hook>>| v.as_ref().is_some_and(|v| !v.is_empty());
        #[allow(deprecated)]
        let prestart = n(h.prestart());
        prestart
            || n(h.create_runtime())
            || n(h.create_container())
            || n(h.start_container())
            || n(h.poststart())
            || n(h.poststop())
    });
    let linux = spec.linux().as_ref();
    let unsupported = [
        (hooks, "hooks", "OCI hooks would run as host root"),
        (
            linux.is_some_and(|l| l.net_devices().as_ref().is_some_and(|d| !d.is_empty())),
            "linux.netDevices",
            "moving host network devices into a container is not supported",
        ),
        (
            linux.is_some_and(|l| l.time_offsets().as_ref().is_some_and(|d| !d.is_empty())),
            "linux.timeOffsets",
            "time namespaces are not supported",
        ),
        (
            linux.is_some_and(|l| l.personality().is_some()),
            "linux.personality",
            "setting an execution domain is not supported",
        ),
    ];
    for (present, field, why) in unsupported {
        if present {
            return Err(who.refuse_always(
                field,
                Rule::InvalidSpec,
                format!("{why} by moat"),
                "remove it from the container's spec",
            ));
        }
    }
    Ok(())
}

/// The config every rule of `ctx`'s container is checked against: `config`, with the CRI
/// directories in effect in `cri_state_dirs` — the operator's when set, else those derived
/// from what containerd handed the shim (`containerd_dirs`), so every rule that reads them
/// (host paths, the CNI netns under `<cri dir>/netns`) works with an empty config. Every entry
/// point that checks a container against the config must go through this.
pub fn effective_config<'a>(config: &'a Config, ctx: &PodContext) -> std::borrow::Cow<'a, Config> {
    if !config.cri_state_dirs.is_empty() {
        return std::borrow::Cow::Borrowed(config);
    }
    std::borrow::Cow::Owned(Config {
        cri_state_dirs: ctx.containerd.cri_dirs(&config.cri_state_dirs),
        ..config.clone()
    })
}

/// Turns a container's OCI spec into its confinement plan, or refuses it.
pub fn derive_container(
    spec: &Spec,
    config: &Config,
    ctx: &PodContext,
) -> Result<ContainerPlan, Refusal> {
    let config = &*effective_config(config, ctx);
    let who = subject(spec, ctx, config);
    refuse_unsupported(spec, &who)?;
    let Some(spec_process) = spec.process().as_ref() else {
        return Err(who.refuse_always(
            "process",
            Rule::InvalidSpec,
            "the spec has no process",
            "fix the container's spec",
        ));
    };
    let empty_linux = oci_spec::runtime::Linux::default();
    let linux = spec.linux().as_ref().unwrap_or(&empty_linux);

    let privileged = is_privileged(spec);
    if privileged && !config.allow_privileged {
        return Err(who.refuse(
            "process.capabilities.bounding[CAP_SYS_ADMIN]",
            Rule::Privileged,
            format!(
                "this is a privileged container (CAP_SYS_ADMIN with no masked or read-only \
                 paths), which is not allowed at level {}",
                config.level
            ),
            "allow_privileged = true",
        ));
    }

    let no_namespaces = Vec::new();
    let spec_namespaces = if spec.linux().is_some() {
        linux.namespaces().as_ref().unwrap_or(&no_namespaces)
    } else {
        &no_namespaces
    };
    let ns = namespaces::plan(spec_namespaces, config, &ctx.pod_shares_host, &who)?;
    if let Some(handed_over) = spec_user_namespace(spec) {
        namespaces::check_user_mappings(&handed_over, config, &ctx.pod_id, &[], &who)?;
    }

    let mut process = process::plan(spec_process, &ctx.user, &who)?;
    if !privileged {
        capabilities::cap_defaults(&mut process.capabilities, config);
        capabilities::check(&process.capabilities, config, &who)?;
    }

    let device_mounts =
        devices::plan(linux.devices().as_deref().unwrap_or_default(), config, privileged, &who)?;

    let mount_cx = mounts::MountContext {
        config,
        pod_id: &ctx.pod_id,
        container_id: &ctx.container_id,
        pod_uid: ctx.pod_uid.as_deref(),
        containerd: &ctx.containerd,
        user: &ctx.user,
        host_ipc: ns.host_ipc,
    };
    let mut plan_mounts =
        mounts::plan_mounts(spec.mounts().as_deref().unwrap_or_default(), &mount_cx, &who)?;
    plan_mounts.extend(device_mounts);

    let spec_readonly = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    if config.force_readonly_rootfs && !spec_readonly {
        let scratch = mounts::writable_scratch(&plan_mounts);
        plan_mounts.extend(scratch);
    }

    let sysctls = sysctls::plan(
        linux.sysctl().iter().flatten(),
        config,
        ns.host_network,
        ns.host_ipc,
        ctx.is_sandbox,
        &who,
    )?;

    process.no_new_privileges = levels::no_new_privileges(spec_process, config);
    if !ctx.is_sandbox {
        let facts = levels::Facts {
            spec_process,
            has_seccomp_profile: linux.seccomp().is_some(),
            process: &process,
            privileged,
            config,
        };
        levels::check(config.level, &facts, &who)?;
    }
    process.seccomp = seccomp_plans(linux.seccomp().as_ref(), config, &who)?;

    let own_uts = ns.plans.iter().any(|n| n.kind == NamespaceKind::Uts);
    Ok(ContainerPlan {
        container_id: ctx.container_id.clone(),
        pod_id: ctx.pod_id.clone(),
        rootfs: ctx.rootfs.clone(),
        rootfs_mounts: ctx.rootfs_mounts.clone(),
        readonly_rootfs: spec_readonly || config.force_readonly_rootfs,
        namespaces: ns.plans,
        user: ctx.user.clone(),
        hostname: if own_uts { spec.hostname().clone().filter(|h| !h.is_empty()) } else { None },
        mounts: plan_mounts,
        masked_paths: devices::union(linux.masked_paths().as_ref(), devices::MASKED),
        readonly_paths: devices::union(linux.readonly_paths().as_ref(), devices::READONLY),
        sysctls,
        cgroup_procs: Vec::new(),
        process,
    })
}

fn seccomp_plans(
    spec_filter: Option<&oci_spec::runtime::LinuxSeccomp>,
    config: &Config,
    who: &Subject,
) -> Result<Vec<crate::plan::SeccompPlan>, Refusal> {
    let Some(filter) = spec_filter else {
        if config.allow_unconfined_seccomp {
            return Ok(Vec::new());
        }
        return Ok(vec![crate::seccomp::baseline()]);
    };
    let spec_plan = crate::seccomp::from_oci(filter, "spec").map_err(|e| {
        who.refuse_always(
            "linux.seccomp",
            Rule::Seccomp,
            format!("the container's seccomp filter cannot be used: {e}"),
            "use a seccomp profile without notify actions",
        )
    })?;
    Ok(vec![crate::seccomp::baseline(), spec_plan])
}

/// The checks of `derive_container` that need the host's state, run by the shim before it:
/// the user namespace mappings containerd handed over (if any) must not overlap the range of
/// another live pod (`live`: every range in moat's pool state, by pod id).
pub fn check_handed_over_user(
    spec: &Spec,
    config: &Config,
    ctx: &PodContext,
    live: &[(String, crate::userns::pool::IdRange)],
) -> Result<(), Refusal> {
    let Some(handed_over) = spec_user_namespace(spec) else { return Ok(()) };
    let who = subject(spec, ctx, config);
    namespaces::check_user_mappings(&handed_over, config, &ctx.pod_id, live, &who)
}

/// The namespace paths of `spec` that name a process (`/proc/<pid>/ns/<kind>`) must name the
/// pod's sandbox, whose pid only the shim knows (`sandbox_pid`; `None` for the sandbox itself,
/// which joins no process). Run by the shim besides `derive_container`.
pub fn check_namespace_owner(
    spec: &Spec,
    config: &Config,
    ctx: &PodContext,
    sandbox_pid: Option<i32>,
) -> Result<(), Refusal> {
    let who = subject(spec, ctx, config);
    let none = Vec::new();
    let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).unwrap_or(&none);
    namespaces::check_owner(list, sandbox_pid, config, &who)
}

/// Turns an exec's OCI process into its plan, or refuses it. The exec can never hold more than
/// its container: no capability the container lacks, no other user than the container's (at
/// `restricted`; `baseline` allows any user of the pod), no higher hard rlimit; it inherits the
/// container's seccomp filters, and no_new_privs when the container has it (or the exec asks,
/// or the level or config sets it). Its oom_score_adj is never below the container's.
pub fn derive_exec(
    process: &Process,
    container: &ContainerPlan,
    config: &Config,
    exec_id: &str,
    init_pid: i32,
) -> Result<ExecPlan, Refusal> {
    let who = Subject {
        pod: container.pod_id.clone(),
        container: format!("{} (exec {exec_id})", container.container_id),
        file: config.file_for_messages().to_string(),
    };
    let mut plan = process::plan(process, &container.user, &who)?;
    capabilities::cap_defaults(&mut plan.capabilities, config);
    capabilities::check_within(&plan.capabilities, &container.process.capabilities, &who)?;

    let c = &container.process;
    if config.level == Level::Restricted {
        let other_user = (plan.uid, plan.gid) != (c.uid, c.gid);
        let extra_group =
            plan.additional_gids.iter().find(|g| **g != c.gid && !c.additional_gids.contains(g));
        if other_user || extra_group.is_some() {
            let (field, what) = match extra_group {
                Some(g) if !other_user => {
                    (format!("process.user.additionalGids[{g}]"), format!("group {g}"))
                }
                _ => (
                    format!("process.user.uid={},gid={}", plan.uid, plan.gid),
                    format!("user {}:{}", plan.uid, plan.gid),
                ),
            };
            return Err(who.refuse(
                field,
                Rule::ExecUser,
                format!(
                    "an exec as {what} differs from the container's user {}:{}, which is not \
                     allowed at level restricted",
                    c.uid, c.gid
                ),
                "level = \"baseline\"",
            ));
        }
    }
    for r in &plan.rlimits {
        if let Some(limit) = c.rlimits.iter().find(|l| l.resource == r.resource) {
            if r.hard > limit.hard {
                return Err(who.refuse_always(
                    format!("process.rlimits[{:?}].hard={}", r.resource, r.hard),
                    Rule::ExecRlimit,
                    format!("the hard limit is above the container's ({})", limit.hard),
                    "an exec can never hold more than its container",
                ));
            }
        }
    }
    plan.seccomp = c.seccomp.clone();
    plan.no_new_privileges = c.no_new_privileges || levels::no_new_privileges(process, config);
    plan.oom_score_adj = match (plan.oom_score_adj, c.oom_score_adj) {
        (Some(e), Some(k)) => Some(e.max(k)),
        (None, k) => k,
        (e, None) => e,
    };
    Ok(ExecPlan {
        container_id: container.container_id.clone(),
        exec_id: exec_id.to_string(),
        init_pid,
        cgroup_procs: container.cgroup_procs.clone(),
        process: plan,
    })
}

/// True when the plan shares the host's namespace of `kind` (it neither creates nor joins one).
pub fn shares_host(plan: &ContainerPlan, kind: NamespaceKind) -> bool {
    !plan.namespaces.iter().any(|n| n.kind == kind)
}
