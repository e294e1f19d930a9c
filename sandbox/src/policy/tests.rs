//! derive_container / derive_exec over specs shaped like the ones containerd 1.6's CRI writes.

use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};
use serde_json::{json, Value};

use super::*;
use crate::plan::{
    CapabilityPlan, IdMapping, MountKind, NamespaceAction, NamespacePlan, RlimitPlan,
    RlimitResource, SeccompAction, UserNamespaceAction, UserNamespacePlan,
};

const POD: &str = "pod0123";
const CTR: &str = "ctr4567";
const UID: &str = "uid-89ab";
const CRI_ROOT: &str = "/var/lib/containerd/io.containerd.grpc.v1.cri";
const CRI_STATE: &str = "/run/containerd/io.containerd.grpc.v1.cri";
const HOST_BASE: u32 = 1_114_112;

fn default_caps() -> Value {
    json!(capabilities::RUNTIME_DEFAULT.to_vec())
}

fn masked() -> Value {
    json!([
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware"
    ])
}

fn readonly() -> Value {
    json!([
        "/proc/asound",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger"
    ])
}

/// An application container as CRI 1.6 writes it for a pod that asks for nothing special.
fn cri_container() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 101, "gid": 101, "additionalGids": [101, 0], "umask": 18},
            "args": ["nginx", "-g", "daemon off;"],
            "env": ["PATH=/usr/bin:/bin", "HOSTNAME=web"],
            "cwd": "/srv",
            "consoleSize": {"height": 40, "width": 120},
            "capabilities": {
                "bounding": default_caps(), "effective": default_caps(), "permitted": default_caps()
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            "noNewPrivileges": false,
            "oomScoreAdj": 1000
        },
        "root": {"path": "rootfs"},
        "hostname": "web",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/etc-hosts"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/dev/termination-log", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/containers/web/0f1e"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/hostname", "type": "bind", "source": format!("{CRI_ROOT}/sandboxes/{POD}/hostname"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": format!("{CRI_ROOT}/sandboxes/{POD}/resolv.conf"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/dev/shm", "type": "bind", "source": format!("{CRI_STATE}/sandboxes/{POD}/shm"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected/kube-api-access-x"), "options": ["rbind", "rprivate", "ro"]}
        ],
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "web",
            "io.kubernetes.cri.sandbox-id": POD,
            "io.kubernetes.cri.sandbox-name": "shop",
            "io.kubernetes.cri.sandbox-namespace": "tenant-a",
            "io.kubernetes.cri.sandbox-uid": UID
        },
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "cgroupsPath": "/kubepods/besteffort/pod89ab/ctr4567",
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc", "path": "/proc/4242/ns/ipc"},
                {"type": "uts", "path": "/proc/4242/ns/uts"},
                {"type": "mount"},
                {"type": "network", "path": "/proc/4242/ns/net"}
            ],
            "maskedPaths": masked(),
            "readonlyPaths": readonly()
        }
    })
}

/// The pod's sandbox (pause) container as CRI 1.6 writes it.
fn cri_sandbox() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 65535, "gid": 65535},
            "args": ["/pause"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": default_caps(), "effective": default_caps(), "permitted": default_caps()
            },
            "noNewPrivileges": true,
            "oomScoreAdj": -998
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "shop",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/dev/shm", "type": "bind", "source": format!("{CRI_STATE}/sandboxes/{POD}/shm"), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
        ],
        "annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": POD,
            "io.kubernetes.cri.sandbox-name": "shop",
            "io.kubernetes.cri.sandbox-namespace": "tenant-a",
            "io.kubernetes.cri.sandbox-uid": UID,
            "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/x"
        },
        "linux": {
            "sysctl": {"net.ipv4.ip_local_port_range": "1024 65000"},
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/cni-1234"}
            ],
            "maskedPaths": masked(),
            "readonlyPaths": readonly()
        }
    })
}

fn spec(v: Value) -> Spec {
    serde_json::from_value(v).expect("test spec parses")
}

fn user_ns(action: UserNamespaceAction) -> UserNamespacePlan {
    let m = vec![IdMapping { container_id: 0, host_id: HOST_BASE, size: 65_536 }];
    UserNamespacePlan { action, uid_mappings: m.clone(), gid_mappings: m }
}

fn ctx(is_sandbox: bool) -> PodContext {
    PodContext {
        pod_id: POD.into(),
        container_id: if is_sandbox { POD.into() } else { CTR.into() },
        pod_uid: Some(UID.into()),
        is_sandbox,
        rootfs: PathBuf::from(
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/ctr4567/rootfs",
        ),
        rootfs_mounts: vec![crate::plan::RootfsMount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec!["lowerdir=/l1:/l2".into(), "upperdir=/u".into(), "workdir=/w".into()],
        }],
        containerd: Default::default(),
        user: user_ns(if is_sandbox {
            UserNamespaceAction::Create
        } else {
            UserNamespaceAction::JoinPod
        }),
        pod_shares_host: Vec::new(),
    }
}

fn derive(v: Value) -> Result<ContainerPlan, Refusal> {
    derive_container(&spec(v), &Config::default(), &ctx(false))
}

fn derive_with(v: Value, config: &Config) -> Result<ContainerPlan, Refusal> {
    derive_container(&spec(v), config, &ctx(false))
}

/// Asserts the refusal names the pod, the container, the field, the rule text and the remedy.
fn assert_refusal(r: &Refusal, rule: Rule, field: &str, reason: &str, remedy: &str) {
    let msg = r.to_string();
    assert_eq!(r.rule(), rule, "{msg}");
    assert!(msg.contains("tenant-a/shop (pod0123)"), "pod missing: {msg}");
    assert!(
        msg.contains("web (ctr4567)") || msg.contains("(the pod's sandbox)"),
        "container missing: {msg}"
    );
    assert!(msg.contains(field), "field {field:?} missing: {msg}");
    assert!(msg.contains(reason), "reason {reason:?} missing: {msg}");
    assert!(msg.contains(remedy), "remedy {remedy:?} missing: {msg}");
}

fn refused(v: Value, config: &Config) -> Refusal {
    match derive_with(v, config) {
        Ok(plan) => panic!("spec was accepted: {plan:#?}"),
        Err(r) => r,
    }
}

