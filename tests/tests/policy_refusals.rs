//! moat's runtime policy through the CRI (issue 3, item 5): one refusal per rule, under the
//! test bed's moat config (level `baseline`, the default, only the bed's volumes dir allowed as
//! host paths; see `moat_e2e::moat_config`); the rules only `restricted` has (its four Pod
//! Security Standards controls, and exec-user) under a bed of its own at that level.
//!
//! Each test sends what a kubelet would send for the forbidden pod spec and asserts that the
//! CRI's error carries moat's one message, naming the pod and the container, the spec field,
//! the rule (what it says), and the config key that would allow it (or that none does). Then
//! that the refusal left nothing behind: no ID range in the pool's state dir, no cgroup, no
//! shim, no process, no mount, and that the pod (when it survives) still runs an ordinary
//! container.
//!
//! Runs under moat only: runc has no such policy (a privileged container or a host namespace
//! is simply granted there).
//!
//! Not testable through the CRI:
//! - "Unconfined where the level forbids it": CRI's `Unconfined` seccomp profile reaches the
//!   runtime as a spec without `linux.seccomp`, exactly like an unset profile, so there is
//!   nothing to refuse. moat stacks its baseline filter on such a container instead (unless
//!   `allow_unconfined_seccomp`), which `confinement::unconfined_seccomp_still_gets_the_baseline_filter`
//!   checks. A profile moat cannot enforce (notify actions) is refused: tested here.
//! - An exec asking for capabilities or privileges beyond its container: CRI's Exec and
//!   ExecSync carry only a command; containerd builds the exec's process from the
//!   container's. The user can be asked for through containerd's task API (`ctr tasks exec
//!   --user`), which is tested here.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, Device, NamespaceMode,
    PodSandboxConfig, SecurityProfile,
};
use moat_e2e::{configs, host, moat_config, Pod, TestBed};

moat_only_tests!(
    privileged_container_is_refused,
    host_network_is_refused,
    host_pid_is_refused,
    host_ipc_is_refused,
    host_device_is_refused,
    capability_beyond_the_level_is_refused,
    host_path_outside_the_allowlist_is_refused,
    protected_host_paths_are_refused_whatever_the_config,
    unsafe_sysctl_is_refused,
    non_namespaced_sysctl_is_refused_whatever_the_config,
    seccomp_profile_moat_cannot_enforce_is_refused,
    exec_as_another_user_than_its_container_is_refused,
    restricted_refuses_each_of_its_controls,
);

/// What the refusal message must say.
struct Expect<'a> {
    /// The spec field (or a distinctive part of it).
    field: &'a str,
    /// What the rule says (a distinctive part of the reason).
    rule: &'a str,
    /// The config key that governs it, as the message names it (`allow_host_network = true`),
    /// or the words saying no key does.
    key: &'a str,
}

/// Checks `message` against `expect`, and that it names each of `names` (pod, container).
fn check_message(message: &str, names: &[&str], expect: &Expect) -> Result<()> {
    ensure!(message.contains("moat refused"), "not moat's refusal: {message}");
    for name in names {
        ensure!(message.contains(name), "the refusal does not name {name:?}: {message}");
    }
    for (what, text) in [("field", expect.field), ("rule", expect.rule), ("config key", expect.key)]
    {
        ensure!(message.contains(text), "the refusal does not name the {what} {text:?}: {message}");
    }
    // ...and the config file the key is in.
    ensure!(
        !expect.key.contains(" = ") || message.contains("moat-config.toml"),
        "the refusal does not name the config file: {message}"
    );
    Ok(())
}

/// The pod sandbox id a refusal names in `of pod NAMESPACE/NAME (ID)`.
fn refused_pod_id(message: &str, pod_name: &str) -> Result<String> {
    let marker = format!("/{pod_name} (");
    let start = message
        .find(&marker)
        .map(|i| i + marker.len())
        .with_context(|| format!("no `{marker}ID)` in the refusal: {message}"))?;
    let id: String = message[start..].chars().take_while(|c| *c != ')').collect();
    ensure!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id:?} is not a sandbox id: {message}"
    );
    Ok(id)
}

/// The pool's range files (`<state_dir>/*.range`) that name `id`.
fn id_ranges_naming(bed: &TestBed, id: &str) -> Vec<PathBuf> {
    let dir = bed.layout().dir.join("idranges");
    let wanted = format!("pod={id}\n");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "range"))
                .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&wanted)))
                .collect()
        })
        .unwrap_or_default()
}

