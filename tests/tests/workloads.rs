//! Workloads run inside the boundary as under runc (issue 12): what the operator allowed is
//! honoured inside the pod's user namespace, and the CRI conformance specs (critest v1.26,
//! which is not packaged here) that failed under moat although the operator allowed them are
//! written out as Rust tests.
//!
//! Every test runs under both handlers. Where moat keeps a documented difference (the pod's
//! namespaces belong to the host's user namespace, so a capability granted to the pod does not
//! administer them: `docs/security.md`, "Namespaces the pod does not own"), the test asserts
//! that the operation fails under moat and works under runc, and `docs/cri-verbs.md` lists it
//! as an expected conformance failure.
//!
//! Tests that need a permissive moat config (host IPC, added capabilities, an idmapped host
//! path) run on a bed of their own whose config is the shared bed's with keys added.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{attack_volume, sh, sleeper, ATTACK};
use k8s_cri::v1::{Capability, ContainerConfig, MountPropagation, NamespaceMode};
use moat_e2e::moat_config::{self, toml_str};
use moat_e2e::{configs, e2e_tests, Container, Pod, TestBed};

e2e_tests!(
    setuid_binary_raises_to_the_pods_root_only,
    mount_propagation_host_to_container_and_none,
    host_ipc_shares_the_hosts_dev_shm,
    host_path_volume_readable_with_an_idmapped_entry,
    hostname_with_sys_admin_is_an_expected_failure,
    bridge_with_net_admin_is_an_expected_failure,
);

/// Keys added to the bed's moat config by `permissive_bed`.
const PERMISSIVE: &str = "allow_host_ipc = true\n\
                          allowed_capabilities = [\"CAP_SYS_ADMIN\", \"CAP_NET_ADMIN\"]\n";

/// A bed of its own whose moat config adds `PERMISSIVE` and, with `idmap_volumes`, allows the
/// bed's volumes dir with an ID mapping (`{ path = ..., idmap = true }`).
fn permissive_bed(test: &str, handler: &str, idmap_volumes: bool) -> Result<Option<TestBed>> {
    let name = test.split("::").next().unwrap_or(test);
    let Some(bed) = TestBed::private(test, handler, &name.replace('_', "-"))? else {
        return Ok(None);
    };
    moat_config::edit(bed.layout(), |mut text| {
        if idmap_volumes {
            let volumes = toml_str(&bed.layout().volumes);
            let plain = format!("allowed_host_paths = [{volumes}]");
            ensure!(text.contains(&plain), "no `{plain}` in the bed's moat config:\n{text}");
            text = text.replace(
                &plain,
                &format!("allowed_host_paths = [{{ path = {volumes}, idmap = true }}]"),
            );
        }
        Ok(moat_config::with_top_level_keys(text, PERMISSIVE))
    })?;
    Ok(Some(bed))
}

/// Runs a host command, failing with its output.
fn host(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A host mount made by a test, unmounted (lazily, with everything below it) when dropped.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg("-l").arg(&self.0).status();
    }
}

/// The `Uid:` line of /proc/<pid>/status: real, effective, saved, filesystem.
fn host_uids(pid: i32) -> Result<[u32; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("Uid:")).context("no Uid: line")?;
    let ids: Vec<u32> =
        line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    ids.try_into().map_err(|v| anyhow::anyhow!("Uid: line {v:?}"))
}

/// The host pids of the pod's processes whose command line is `cmdline`.
fn pod_processes(pod: &Pod, cmdline: &[&str]) -> Vec<i32> {
    moat_e2e::host::processes_with_env(configs::POD_TAG_ENV, &pod.name)
        .into_iter()
        .filter(|pid| moat_e2e::host::cmdline(*pid) == cmdline)
        .collect()
}