fn mount<'a>(plan: &'a ContainerPlan, dest: &str) -> &'a crate::plan::MountPlan {
    plan.mounts
        .iter()
        .find(|m| m.destination.as_path() == std::path::Path::new(dest))
        .unwrap_or_else(|| panic!("no mount at {dest}: {:#?}", plan.mounts))
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn cri_container_maps_every_field() {
    let plan = derive(cri_container()).expect("a default CRI container must pass");
    assert_eq!(plan.container_id, CTR);
    assert_eq!(plan.pod_id, POD);
    assert_eq!(plan.rootfs, ctx(false).rootfs);
    assert_eq!(plan.rootfs_mounts, ctx(false).rootfs_mounts);
    assert!(!plan.readonly_rootfs);
    assert_eq!(plan.user, user_ns(UserNamespaceAction::JoinPod));
    assert_eq!(plan.hostname.as_deref(), Some("web"));
    assert!(plan.cgroup_procs.is_empty());

    let p = &plan.process;
    assert_eq!(p.args, vec!["nginx", "-g", "daemon off;"]);
    assert_eq!(p.env, vec!["PATH=/usr/bin:/bin", "HOSTNAME=web"]);
    assert_eq!(p.cwd, PathBuf::from("/srv"));
    assert_eq!((p.uid, p.gid), (101, 101));
    assert_eq!(p.additional_gids, vec![101, 0]);
    assert_eq!(p.umask, Some(18));
    assert!(!p.terminal);
    assert_eq!(p.console_size, Some((40, 120)));
    assert_eq!(
        p.rlimits,
        vec![RlimitPlan { resource: RlimitResource::Nofile, soft: 1024, hard: 4096 }]
    );
    // The runtime default set, capped: CAP_NET_RAW is removed at every level.
    let d: Vec<String> =
        sorted(&capabilities::RUNTIME_DEFAULT).into_iter().filter(|c| c != "CAP_NET_RAW").collect();
    assert_eq!(
        p.capabilities,
        CapabilityPlan {
            bounding: d.clone(),
            effective: d.clone(),
            permitted: d,
            ..Default::default()
        }
    );
    assert!(!p.no_new_privileges, "noNewPrivileges false in the spec: escalation at baseline");
    assert_eq!(p.oom_score_adj, Some(1000));
    assert_eq!(p.seccomp, vec![crate::seccomp::baseline()], "no spec filter: baseline only");

    assert_eq!(
        plan.namespaces,
        vec![
            NamespacePlan {
                kind: NamespaceKind::Network,
                action: NamespaceAction::Join("/proc/4242/ns/net".into())
            },
            NamespacePlan { kind: NamespaceKind::Pid, action: NamespaceAction::Create },
            NamespacePlan {
                kind: NamespaceKind::Ipc,
                action: NamespaceAction::Join("/proc/4242/ns/ipc".into())
            },
            NamespacePlan {
                kind: NamespaceKind::Uts,
                action: NamespaceAction::Join("/proc/4242/ns/uts".into())
            },
            NamespacePlan { kind: NamespaceKind::Cgroup, action: NamespaceAction::Create },
        ]
    );

    assert_eq!(plan.mounts.len(), 12);
    let proc_ = mount(&plan, "/proc");
    assert_eq!(proc_.kind, MountKind::Proc);
    assert!(proc_.nosuid && proc_.nodev && proc_.noexec);
    let dev = mount(&plan, "/dev");
    assert_eq!(dev.kind, MountKind::Tmpfs);
    assert_eq!(
        dev.data.as_deref(),
        Some("mode=755,size=65536k"),
        "container IDs; rootfs translates"
    );
    let pts = mount(&plan, "/dev/pts");
    assert_eq!(pts.kind, MountKind::Devpts);
    assert!(!pts.nodev, "devpts must allow its device nodes");
    assert_eq!(pts.data.as_deref(), Some("newinstance,ptmxmode=0666,mode=0620,gid=5"));
    assert_eq!(mount(&plan, "/dev/mqueue").kind, MountKind::Mqueue);
    let sys = mount(&plan, "/sys");
    assert_eq!(sys.kind, MountKind::Sysfs);
    assert!(sys.readonly);
    let cg = mount(&plan, "/sys/fs/cgroup");
    assert_eq!(cg.kind, MountKind::Cgroup);
    assert!(cg.readonly);
    let hosts = mount(&plan, "/etc/hosts");
    assert_eq!(
        hosts.kind,
        MountKind::Bind {
            source: format!("/var/lib/kubelet/pods/{UID}/etc-hosts").into(),
            recursive: true,
            idmap: true,
            from_host: false
        }
    );
    assert!(!hosts.readonly && hosts.nosuid && hosts.nodev);
    assert!(mount(&plan, "/var/run/secrets/kubernetes.io/serviceaccount").readonly);
    assert!(matches!(mount(&plan, "/dev/shm").kind, MountKind::Bind { .. }));
    assert!(matches!(mount(&plan, "/etc/resolv.conf").kind, MountKind::Bind { .. }));

    for p in devices::MASKED {
        assert!(plan.masked_paths.contains(&PathBuf::from(p)), "{p} not masked");
    }
    for p in devices::READONLY {
        assert!(plan.readonly_paths.contains(&PathBuf::from(p)), "{p} not read-only");
    }
    assert!(
        plan.readonly_paths.contains(&PathBuf::from("/proc/asound")),
        "the spec's own entries stay"
    );
    assert!(plan.sysctls.is_empty(), "an app container gets no sandbox sysctls");
}

#[test]
fn cri_sandbox_gets_its_namespaces_and_port_sysctls() {
    let plan = derive_container(&spec(cri_sandbox()), &Config::default(), &ctx(true))
        .expect("a CRI sandbox must pass");
    assert!(plan.readonly_rootfs, "root.readonly");
    assert_eq!(plan.user.action, UserNamespaceAction::Create);
    assert_eq!(plan.hostname.as_deref(), Some("shop"));
    assert_eq!(
        plan.namespaces,
        vec![
            NamespacePlan {
                kind: NamespaceKind::Network,
                action: NamespaceAction::Join("/var/run/netns/cni-1234".into())
            },
            NamespacePlan { kind: NamespaceKind::Pid, action: NamespaceAction::Create },
            NamespacePlan { kind: NamespaceKind::Ipc, action: NamespaceAction::Create },
            NamespacePlan { kind: NamespaceKind::Uts, action: NamespaceAction::Create },
            NamespacePlan { kind: NamespaceKind::Cgroup, action: NamespaceAction::Create },
        ]
    );
    assert_eq!(
        plan.sysctls.get("net.ipv4.ip_unprivileged_port_start").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        plan.sysctls.get("net.ipv4.ping_group_range").map(String::as_str),
        Some("0 2147483647")
    );
    assert_eq!(
        plan.sysctls.get("net.ipv4.ip_local_port_range").map(String::as_str),
        Some("1024 65000")
    );
    assert_eq!(plan.process.oom_score_adj, Some(-998), "requested as is; the spawn side clamps");
    let shm = mount(&plan, "/dev/shm");
    assert!(shm.readonly);
}

#[test]
fn a_sandbox_spec_value_wins_over_moats_sysctl_default() {
    let mut v = cri_sandbox();
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "1024"});
    let plan = derive_container(&spec(v), &Config::default(), &ctx(true)).expect("passes");
    assert_eq!(plan.sysctls["net.ipv4.ip_unprivileged_port_start"], "1024");
}

#[test]
fn context_helpers_read_cri_annotations() {
    let s = spec(cri_sandbox());
    assert!(PodContext::spec_is_sandbox(&s));
    assert_eq!(PodContext::spec_pod_id(&s, "x"), POD);
    assert_eq!(PodContext::spec_pod_uid(&s).as_deref(), Some(UID));
    let c = spec(cri_container());
    assert!(!PodContext::spec_is_sandbox(&c));
    let mut bare = cri_container();
    bare["annotations"] = json!({});
    assert_eq!(PodContext::spec_pod_id(&spec(bare), "self"), "self");
}

// ---- namespaces ----

fn without_namespace(mut v: Value, kind: &str) -> Value {
    let list = v["linux"]["namespaces"].as_array_mut().expect("namespaces");
    list.retain(|n| n["type"] != kind);
    v
}