/// What is left on the host of `id` (a pod sandbox or container id): mounts, cgroups,
/// shims; plus ID ranges when `id` is a refused pod's.
fn leftovers(bed: &TestBed, id: &str, pod_refused: bool) -> Vec<String> {
    let mut left: Vec<String> =
        host::mounts_mentioning(&[id]).into_iter().map(|m| format!("mount: {m}")).collect();
    left.extend(
        host::cgroup_dirs_named(&[id]).into_iter().map(|d| format!("cgroup dir {}", d.display())),
    );
    left.extend(
        host::shims(&bed.layout().socket)
            .into_iter()
            .filter(|s| s.id == id)
            .map(|s| format!("shim process {} -id {}", s.pid, s.id)),
    );
    if pod_refused {
        left.extend(
            id_ranges_naming(bed, id).into_iter().map(|p| format!("ID range file {}", p.display())),
        );
    }
    left
}

/// Waits (up to 10 s) until nothing of `id` is left; fails naming what is.
fn nothing_left(bed: &TestBed, id: &str, pod_refused: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(bed, id, pod_refused);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the refusal of {id} left behind: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RunPodSandbox of `config` must be refused as `expect` says, and leave nothing.
fn pod_is_refused(bed: &TestBed, config: &PodSandboxConfig, expect: &Expect) -> Result<()> {
    let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let message = match bed.cri().runp(config, "moat") {
        Ok(id) => {
            let _ = bed.cri().stopp(&id);
            let _ = bed.cri().rmp(&id);
            bail!("RunPodSandbox {name} was accepted (pod {id})");
        }
        Err(e) => format!("{e:#}"),
    };
    check_message(&message, &[&format!("moat-e2e/{name}")], expect)?;
    let id = refused_pod_id(&message, &name)?;
    nothing_left(bed, &id, true)?;
    ensure!(!bed.cri().pods()?.contains(&id), "the refused pod {id} is still listed by the CRI");
    Ok(())
}

/// A pod config whose pod-level namespace `which` is the node's (the host's).
fn pod_with_host_namespace(bed: &TestBed, base: &str, which: &str) -> Result<PodSandboxConfig> {
    let mut config = bed.pod_config(base)?;
    let ns = configs::pod_security_context(&mut config)
        .namespace_options
        .get_or_insert_with(Default::default);
    let node = NamespaceMode::Node as i32;
    match which {
        "network" => ns.network = node,
        "pid" => ns.pid = node,
        "ipc" => ns.ipc = node,
        other => bail!("no namespace {other}"),
    }
    Ok(config)
}

/// CreateContainer + StartContainer of `config` in `pod` must be refused as `expect` says,
/// leave nothing of the container, and leave the pod able to run an ordinary container.
fn container_is_refused(pod: &Pod, config: &ContainerConfig, expect: &Expect) -> Result<()> {
    let bed = pod.bed;
    let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let refusal = match bed.cri().create(&pod.id, config, &pod.config) {
        // containerd 1.6 creates the task (where moat decides) in StartContainer.
        Ok(id) => match bed.cri().start(&id) {
            Ok(()) => bail!("container {name} ({id}) was started"),
            Err(e) => (Some(id), format!("{e:#}")),
        },
        Err(e) => (None, format!("{e:#}")),
    };
    let (id, message) = refusal;
    check_message(&message, &[&pod.name, &pod.id, &name], expect)?;
    if let Some(id) = &id {
        nothing_left(bed, id, false)?;
        let _ = bed.cri().rm(id);
    }
    // The pod keeps exactly its one range, and no container process runs.
    let ranges = id_ranges_naming(bed, &pod.id);
    ensure!(ranges.len() == 1, "the pod holds {} ID ranges: {ranges:?}", ranges.len());
    let tagged = host::processes_with_env(configs::POD_TAG_ENV, &pod.name);
    ensure!(tagged.is_empty(), "processes of the refused container run: {tagged:?}");
    // The ordinary thing still works in the same pod.
    let ok = pod.run(&configs::unique_name("ordinary"), &["sh", "-c", "echo still-fine"])?;
    let status = pod.wait_exited(&ok, Duration::from_secs(30))?;
    ensure!(status.exit_code == 0, "an ordinary container after the refusal: {status:?}");
    Ok(())
}

fn privileged_container_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    // containerd only runs privileged containers in privileged pods.
    let mut pod_config = bed.pod_config("privileged")?;
    configs::pod_security_context(&mut pod_config).privileged = true;
    let pod = bed.run_pod_with(pod_config, "moat")?;
    let mut config = pod.container_config("privileged", &["sleep", "3600"]);
    configs::security_context(&mut config).privileged = true;
    container_is_refused(
        &pod,
        &config,
        &Expect {
            field: "process.capabilities.bounding[CAP_SYS_ADMIN]",
            rule: "this is a privileged container",
            key: "allow_privileged = true",
        },
    )?;
    pod.teardown()
}

