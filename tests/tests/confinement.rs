//! Confinement, attacked from inside pods through the CRI (issue 3): for each boundary the
//! attack is attempted and must fail under moat, and the ordinary thing must still work.
//!
//! Every test runs under both handlers. Where runc lets the attack through (a pod without a
//! security context runs there as host root, with no seccomp filter, CAP_NET_RAW and
//! no_new_privs off), the test asserts that it SUCCEEDS under runc: that is the difference moat
//! makes, shown on this very host. Where runc stops it too, the test says so.
//!
//! Most attacks are made by `tests/attack/attack.c` (busybox cannot make these system calls),
//! compiled by the test and mounted read-only at /attack (see `common`).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{
    attack, attack_pod, attack_volume, file_sha256, host_gid, host_uid, moat_refuses_runc_allows,
    moat_refuses_with, must_fail, must_fail_with, must_succeed, sh, sleeper, sleeper_sharing,
    uid_map, verdict, ATTACK,
};
use k8s_cri::v1::{security_profile::ProfileType, SecurityProfile};
use moat_e2e::{configs, e2e_tests, Pod, TestBed};

e2e_tests!(
    container_root_maps_to_an_unprivileged_host_range,
    files_container_root_creates_in_a_volume_are_not_host_root_files,
    container_root_cannot_read_or_change_host_root_files_in_a_volume,
    mount_fails,
    unsharing_a_user_namespace_fails,
    nftables_in_a_new_user_namespace_are_out_of_reach,
    bpf_fails,
    perf_event_open_fails,
    io_uring_setup_fails,
    keyctl_and_add_key_fail,
    userfaultfd_fails,
    writing_proc_sys_sysfs_and_sysrq_trigger_fails,
    kcore_and_the_kernel_log_are_unreadable,
    a_block_device_made_with_mknod_cannot_be_read,
    raw_and_packet_sockets_fail_but_ping_works,
    the_host_is_unreachable_through_proc_pid_root,
    no_file_descriptor_leaks_into_the_container,
    the_runtime_binary_cannot_be_written_through_proc_exe,
    setuid_root_binaries_do_not_make_a_user_root,
    pods_with_different_id_ranges_cannot_read_each_others_files,
    unconfined_seccomp_still_gets_the_baseline_filter,
    a_web_server_on_port_80_answers,
    image_files_keep_their_owners,
    a_volume_is_writable_by_its_container_user,
    a_read_only_root_rejects_writes_except_to_its_tmpfs_mounts,
);