#[test]
fn host_network_is_refused() {
    let v = without_namespace(without_namespace(cri_container(), "network"), "uts");
    let r = refused(v, &Config::default());
    assert_refusal(
        &r,
        Rule::HostNetwork,
        "linux.namespaces[network]",
        "the host network namespace is not allowed at level baseline",
        "set allow_host_network = true in /etc/moat/config.toml",
    );
}

#[test]
fn host_network_when_allowed_shares_host_and_sets_no_hostname() {
    let config = Config { allow_host_network: true, ..Config::default() };
    let mut v = without_namespace(without_namespace(cri_sandbox(), "network"), "uts");
    v["linux"]["sysctl"] = json!({});
    let plan = derive_container(&spec(v.clone()), &config, &ctx(true)).expect("allowed");
    assert!(shares_host(&plan, NamespaceKind::Network));
    assert!(shares_host(&plan, NamespaceKind::Uts));
    assert_eq!(plan.hostname, None, "a hostname would rename the host");
    assert!(plan.sysctls.is_empty(), "no sysctl may be written into the host's network namespace");
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_local_port_range": "1024 65000"});
    let r = derive_container(&spec(v), &config, &ctx(true)).expect_err("net sysctl in host netns");
    assert_refusal(
        &r,
        Rule::Sysctl,
        "linux.sysctl[net.ipv4.ip_local_port_range]",
        "shares the host network namespace",
        "no setting",
    );
}

#[test]
fn host_pid_is_refused() {
    let r = refused(without_namespace(cri_container(), "pid"), &Config::default());
    assert_refusal(
        &r,
        Rule::HostPid,
        "linux.namespaces[pid]",
        "host pid namespace",
        "allow_host_pid = true",
    );
    let config = Config { allow_host_pid: true, ..Config::default() };
    let plan = derive_with(without_namespace(cri_container(), "pid"), &config).expect("allowed");
    assert!(shares_host(&plan, NamespaceKind::Pid));
}

#[test]
fn host_ipc_is_refused() {
    let r = refused(without_namespace(cri_container(), "ipc"), &Config::default());
    assert_refusal(
        &r,
        Rule::HostIpc,
        "linux.namespaces[ipc]",
        "host IPC namespace",
        "allow_host_ipc = true",
    );
}

#[test]
fn host_ipc_when_allowed_accepts_the_hosts_dev_shm() {
    let mut v = without_namespace(cri_container(), "ipc");
    v["mounts"][10]["source"] = json!("/dev/shm");
    let config = Config { allow_host_ipc: true, ..Config::default() };
    let plan = derive_with(v.clone(), &config).expect("allowed");
    assert_eq!(
        mount(&plan, "/dev/shm").kind,
        MountKind::Bind {
            source: "/dev/shm".into(),
            recursive: true,
            idmap: false,
            from_host: false
        }
    );
    // Without host IPC, the host's /dev/shm is a denied host path.
    v["linux"]["namespaces"].as_array_mut().expect("ns").push(json!({"type": "ipc"}));
    let r = refused(v, &config);
    assert_refusal(
        &r,
        Rule::HostPath,
        "mounts[10].source=/dev/shm",
        "never allowed",
        "no setting allows it",
    );
}

#[test]
fn a_hostipc_pods_container_joining_the_sandboxs_ipc_shares_the_hosts() {
    // containerd 1.6: a hostIPC pod's container joins the sandbox's IPC namespace by path
    // (the host's) and binds the host's /dev/shm.
    let mut v = cri_container();
    let shm = v["mounts"]
        .as_array_mut()
        .expect("mounts")
        .iter_mut()
        .find(|m| m["destination"] == "/dev/shm")
        .expect("shm mount");
    shm["source"] = json!("/dev/shm");
    let mut context = ctx(false);
    context.pod_shares_host = vec![NamespaceKind::Ipc];
    let config = Config { allow_host_ipc: true, ..Config::default() };
    let plan = derive_container(&spec(v.clone()), &config, &context).expect("host IPC allowed");
    assert!(shares_host(&plan, NamespaceKind::Ipc), "{:?}", plan.namespaces);
    assert!(matches!(mount(&plan, "/dev/shm").kind, MountKind::Bind { .. }));
    // Without allow_host_ipc (a config changed under a running pod) it is refused.
    let r = derive_container(&spec(v.clone()), &Config::default(), &context).expect_err("refused");
    assert_eq!(r.rule(), Rule::HostIpc, "{r}");
    // A pod whose sandbox has its own IPC namespace: the host's /dev/shm stays refused.
    let r = derive_container(&spec(v), &config, &ctx(false)).expect_err("not a hostIPC pod");
    assert_eq!(r.rule(), Rule::HostPath, "{r}");
}

#[test]
fn time_namespace_is_refused() {
    let mut v = cri_container();
    v["linux"]["namespaces"].as_array_mut().expect("ns").push(json!({"type": "time"}));
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "linux.namespaces[time]", "not supported", "remove");
}

