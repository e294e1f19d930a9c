//! Sealing the boundary against device nodes and process counts (issue 9), attacked from inside
//! pods through the CRI.
//!
//! - An image may carry device nodes in its layers; containerd (root) unpacks them as real
//!   nodes, and the idmapped layer makes container root their owner. Under moat the root
//!   filesystem is `nodev` (and `nosuid` under no_new_privs), and the container's cgroup allows only the minimal
//!   /dev's nodes (v1 devices rules, and an eBPF device program on the v2 hierarchy).
//! - A pod that sets no pids limit still gets moat's `default_pids_limit` per container.
//!
//! The devices image (`moat.test/devices:1`, see `moat_e2e::images`) is built and imported by
//! this file, once per test process.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use moat_e2e::images::{self, DEVICES, DEVICES_BLOCK_NODE, DEVICES_CHAR_NODE};
use moat_e2e::{configs, e2e_tests, paths, Container, Pod, TestBed};

e2e_tests!(device_nodes_in_the_image_cannot_be_opened);

moat_only_tests!(
    the_root_filesystem_is_nodev_and_nosuid,
    a_fork_bomb_stops_at_the_default_pids_limit,
    the_v2_device_program_alone_confines_a_pod_and_goes_with_it,
);

/// moat's built-in `default_pids_limit`.
const DEFAULT_PIDS_LIMIT: usize = 4096;

/// Builds the devices image (cached) and imports it into this test process's containerd once.
fn devices_image(bed: &TestBed) -> Result<()> {
    static IMPORTED: OnceLock<Result<(), String>> = OnceLock::new();
    IMPORTED
        .get_or_init(|| {
            (|| -> Result<()> {
                let archive = images::build_devices(&paths::image_cache_dir())?;
                images::import(&bed.layout().socket, &archive)?;
                ensure!(bed.cri().image_present(DEVICES)?, "{DEVICES} imported but not seen");
                Ok(())
            })()
            .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!("the devices image: {e}"))
}

/// A container of the devices image running `sleep 3600`.
fn devices_container(pod: &Pod) -> Result<Container> {
    devices_image(pod.bed)?;
    let config = configs::container_config(&pod.name, "devices", DEVICES, &["sleep", "3600"]);
    let c = pod.create(&config)?;
    pod.start(&c)?;
    Ok(c)
}

/// `open NODE MODE` in the container: "open" or the shell's error text.
fn try_open(pod: &Pod, c: &Container, node: &str, redirect: &str) -> Result<String> {
    let script =
        format!("if (exec 3{redirect}{node}) 2>/tmp/err; then echo open; else cat /tmp/err; fi");
    let out = common::sh(pod, c, &script)?;
    ensure!(out.exit_code == 0, "sh -c {script:?}: {out:?}");
    Ok(out.stdout.trim().to_string())
}

fn device_nodes_in_the_image_cannot_be_opened(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("devnodes", handler)?;
    let c = devices_container(&pod)?;
    let (major, minor) = images::host_root_device()?;
    // The nodes really are device nodes in the container (containerd unpacked them as such).
    let out = common::sh(
        &pod,
        &c,
        &format!("stat -c '%F %t:%T' {DEVICES_CHAR_NODE} {DEVICES_BLOCK_NODE}"),
    )?;
    let expected = format!("character special file 1:3\nblock special file {major:x}:{minor:x}");
    ensure!(out.stdout.trim() == expected, "the image's nodes are not what was built: {out:?}");

    let mut results = Vec::new();
    for node in [DEVICES_CHAR_NODE, DEVICES_BLOCK_NODE] {
        for redirect in ["<>", "<"] {
            results.push((node, redirect, try_open(&pod, &c, node, redirect)?));
        }
    }
    eprintln!("{handler}: {results:?}");
    for (node, redirect, result) in &results {
        let block = *node == DEVICES_BLOCK_NODE;
        match handler {
            // nodev on the root: EACCES before any device rule is looked at.
            "moat" => ensure!(
                result.contains("Permission denied"),
                "under moat `exec 3{redirect}{node}` gave {result:?} (must fail: the root is nodev)"
            ),
            // runc leaves the image's nodes usable; its device cgroup refuses the host disk
            // (EPERM) and allows c 1:3, which is /dev/null's number.
            _ if block => ensure!(
                result.contains("Operation not permitted"),
                "under runc `exec 3{redirect}{node}` gave {result:?} (its device cgroup denies it)"
            ),
            _ => ensure!(
                result == "open",
                "under runc `exec 3{redirect}{node}` gave {result:?} (c 1:3 is in runc's allow list)"
            ),
        }
    }
    // The ordinary thing still works: the minimal /dev's nodes.
    ensure!(try_open(&pod, &c, "/dev/null", "<>")? == "open");
    ensure!(try_open(&pod, &c, "/dev/zero", "<")? == "open");
    pod.teardown()
}

fn the_root_filesystem_is_nodev_and_nosuid(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("rootflags", handler)?;
    // nosuid follows no_new_privs: a container with allowPrivilegeEscalation: false gets
    // both; one that leaves it unset (the default, privilege escalation allowed at level
    // baseline since issue 12) keeps setuid binaries working but is still nodev.
    for (name, no_new_privs) in [("nnp", true), ("escalate", false)] {
        let mut config = pod.container_config(name, &["sleep", "3600"]);
        configs::security_context(&mut config).no_new_privs = no_new_privs;
        let c = pod.create(&config)?;
        pod.start(&c)?;
        let out = pod.exec(&c, &["cat", "/proc/self/mountinfo"])?;
        // `36 35 0:51 / / rw,relatime - overlay overlay rw,lowerdir=...`: the last mount on `/`.
        let root = out
            .stdout
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some("/"))
            .with_context(|| format!("no mount on / in {out:?}"))?
            .to_string();
        let options: Vec<&str> = root.split(' ').nth(5).unwrap_or("").split(',').collect();
        eprintln!("{handler} {name}: {root}");
        ensure!(
            options.contains(&"nodev"),
            "the container's root is mounted without nodev: {root}"
        );
        ensure!(
            options.contains(&"nosuid") == no_new_privs,
            "no_new_privs {no_new_privs}, but the root's nosuid is not the same: {root}"
        );
    }
    pod.teardown()
}