fn host_network_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let config = pod_with_host_namespace(bed, "hostnet", "network")?;
    pod_is_refused(
        bed,
        &config,
        &Expect {
            field: "linux.namespaces[network]",
            rule: "the host network namespace is not allowed at level baseline",
            key: "allow_host_network = true",
        },
    )
}

fn host_pid_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let config = pod_with_host_namespace(bed, "hostpid", "pid")?;
    pod_is_refused(
        bed,
        &config,
        &Expect {
            field: "linux.namespaces[pid]",
            rule: "the host pid namespace is not allowed at level baseline",
            key: "allow_host_pid = true",
        },
    )
}

fn host_ipc_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let config = pod_with_host_namespace(bed, "hostipc", "ipc")?;
    pod_is_refused(
        bed,
        &config,
        &Expect {
            field: "linux.namespaces[ipc]",
            rule: "the host IPC namespace is not allowed at level baseline",
            key: "allow_host_ipc = true",
        },
    )
}

/// The host's first block device node, from /proc/partitions.
fn host_disk() -> Result<String> {
    let text = std::fs::read_to_string("/proc/partitions")?;
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3))
        .map(|name| format!("/dev/{name}"))
        .find(|p| Path::new(p).exists())
        .context("no block device node for /proc/partitions")
}

fn host_device_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let disk = host_disk()?;
    let pod = bed.run_pod("hostdev", "moat")?;
    let mut config = pod.container_config("withdisk", &["sleep", "3600"]);
    config.devices.push(Device {
        container_path: "/dev/hostdisk".into(),
        host_path: disk.clone(),
        permissions: "r".into(),
    });
    container_is_refused(
        &pod,
        &config,
        &Expect {
            field: "].path=/dev/hostdisk",
            rule: "host device /dev/hostdisk",
            key: "allow_host_devices = true",
        },
    )?;
    pod.teardown()
}

fn capability_beyond_the_level_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    let pod = bed.run_pod("sysadmin", "moat")?;
    let mut config = pod.container_config("sysadmin", &["sleep", "3600"]);
    configs::security_context(&mut config).capabilities =
        Some(Capability { add_capabilities: vec!["SYS_ADMIN".into()], ..Default::default() });
    container_is_refused(
        &pod,
        &config,
        &Expect {
            field: "[CAP_SYS_ADMIN]",
            rule:
                "CAP_SYS_ADMIN is beyond the runtime default capabilities allowed at level baseline",
            key: "allowed_capabilities = [\"CAP_SYS_ADMIN\"]",
        },
    )?;
    pod.teardown()
}

fn host_path_outside_the_allowlist_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    // A host directory beside (not under) the allowed volumes dir.
    let dir = bed.layout().dir.join(configs::unique_name("not-allowed"));
    std::fs::create_dir_all(&dir)?;
    let pod = bed.run_pod("notallowed", "moat")?;
    let mut config = pod.container_config("outside", &["sleep", "3600"]);
    config.mounts.push(configs::volume(&dir, "/data", false));
    let shown = dir.display().to_string();
    container_is_refused(
        &pod,
        &config,
        &Expect {
            field: &format!("].source={shown}"),
            rule: &format!("host path {shown} is not under any allowed_host_paths entry"),
            key: &format!("allowed_host_paths = [\"{shown}\"]"),
        },
    )?;
    pod.teardown()
}