#[test]
fn user_namespace_comes_from_the_context_not_the_spec() {
    let mut v = cri_container();
    v["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user", "path": "/proc/4242/ns/user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 3_000_000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 3_000_000, "size": 65536}]);
    let mut c = ctx(false);
    c.user.action = UserNamespaceAction::JoinPath("/run/userns/pod".into());
    let plan = derive_container(&spec(v), &Config::default(), &c).expect("passes");
    assert_eq!(plan.user, c.user);
}

// ---- user namespaces handed over by containerd 2.x (`hostUsers: false`) ----

/// A container spec as containerd 2.x writes it for a `hostUsers: false` pod: the pod's user
/// namespace path and the mappings kubelet chose.
fn handed_over(host_id: u64, size: u64) -> (Value, PodContext) {
    let mut v = cri_container();
    v["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user", "path": "/proc/4242/ns/user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host_id, "size": size}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host_id, "size": size}]);
    let mut c = ctx(false);
    c.user = spec_user_namespace(&spec(v.clone())).expect("handed over");
    (v, c)
}

/// Outside moat's default pool, 65536-aligned, as kubelet allocates.
const KUBELET_RANGE: u64 = 65_536 * 20;

#[test]
fn handed_over_mapping_onto_host_root_is_refused() {
    let (v, c) = handed_over(0, 65_536);
    let r = derive_container(&spec(v), &Config::default(), &c).expect_err("host root");
    assert_refusal(
        &r,
        Rule::IdMapping,
        "linux.uidMappings[0]",
        "host root (host ID 0)",
        "hostUsers",
    );
    // Input: host IDs of the host's own users (below 65536).
    let (v, c) = handed_over(1000, 65_536);
    let r = derive_container(&spec(v), &Config::default(), &c).expect_err("host users");
    assert_refusal(&r, Rule::IdMapping, "linux.uidMappings[0]", "below 65536", "hostUsers");
    // Input: a gid mapping onto host root while the uid mapping is fine.
    let (mut v, _) = handed_over(KUBELET_RANGE, 65_536);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    let mut c = ctx(false);
    c.user = spec_user_namespace(&spec(v.clone())).expect("handed over");
    let r = derive_container(&spec(v), &Config::default(), &c).expect_err("gid root");
    assert_refusal(&r, Rule::IdMapping, "linux.gidMappings[0]", "host ID 0", "hostUsers");
}

#[test]
fn handed_over_mapping_overlapping_moats_pool_is_refused() {
    let config = Config::default();
    let pool_base = u64::from(config.userns.base);
    for host_id in [pool_base, pool_base + 65_536 * 7, pool_base - 1000] {
        let (v, c) = handed_over(host_id, 65_536);
        let r = derive_container(&spec(v), &config, &c).expect_err("overlaps the pool");
        assert_refusal(
            &r,
            Rule::IdMapping,
            "linux.uidMappings[0]",
            "moat's ID pool",
            "userns.base",
        );
    }
}

#[test]
fn handed_over_clean_mapping_is_accepted() {
    let (v, c) = handed_over(KUBELET_RANGE, 65_536);
    let plan = derive_container(&spec(v.clone()), &Config::default(), &c).expect("clean");
    assert_eq!(plan.user, c.user);
    assert_eq!(plan.user.host_uid(0), Some(KUBELET_RANGE as u32));
    // Beside a live pod's range (adjacent, not overlapping): accepted too.
    let live = [(
        "other-pod".to_string(),
        crate::userns::pool::IdRange { host_base: KUBELET_RANGE as u32 + 65_536, size: 65_536 },
    )];
    check_handed_over_user(&spec(v), &Config::default(), &c, &live).expect("no overlap");
}

#[test]
fn handed_over_mapping_overlapping_a_live_pod_is_refused() {
    let (v, c) = handed_over(KUBELET_RANGE, 65_536);
    let live = [(
        "other-pod".to_string(),
        crate::userns::pool::IdRange { host_base: KUBELET_RANGE as u32 + 4096, size: 65_536 },
    )];
    let r = check_handed_over_user(&spec(v.clone()), &Config::default(), &c, &live)
        .expect_err("overlaps a live pod");
    assert_refusal(&r, Rule::IdMapping, "linux.uidMappings[0]", "pod other-pod", "hostUsers");
    // The pod's own range (a restarted shim finds it recorded) is no conflict.
    let own = [(POD.to_string(), live[0].1)];
    check_handed_over_user(&spec(v), &Config::default(), &c, &own).expect("its own range");
}

// ---- namespace paths: only the pod's own ----

fn with_namespace_path(mut v: Value, kind: &str, path: &str) -> (Value, usize) {
    let list = v["linux"]["namespaces"].as_array_mut().expect("ns");
    list.retain(|n| n["type"] != kind);
    list.push(json!({"type": kind, "path": path}));
    let i = list.len() - 1;
    (v, i)
}

#[test]
fn a_namespace_path_that_is_not_the_pods_is_refused() {
    let cases = [
        ("network", "/proc/1/ns/net"),
        ("network", "/proc/self/ns/net"),
        ("network", "/proc/thread-self/ns/net"),
        ("network", "/var/run/netns/../../proc/1/ns/net"),
        ("network", "/etc/netns-file"),
        ("network", "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/x"),
        ("network", "/run/containerd/io.containerd.grpc.v1.cri/netns/../netns2/x"),
        ("network", "proc/4242/ns/net"),
        ("network", "/proc/4242/ns/ipc"),
        ("network", "/proc/4242/ns/net/"),
        ("ipc", "/var/run/netns/cni-1234"),
        ("ipc", "/proc/4242/task/4242/ns/ipc"),
        ("uts", "/proc/0042x/ns/uts"),
        ("pid", "/proc/1/ns/pid"),
        ("cgroup", "/proc/1/ns/cgroup"),
    ];
    for (kind, path) in cases {
        let (v, i) = with_namespace_path(cri_container(), kind, path);
        let r = refused(v, &Config::default());
        assert_refusal(
            &r,
            Rule::NamespacePath,
            &format!("linux.namespaces[{i}].path"),
            path,
            "only the pod's own namespaces",
        );
    }
    // Input: the host's user namespace, handed over as the pod's.
    let (v, i) = with_namespace_path(cri_container(), "user", "/proc/1/ns/user");
    let r = derive_container(&spec(v), &Config::default(), &ctx(false)).expect_err("host userns");
    assert_refusal(
        &r,
        Rule::NamespacePath,
        &format!("linux.namespaces[{i}].path"),
        "/proc/1/ns/user",
        "",
    );
}

#[test]
fn the_pods_own_namespace_paths_are_accepted() {
    for (kind, path) in [
        ("network", "/proc/4242/ns/net"),
        ("network", "/var/run/netns/cni-1234"),
        ("network", "/run/netns/cni-5678"),
        ("network", "/run/containerd/io.containerd.grpc.v1.cri/netns/cni-9abc"),
        ("ipc", "/proc/4242/ns/ipc"),
        ("uts", "/proc/4242/ns/uts"),
        ("pid", "/proc/4242/ns/pid"),
    ] {
        let (v, _) = with_namespace_path(cri_container(), kind, path);
        derive(v).unwrap_or_else(|r| panic!("{kind} {path}: {r}"));
    }
    derive_container(&spec(cri_sandbox()), &Config::default(), &ctx(true)).expect("sandbox");
}

#[test]
fn proc_namespace_paths_must_be_the_pods_sandbox() {
    let c = ctx(false);
    check_namespace_owner(&spec(cri_container()), &Config::default(), &c, Some(4242))
        .expect("the sandbox's namespaces");
    // Input: another process's namespaces (another pod's sandbox, a host daemon).
    let r = check_namespace_owner(&spec(cri_container()), &Config::default(), &c, Some(5151))
        .expect_err("another process");
    assert_refusal(
        &r,
        Rule::NamespacePath,
        "linux.namespaces[1].path",
        "/proc/4242/ns/ipc",
        "5151",
    );
    // Input: a sandbox spec that joins a process's namespaces: a sandbox has no pod to join.
    let (v, i) = with_namespace_path(cri_sandbox(), "ipc", "/proc/4242/ns/ipc");
    let r = check_namespace_owner(&spec(v), &Config::default(), &ctx(true), None)
        .expect_err("sandbox joining a process");
    assert_refusal(
        &r,
        Rule::NamespacePath,
        &format!("linux.namespaces[{i}].path"),
        "/proc/4242",
        "",
    );
    // The sandbox's CNI network namespace is its own.
    check_namespace_owner(&spec(cri_sandbox()), &Config::default(), &ctx(true), None)
        .expect("CNI netns");
}

// ---- privileged and capabilities ----

/// CRI 1.6's privileged container: all capabilities, no masked/readonly paths, host devices,
/// writable /sys, no seccomp.
fn cri_privileged() -> Value {
    let mut v = cri_container();
    let all = json!(capabilities::ALL.to_vec());
    v["process"]["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    v["linux"]["maskedPaths"] = json!([]);
    v["linux"]["readonlyPaths"] = json!([]);
    v["mounts"][4]["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
    v["linux"]["devices"] = json!([
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}
    ]);
    v
}

#[test]
fn privileged_is_detected() {
    assert!(is_privileged(&spec(cri_privileged())));
    assert!(!is_privileged(&spec(cri_container())));
    // All capabilities but masks in place: "add ALL", not privileged (refused per capability).
    let mut v = cri_privileged();
    v["linux"]["maskedPaths"] = masked();
    assert!(!is_privileged(&spec(v)));
    // Unmasked /proc without CAP_SYS_ADMIN: not privileged.
    let mut v = cri_container();
    v["linux"]["maskedPaths"] = json!([]);
    v["linux"]["readonlyPaths"] = json!([]);
    assert!(!is_privileged(&spec(v)));
}

#[test]
fn privileged_is_refused() {
    let r = refused(cri_privileged(), &Config::default());
    assert_refusal(
        &r,
        Rule::Privileged,
        "process.capabilities.bounding[CAP_SYS_ADMIN]",
        "privileged container",
        "allow_privileged = true",
    );
}

#[test]
fn privileged_when_allowed_keeps_moats_masks_and_host_devices_out() {
    let config = Config { allow_privileged: true, ..Config::default() };
    let plan = derive_with(cri_privileged(), &config).expect("allowed");
    assert!(plan.process.capabilities.bounding.contains(&"CAP_SYS_ADMIN".to_string()));
    assert!(plan.masked_paths.contains(&PathBuf::from("/proc/kcore")));
    assert!(plan.readonly_paths.contains(&PathBuf::from("/proc/sys")));
    assert!(mount(&plan, "/sys").readonly, "/sys stays read-only");
    assert!(!plan
        .mounts
        .iter()
        .any(|m| m.destination.starts_with("/dev/sda") || m.destination.starts_with("/dev/kvm")));
    assert_eq!(plan.process.seccomp, vec![crate::seccomp::baseline()]);
}

#[test]
fn capability_beyond_the_default_set_is_refused() {
    let mut v = cri_container();
    v["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .expect("caps")
        .push(json!("CAP_SYS_ADMIN"));
    let r = refused(v.clone(), &Config::default());
    assert_refusal(
        &r,
        Rule::Capability,
        "process.capabilities.bounding[CAP_SYS_ADMIN]",
        "beyond the runtime default capabilities allowed at level baseline",
        "allowed_capabilities = [\"CAP_SYS_ADMIN\"]",
    );
    let config = Config { allowed_capabilities: vec!["sys_admin".into()], ..Config::default() };
    derive_with(v, &config).expect("allowed by allowed_capabilities");
}

#[test]
fn capability_subsets_pass() {
    let mut v = cri_container();
    v["process"]["capabilities"] = json!({"bounding": ["CAP_NET_BIND_SERVICE"], "effective": ["CAP_NET_BIND_SERVICE"], "permitted": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"], "inheritable": ["CAP_NET_BIND_SERVICE"]});
    let plan = derive(v).expect("drop ALL + add NET_BIND_SERVICE");
    assert_eq!(plan.process.capabilities.ambient, vec!["CAP_NET_BIND_SERVICE"]);
    let mut v = cri_container();
    v["process"]["capabilities"] = json!({});
    let plan = derive(v).expect("no capabilities at all");
    assert_eq!(plan.process.capabilities, CapabilityPlan::default());
}

// ---- levels ----

fn restricted() -> Config {
    Config { level: Level::Restricted, ..Config::default() }
}

/// An application container that meets PSS restricted: uid 101, drop ALL + NET_BIND_SERVICE,
/// a seccomp profile, noNewPrivileges.
fn restricted_container() -> Value {
    let mut v = cri_container();
    let nbs = json!(["CAP_NET_BIND_SERVICE"]);
    v["process"]["capabilities"] = json!({"bounding": nbs, "effective": nbs, "permitted": nbs});
    v["process"]["noNewPrivileges"] = json!(true);
    v["linux"]["seccomp"] = spec_filter();
    v
}

#[test]
fn the_default_level_is_baseline_and_runs_what_restricted_refuses() {
    assert_eq!(Config::default().level, Level::Baseline);
    // Input: root, the default capabilities, no seccomp profile, escalation allowed.
    let mut v = cri_container();
    v["process"]["user"] = json!({"uid": 0, "gid": 0});
    let plan = derive(v).expect("baseline runs a root container of the default shape");
    assert!(!plan.process.no_new_privileges);
    assert_eq!(plan.process.seccomp, vec![crate::seccomp::baseline()], "the floor's filter");
    let plan = derive_with(restricted_container(), &restricted()).expect("meets restricted");
    assert!(plan.process.no_new_privileges);
    assert_eq!(plan.process.capabilities.bounding, vec!["CAP_NET_BIND_SERVICE"]);
}

#[test]
fn every_restricted_row_has_a_test_below() {
    let controls: Vec<&str> = levels::RESTRICTED.iter().map(|r| r.control).collect();
    assert_eq!(
        controls,
        ["Running as Non-root user", "Capabilities", "Seccomp", "Privilege Escalation"]
    );
}

#[test]
fn restricted_refuses_running_as_root() {
    let mut v = restricted_container();
    v["process"]["user"] = json!({"uid": 0, "gid": 101});
    let r = refused(v.clone(), &restricted());
    assert_refusal(
        &r,
        Rule::RunAsNonRoot,
        "process.user.uid=0",
        "running as root (uid 0) is not allowed at level restricted",
        "level = \"baseline\"",
    );
    derive(v).expect("baseline runs root");
}

#[test]
fn restricted_refuses_any_capability_but_net_bind_service() {
    // Input: the runtime default set (what a pod gets that drops nothing).
    let mut v = restricted_container();
    v["process"]["capabilities"] = cri_container()["process"]["capabilities"].clone();
    let r = refused(v.clone(), &restricted());
    assert_refusal(
        &r,
        Rule::Capability,
        "process.capabilities.bounding[CAP_AUDIT_WRITE]",
        "CAP_AUDIT_WRITE is not allowed at level restricted (drop ALL capabilities",
        "level = \"baseline\" or allowed_capabilities = [\"CAP_AUDIT_WRITE\"]",
    );
    derive(v).expect("baseline runs the default set");
    // Input: only an ambient capability beyond NET_BIND_SERVICE.
    let mut v = restricted_container();
    v["process"]["capabilities"]["ambient"] = json!(["CAP_CHOWN"]);
    let r = refused(v.clone(), &restricted());
    assert_refusal(&r, Rule::Capability, "ambient[CAP_CHOWN]", "restricted", "baseline");
    // Input: no capabilities at all, and NET_BIND_SERVICE in every set.
    let mut v = restricted_container();
    v["process"]["capabilities"] = json!({});
    derive_with(v, &restricted()).expect("no capabilities");
    let mut v = restricted_container();
    let nbs = json!(["CAP_NET_BIND_SERVICE"]);
    v["process"]["capabilities"] = json!({"bounding": nbs, "effective": nbs, "permitted": nbs, "ambient": nbs, "inheritable": nbs});
    derive_with(v, &restricted()).expect("NET_BIND_SERVICE everywhere");
    // Input: a capability the operator allows is accepted at restricted too.
    let mut v = restricted_container();
    v["process"]["capabilities"]["bounding"] = json!(["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]);
    let config = Config { allowed_capabilities: vec!["NET_ADMIN".into()], ..restricted() };
    derive_with(v, &config).expect("allowed_capabilities");
}

#[test]
fn restricted_refuses_a_container_without_a_seccomp_profile() {
    let mut v = restricted_container();
    v["linux"].as_object_mut().expect("linux").remove("seccomp");
    let r = refused(v.clone(), &restricted());
    assert_refusal(
        &r,
        Rule::SeccompProfile,
        "linux.seccomp",
        "a container without a seccomp profile is not allowed at level restricted",
        "level = \"baseline\"",
    );
    derive(v).expect("baseline runs it under moat's filter");
}

#[test]
fn restricted_refuses_privilege_escalation() {
    for nnp in [json!(false), Value::Null] {
        let mut v = restricted_container();
        v["process"]["noNewPrivileges"] = nnp;
        let r = refused(v.clone(), &restricted());
        assert_refusal(
            &r,
            Rule::PrivilegeEscalation,
            "process.noNewPrivileges",
            "privilege escalation is not allowed at level restricted",
            "level = \"baseline\"",
        );
        let plan = derive(v).expect("baseline allows escalation");
        assert!(!plan.process.no_new_privileges);
    }
}

#[test]
fn allow_privilege_escalation_false_sets_no_new_privs_on_every_process() {
    let config = Config { allow_privilege_escalation: false, ..Config::default() };
    let plan = derive_with(cri_container(), &config).expect("baseline");
    assert!(plan.process.no_new_privileges);
    let mut p = cri_exec();
    p["noNewPrivileges"] = json!(false);
    let mut container = container_plan();
    container.process.no_new_privileges = false;
    let exec = derive_exec(&exec_process(p), &container, &config, "e1", 1).expect("exec");
    assert!(exec.process.no_new_privileges);
}

#[test]
fn the_sandbox_is_not_checked_against_restricted() {
    // The pause container as CRI writes it: the default capabilities, no seccomp profile.
    let plan = derive_container(&spec(cri_sandbox()), &restricted(), &ctx(true))
        .expect("the runtime's sandbox container");
    assert!(plan.process.no_new_privileges);
}

// ---- mounts ----

fn with_mount(mut v: Value, m: Value) -> Value {
    v["mounts"].as_array_mut().expect("mounts").push(m);
    v
}

fn bind(source: &str, dest: &str) -> Value {
    json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "rw"]})
}

#[test]
fn denied_host_path_is_refused_whatever_the_config() {
    let config = Config { allowed_host_paths: vec!["/etc".into()], ..Config::default() };
    let r = refused(with_mount(cri_container(), bind("/etc", "/host-etc")), &config);
    assert_refusal(
        &r,
        Rule::HostPath,
        "mounts[12].source=/etc",
        "bind mounts of host path /etc are never allowed",
        "no setting allows it",
    );
    let r = refused(
        with_mount(cri_container(), bind("/run/containerd/containerd.sock", "/s")),
        &config,
    );
    assert_refusal(
        &r,
        Rule::HostPath,
        "mounts[12].source=/run/containerd/containerd.sock",
        "never allowed",
        "no setting",
    );
    let r = refused(with_mount(cri_container(), bind("/var", "/v")), &config);
    assert_refusal(
        &r,
        Rule::HostPath,
        "mounts[12].source=/var",
        "it is or contains /var/",
        "no setting",
    );
}

#[test]
fn unlisted_host_path_is_refused_until_allowed() {
    let v = with_mount(cri_container(), bind("/srv/data/../data/web", "/data"));
    let r = refused(v.clone(), &Config::default());
    assert_refusal(
        &r,
        Rule::HostPath,
        "mounts[12].source=/srv/data/../data/web",
        "host path /srv/data/web is not under any allowed_host_paths entry",
        "set allowed_host_paths = [\"/srv/data/web\"] in /etc/moat/config.toml",
    );
    let config = Config { allowed_host_paths: vec!["/srv/data".into()], ..Config::default() };
    let plan = derive_with(v, &config).expect("allowed");
    let m = mount(&plan, "/data");
    // An operator's host directory keeps its on-disk owners: no idmap.
    assert_eq!(
        m.kind,
        MountKind::Bind {
            source: "/srv/data/web".into(),
            recursive: true,
            idmap: false,
            from_host: false
        }
    );
    assert!(m.nosuid && m.nodev);
}

#[test]
fn an_allowed_host_path_is_idmapped_when_its_entry_says_so() {
    let v = with_mount(cri_container(), bind("/srv/data/web", "/data"));
    let config = Config {
        allowed_host_paths: vec![AllowedHostPath { path: "/srv/data".into(), idmap: true }],
        ..Config::default()
    };
    let plan = derive_with(v, &config).expect("allowed");
    let m = mount(&plan, "/data");
    assert!(matches!(m.kind, MountKind::Bind { idmap: true, .. }), "{m:?}");
    assert!(m.nosuid && m.nodev, "idmapped or not, host binds stay nosuid and nodev");
}

fn bind_with(source: &str, dest: &str, propagation: &str) -> Value {
    json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", propagation, "rw"]})
}

#[test]
fn host_to_container_propagation_makes_the_bind_a_slave_of_the_host() {
    let config = Config { allowed_host_paths: vec!["/srv/data".into()], ..Config::default() };
    for (option, from_host) in [("rslave", true), ("slave", true), ("rprivate", false)] {
        let v = with_mount(cri_container(), bind_with("/srv/data/web", "/data", option));
        let plan = derive_with(v, &config).expect("allowed");
        let m = mount(&plan, "/data");
        assert!(
            matches!(m.kind, MountKind::Bind { from_host: f, .. } if f == from_host),
            "{option}: {m:?}"
        );
    }
}

#[test]
fn bidirectional_propagation_is_refused_whatever_the_config() {
    let config = Config { allowed_host_paths: vec!["/srv/data".into()], ..Config::default() };
    for option in ["rshared", "shared"] {
        let v = with_mount(cri_container(), bind_with("/srv/data/web", "/data", option));
        let r = refused(v, &config);
        assert_refusal(
            &r,
            Rule::MountPropagation,
            "mounts[12].options[rshared]",
            "Bidirectional mount propagation of /srv/data/web would let the pod's mounts reach \
             the host's mount namespace",
            "no setting allows it; use mountPropagation HostToContainer (rslave) or None",
        );
    }
}

#[test]
fn another_pods_cri_files_are_refused() {
    let v =
        with_mount(cri_container(), bind(&format!("{CRI_ROOT}/sandboxes/otherpod/hostname"), "/x"));
    let r = refused(v, &Config::default());
    assert_refusal(
        &r,
        Rule::HostPath,
        "sandboxes/otherpod/hostname",
        "never allowed",
        "no setting",
    );
    let v = with_mount(cri_container(), bind("/var/lib/kubelet/pods/other-uid/volumes/x", "/x"));
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::HostPath, "pods/other-uid/volumes", "never allowed", "no setting");
}

#[test]
fn unsupported_mount_type_is_refused() {
    let m = json!({"destination": "/mnt", "type": "ext4", "source": "/dev/sda1", "options": []});
    let r = refused(with_mount(cri_container(), m), &Config::default());
    assert_refusal(
        &r,
        Rule::MountType,
        "mounts[12].type=ext4",
        "mount type \"ext4\" at /mnt is not supported",
        "use a volume type",
    );
}

#[test]
fn relative_mount_destination_is_refused() {
    let m = json!({"destination": "mnt", "type": "tmpfs", "source": "tmpfs"});
    let r = refused(with_mount(cri_container(), m), &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "mounts[12].destination=mnt", "absolute", "fix");
}

#[test]
fn sysfs_and_cgroup_are_always_read_only() {
    let mut v = cri_container();
    v["mounts"][4]["options"] = json!(["rw"]);
    v["mounts"][5]["options"] = json!(["rw"]);
    let plan = derive(v).expect("passes");
    assert!(mount(&plan, "/sys").readonly && mount(&plan, "/sys/fs/cgroup").readonly);
}

#[test]
fn tmpfs_ids_outside_the_pod_range_are_refused() {
    let m = json!({"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": ["uid=33", "gid=33", "mode=700", "noexec"]});
    let plan = derive(with_mount(cri_container(), m)).expect("passes");
    let c = mount(&plan, "/cache");
    assert_eq!(c.data.as_deref(), Some("uid=33,gid=33,mode=700"));
    assert!(c.noexec && c.nosuid && c.nodev);
    let m = json!({"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": ["uid=70000"]});
    let r = refused(with_mount(cri_container(), m), &Config::default());
    assert_refusal(
        &r,
        Rule::InvalidSpec,
        "mounts[12].options[uid=70000]",
        "not an ID inside the pod's user namespace",
        "userns.size",
    );
}

#[test]
fn force_readonly_rootfs_adds_writable_tmp_and_run() {
    let config = Config { force_readonly_rootfs: true, ..Config::default() };
    let plan = derive_with(cri_container(), &config).expect("passes");
    assert!(plan.readonly_rootfs);
    let tmp = mount(&plan, "/tmp");
    assert_eq!(tmp.kind, MountKind::Tmpfs);
    assert!(!tmp.readonly);
    assert_eq!(tmp.data.as_deref(), Some("mode=1777"));
    assert_eq!(mount(&plan, "/run").kind, MountKind::Tmpfs);
    // A spec that mounts /tmp itself keeps its own.
    let m = json!({"destination": "/tmp", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~empty-dir/t"), "options": ["rbind"]});
    let plan = derive_with(with_mount(cri_container(), m), &config).expect("passes");
    assert_eq!(
        plan.mounts
            .iter()
            .filter(|m| m.destination.as_path() == std::path::Path::new("/tmp"))
            .count(),
        1
    );
}

// ---- devices ----

#[test]
fn host_device_is_refused_until_allowed() {
    let mut v = cri_container();
    v["linux"]["devices"] = json!([
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}
    ]);
    let r = refused(v.clone(), &Config::default());
    assert_refusal(
        &r,
        Rule::HostDevice,
        "linux.devices[1].path=/dev/kvm",
        "host device /dev/kvm (10:232) is not allowed at level baseline",
        "allow_host_devices = true",
    );
    let config = Config { allow_host_devices: true, ..Config::default() };
    let plan = derive_with(v, &config).expect("allowed");
    let kvm = mount(&plan, "/dev/kvm");
    assert_eq!(
        kvm.kind,
        MountKind::Bind {
            source: "/dev/kvm".into(),
            recursive: false,
            idmap: false,
            from_host: false
        }
    );
    assert!(!kvm.nodev);
    assert!(
        !plan.mounts.iter().any(|m| m.destination.as_path() == std::path::Path::new("/dev/null")),
        "standard devices come from moat"
    );
}

#[test]
fn a_standard_device_name_with_other_numbers_is_a_host_device() {
    let mut v = cri_container();
    v["linux"]["devices"] = json!([{"path": "/dev/null", "type": "b", "major": 8, "minor": 0}]);
    let r = refused(v, &Config::default());
    assert_refusal(
        &r,
        Rule::HostDevice,
        "linux.devices[0].path=/dev/null",
        "(8:0)",
        "allow_host_devices",
    );
}

// ---- sysctls ----

fn with_sysctl(name: &str, value: &str) -> Value {
    let mut v = cri_container();
    v["linux"]["sysctl"] = json!({ name: value });
    v
}

#[test]
fn safe_sysctl_passes() {
    let plan = derive(with_sysctl("net/ipv4/tcp_syncookies", "1")).expect("safe");
    assert_eq!(plan.sysctls["net.ipv4.tcp_syncookies"], "1");
}

#[test]
fn unsafe_namespaced_sysctl_is_refused_until_allowed() {
    let r = refused(with_sysctl("net.core.somaxconn", "1024"), &Config::default());
    assert_refusal(
        &r,
        Rule::Sysctl,
        "linux.sysctl[net.core.somaxconn]",
        "sysctl net.core.somaxconn is not in the safe set allowed at level baseline",
        "allowed_sysctls = [\"net.core.somaxconn\"]",
    );
    let config = Config { allowed_sysctls: vec!["net.core.*".into()], ..Config::default() };
    derive_with(with_sysctl("net.core.somaxconn", "1024"), &config).expect("allowed by prefix");
}

#[test]
fn host_wide_sysctl_is_refused_whatever_the_config() {
    let config =
        Config { allowed_sysctls: vec!["kernel.*".into(), "vm.*".into()], ..Config::default() };
    let r = refused(with_sysctl("kernel.panic", "1"), &config);
    assert_refusal(
        &r,
        Rule::Sysctl,
        "linux.sysctl[kernel.panic]",
        "is not namespaced",
        "no setting allows it",
    );
    let r = refused(with_sysctl("vm.overcommit_memory", "1"), &config);
    assert_refusal(
        &r,
        Rule::Sysctl,
        "linux.sysctl[vm.overcommit_memory]",
        "not namespaced",
        "no setting",
    );
}

#[test]
fn sysctl_of_a_shared_host_namespace_is_refused() {
    let config = Config { allow_host_ipc: true, ..Config::default() };
    let mut v = without_namespace(with_sysctl("kernel.shm_rmid_forced", "1"), "ipc");
    v["mounts"][10]["source"] = json!("/dev/shm");
    let r = refused(v, &config);
    assert_refusal(
        &r,
        Rule::Sysctl,
        "linux.sysctl[kernel.shm_rmid_forced]",
        "shares the host IPC namespace",
        "no setting",
    );
}

// ---- seccomp ----

fn spec_filter() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
    })
}

#[test]
fn spec_filter_is_stacked_on_the_baseline() {
    let mut v = cri_container();
    v["linux"]["seccomp"] = spec_filter();
    let plan = derive(v).expect("passes");
    assert_eq!(plan.process.seccomp.len(), 2);
    assert_eq!(plan.process.seccomp[0], crate::seccomp::baseline());
    assert_eq!(plan.process.seccomp[1].name, "spec");
    assert_eq!(plan.process.seccomp[1].default_action, SeccompAction::Errno(1));
}

#[test]
fn notify_filter_is_refused() {
    let mut v = cri_container();
    let mut f = spec_filter();
    f["syscalls"][0]["action"] = json!("SCMP_ACT_NOTIFY");
    v["linux"]["seccomp"] = f;
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::Seccomp, "linux.seccomp", "SCMP_ACT_NOTIFY", "notify");
}

#[test]
fn allow_unconfined_seccomp_drops_the_baseline_only_without_a_spec_filter() {
    let config = Config { allow_unconfined_seccomp: true, ..Config::default() };
    let plan = derive_with(cri_container(), &config).expect("passes");
    assert!(plan.process.seccomp.is_empty());
    let mut v = cri_container();
    v["linux"]["seccomp"] = spec_filter();
    let plan = derive_with(v, &config).expect("passes");
    assert_eq!(plan.process.seccomp.len(), 2);
}

// ---- process ----

#[test]
fn user_outside_the_pod_range_is_refused() {
    let mut v = cri_container();
    v["process"]["user"]["uid"] = json!(70000);
    let r = refused(v, &Config::default());
    assert_refusal(
        &r,
        Rule::InvalidSpec,
        "process.user.uid=70000",
        "outside the pod's user namespace",
        "userns.size",
    );
    let mut v = cri_container();
    v["process"]["user"]["additionalGids"] = json!([5, 90000]);
    let r = refused(v, &Config::default());
    assert_refusal(
        &r,
        Rule::InvalidSpec,
        "process.user.additionalGids[90000]",
        "outside",
        "userns.size",
    );
}

#[test]
fn empty_args_and_relative_cwd_are_refused() {
    let mut v = cri_container();
    v["process"]["args"] = json!([]);
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "process.args", "nothing to execute", "command");
    let mut v = cri_container();
    v["process"]["cwd"] = json!("srv");
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "process.cwd=srv", "absolute", "fix");
}