/// A new host directory under the bed's volumes dir with `mode` and host owner `uid:gid`.
fn host_dir(
    bed: &TestBed,
    base: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<std::path::PathBuf> {
    let dir = bed.volume_dir(base)?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

fn container_root_maps_to_an_unprivileged_host_range(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("uidmap", handler)?;
    let c = pod.run("root", &["sleep", "3600"])?;
    let out = pod.exec(&c, &["id", "-u"])?;
    ensure!(out.stdout.trim() == "0", "the container does not run as root inside: {out:?}");
    let out = pod.exec(&c, &["cat", "/proc/self/uid_map", "/proc/self/gid_map"])?;
    let mut maps = out.stdout.lines();
    let uids = common::parse_id_map(maps.next().unwrap_or(""))?;
    let gids = common::parse_id_map(maps.next().unwrap_or(""))?;
    // What the host sees of the container's init process.
    let pid = pod.container_pid(&c)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let host_uid: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .context("no Uid line in the container process's status")?
        .parse()?;
    match handler {
        "moat" => {
            ensure!(
                uids.0 == 0 && uids.1 != 0 && uids.2 == 65_536,
                "uid_map inside is {uids:?}: expected container 0..65536 on a host range not starting at 0"
            );
            ensure!(gids.1 != 0 && gids.2 == 65_536, "gid_map inside is {gids:?}");
            ensure!(
                host_uid == uids.1,
                "container root runs on the host as uid {host_uid}, expected the mapped {}",
                uids.1
            );
        }
        _ => {
            // runc: no user namespace; container root IS host root.
            ensure!(
                uids == (0, 0, 4_294_967_295) && host_uid == 0,
                "under runc container root was expected to be host root; uid_map {uids:?}, host uid {host_uid}"
            );
        }
    }
    pod.teardown()
}

fn files_container_root_creates_in_a_volume_are_not_host_root_files(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    // A host directory as an operator makes one (owned by host root, writable only by it),
    // allowed as a volume. Container root may be refused writing there; if it can write,
    // what it makes must not belong to host root: a setuid-root file on the host would be an
    // escape for anyone who runs it there.
    let vol = host_dir(bed, "rootfiles", 0o755, 0, 0)?;
    let pod = bed.run_pod("rootfiles", handler)?;
    let mut config = pod.container_config("writer", &["sleep", "3600"]);
    config.mounts.push(configs::volume(&vol, "/vol", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let out = sh(
        &pod,
        &c,
        "echo made-in-the-container > /vol/plain && cp /bin/busybox /vol/suid && chmod 4755 /vol/suid; ls -ln /vol",
    )?;
    let plain = vol.join("plain");
    let suid = vol.join("suid");
    let mut made = Vec::new();
    for path in [&plain, &suid] {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            made.push(format!(
                "{} owned by host uid {} gid {} mode {:o}",
                path.display(),
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777
            ));
            if handler == "moat" {
                ensure!(
                    meta.uid() != 0 && meta.gid() != 0,
                    "container root created {} and the host sees it owned by host root \
                     (uid {} gid {}): on volumes, container root acts as host root. In the container: {out:?}",
                    path.display(),
                    meta.uid(),
                    meta.gid()
                );
                ensure!(
                    !(meta.uid() == 0 && meta.mode() & 0o4000 != 0),
                    "container root made a setuid-root file on the host: {}",
                    path.display()
                );
            }
        }
    }
    if handler == "runc" {
        // runc: container root is host root, so it writes anything there, owned by host root.
        let meta = std::fs::metadata(&suid)
            .with_context(|| format!("runc was expected to write {}: {out:?}", suid.display()))?;
        ensure!(
            meta.uid() == 0 && meta.mode() & 0o4000 != 0,
            "under runc a setuid-root file was expected on the host: {made:?}"
        );
    }
    pod.teardown()
}

fn container_root_cannot_read_or_change_host_root_files_in_a_volume(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let vol = host_dir(bed, "hostsecret", 0o755, 0, 0)?;
    let secret = vol.join("secret");
    std::fs::write(&secret, "host-root-secret\n")?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let config_file = vol.join("config");
    std::fs::write(&config_file, "host-root-config\n")?;
    std::fs::set_permissions(&config_file, std::fs::Permissions::from_mode(0o644))?;
    let pod = bed.run_pod("hostsecret", handler)?;
    let mut config = pod.container_config("reader", &["sleep", "3600"]);
    config.mounts.push(configs::volume(&vol, "/vol", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let out = pod.exec(&c, &["cat", "/vol/secret"])?;
    let read = out.exit_code == 0 && out.stdout.contains("host-root-secret");
    let change = sh(&pod, &c, "echo changed-by-the-container >> /vol/config")?;
    let changed = std::fs::read_to_string(&config_file)? != "host-root-config\n";
    match handler {
        "moat" => {
            ensure!(
                !read && out.stderr.contains("Permission denied"),
                "container root read (or failed otherwise than EACCES on) a host root 0600 file in a volume: {out:?}"
            );
            ensure!(
                !changed && change.stderr.contains("Permission denied"),
                "container root changed (or failed otherwise than EACCES on) a host root 0644 file in a volume: {change:?}"
            );
        }
        _ => ensure!(
            read && changed,
            "under runc container root (host root) was expected to read and change them: {out:?} {change:?}"
        ),
    }
    // The ordinary thing: a world-readable file in the same volume is readable.
    std::fs::write(vol.join("public"), "public\n")?;
    let out = pod.exec(&c, &["cat", "/vol/public"])?;
    ensure!(
        out.exit_code == 0 && out.stdout == "public\n",
        "a world-readable volume file: {out:?}"
    );
    pod.teardown()
}

fn mount_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "mount")?;
    let out = pod.exec(&c, &["mount", "-t", "tmpfs", "none", "/tmp"])?;
    ensure!(out.exit_code != 0, "mount -t tmpfs succeeded: {out:?}");
    // runc stops it too (no CAP_SYS_ADMIN); moat also filters mount(2) for good.
    must_fail_with(&attack(&pod, &c, &["mount", "/tmp"])?, handler, &["EPERM"])?;
    pod.teardown()
}

fn unsharing_a_user_namespace_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "unshare")?;
    // busybox unshare: a user namespace where we are root, a mount namespace, a tmpfs.
    let out = sh(
        &pod,
        &c,
        "unshare -U -r -m sh -c 'mount -t tmpfs none /tmp && echo mounted-in-userns'",
    )?;
    let mounted = out.stdout.contains("mounted-in-userns");
    match handler {
        "moat" => ensure!(!mounted && out.exit_code != 0, "unshare -U -r -m + mount: {out:?}"),
        _ => ensure!(mounted, "under runc unshare -U -r -m + mount was expected to work: {out:?}"),
    }
    let a = attack(&pod, &c, &["userns-mount"])?;
    moat_refuses_with(&a, handler, &["EPERM"])?;
    moat_refuses_runc_allows(&attack(&pod, &c, &["clone-user"])?, handler)?;
    moat_refuses_runc_allows(&attack(&pod, &c, &["clone3-user"])?, handler)?;
    // The ordinary thing: child processes still start (clone without CLONE_NEWUSER).
    let out = sh(&pod, &c, "sh -c 'echo child'; echo parent")?;
    ensure!(out.stdout == "child\nparent\n", "forking a child: {out:?}");
    pod.teardown()
}

fn nftables_in_a_new_user_namespace_are_out_of_reach(bed: &TestBed, handler: &str) -> Result<()> {
    // Root of a fresh user namespace owns a fresh network namespace and may program its
    // nf_tables: a large kernel attack surface (many nf_tables CVEs start this way).
    let (pod, c) = attack_pod(bed, handler, "nft")?;
    moat_refuses_runc_allows(&attack(&pod, &c, &["userns-nft"])?, handler)?;
    pod.teardown()
}

fn bpf_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "bpf")?;
    let a = attack(&pod, &c, &["bpf"])?;
    // runc refuses it too on this host (kernel.unprivileged_bpf_disabled=2 and container
    // root lacks CAP_BPF); moat refuses it whatever the host's sysctl says (seccomp EPERM).
    must_fail_with(&a, handler, &["EPERM"])?;
    pod.teardown()
}