fn a_fork_bomb_stops_at_the_default_pids_limit(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("forkbomb", handler)?;
    let c = pod.run("bomb", &["sleep", "3600"])?;
    // Bounded: at most 6000 sleeping children, each counted in /tmp/forked by a shell builtin
    // (no fork); the loop ends when it is done or when the shell cannot fork any more.
    let script = "n=0; while [ $n -lt 6000 ]; do sleep 120 </dev/null >/dev/null 2>&1 & \
                  n=$((n+1)); echo $n >/tmp/forked; done; echo made all $n";
    let out = bed.cri().exec_sync(&c.id, &["sh", "-c", script], Duration::from_secs(180))?;
    let pid = pod.container_pid(&c)?;
    let forked: usize = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/forked"))
        .context("reading /tmp/forked through /proc/<pid>/root")?
        .trim()
        .parse()
        .context("parsing /tmp/forked")?;
    eprintln!("{handler}: forked {forked}; exec {out:?}");
    ensure!(
        forked < DEFAULT_PIDS_LIMIT,
        "a pod without a pids limit made {forked} processes (default_pids_limit is \
         {DEFAULT_PIDS_LIMIT}): {out:?}"
    );
    // It stopped at the limit (less the container's init and the exec's shell), on a fork.
    ensure!(
        forked + 16 > DEFAULT_PIDS_LIMIT && out.stderr.contains("can't fork"),
        "the bomb stopped at {forked}, not at the limit: {out:?}"
    );
    ensure!(!out.stdout.contains("made all"), "{out:?}");
    // The limit is per container: another container of the same pod still starts and runs.
    let other = pod.run("other", &["sleep", "3600"])?;
    let alive = pod.exec(&other, &["echo", "alive"])?;
    ensure!(alive.stdout.trim() == "alive", "{alive:?}");
    // The node is fine: it forks.
    let status = std::process::Command::new("true").status().context("running true")?;
    ensure!(status.success());
    pod.teardown()
}