#[test]
fn hooks_are_refused() {
    let mut v = cri_container();
    v["hooks"] = json!({"createRuntime": [{"path": "/usr/bin/nvidia-hook"}]});
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "hooks", "would run as host root", "remove");
}

#[test]
fn spec_without_process_is_refused() {
    let mut v = cri_container();
    v.as_object_mut().expect("object").remove("process");
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::InvalidSpec, "process", "no process", "fix");
}

// ---- exec ----

fn exec_process(v: Value) -> Process {
    serde_json::from_value(v).expect("exec process parses")
}

fn cri_exec() -> Value {
    let mut p = cri_container()["process"].clone();
    p["args"] = json!(["sh", "-c", "id"]);
    p["terminal"] = json!(true);
    p
}

fn container_plan() -> ContainerPlan {
    let mut plan = derive(cri_container()).expect("container passes");
    plan.cgroup_procs = vec!["/sys/fs/cgroup/pids/kubepods/x/cgroup.procs".into()];
    plan
}

fn assert_exec_refusal(r: &Refusal, rule: Rule, field: &str, reason: &str, remedy: &str) {
    let msg = r.to_string();
    assert_eq!(r.rule(), rule, "{msg}");
    assert!(msg.contains("container ctr4567 (exec e1) of pod pod0123"), "{msg}");
    assert!(msg.contains(field) && msg.contains(reason) && msg.contains(remedy), "{msg}");
}