fn perf_event_open_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "perf")?;
    let a = attack(&pod, &c, &["perf"])?;
    // runc: allowed for the process's own user-space counters (kernel.perf_event_paranoid=2).
    moat_refuses_with(&a, handler, &["EPERM"])?;
    pod.teardown()
}

fn io_uring_setup_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "iouring")?;
    let a = attack(&pod, &c, &["io_uring"])?;
    moat_refuses_with(&a, handler, &["EPERM"])?;
    pod.teardown()
}

fn keyctl_and_add_key_fail(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "keyctl")?;
    for mode in ["add_key", "keyctl"] {
        let a = attack(&pod, &c, &[mode])?;
        moat_refuses_with(&a, handler, &["EPERM"])?;
    }
    pod.teardown()
}

fn userfaultfd_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "uffd")?;
    let a = attack(&pod, &c, &["userfaultfd"])?;
    // runc: UFFD_USER_MODE_ONLY is open to everyone even with vm.unprivileged_userfaultfd=0.
    moat_refuses_with(&a, handler, &["EPERM"])?;
    pod.teardown()
}

fn writing_proc_sys_sysfs_and_sysrq_trigger_fails(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "procsys")?;
    // Each file is rewritten with what it already holds: harmless if it ever succeeded.
    // core_pattern and modprobe are classic container escapes (the kernel runs them as host
    // root); sysfs knobs change the host.
    let mut attempts = Vec::new();
    for path in [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/vm/overcommit_memory",
        "/sys/kernel/mm/ksm/run",
        "/sys/kernel/profiling",
    ] {
        attempts.push(attack(&pod, &c, &["rewrite", path])?);
    }
    // "h" only prints the sysrq help to the kernel log.
    attempts.push(attack(&pod, &c, &["write", "/proc/sysrq-trigger", "h"])?);
    for a in &attempts {
        // runc refuses these too: /proc/sys and /proc/sysrq-trigger are read-only, /sys is
        // mounted read-only.
        must_fail_with(a, handler, &["EROFS", "EACCES", "EPERM", "ENOENT"])?;
        ensure!(a.line.contains("at open for writing"), "{} got past open: {}", a.what, a.line);
    }
    // The ordinary thing: reading them works.
    let out = pod.exec(&c, &["cat", "/proc/sys/kernel/ostype"])?;
    ensure!(out.stdout.trim() == "Linux", "reading /proc/sys: {out:?}");
    pod.teardown()
}