fn protected_host_paths_are_refused_whatever_the_config(
    bed: &TestBed,
    _handler: &str,
) -> Result<()> {
    // Paths no allowlist can open: the host's config, the runtime's sockets and state (here
    // the test containerd's own CRI state dir, which moat derives from what containerd hands
    // it). Only existing paths: containerd creates a missing volume source on the host.
    let cri_state = bed.layout().root.join("io.containerd.grpc.v1.cri");
    let pod = bed.run_pod("protected", "moat")?;
    for (i, path) in
        [Path::new("/etc"), Path::new("/run/containerd"), &cri_state].into_iter().enumerate()
    {
        if !path.exists() {
            continue;
        }
        let shown = path.display().to_string();
        let mut config = pod.container_config(&format!("protected{i}"), &["sleep", "3600"]);
        config.mounts.push(configs::volume(path, "/data", true));
        container_is_refused(
            &pod,
            &config,
            &Expect {
                field: &format!("].source={shown}"),
                rule: &format!("bind mounts of host path {shown} are never allowed"),
                key: "no setting allows it",
            },
        )
        .with_context(|| format!("volume {shown}"))?;
    }
    pod.teardown()
}

fn unsafe_sysctl_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    // Namespaced (IPC) but not in the safe set of the level.
    let mut config = bed.pod_config("sysctl")?;
    config
        .linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("kernel.msgmax".into(), "65536".into());
    pod_is_refused(
        bed,
        &config,
        &Expect {
            field: "linux.sysctl[kernel.msgmax]",
            rule: "sysctl kernel.msgmax is not in the safe set allowed at level baseline",
            key: "allowed_sysctls = [\"kernel.msgmax\"]",
        },
    )
}

fn non_namespaced_sysctl_is_refused_whatever_the_config(
    bed: &TestBed,
    _handler: &str,
) -> Result<()> {
    let mut config = bed.pod_config("hostsysctl")?;
    config
        .linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("kernel.panic".into(), "0".into());
    pod_is_refused(
        bed,
        &config,
        &Expect {
            field: "linux.sysctl[kernel.panic]",
            rule: "sysctl kernel.panic is not namespaced: setting it would change the host",
            key: "no setting allows it",
        },
    )
}

fn seccomp_profile_moat_cannot_enforce_is_refused(bed: &TestBed, _handler: &str) -> Result<()> {
    // A Localhost profile with a notify action: moat has no supervisor to answer it.
    let profile = bed.layout().dir.join(format!("{}.json", configs::unique_name("notify-profile")));
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    )?;
    let pod = bed.run_pod("notify", "moat")?;
    let mut config = pod.container_config("notify", &["sleep", "3600"]);
    configs::security_context(&mut config).seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: profile.display().to_string(),
    });
    container_is_refused(
        &pod,
        &config,
        &Expect {
            field: "linux.seccomp",
            rule: "the container's seccomp filter cannot be used",
            key: "use a seccomp profile without notify actions",
        },
    )?;
    pod.teardown()
}

/// A bed of its own whose moat config says `level = "restricted"`.
fn restricted_bed(test: &str, handler: &str, name: &str) -> Result<Option<TestBed>> {
    let Some(bed) = TestBed::private(test, handler, name)? else {
        return Ok(None);
    };
    moat_config::edit(bed.layout(), |text| {
        ensure!(text.contains("level = \"baseline\""), "the bed's moat config: {text}");
        Ok(text.replace("level = \"baseline\"", "level = \"restricted\""))
    })?;
    Ok(Some(bed))
}

/// A container config that meets Pod Security Standards restricted: `uid`, drop ALL
/// capabilities, the runtime's default seccomp profile, allowPrivilegeEscalation false.
fn restricted_container(pod: &Pod, name: &str, uid: i64) -> ContainerConfig {
    let mut config = pod.container_config(name, &["sleep", "3600"]);
    configs::run_as(&mut config, uid, uid);
    let sc = configs::security_context(&mut config);
    sc.capabilities =
        Some(Capability { drop_capabilities: vec!["ALL".into()], ..Default::default() });
    sc.seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        ..Default::default()
    });
    sc.no_new_privs = true;
    config
}