fn setuid_binary_raises_to_the_pods_root_only(bed: &TestBed, handler: &str) -> Result<()> {
    // A root container that leaves allowPrivilegeEscalation unset (CRI: no_new_privs false),
    // allowed at level baseline: container root makes a setuid-root copy of the attack
    // program, and uid 1000 (busybox su) runs it.
    let pod = bed.run_pod("setuid", handler)?;
    let attack_dir = attack_volume(bed)?;
    let c = sleeper(&pod, "escalate", &attack_dir, |_| {})?;
    let out = sh(
        &pod,
        &c,
        &format!(
            "cp {ATTACK} /tmp/suid && chmod 4755 /tmp/suid && \
             su -s /bin/sh user -c '/tmp/suid ids 120 > /tmp/ids.out 2>&1 &'"
        ),
    )?;
    ensure!(out.exit_code == 0, "making and running the setuid binary: {out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let out = sh(&pod, &c, "cat /tmp/ids.out")?;
        if let Some(line) = out.stdout.lines().find(|l| l.starts_with("ids: ")) {
            break line.to_string();
        }
        if Instant::now() > deadline {
            bail!("the setuid binary printed nothing: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        line.contains("uid=1000 euid=0 "),
        "under {handler} the setuid-root binary did not make uid 1000 container root: {line}"
    );
    // On the host: what that root is.
    let pids = pod_processes(&pod, &["/tmp/suid", "ids", "120"]);
    let [pid] = pids[..] else { bail!("the setuid process on the host: {pids:?}") };
    let [real, effective, saved, _] = host_uids(pid)?;
    eprintln!("{handler}: host uids of the setuid process: real {real} effective {effective}");
    match handler {
        "moat" => {
            let pods_root = common::host_uid(pid, 0)?;
            ensure!(
                effective == pods_root && saved == pods_root,
                "the effective uid {effective} is not the pod's root {pods_root}"
            );
            ensure!(
                effective >= 65_536 && real == common::host_uid(pid, 1000)?,
                "the pod's root is host uid {effective}, real uid {real}"
            );
        }
        _ => ensure!(effective == 0, "under runc the setuid binary made host uid {effective}"),
    }

    // allowPrivilegeEscalation: false: the setuid bit is ignored, under both handlers.
    let nnp = sleeper(&pod, "no-escalate", &attack_dir, |config| {
        configs::security_context(config).no_new_privs = true;
    })?;
    let out = sh(
        &pod,
        &nnp,
        &format!(
            "cp {ATTACK} /tmp/suid && chmod 4755 /tmp/suid && su -s /bin/sh user -c '/tmp/suid ids'"
        ),
    )?;
    ensure!(
        out.stdout.contains("uid=1000 euid=1000 "),
        "under {handler} with no_new_privs the setuid bit worked: {out:?}"
    );
    pod.teardown()
}

/// A container `sleep 3600` with `dir` at /vol, propagation `propagation`.
fn with_volume(
    pod: &Pod,
    name: &str,
    dir: &Path,
    propagation: MountPropagation,
) -> ContainerConfig {
    let mut config = pod.container_config(name, &["sleep", "3600"]);
    let mut volume = configs::volume(dir, "/vol", false);
    volume.propagation = propagation as i32;
    config.mounts.push(volume);
    config
}

fn mount_propagation_host_to_container_and_none(bed: &TestBed, handler: &str) -> Result<()> {
    // critest "mount propagation": the host directory is a shared mount (containerd requires
    // it for HostToContainer), a container binds it with each propagation, then the host
    // mounts something below it.
    let dir = bed.volume_dir("propagation")?;
    std::fs::create_dir(dir.join("sub"))?;
    host("mount", &["--bind", &dir.to_string_lossy(), &dir.to_string_lossy()])?;
    let _bind = HostMount(dir.clone());
    host("mount", &["--make-rshared", &dir.to_string_lossy()])?;

    let pod = bed.run_pod("propagation", handler)?;
    let slave = with_volume(&pod, "slave", &dir, MountPropagation::PropagationHostToContainer);
    let slave = pod.create(&slave)?;
    pod.start(&slave)?;
    let private = with_volume(&pod, "private", &dir, MountPropagation::PropagationPrivate);
    let private = pod.create(&private)?;
    pod.start(&private)?;

    let sub = dir.join("sub");
    host("mount", &["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", &sub.to_string_lossy()])?;
    std::fs::write(sub.join("marker"), "from the host\n")?;
    let look = |c: &Container| sh(&pod, c, "cat /vol/sub/marker");
    let out = look(&slave)?;
    ensure!(
        out.exit_code == 0 && out.stdout == "from the host\n",
        "under {handler} a HostToContainer volume does not show the host's later mount: {out:?}"
    );
    let out = look(&private)?;
    ensure!(out.exit_code != 0, "under {handler} a private volume shows the host's mount: {out:?}");
    // The host unmounts: the slave's copy goes too.
    host("umount", &[&sub.to_string_lossy()])?;
    let out = look(&slave)?;
    ensure!(out.exit_code != 0, "the host's unmount did not reach the container: {out:?}");

    // Bidirectional: the pod's mounts would reach the host. moat refuses it with a message;
    // runc runs it (it is what a privileged CSI node plugin asks for).
    let shared = with_volume(&pod, "shared", &dir, MountPropagation::PropagationBidirectional);
    let result = pod.create(&shared).and_then(|c| pod.start(&c).map(|()| c));
    match (handler, result) {
        ("moat", Ok(c)) => bail!("moat ran a Bidirectional volume: {}", c.id),
        ("moat", Err(e)) => {
            let message = format!("{e:#}");
            ensure!(
                message.contains("mounts[")
                    && message.contains("Bidirectional mount propagation")
                    && message.contains("use mountPropagation HostToContainer"),
                "moat's refusal of Bidirectional does not say field, rule and remedy: {message}"
            );
        }
        (_, result) => {
            result.context("runc and a Bidirectional volume")?;
        }
    }
    pod.teardown()
}

fn host_ipc_shares_the_hosts_dev_shm(_shared: &TestBed, handler: &str) -> Result<()> {
    // critest "should support HostIpc is true": with allow_host_ipc the host's /dev/shm is
    // the container's.
    let test = format!("host_ipc_shares_the_hosts_dev_shm::{handler}");
    let Some(bed) = permissive_bed(&test, handler, false)? else {
        return Ok(());
    };
    let mut pod_config = bed.pod_config("hostipc")?;
    configs::pod_security_context(&mut pod_config)
        .namespace_options
        .get_or_insert_with(Default::default)
        .ipc = NamespaceMode::Node as i32;
    let pod = bed.run_pod_with(pod_config, handler)?;
    let file = PathBuf::from("/dev/shm").join(configs::unique_name("moat-hostipc"));
    std::fs::write(&file, "host shm\n")?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    let result = (|| -> Result<()> {
        let mut config = pod.container_config("shm", &["sleep", "3600"]);
        configs::security_context(&mut config)
            .namespace_options
            .get_or_insert_with(Default::default)
            .ipc = NamespaceMode::Node as i32;
        let c = pod.create(&config)?;
        pod.start(&c)?;
        let out = sh(&pod, &c, &format!("cat {}", file.display()))?;
        ensure!(out.stdout == "host shm\n", "the host's /dev/shm file in the container: {out:?}");
        Ok(())
    })();
    let _ = std::fs::remove_file(&file);
    result?;
    pod.teardown()
}

fn host_path_volume_readable_with_an_idmapped_entry(shared: &TestBed, handler: &str) -> Result<()> {
    // critest "should support HostPath": a 0700 directory owned by host root (`mktemp -d`).
    let make_dir = |bed: &TestBed| -> Result<PathBuf> {
        let dir = bed.volume_dir("hostpath")?;
        std::fs::write(dir.join("file"), "host root's\n")?;
        std::fs::set_permissions(dir.join("file"), std::fs::Permissions::from_mode(0o600))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    };
    // A plain entry (the shared bed's): host root's files stay host root's. runc: readable.
    let dir = make_dir(shared)?;
    let pod = shared.run_pod("hostpath-plain", handler)?;
    let mut config = pod.container_config("plain", &["sleep", "3600"]);
    config.mounts.push(configs::volume(&dir, "/data", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let out = sh(&pod, &c, "cat /data/file")?;
    match handler {
        "moat" => ensure!(
            out.exit_code != 0 && out.stderr.contains("Permission denied"),
            "container root read host root's 0700 directory through a plain entry: {out:?}"
        ),
        _ => ensure!(out.stdout == "host root's\n", "runc: {out:?}"),
    }
    pod.teardown()?;

    // `{ path = ..., idmap = true }`: the pod's root is the directory's root.
    let test = format!("host_path_volume_readable_with_an_idmapped_entry::{handler}");
    let Some(bed) = permissive_bed(&test, handler, true)? else {
        return Ok(());
    };
    let dir = make_dir(&bed)?;
    let pod = bed.run_pod("hostpath-idmap", handler)?;
    let mut config = pod.container_config("idmapped", &["sleep", "3600"]);
    config.mounts.push(configs::volume(&dir, "/data", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let out = sh(&pod, &c, "ls /data && cat /data/file && echo new > /data/new")?;
    ensure!(
        out.exit_code == 0 && out.stdout == "file\nhost root's\n",
        "under {handler} container root cannot use an idmapped 0700 host-root directory: {out:?}"
    );
    // What container root writes there is host root's on disk (the documented trade).
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("new"))?;
    ensure!(meta.uid() == 0, "container root's new file is host uid {}", meta.uid());
    pod.teardown()
}

/// A container granted `cap` (beyond the default set) in a pod of `bed`.
fn with_capability<'a>(bed: &'a TestBed, handler: &str, cap: &str) -> Result<(Pod<'a>, Container)> {
    let pod = bed.run_pod(&cap.to_ascii_lowercase().replace('_', "-"), handler)?;
    let mut config = pod.container_config("granted", &["sleep", "3600"]);
    configs::security_context(&mut config).capabilities =
        Some(Capability { add_capabilities: vec![cap.into()], ..Default::default() });
    let c = pod.create(&config)?;
    pod.start(&c)?;
    Ok((pod, c))
}

/// The shim's warning for a capability that acts on host-owned namespaces must be in the
/// containerd log (moat only).
fn warned(bed: &TestBed, handler: &str, cap: &str, c: &Container) -> Result<()> {
    if handler != "moat" {
        return Ok(());
    }
    let log = std::fs::read_to_string(&bed.layout().log)?;
    ensure!(
        log.lines()
            .any(|l| l.contains(&c.id) && l.contains(cap) && l.contains("host's user namespace")),
        "no warning about {cap} for {} in the containerd log:\n{}",
        c.id,
        bed.log_tail(20)
    );
    Ok(())
}

fn hostname_with_sys_admin_is_an_expected_failure(_shared: &TestBed, handler: &str) -> Result<()> {
    // critest "should support set hostname" with CAP_SYS_ADMIN: the pod's UTS namespace
    // belongs to the host's user namespace under moat, so the pod's CAP_SYS_ADMIN does not
    // reach it (and the baseline filter answers sethostname ENOSYS). Expected failure.
    let test = format!("hostname_with_sys_admin_is_an_expected_failure::{handler}");
    let Some(bed) = permissive_bed(&test, handler, false)? else {
        return Ok(());
    };
    let (pod, c) = with_capability(&bed, handler, "SYS_ADMIN")?;
    let out = sh(&pod, &c, "hostname ANewHostName && hostname")?;
    match handler {
        "moat" => ensure!(
            out.exit_code != 0
                && (out.stderr.contains("not permitted") || out.stderr.contains("not implemented")),
            "under moat sethostname with CAP_SYS_ADMIN was expected to fail: {out:?}"
        ),
        _ => ensure!(out.stdout == "ANewHostName\n", "runc: {out:?}"),
    }
    warned(&bed, handler, "CAP_SYS_ADMIN", &c)?;
    pod.teardown()
}

fn bridge_with_net_admin_is_an_expected_failure(_shared: &TestBed, handler: &str) -> Result<()> {
    // critest "should support set NET_ADMIN capability" (`brctl addbr`): the pod's network
    // namespace belongs to the host's user namespace under moat. Expected failure.
    let test = format!("bridge_with_net_admin_is_an_expected_failure::{handler}");
    let Some(bed) = permissive_bed(&test, handler, false)? else {
        return Ok(());
    };
    let (pod, c) = with_capability(&bed, handler, "NET_ADMIN")?;
    let out = sh(&pod, &c, "brctl addbr moatbr-test && ip link show moatbr-test")?;
    match handler {
        "moat" => ensure!(
            out.exit_code != 0 && out.stderr.contains("not permitted"),
            "under moat brctl addbr with CAP_NET_ADMIN was expected to fail: {out:?}"
        ),
        _ => ensure!(out.exit_code == 0, "runc: {out:?}"),
    }
    warned(&bed, handler, "CAP_NET_ADMIN", &c)?;
    pod.teardown()
}