/// The attack read nothing: refused, or a masked file (an empty /dev/null) read 0 bytes.
fn read_nothing(a: &common::Attempt, handler: &str) -> Result<()> {
    ensure!(
        !a.succeeded || a.line.ends_with("read 0 bytes"),
        "under {handler} `{}` read data: {}",
        a.what,
        a.line
    );
    Ok(())
}

fn kcore_and_the_kernel_log_are_unreadable(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "kcore")?;
    // Files the host can read that a container must not (masked). Only those this kernel has
    // (this test VM's kernel has no /proc/kcore nor /proc/sched_debug; kept for kernels that do).
    let mut checked = Vec::new();
    for path in ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"] {
        if !Path::new(path).exists() {
            continue;
        }
        read_nothing(&attack(&pod, &c, &["read", path])?, handler)?;
        checked.push(path);
    }
    ensure!(
        checked.len() >= 2,
        "too few of the masked /proc files exist on this host to test: {checked:?}"
    );
    // moat also masks /proc/interrupts (per-CPU counters are a side channel); the kubelet's
    // list, which runc applies, does not.
    let a = attack(&pod, &c, &["read", "/proc/interrupts"])?;
    match handler {
        "moat" => read_nothing(&a, handler)?,
        _ => ensure!(
            a.succeeded && !a.line.ends_with("read 0 bytes"),
            "under runc /proc/interrupts was expected readable: {}",
            a.line
        ),
    }
    // runc refuses klogctl too (kernel.dmesg_restrict=1, no CAP_SYSLOG); moat filters syslog(2).
    let a = attack(&pod, &c, &["klogctl"])?;
    must_fail_with(&a, handler, &["EPERM"])?;
    let out = pod.exec(&c, &["dmesg"])?;
    ensure!(
        out.exit_code != 0 && out.stdout.is_empty(),
        "busybox dmesg read the kernel log: {out:?}"
    );
    pod.teardown()
}

/// The host's first block device (major, minor, name) from /proc/partitions.
fn host_block_device() -> Result<(String, String, String)> {
    let text = std::fs::read_to_string("/proc/partitions")?;
    text.lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 4)
        .map(|f| (f[0].to_string(), f[1].to_string(), f[3].to_string()))
        .context("no block device in /proc/partitions")
}

fn a_block_device_made_with_mknod_cannot_be_read(bed: &TestBed, handler: &str) -> Result<()> {
    let (major, minor, name) = host_block_device()?;
    let (pod, c) = attack_pod(bed, handler, "mknod")?;
    let a = attack(&pod, &c, &["mknod-read", "/tmp/disk", &major, &minor])?;
    must_fail(&a, handler)?;
    if handler == "moat" {
        // No CAP_MKNOD over the host: the node cannot even be made.
        ensure!(a.line.ends_with("at mknod"), "expected mknod itself to fail: {}", a.line);
    }
    // (runc makes the node, then its device cgroup refuses the open.)
    // No host device appears in /dev.
    let out = pod.exec(&c, &["ls", "/dev"])?;
    ensure!(
        !out.stdout.split_whitespace().any(|d| d == name),
        "the host's block device {name} is in the container's /dev: {out:?}"
    );
    pod.teardown()
}

fn raw_and_packet_sockets_fail_but_ping_works(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "rawsock")?;
    // runc: container root holds CAP_NET_RAW. moat: the pod's network namespace belongs to
    // the host's user namespace, where container root holds nothing.
    moat_refuses_runc_allows(&attack(&pod, &c, &["raw"])?, handler)?;
    moat_refuses_runc_allows(&attack(&pod, &c, &["packet"])?, handler)?;
    // The ordinary thing: ping. Under moat through an ICMP datagram socket (the pod's
    // net.ipv4.ping_group_range admits every group); under runc busybox ping's raw socket.
    match handler {
        "moat" => must_succeed(&attack(&pod, &c, &["ping-dgram", "127.0.0.1"])?, handler)?,
        _ => {
            let out = pod.exec(&c, &["ping", "-c", "1", "-W", "3", "127.0.0.1"])?;
            ensure!(out.exit_code == 0, "ping under runc: {out:?}");
        }
    }
    pod.teardown()
}