fn exec_as_another_user_than_its_container_is_refused(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    // The rule is `restricted`'s (since the levels mean what Kubernetes' do, the shared bed
    // runs `baseline`, which lets an exec choose any user of the pod): a bed of its own.
    let test = format!("exec_as_another_user_than_its_container_is_refused::{handler}");
    let Some(bed) = restricted_bed(&test, handler, "execuser")? else {
        return Ok(());
    };
    let pod = bed.run_pod("execuser", "moat")?;
    // A container running as uid 1000 whose exec asks for root, and one running as uid 2000
    // whose exec asks for uid 1000 (containerd's task API: CRI's exec has no user).
    let user = pod.create(&restricted_container(&pod, "user", 1000))?;
    pod.start(&user)?;
    let other = pod.create(&restricted_container(&pod, "other", 2000))?;
    pod.start(&other)?;
    for (c, asked, asked_ids, own_ids) in
        [(&user, "0", "0:0", "1000:1000"), (&other, "1000", "1000:1000", "2000:2000")]
    {
        let exec_id = format!("as-user-{asked}");
        let message = match bed.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            &exec_id,
            "--user",
            asked,
            &c.id,
            "id",
            "-u",
        ]) {
            Ok(out) => bail!("an exec as uid {asked} in a {own_ids} container ran: {out:?}"),
            Err(e) => format!("{e:#}"),
        };
        let (uid, gid) = asked_ids.split_once(':').unwrap_or_default();
        // (An exec's refusal names the pod and the container by their ids.)
        check_message(
            &message,
            &[&pod.id, &c.id, &exec_id],
            &Expect {
                field: &format!("process.user.uid={uid},gid={gid}"),
                rule: &format!(
                    "an exec as user {asked_ids} differs from the container's user {own_ids}, \
                     which is not allowed at level restricted"
                ),
                key: "level = \"baseline\"",
            },
        )?;
    }
    // The containers' own users still exec.
    for (c, want) in [(&user, "1000\n"), (&other, "2000\n")] {
        let out = pod.exec(c, &["id", "-u"])?;
        ensure!(out.stdout == want, "an ordinary exec after the refusal: {out:?}");
    }
    pod.teardown()
}

fn restricted_refuses_each_of_its_controls(_shared: &TestBed, handler: &str) -> Result<()> {
    // Each container breaks one control of PSS restricted and meets the others; the refusal
    // names the spec field CRI turned the securityContext into, the rule and the key.
    let test = format!("restricted_refuses_each_of_its_controls::{handler}");
    let Some(bed) = restricted_bed(&test, handler, "restricted")? else {
        return Ok(());
    };
    let pod = bed.run_pod("restricted", "moat")?;
    type Adjust = fn(&mut ContainerConfig);
    let cases: [(&str, Adjust, Expect); 4] = [
        (
            "root",
            |c| configs::run_as(c, 0, 0),
            Expect {
                field: "process.user.uid=0",
                rule: "running as root (uid 0) is not allowed at level restricted",
                key: "level = \"baseline\"",
            },
        ),
        (
            "caps",
            |c| configs::security_context(c).capabilities = None,
            Expect {
                field: "process.capabilities.bounding[CAP_AUDIT_WRITE]",
                rule: "CAP_AUDIT_WRITE is not allowed at level restricted (drop ALL capabilities",
                key: "level = \"baseline\" or allowed_capabilities = [\"CAP_AUDIT_WRITE\"]",
            },
        ),
        (
            "unconfined",
            |c| configs::security_context(c).seccomp = None,
            Expect {
                field: "linux.seccomp",
                rule: "a container without a seccomp profile is not allowed at level restricted",
                key: "level = \"baseline\"",
            },
        ),
        (
            "escalate",
            |c| configs::security_context(c).no_new_privs = false,
            Expect {
                field: "process.noNewPrivileges",
                rule: "privilege escalation is not allowed at level restricted",
                key: "level = \"baseline\"",
            },
        ),
    ];
    for (name, adjust, expect) in cases {
        let mut config = restricted_container(&pod, name, 1000);
        adjust(&mut config);
        let message = match bed.cri().create(&pod.id, &config, &pod.config) {
            Ok(id) => {
                let started = bed.cri().start(&id);
                let _ = bed.cri().rm(&id);
                match started {
                    Ok(()) => bail!("container {name} was started at level restricted"),
                    Err(e) => format!("{e:#}"),
                }
            }
            Err(e) => format!("{e:#}"),
        };
        check_message(&message, &[&pod.id, name], &expect).with_context(|| name.to_string())?;
    }
    // A container that meets every control runs.
    let ok = pod.create(&restricted_container(&pod, "compliant", 1000))?;
    pod.start(&ok)?;
    let out = pod.exec(&ok, &["id", "-u"])?;
    ensure!(out.stdout == "1000\n", "the compliant container: {out:?}");
    pod.teardown()
}