#[test]
fn exec_inherits_the_containers_ceiling() {
    let container = container_plan();
    let mut p = cri_exec();
    p["noNewPrivileges"] = json!(false);
    let exec =
        derive_exec(&exec_process(p), &container, &Config::default(), "e1", 4242).expect("passes");
    assert_eq!(exec.container_id, CTR);
    assert_eq!(exec.exec_id, "e1");
    assert_eq!(exec.init_pid, 4242);
    assert_eq!(exec.cgroup_procs, container.cgroup_procs);
    assert_eq!(exec.process.args, vec!["sh", "-c", "id"]);
    assert!(exec.process.terminal);
    assert!(!exec.process.no_new_privileges, "the container lets its processes escalate");
    // A container with no_new_privs: its execs have it whatever they ask.
    let mut nnp = container.clone();
    nnp.process.no_new_privileges = true;
    let mut p = cri_exec();
    p["noNewPrivileges"] = json!(false);
    let exec = derive_exec(&exec_process(p), &nnp, &Config::default(), "e1", 1).expect("passes");
    assert!(exec.process.no_new_privileges);
    assert_eq!(exec.process.seccomp, container.process.seccomp);
    assert_eq!(exec.process.capabilities, container.process.capabilities);
}

#[test]
fn exec_with_more_capabilities_is_refused() {
    let mut p = cri_exec();
    p["capabilities"]["effective"].as_array_mut().expect("caps").push(json!("CAP_SYS_PTRACE"));
    let r = derive_exec(&exec_process(p), &container_plan(), &Config::default(), "e1", 1)
        .expect_err("more caps");
    assert_exec_refusal(
        &r,
        Rule::Capability,
        "process.capabilities.effective[CAP_SYS_PTRACE]",
        "does not hold",
        "never hold more",
    );
}