fn the_host_is_unreachable_through_proc_pid_root(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "procroot")?;
    // Every process the container can see has the container's root: no host process shows.
    let a = attack(&pod, &c, &["proc-roots"])?;
    must_fail(&a, handler)?;
    ensure!(
        a.output.stdout.lines().any(|l| l == "root 1 same"),
        "pid 1 is not listed with the container's root: {:?}",
        a.output.stdout
    );
    let out = sh(&pod, &c, "ls /proc/1/root/ | sort; echo ---; ls / | sort")?;
    let (via_pid1, own) = out.stdout.split_once("---\n").context("no separator")?;
    ensure!(via_pid1 == own, "/proc/1/root is not the container's root: {out:?}");
    ensure!(
        pod.exec(&c, &["cat", "/proc/1/root/etc/passwd"])?.stdout.contains("www-data"),
        "/proc/1/root/etc/passwd is not the image's"
    );
    pod.teardown()
}

fn no_file_descriptor_leaks_into_the_container(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "fds")?;
    // An exec sees its 0, 1, 2 and the one ls opens to read the directory.
    let out = pod.exec(&c, &["ls", "/proc/self/fd"])?;
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    ensure!(fds == ["0", "1", "2", "3"], "an exec's fds: {out:?}");
    // The container's init and every other process it can see hold 0, 1, 2 only, and none
    // is a directory (a host directory fd is a way out of the root).
    let a = attack(&pod, &c, &["fds"])?;
    must_succeed(&a, handler)?;
    let listed: Vec<&str> = a.output.stdout.lines().filter(|l| l.starts_with("fd ")).collect();
    ensure!(!listed.is_empty(), "no fds listed: {:?}", a.output);
    for line in &listed {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            f.len() >= 3 && ["0", "1", "2"].contains(&f[2]) && !line.ends_with("(dir)"),
            "a process in the container holds an unexpected fd: {line} (all: {listed:#?})"
        );
    }
    pod.teardown()
}