/// The container's directory in the hierarchy named `controller` (`devices`, or "" for v2),
/// from /proc/<pid>/cgroup.
fn cgroup_dir(pid: i32, controller: &str) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let layout = moat_sandbox::cgroups::Layout::detect()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, list, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let mount = if controller.is_empty() && list.is_empty() {
            layout.v2_mount()
        } else if !controller.is_empty() && list.split(',').any(|c| c == controller) {
            layout.v1_mount(controller)
        } else {
            continue;
        };
        let mount = mount.with_context(|| format!("no mount for {controller:?}"))?;
        return Ok(mount.join(path.trim_start_matches('/')));
    }
    anyhow::bail!("pid {pid} has no {controller:?} line in {text:?}")
}

/// On this hybrid host the v1 devices cgroup and moat's v2 program both confine a container.
/// With the v1 rules opened up from the host (as on a pure v2 host, where there are none), a
/// device node the container did not get (c 10:229, made by host root on a tmpfs without nodev
/// in the container's mount namespace) must still not open: EPERM from the program. The
/// program is moat's, one per container, and is freed when the pod goes.
fn the_v2_device_program_alone_confines_a_pod_and_goes_with_it(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    use moat_sandbox::cgroups::bpf;
    use std::os::fd::AsFd;
    let pod = bed.run_pod("v2devices", handler)?;
    let c = pod.run("c", &["sleep", "3600"])?;
    let pid = pod.container_pid(&c)?;
    // Host root, in the container's mount namespace only (not its user namespace or cgroup):
    // a tmpfs without nodev at /probe holding c 10:229 (/dev/fuse's number).
    let setup = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "/bin/sh", "-c"])
        .arg("mkdir -p /probe && mount -t tmpfs -o mode=755 probe /probe && mknod -m 666 /probe/node c 10 229")
        .output()
        .context("running nsenter (util-linux)")?;
    ensure!(setup.status.success(), "setting up /probe/node: {setup:?}");
    let v1 = cgroup_dir(pid, "devices")?.join("devices.allow");
    std::fs::write(&v1, "a *:* rwm").with_context(|| format!("opening up {}", v1.display()))?;
    let list = std::fs::read_to_string(v1.with_file_name("devices.list"))?;
    ensure!(list.trim() == "a *:* rwm", "the v1 rules are not open: {list}");

    let probe = try_open(&pod, &c, "/probe/node", "<>")?;
    eprintln!("{handler}: /probe/node (c 10:229) with the v1 rules open: {probe}");
    ensure!(
        probe.contains("Operation not permitted"),
        "c 10:229 gave {probe:?} with only the v2 program in the way (must be EPERM)"
    );
    ensure!(try_open(&pod, &c, "/dev/null", "<>")? == "open");

    let v2 = cgroup_dir(pid, "")?;
    let dir = std::fs::File::open(&v2).with_context(|| format!("open {}", v2.display()))?;
    let ids = bpf::attached_device_programs(dir.as_fd())?;
    ensure!(ids.len() == 1, "device programs on {}: {ids:?}", v2.display());
    let program = bpf::program_by_id(ids[0])?.context("the attached program")?;
    ensure!(bpf::program_info(program.as_fd())?.1 == bpf::PROGRAM_NAME);
    drop((program, dir));
    pod.teardown()?;
    let start = std::time::Instant::now();
    while bpf::program_by_id(ids[0])?.is_some() {
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "device program {} outlived its pod by 20 s",
            ids[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