#[test]
fn exec_as_another_user_is_refused_at_restricted_only() {
    let mut p = cri_exec();
    p["user"] = json!({"uid": 0, "gid": 0});
    let r = derive_exec(&exec_process(p.clone()), &container_plan(), &restricted(), "e1", 1)
        .expect_err("root exec");
    assert_exec_refusal(
        &r,
        Rule::ExecUser,
        "process.user.uid=0,gid=0",
        "differs from the container's user 101:101",
        "level = \"baseline\"",
    );
    let exec = derive_exec(&exec_process(p), &container_plan(), &Config::default(), "e1", 1)
        .expect("baseline");
    assert_eq!(exec.process.uid, 0);
    let mut p = cri_exec();
    p["user"]["additionalGids"] = json!([101, 4]);
    let r = derive_exec(&exec_process(p), &container_plan(), &restricted(), "e1", 1)
        .expect_err("extra group");
    assert_exec_refusal(
        &r,
        Rule::ExecUser,
        "process.user.additionalGids[4]",
        "group 4",
        "baseline",
    );
}

#[test]
fn exec_with_higher_rlimit_is_refused() {
    let mut p = cri_exec();
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1024}]);
    let r = derive_exec(&exec_process(p), &container_plan(), &Config::default(), "e1", 1)
        .expect_err("rlimit");
    assert_exec_refusal(
        &r,
        Rule::ExecRlimit,
        "process.rlimits[Nofile].hard=1048576",
        "above the container's (4096)",
        "never hold more",
    );
}