fn the_runtime_binary_cannot_be_written_through_proc_exe(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let runtime_binaries: Vec<std::path::PathBuf> = match handler {
        "moat" => vec![bed.shim().context("no moat shim binary")?.to_path_buf()],
        _ => ["runc", "containerd-shim-runc-v2"]
            .iter()
            .filter_map(|p| moat_e2e::paths::find_program(p))
            .collect(),
    };
    let before: Vec<String> =
        runtime_binaries.iter().map(|p| file_sha256(p)).collect::<Result<_>>()?;

    let pod = bed.run_pod("exe", handler)?;
    let attack_dir = attack_volume(bed)?;
    let plain = sleeper(&pod, "plain", &attack_dir, |_| {})?;
    must_fail(&attack(&pod, &plain, &["exe-write"])?, handler)?;

    // CVE-2019-5736: the container watches its pid namespace for the runtime's process
    // entering it (each exec does) and tries to open its binary for writing, directly and
    // through a kept O_PATH fd; and (CVE-2024-21626) to reach its root or a directory it
    // holds open. The test keeps exec'ing while it watches.
    const WATCH_S: u64 = 8;
    let watch_s = WATCH_S.to_string();
    let mut config = pod.container_config("racer", &[ATTACK, "exe-race", &watch_s]);
    common::mount_attack(&mut config, &attack_dir);
    let racer = pod.create(&config)?;
    pod.start(&racer)?;
    let deadline = Instant::now() + Duration::from_secs(WATCH_S - 1);
    let mut execs = 0;
    while Instant::now() < deadline {
        match pod.exec(&racer, &["true"]) {
            Ok(_) => execs += 1,
            // The racer exits when its watch ends (or when it won): then execs fail.
            Err(e) => match pod.wait_exited(&racer, Duration::from_secs(5)) {
                Ok(_) => break,
                Err(_) => return Err(e.context("exec while the racer watches")),
            },
        }
    }
    let status = pod.wait_exited(&racer, Duration::from_secs(WATCH_S + 10))?;
    let stdout: String = pod.log(&racer)?.iter().map(|l| format!("{}\n", l.text)).collect();
    let a = verdict(
        &format!("{ATTACK} exe-race {watch_s}"),
        moat_e2e::ExecOutput { stdout, stderr: String::new(), exit_code: status.exit_code },
    )?;
    ensure!(execs > 0, "no exec ran while the racer watched: {}", a.line);
    must_fail(&a, handler).with_context(|| format!("after {execs} execs"))?;
    let count = |key: &str| -> u64 {
        a.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ensure!(
        status.exit_code == 1 && count("scans=") > 0,
        "the racer did not finish its watch (exit code {}): {}",
        status.exit_code,
        a.line
    );
    // It must have seen the runtime's processes enter (refused even an O_PATH open, or opened
    // one O_PATH and never for writing), or it proved nothing.
    ensure!(
        count("path_denied=") + count("foreign=") > 0,
        "the racer never saw a runtime process enter the container during {execs} execs: {}",
        a.line
    );

    let after: Vec<String> =
        runtime_binaries.iter().map(|p| file_sha256(p)).collect::<Result<_>>()?;
    ensure!(before == after, "a runtime binary changed on the host: {runtime_binaries:?}");
    pod.teardown()
}

fn setuid_root_binaries_do_not_make_a_user_root(bed: &TestBed, handler: &str) -> Result<()> {
    // Containers with allowPrivilegeEscalation: false (CRI's no_new_privs). Since issue 12 a
    // container that leaves it unset may run setuid binaries under moat as under runc, up to
    // the pod's own root (an unprivileged host uid): `workloads::setuid_binary_raises_to_the_pods_root_only`.
    let pod = bed.run_pod("suid", handler)?;
    let attack_dir = attack_volume(bed)?;
    let no_escalation = |c: &mut k8s_cri::v1::ContainerConfig| {
        configs::security_context(c).no_new_privs = true;
    };

    // A container running as uid 1000: no_new_privs is set for it.
    let user = sleeper(&pod, "user", &attack_dir, |c| {
        configs::run_as(c, 1000, 1000);
        no_escalation(c);
    })?;
    let out = sh(&pod, &user, "grep NoNewPrivs /proc/self/status")?;
    let nnp = out.stdout.split_whitespace().nth(1).unwrap_or("");
    ensure!(nnp == "1", "no_new_privs is not set under {handler}: {out:?}");
    // The image's setuid-root busybox (reached through a symlink, busybox needs an applet
    // name). busybox itself drops setuid for `id`, so this alone shows little.
    let out = sh(&pod, &user, "ln -sf /bin/suid-busybox /tmp/id && /tmp/id -u")?;
    ensure!(out.stdout.trim() == "1000", "suid-busybox id -u as uid 1000: {out:?}");

    // The attack program made setuid root by container root, then run by uid 1000 (busybox
    // su): under no_new_privs the setuid bit is ignored.
    let root = sleeper(&pod, "root", &attack_dir, no_escalation)?;
    let out = sh(
        &pod,
        &root,
        &format!(
            "cp {ATTACK} /tmp/suid-attack && chmod 4755 /tmp/suid-attack && \
             su -s /bin/sh user -c '/tmp/suid-attack ids'"
        ),
    )?;
    let a = verdict("/tmp/suid-attack ids", out)?;
    must_succeed(&a, handler)?;
    ensure!(a.line.contains("uid=1000 "), "su to user did not run as 1000: {}", a.line);
    ensure!(
        !a.line.contains("euid=0 "),
        "under {handler} a setuid-root binary made uid 1000 root: {}",
        a.line
    );
    pod.teardown()
}

fn pods_with_different_id_ranges_cannot_read_each_others_files(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    // A host directory both pods may write (like /tmp), shared as a volume.
    let shared = host_dir(bed, "shared", 0o1777, 0, 0)?;
    let with_shared = |pod: &Pod, name: &str| sleeper_sharing(pod, name, &shared);
    let pod_a = bed.run_pod("range-a", handler)?;
    let pod_b = bed.run_pod("range-b", handler)?;
    let a = with_shared(&pod_a, "a")?;
    let b = with_shared(&pod_b, "b")?;
    if handler == "moat" {
        let (ra, rb) = (uid_map(pod_a.container_pid(&a)?)?, uid_map(pod_b.container_pid(&b)?)?);
        ensure!(ra.1 != rb.1, "the two pods share the host ID range {ra:?}");
    }
    let out = sh(&pod_a, &a, "umask 077 && echo secret-of-a > /shared/a-secret && ls -ln /shared")?;
    ensure!(out.exit_code == 0, "pod A's root could not write the shared volume: {out:?}");
    let meta = std::fs::metadata(shared.join("a-secret"))?;

    let read = pod_b.exec(&b, &["cat", "/shared/a-secret"])?;
    let overwrite = sh(&pod_b, &b, "echo from-b > /shared/a-secret")?;
    let got = std::fs::read_to_string(shared.join("a-secret"))?;
    match handler {
        "moat" => {
            ensure!(
                read.exit_code != 0 && read.stderr.contains("Permission denied"),
                "pod B's root read pod A's 0600 file (host owner uid {}): {read:?}",
                meta.uid()
            );
            ensure!(
                overwrite.exit_code != 0 && got == "secret-of-a\n",
                "pod B's root overwrote pod A's 0600 file: {overwrite:?}, file now {got:?}"
            );
        }
        _ => ensure!(
            read.exit_code == 0 && read.stdout.contains("secret-of-a"),
            "under runc both pods are host root, so B was expected to read A's file: {read:?}"
        ),
    }
    // The ordinary thing: each pod reads its own file.
    let own = pod_a.exec(&a, &["cat", "/shared/a-secret"])?;
    ensure!(own.exit_code == 0, "pod A cannot read its own file back: {own:?}");
    pod_a.teardown()?;
    pod_b.teardown()
}

fn unconfined_seccomp_still_gets_the_baseline_filter(bed: &TestBed, handler: &str) -> Result<()> {
    // CRI's Unconfined arrives at the runtime as a spec without linux.seccomp, exactly like
    // "unset": moat stacks its baseline filter anyway (unless the operator set
    // allow_unconfined_seccomp); runc runs the container unfiltered.
    let pod = bed.run_pod("unconfined", handler)?;
    let attack_dir = attack_volume(bed)?;
    let c = sleeper(&pod, "unconfined", &attack_dir, |c| {
        configs::security_context(c).seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
    })?;
    let out = sh(&pod, &c, "grep '^Seccomp:' /proc/self/status")?;
    let mode = out.stdout.split_whitespace().nth(1).unwrap_or("");
    match handler {
        "moat" => ensure!(mode == "2", "Seccomp mode {mode:?} (2 = filter) under moat: {out:?}"),
        _ => ensure!(
            mode == "0",
            "under runc an Unconfined container was expected unfiltered: {out:?}"
        ),
    }
    moat_refuses_runc_allows(&attack(&pod, &c, &["io_uring"])?, handler)?;
    pod.teardown()
}

/// GET `path` from `ip:80`; the body.
fn http_get(ip: Ipv4Addr, path: &str) -> Result<String> {
    let addr = SocketAddr::from((ip, 80));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

fn a_web_server_on_port_80_answers(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("web80", handler)?;
    // As container root, on the privileged port 80.
    let server = pod.run("server", &["httpd", "-f", "-p", "80", "-h", "/var/www"])?;
    let client = pod.run("client", &["sleep", "3600"])?;
    let mut last = None;
    for _ in 0..100 {
        let out =
            pod.exec(&client, &["wget", "-q", "-O", "-", "http://127.0.0.1:80/index.html"])?;
        if out.exit_code == 0 {
            ensure!(out.stdout.contains("moat test page"), "the client got {out:?}");
            last = None;
            break;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(out) = last {
        let log = pod.log(&server).unwrap_or_default();
        bail!("another container of the pod never reached port 80: {out:?}; server log {log:?}");
    }
    // From the host, through the pod's IP on the test bed's bridge.
    let (status, _) = bed.cri().inspectp(&pod.id)?;
    let ip: Ipv4Addr = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default()
        .parse()
        .context("the pod has no IPv4 address in PodSandboxStatus")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(ip, "/index.html") {
            Ok(reply) if reply.contains("moat test page") => break,
            other if Instant::now() > deadline => {
                bail!("the host got {other:?} from http://{ip}:80/index.html")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    pod.teardown()
}

fn image_files_keep_their_owners(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("owners", handler)?;
    let c = pod.run("root", &["sleep", "3600"])?;
    let out = pod.exec(&c, &["ls", "-ln", "/var/www"])?;
    let line = out
        .stdout
        .lines()
        .find(|l| l.ends_with(" index.html"))
        .with_context(|| format!("no index.html in {out:?}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    ensure!(f.get(2..4) == Some(&["33", "33"][..]), "index.html is not 33:33: {line}");
    let out = pod.exec(
        &c,
        &["stat", "-c", "%n %u:%g", "/var/www", "/bin/busybox", "/etc/passwd", "/home/user"],
    )?;
    ensure!(
        out.stdout == "/var/www 33:33\n/bin/busybox 0:0\n/etc/passwd 0:0\n/home/user 1000:1000\n",
        "image owners: {out:?}"
    );
    // Container root writes its writable root; what it makes is root's inside.
    let out = sh(
        &pod,
        &c,
        "touch /var/www/by-root /etc/by-root && stat -c %u:%g /var/www/by-root /etc/by-root",
    )?;
    ensure!(out.stdout == "0:0\n0:0\n", "files made by container root: {out:?}");
    // Seen from the host (through the container's root), they belong to the host IDs that
    // container root and www-data are: the pod's range under moat, 0 and 33 under runc.
    let pid = pod.container_pid(&c)?;
    for (path, id) in [("etc/by-root", 0), ("var/www/by-root", 0), ("var/www/index.html", 33)] {
        let meta = std::fs::metadata(format!("/proc/{pid}/root/{path}"))?;
        let want = (host_uid(pid, id)?, host_gid(pid, id)?);
        ensure!(
            (meta.uid(), meta.gid()) == want,
            "/{path} is owned on the host by {}:{}, expected {want:?}",
            meta.uid(),
            meta.gid()
        );
        if handler == "moat" {
            ensure!(meta.uid() != 0, "/{path} is owned by host root");
        }
    }
    // www-data writes its own directory.
    let mut config = pod.container_config("www", &["sleep", "3600"]);
    configs::run_as(&mut config, 33, 33);
    let www = pod.create(&config)?;
    pod.start(&www)?;
    let out = sh(&pod, &www, "echo hi > /var/www/by-www && stat -c %u:%g /var/www/by-www")?;
    ensure!(out.stdout == "33:33\n", "www-data writing /var/www: {out:?}");
    pod.teardown()
}

fn a_volume_is_writable_by_its_container_user(bed: &TestBed, handler: &str) -> Result<()> {
    let pod = bed.run_pod("volume", handler)?;
    // The volume belongs to the container's user 1000: on the host it is owned by the host
    // uid that container uid 1000 is (the pod's range under moat, 1000 itself under runc).
    let sandbox = pod.sandbox_pid()?;
    let (uid, gid) = (host_uid(sandbox, 1000)?, host_gid(sandbox, 1000)?);
    let vol = host_dir(bed, "uservol", 0o755, uid, gid)?;
    let mut config = pod.container_config("user", &["sleep", "3600"]);
    configs::run_as(&mut config, 1000, 1000);
    config.mounts.push(configs::volume(&vol, "/data", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    let out = sh(
        &pod,
        &c,
        "stat -c %u:%g /data && echo hello > /data/f && stat -c %u:%g /data/f && cat /data/f",
    )?;
    ensure!(
        out.exit_code == 0 && out.stdout == "1000:1000\n1000:1000\nhello\n",
        "user 1000 writing its volume (host owner {uid}:{gid}): {out:?}"
    );
    let meta = std::fs::metadata(vol.join("f"))?;
    ensure!(
        (meta.uid(), meta.gid()) == (uid, gid),
        "the file user 1000 wrote is owned on the host by {}:{}, expected {uid}:{gid}",
        meta.uid(),
        meta.gid()
    );
    pod.teardown()
}

fn a_read_only_root_rejects_writes_except_to_its_tmpfs_mounts(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let pod = bed.run_pod("readonly", handler)?;
    let vol = host_dir(bed, "rwvol", 0o777, 0, 0)?;
    let mut config = pod.container_config("ro", &["sleep", "3600"]);
    configs::security_context(&mut config).readonly_rootfs = true;
    config.mounts.push(configs::volume(&vol, "/data", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    for path in ["/etc/x", "/tmp/x", "/var/www/x", "/x"] {
        let out = pod.exec(&c, &["touch", path])?;
        ensure!(
            out.exit_code != 0 && out.stderr.contains("Read-only file system"),
            "writing {path} on a read-only root: {out:?}"
        );
    }
    // The tmpfs mounts (/dev, /dev/shm) and the volume stay writable.
    for path in ["/dev/shm/x", "/data/x"] {
        let out = pod.exec(&c, &["touch", path])?;
        ensure!(out.exit_code == 0, "writing {path} in a read-only-root container: {out:?}");
    }
    let out = pod.exec(&c, &["sh", "-c", "echo x > /dev/null && echo ok"])?;
    ensure!(out.stdout == "ok\n", "{out:?}");
    ensure!(Path::new(&vol.join("x")).exists(), "the volume write did not reach the host");
    pod.teardown()
}
