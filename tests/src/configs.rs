//! Builders for the CRI configs a kubelet would send: a pod sandbox config and a container
//! config with kubelet-like defaults. They return the plain proto structs (all fields public),
//! so a test can change anything before sending them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};

/// The busybox test image (see `images`).
pub const BUSYBOX: &str = "moat.test/busybox:1";
/// The pause image, containerd's `sandbox_image`.
pub const PAUSE: &str = "moat.test/pause:1";

/// Environment variable set in every container the builders make: its value is the pod's
/// unique name, so leftover processes can be found by reading /proc/<pid>/environ.
pub const POD_TAG_ENV: &str = "MOAT_E2E_POD";

/// A name unique in this test process and across concurrent test processes:
/// `<base>-<pid>-<n>`, lowercase and DNS-label-like as Kubernetes wants.
pub fn unique_name(base: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let base: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    format!("{base}-{}-{n}", std::process::id())
}

/// A pod sandbox config like the kubelet's: metadata with `name` (use `unique_name`),
/// `log_directory`, pod-level namespaces, the given cgroup parent, no privileges.
pub fn pod_config(name: &str, log_directory: &Path, cgroup_parent: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "moat-e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.chars().take(63).collect(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        labels: HashMap::from([("moat-e2e".to_string(), "true".to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config: `image`, `command` (the entrypoint; empty keeps the image's),
/// log path `<name>.log` (relative to the pod's log directory), the pod tag env, a
/// kubelet-like unprivileged security context.
pub fn container_config(
    pod_name: &str,
    name: &str,
    image: &str,
    command: &[&str],
) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.to_string(), attempt: 0 }),
        image: Some(ImageSpec { image: image.to_string(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        envs: vec![KeyValue { key: POD_TAG_ENV.to_string(), value: pod_name.to_string() }],
        log_path: format!("{name}.log"),
        labels: HashMap::from([("moat-e2e".to_string(), "true".to_string())]),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                masked_paths: KUBELET_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: KUBELET_READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The masked paths a kubelet sends for a container with the default proc mount.
pub const KUBELET_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The read-only paths a kubelet sends for a container with the default proc mount.
pub const KUBELET_READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A volume: `host_path` mounted at `container_path`.
pub fn volume(host_path: &Path, container_path: &str, readonly: bool) -> Mount {
    Mount {
        host_path: host_path.to_string_lossy().into_owned(),
        container_path: container_path.to_string(),
        readonly,
        ..Default::default()
    }
}

/// The container's Linux security context, created if absent, for tests to adjust
/// (`run_as_user`, `capabilities`, `privileged`, `readonly_rootfs`, `seccomp`, ...).
pub fn security_context(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The pod's Linux sandbox security context, created if absent.
pub fn pod_security_context(config: &mut PodSandboxConfig) -> &mut LinuxSandboxSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Runs the container as `uid`:`gid`.
pub fn run_as(config: &mut ContainerConfig, uid: i64, gid: i64) {
    let sc = security_context(config);
    sc.run_as_user = Some(k8s_cri::v1::Int64Value { value: uid });
    sc.run_as_group = Some(k8s_cri::v1::Int64Value { value: gid });
}