#[test]
fn exec_oom_score_is_never_below_the_containers() {
    let mut p = cri_exec();
    p["oomScoreAdj"] = json!(-1000);
    let exec =
        derive_exec(&exec_process(p), &container_plan(), &Config::default(), "e1", 1).expect("ok");
    assert_eq!(exec.process.oom_score_adj, Some(1000));
}

#[test]
fn cri_files_under_derived_containerd_dirs_are_bound_with_an_empty_config() {
    // Input: containerd with root and state under /srv/ctd (no config key names them), the
    // pod's CRI files there.
    let mut c = ctx(false);
    c.containerd = crate::policy::ContainerdDirs {
        root: Some("/srv/ctd/root".into()),
        state: Some("/srv/ctd/state".into()),
    };
    let cri = "/srv/ctd/root/io.containerd.grpc.v1.cri";
    let mut base = cri_container();
    base["mounts"] = json!([]);
    let v = with_mount(base.clone(), bind(&format!("{cri}/sandboxes/{POD}/hosts"), "/etc/hosts"));
    let plan = derive_container(&spec(v.clone()), &Config::default(), &c).expect("accepted");
    assert!(plan.mounts.iter().any(|m| m.destination == std::path::Path::new("/etc/hosts")));
    // Without the derivation (containerd's defaults) the same path is not a pod file.
    let r = refused(v, &Config::default());
    assert_refusal(&r, Rule::HostPath, "/srv/ctd/root", "allowed_host_paths", "allowed_host_paths");
    // Another pod's file under the derived root stays refused.
    let v = with_mount(base, bind(&format!("{cri}/sandboxes/other/hosts"), "/x"));
    let r = derive_container(&spec(v), &Config::default(), &c).expect_err("refused");
    assert_refusal(&r, Rule::HostPath, "sandboxes/other/hosts", "never allowed", "no setting");
}
