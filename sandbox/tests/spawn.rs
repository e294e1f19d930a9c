//! Root integration tests of process spawning: real namespaces, overlay with idmapped lower
//! layers, a busybox rootfs, through `Launcher` exactly as the shim uses it.
//!
//! Harness: `harness = false`. The launcher re-executes the running binary (a sealed view of
//! it) with argv[1] == HELPER_ARG, so this binary's main() must dispatch to `helper_main()`
//! first, like the shim's main() does; then it runs the tests itself, one after another. The
//! test process is a child subreaper and a reaper thread collects every child (helpers and
//! containers) with waitpid(-1), as the shim does; tests wait for exit codes through it.
//!
//! Run as root: `cargo test -p moat-sandbox --test spawn [-- FILTER]`.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "common/container.rs"]
mod container;
#[path = "common/reaper.rs"]
mod reaper;
#[path = "common/root.rs"]
mod root;

use anyhow::{anyhow, bail, ensure, Context, Result};
use container::{own_container, random_base, OverlayRoot, RANGE};
use moat_sandbox::plan::*;
use moat_sandbox::policy::capabilities::RUNTIME_DEFAULT;
use moat_sandbox::spawn::{helper_main, Launcher, Pending, PidFd, SpawnError, Stdio, HELPER_ARG};
use nix::unistd::Pid;
use reaper::{reaper, wait_exit};

// ---------------------------------------------------------------------------------------
// Harness

type Test = (&'static str, fn(&Launcher) -> Result<()>);

const TESTS: &[Test] = &[
    (
        "a_plan_joining_the_hosts_namespaces_is_refused",
        a_plan_joining_the_hosts_namespaces_is_refused,
    ),
    ("runs_as_root_of_the_pod_user_namespace", runs_as_root_of_the_pod_user_namespace),
    ("image_files_owned_by_root_appear_as_root", image_files_owned_by_root_appear_as_root),
    ("hostname_is_set_in_a_new_uts_namespace", hostname_is_set_in_a_new_uts_namespace),
    (
        "file_written_by_container_root_lands_in_upperdir_as_mapped_uid",
        file_written_by_container_root_lands_in_upperdir_as_mapped_uid,
    ),
    (
        "container_root_with_all_capabilities_cannot_mount",
        container_root_with_all_capabilities_cannot_mount,
    ),
    ("dev_has_only_the_standard_nodes", dev_has_only_the_standard_nodes),
    ("masked_and_readonly_paths_hold", masked_and_readonly_paths_hold),
    ("stdout_is_captured_and_exit_code_observed", stdout_is_captured_and_exit_code_observed),
    ("exec_joins_the_running_container", exec_joins_the_running_container),
    ("cwd_outside_the_root_is_refused", cwd_outside_the_root_is_refused),
    ("missing_binary_is_reported_by_start", missing_binary_is_reported_by_start),
    ("dropping_pending_runs_nothing", dropping_pending_runs_nothing),
    (
        "sysctls_apply_to_the_container_network_namespace_only",
        sysctls_apply_to_the_container_network_namespace_only,
    ),
    (
        "non_root_user_keeps_only_planned_capabilities",
        non_root_user_keeps_only_planned_capabilities,
    ),
    (
        "second_container_joins_the_pod_user_namespace",
        second_container_joins_the_pod_user_namespace,
    ),
    ("bind_mounts_idmapped_or_not", bind_mounts_idmapped_or_not),
    ("terminal_gives_a_controlling_pty", terminal_gives_a_controlling_pty),
    ("readonly_rootfs_refuses_writes", readonly_rootfs_refuses_writes),
    ("bad_rootfs_mount_is_a_clear_error", bad_rootfs_mount_is_a_clear_error),
    ("app_container_joins_the_pause_namespaces", app_container_joins_the_pause_namespaces),
    (
        "init_and_exec_enter_their_cgroup_and_see_only_it",
        init_and_exec_enter_their_cgroup_and_see_only_it,
    ),
    (
        "a_child_that_cannot_join_its_cgroup_runs_nothing_and_is_gone",
        a_child_that_cannot_join_its_cgroup_runs_nothing_and_is_gone,
    ),
    ("seccomp_filters_are_loaded_in_order", seccomp_filters_are_loaded_in_order),
    ("oom_score_adj_is_set_or_clamped", oom_score_adj_is_set_or_clamped),
    ("concurrent_creates_from_many_threads", concurrent_creates_from_many_threads),
    (
        "bind_rootfs_and_prepopulated_rootfs_are_idmapped",
        bind_rootfs_and_prepopulated_rootfs_are_idmapped,
    ),
    ("exec_with_a_terminal", exec_with_a_terminal),
    ("image_device_nodes_are_dead_on_every_root", image_device_nodes_are_dead_on_every_root),
    (
        "a_non_root_process_without_no_new_privs_still_gets_its_filters",
        a_non_root_process_without_no_new_privs_still_gets_its_filters,
    ),
];

fn main() {
    if std::env::args().nth(1).as_deref() == Some(HELPER_ARG) {
        helper_main();
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !root::root_or_skip("spawn") {
        return;
    }
    let applets = busybox_applets().expect("busybox --list");
    APPLETS.set(applets).expect("applets set once");
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    std::thread::spawn(reaper);
    let launcher = Launcher::new().expect("Launcher::new");

    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in TESTS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let start = Instant::now();
        let result = test(&launcher).and_then(|()| no_test_mounts_on_host());
        match result {
            Ok(()) => println!("test {name} ... ok ({} ms)", start.elapsed().as_millis()),
            Err(e) => {
                println!("test {name} ... FAILED\n    {e:#}");
                failed.push(*name);
            }
        }
    }
    println!("\n{ran} run, {} failed {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

static APPLETS: OnceLock<Vec<String>> = OnceLock::new();

fn busybox_applets() -> Result<Vec<String>> {
    // Before the reaper starts (it would reap this child under Command's feet).
    let out = std::process::Command::new("/bin/busybox").arg("--list").output()?;
    ensure!(out.status.success(), "busybox --list failed");
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_string)
        .filter(|a| !a.is_empty())
        .collect())
}

/// The prefix of this run's temporary directories (with the pid: a mount an earlier, killed
/// run left must not fail this run's tests, which check for their own leaks).
fn test_dir_prefix() -> String {
    format!("moat-spawn-test-{}-", std::process::id())
}

fn no_test_mounts_on_host() -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let prefix = test_dir_prefix();
    let leaked: Vec<&str> = info.lines().filter(|l| l.contains(&prefix)).collect();
    ensure!(leaked.is_empty(), "mounts left on the host: {leaked:#?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fixture: a busybox image as one lower layer, empty upper and work dirs, a bundle.

struct Fixture {
    _dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    rootfs: PathBuf,
    host: PathBuf,
    /// First host uid/gid of the pod's range.
    base: u32,
}

fn fixture() -> Result<Fixture> {
    let dir = tempfile::Builder::new().prefix(&test_dir_prefix()).tempdir_in("/var/tmp")?;
    let d = dir.path();
    let lower = d.join("lower");
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "home/user", "var/run-target"] {
        fs::create_dir_all(lower.join(sub))?;
    }
    fs::set_permissions(lower.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy("/bin/busybox", lower.join("bin/busybox"))?;
    for applet in APPLETS.get().ok_or_else(|| anyhow!("no applets"))? {
        if applet != "busybox" {
            symlink("busybox", lower.join("bin").join(applet))?;
        }
    }
    fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")?;
    fs::write(lower.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")?;
    fs::write(lower.join("etc/image-file"), "from the image\n")?;
    nix::unistd::chown(&lower.join("home/user"), Some(1000.into()), Some(1000.into()))?;
    // A symlink pointing out of the root: must resolve inside it.
    symlink("/../../../../var/run-target", lower.join("escape"))?;
    let upper = d.join("upper");
    let work = d.join("work");
    let rootfs = d.join("bundle/rootfs");
    let host = d.join("host");
    for p in [&upper, &work, &rootfs, &host] {
        fs::create_dir_all(p)?;
    }
    Ok(Fixture { lower, upper, work, rootfs, host, base: random_base()?, _dir: dir })
}

fn caps(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn process(args: &[&str]) -> ProcessPlan {
    // containerd's default set, as a spec that asks for nothing carries it.
    let set = caps(&RUNTIME_DEFAULT);
    ProcessPlan {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        umask: Some(0o022),
        terminal: false,
        console_size: None,
        rlimits: vec![RlimitPlan { resource: RlimitResource::Nofile, soft: 1024, hard: 1024 }],
        capabilities: CapabilityPlan {
            bounding: set.clone(),
            effective: set.clone(),
            inheritable: vec![],
            permitted: set,
            ambient: vec![],
        },
        no_new_privileges: true,
        seccomp: vec![],
        oom_score_adj: None,
    }
}

fn mount(
    dest: &str,
    kind: MountKind,
    data: Option<&str>,
    ro: bool,
    nosuid: bool,
    nodev: bool,
    noexec: bool,
) -> MountPlan {
    MountPlan {
        destination: dest.into(),
        kind,
        readonly: ro,
        nosuid,
        nodev,
        noexec,
        data: data.map(str::to_string),
    }
}

fn plan(fx: &Fixture, id: &str, args: &[&str]) -> ContainerPlan {
    let root =
        OverlayRoot { lower: &fx.lower, upper: &fx.upper, work: &fx.work, rootfs: &fx.rootfs };
    ContainerPlan {
        hostname: Some("moat-test".into()),
        mounts: vec![
            mount("/proc", MountKind::Proc, None, false, true, true, true),
            mount(
                "/dev",
                MountKind::Tmpfs,
                Some("mode=755,size=65536k"),
                false,
                true,
                false,
                false,
            ),
            mount(
                "/dev/pts",
                MountKind::Devpts,
                Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
                false,
                true,
                false,
                true,
            ),
            mount(
                "/dev/shm",
                MountKind::Tmpfs,
                Some("mode=1777,size=65536k"),
                false,
                true,
                true,
                true,
            ),
            mount("/dev/mqueue", MountKind::Mqueue, None, false, true, true, true),
            mount("/sys", MountKind::Sysfs, None, true, true, true, true),
            mount("/sys/fs/cgroup", MountKind::Cgroup, None, true, true, true, true),
        ],
        masked_paths: [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/sys/firmware",
            "/proc/scsi",
            "/proc/acpi",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
        readonly_paths: ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"]
            .iter()
            .map(PathBuf::from)
            .collect(),
        ..own_container(id, root, fx.base, process(args))
    }
}

/// What a finished container printed and its exit code.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn pipes() -> Result<((OwnedFd, OwnedFd), (OwnedFd, OwnedFd))> {
    let p = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    Ok((p()?, p()?))
}

fn read_all(fd: OwnedFd) -> Result<String> {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s)?;
    Ok(s)
}

/// create + start + collect output + exit code.
fn run_plan(
    launcher: &Launcher,
    plan: &ContainerPlan,
    userns: Option<&OwnedFd>,
) -> Result<(Outcome, Option<OwnedFd>)> {
    let ((out_r, out_w), (err_r, err_w)) = pipes()?;
    let stdio = Stdio { stdin: None, stdout: Some(out_w), stderr: Some(err_w) };
    let mut pending = launcher.create(plan, stdio, userns.map(|f| f.as_fd()))?;
    let ns = pending.userns.take();
    let pid = pending.pid;
    pending.start()?;
    let stdout = read_all(out_r)?;
    let stderr = read_all(err_r)?;
    let code = wait_exit(pid, Duration::from_secs(20))?;
    Ok((Outcome { code, stdout, stderr }, ns))
}

/// exec + start + collect output + exit code (waited for 10 s).
fn run_exec(launcher: &Launcher, exec: &ExecPlan, init: &PidFd) -> Result<Outcome> {
    let ((out_r, out_w), (err_r, err_w)) = pipes()?;
    let stdio = Stdio { stdin: None, stdout: Some(out_w), stderr: Some(err_w) };
    let pending = launcher.exec(exec, stdio, init)?;
    let pid = pending.pid;
    pending.start()?;
    let stdout = read_all(out_r)?;
    let stderr = read_all(err_r)?;
    let code = wait_exit(pid, Duration::from_secs(10))?;
    Ok(Outcome { code, stdout, stderr })
}

fn run(launcher: &Launcher, fx: &Fixture, script: &str) -> Result<Outcome> {
    let p = plan(fx, "c1", &["sh", "-c", script]);
    Ok(run_plan(launcher, &p, None)?.0)
}

fn ok(o: Outcome) -> Result<String> {
    ensure!(o.code == 0, "exit code {} (stdout {:?}, stderr {:?})", o.code, o.stdout, o.stderr);
    Ok(o.stdout)
}

// ---------------------------------------------------------------------------------------
// Tests

fn runs_as_root_of_the_pod_user_namespace(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let out = ok(run(l, &fx, "id; cat /proc/self/uid_map /proc/self/gid_map")?)?;
    ensure!(out.contains("uid=0(root) gid=0(root)"), "id: {out}");
    let want = format!("0 {} {RANGE}", fx.base);
    let maps: Vec<String> =
        out.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    ensure!(maps == [want.clone(), want], "maps: {maps:?}");
    Ok(())
}

fn image_files_owned_by_root_appear_as_root(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let out = ok(run(l, &fx, "stat -c '%u:%g %n' /bin/busybox /etc/passwd /home/user")?)?;
    ensure!(out.contains("0:0 /bin/busybox"), "{out}");
    ensure!(out.contains("0:0 /etc/passwd"), "{out}");
    ensure!(out.contains("1000:1000 /home/user"), "{out}");
    let out = ok(run(l, &fx, "ls -ln /")?)?;
    for line in out.lines().filter(|l| l.contains(" bin") || l.contains(" etc")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.get(2) == Some(&"0") && f.get(3) == Some(&"0"), "ls -ln /: {line}");
    }
    Ok(())
}

fn hostname_is_set_in_a_new_uts_namespace(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let out = ok(run(l, &fx, "hostname")?)?;
    ensure!(out.trim() == "moat-test", "{out}");
    ensure!(nix::unistd::gethostname()?.to_string_lossy() != "moat-test", "host hostname changed");
    Ok(())
}

fn file_written_by_container_root_lands_in_upperdir_as_mapped_uid(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    ok(run(l, &fx, "echo hi > /new-file && echo more >> /etc/image-file && mkdir /root/dir")?)?;
    for rel in ["new-file", "etc/image-file", "root/dir"] {
        let meta = fs::symlink_metadata(fx.upper.join(rel)).with_context(|| rel.to_string())?;
        ensure!(
            meta.uid() == fx.base && meta.gid() == fx.base,
            "{rel}: owned by {}:{} on the host, want {}",
            meta.uid(),
            meta.gid(),
            fx.base
        );
    }
    // The image layer itself is untouched.
    ensure!(fs::read_to_string(fx.lower.join("etc/image-file"))? == "from the image\n");
    ensure!(fs::metadata(fx.lower.join("etc/passwd"))?.uid() == 0);
    Ok(())
}

fn container_root_with_all_capabilities_cannot_mount(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(&fx, "c1", &["sh", "-c", "mount -t tmpfs none /tmp && echo MOUNTED; mount -o remount,rw /sys && echo REMOUNTED; grep CapEff /proc/self/status"]);
    let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    p.process.capabilities = CapabilityPlan {
        bounding: all.clone(),
        effective: all.clone(),
        inheritable: vec![],
        permitted: all,
        ambient: vec![],
    };
    let (o, _) = run_plan(l, &p, None)?;
    ensure!(!o.stdout.contains("MOUNTED"), "mount succeeded: {o:?}");
    let err = o.stderr.to_lowercase();
    ensure!(
        err.matches("permission denied").count() + err.matches("operation not permitted").count()
            == 2,
        "{o:?}"
    );
    ensure!(
        o.stdout.contains("CapEff:\t000001ffffffffff") || o.stdout.contains("CapEff:\t0000"),
        "{o:?}"
    );
    Ok(())
}

fn dev_has_only_the_standard_nodes(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let out = ok(run(l, &fx, "ls -A /dev; stat -c '%n %t:%T %a %u' /dev/null /dev/zero /dev/tty; echo x > /dev/null && head -c 4 /dev/zero | wc -c")?)?;
    let mut names: Vec<&str> = out.lines().take_while(|l| !l.starts_with("/dev/")).collect();
    names.sort();
    let want = [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ];
    ensure!(names == want, "/dev has {names:?}");
    ensure!(out.contains("/dev/null 1:3 666 0"), "{out}");
    ensure!(out.lines().last().map(str::trim) == Some("4"), "{out}");
    Ok(())
}

fn masked_and_readonly_paths_hold(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    // (This kernel has no /proc/kcore; /proc/keys is masked the same way.)
    let o = run(l, &fx, "wc -c < /proc/keys; stat -c '%t:%T' /proc/keys; ls -A /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo WROTE")?;
    let lines: Vec<&str> = o.stdout.lines().collect();
    ensure!(lines.first().map(|s| s.trim()) == Some("0"), "{o:?}");
    ensure!(lines.get(1) == Some(&"1:3"), "/proc/keys is not /dev/null: {o:?}");
    ensure!(lines.get(2).map(|s| s.trim()) == Some("0"), "/sys/firmware not empty: {o:?}");
    ensure!(!o.stdout.contains("WROTE"), "wrote to /proc/sys: {o:?}");
    Ok(())
}

fn stdout_is_captured_and_exit_code_observed(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let o = run(l, &fx, "echo to-stdout; echo to-stderr >&2; exit 7")?;
    ensure!(o.code == 7 && o.stdout == "to-stdout\n" && o.stderr == "to-stderr\n", "{o:?}");
    // No signal is left ignored or blocked by the (Rust) helper, no fd beyond stdio leaks.
    let out = ok(run(l, &fx, "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd")?)?;
    ensure!(
        out.contains("SigBlk:\t0000000000000000") && out.contains("SigIgn:\t0000000000000000"),
        "{out}"
    );
    let fds: Vec<&str> = out.lines().skip(2).collect();
    ensure!(fds == ["0", "1", "2", "3"], "fds of ls (3 is its /proc/self/fd): {fds:?}");
    Ok(())
}

fn exec_plan(id: &str, init_pid: i32, args: &[&str]) -> ExecPlan {
    ExecPlan {
        container_id: "c1".into(),
        exec_id: id.into(),
        init_pid,
        cgroup_procs: vec![],
        process: process(args),
    }
}

/// Creates and starts `p`, an init that keeps running, and runs `body` with its pid and pidfd;
/// then kills and reaps the init, whatever `body` returned.
fn with_running_init(
    l: &Launcher,
    p: &ContainerPlan,
    body: impl FnOnce(i32, &PidFd) -> Result<()>,
) -> Result<()> {
    let pending = l.create(p, Stdio::default(), None)?;
    let init = pending.pid;
    let init_fd = pending.pidfd.clone();
    pending.start()?;
    let result = body(init, &init_fd);
    let _ = nix::sys::signal::kill(Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_exit(init, Duration::from_secs(10));
    result
}

fn exec_joins_the_running_container(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let p = plan(&fx, "c1", &["sh", "-c", "echo marker > /tmp/marker; exec sleep 30"]);
    with_running_init(l, &p, |init, init_fd| {
        let host_pidns = fs::read_link(format!("/proc/{init}/ns/pid"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fx.upper.join("tmp/marker").exists() {
            ensure!(Instant::now() < deadline, "init never wrote its marker");
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = exec_plan("e1", init, &["sh", "-c", "cat /tmp/marker; readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr '\\0' ' '; echo; id -u; hostname"]);
        let Outcome { code, stdout: out, stderr: err } = run_exec(l, &e, init_fd)?;
        ensure!(code == 0, "exec failed: {out} {err}");
        let lines: Vec<&str> = out.lines().collect();
        ensure!(lines.first() == Some(&"marker"), "{out}");
        ensure!(
            lines.get(1).map(PathBuf::from) == Some(host_pidns.clone()),
            "pid ns {out} vs {host_pidns:?}"
        );
        ensure!(lines.get(2).map(|s| s.trim()) == Some("sleep 30"), "{out}");
        ensure!(lines.get(3) == Some(&"0") && lines.get(4) == Some(&"moat-test"), "{out}");
        // An exec whose binary is missing fails at start, the container keeps running.
        let e = exec_plan("e2", init, &["/no/such/binary"]);
        let pending = l.exec(&e, Stdio::default(), init_fd)?;
        let err =
            pending.start().err().ok_or_else(|| anyhow!("exec of a missing binary succeeded"))?;
        ensure!(
            err.exec_id.as_deref() == Some("e2") && err.errno == Some(nix::errno::Errno::ENOENT),
            "{err}"
        );
        ensure!(fs::read_link(format!("/proc/{init}/ns/pid")).is_ok(), "init died");
        Ok(())
    })
}

fn expect_spawn_error(r: Result<Pending, SpawnError>, what: &str) -> Result<SpawnError> {
    match r {
        Ok(p) => bail!("{what}: created pid {}", p.pid),
        Err(e) => Ok(e),
    }
}

fn cwd_outside_the_root_is_refused(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    // The attack of CVE-2024-21626: a host directory reachable through an inherited fd.
    let mut p = plan(&fx, "c1", &["sh", "-c", "ls"]);
    p.process.cwd = "/proc/self/fd/0".into();
    let dir = nix::fcntl::open(
        &fx.host,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )?;
    let e = expect_spawn_error(
        l.create(&p, Stdio { stdin: Some(dir), stdout: None, stderr: None }, None),
        "cwd /proc/self/fd/0",
    )?;
    ensure!(e.step.contains("cwd") && e.container_id == "c1", "{e}");
    ensure!(e.to_string().contains("outside the container root") || e.errno.is_some(), "{e}");
    // Through a symlink pointing "out": it stays inside.
    let mut p = plan(&fx, "c1", &["sh", "-c", "pwd"]);
    p.process.cwd = "/escape".into();
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(out.trim() == "/var/run-target", "{out}");
    Ok(())
}

fn missing_binary_is_reported_by_start(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let p = plan(&fx, "c1", &["/bin/does-not-exist"]);
    let pending = l.create(&p, Stdio::default(), None)?;
    let pid = pending.pid;
    let e = pending.start().err().ok_or_else(|| anyhow!("start succeeded"))?;
    ensure!(
        e.errno == Some(nix::errno::Errno::ENOENT) && e.step.contains("/bin/does-not-exist"),
        "{e}"
    );
    ensure!(wait_exit(pid, Duration::from_secs(10))? != 0);
    let p = plan(&fx, "c1", &["no-such-command"]);
    let e = l
        .create(&p, Stdio::default(), None)?
        .start()
        .err()
        .ok_or_else(|| anyhow!("start succeeded"))?;
    ensure!(e.to_string().contains("not found in $PATH"), "{e}");
    Ok(())
}

fn dropping_pending_runs_nothing(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let p = plan(&fx, "c1", &["sh", "-c", "touch /ran"]);
    let pending = l.create(&p, Stdio::default(), None)?;
    let pid = pending.pid;
    drop(pending);
    wait_exit(pid, Duration::from_secs(10))?;
    ensure!(!fx.upper.join("ran").exists(), "the process ran");
    Ok(())
}

fn sysctls_apply_to_the_container_network_namespace_only(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")?;
    let mut p = plan(
        &fx,
        "c1",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            "/proc/sys/net/ipv4/ping_group_range",
        ],
    );
    p.sysctls.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
    p.sysctls.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    let out = ok(run_plan(l, &p, None)?.0)?;
    let lines: Vec<String> =
        out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    // The gid range is container gids: the pod's whole mapped range.
    ensure!(lines == ["0", "0 65535"], "{out}");
    ensure!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")? == host_before,
        "host sysctl changed"
    );
    // A name that climbs out of /proc/sys is refused.
    let mut p = plan(&fx, "c1", &["true"]);
    p.sysctls.insert("net/../../../etc/passwd".into(), "x".into());
    let e = expect_spawn_error(l.create(&p, Stdio::default(), None), "bad sysctl")?;
    ensure!(e.step.contains("sysctl"), "{e}");
    Ok(())
}

fn non_root_user_keeps_only_planned_capabilities(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(&fx, "c1", &["sh", "-c", "id; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status; umask; touch /etc/x 2>&1 || echo DENIED; ulimit -n"]);
    p.process.uid = 1000;
    p.process.gid = 1000;
    p.process.additional_gids = vec![5];
    p.process.umask = Some(0o027);
    p.process.rlimits =
        vec![RlimitPlan { resource: RlimitResource::Nofile, soft: 512, hard: 1024 }];
    p.process.capabilities = CapabilityPlan {
        bounding: caps(&["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]),
        effective: caps(&["CAP_NET_BIND_SERVICE"]),
        inheritable: caps(&["CAP_NET_BIND_SERVICE"]),
        permitted: caps(&["CAP_NET_BIND_SERVICE"]),
        ambient: caps(&["CAP_NET_BIND_SERVICE"]),
    };
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(out.contains("uid=1000(user) gid=1000(user) groups=5(tty)"), "{out}");
    // CAP_NET_BIND_SERVICE is bit 10 (0x400); CAP_CHOWN bit 0.
    for want in [
        "CapInh:\t0000000000000400",
        "CapPrm:\t0000000000000400",
        "CapEff:\t0000000000000400",
        "CapBnd:\t0000000000000401",
        "CapAmb:\t0000000000000400",
        "NoNewPrivs:\t1",
    ] {
        ensure!(out.contains(want), "want {want:?} in {out}");
    }
    ensure!(
        out.contains("0027") && out.contains("DENIED") && out.trim_end().ends_with("512"),
        "{out}"
    );
    Ok(())
}

fn second_container_joins_the_pod_user_namespace(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let first = plan(&fx, "pause", &["sh", "-c", "readlink /proc/self/ns/user"]);
    let (o1, ns) = run_plan(l, &first, None)?;
    let ns = ns.ok_or_else(|| anyhow!("no userns fd returned"))?;
    let mut second = plan(&fx, "app", &["sh", "-c", "readlink /proc/self/ns/user; id -u"]);
    second.user.action = UserNamespaceAction::JoinPod;
    let (o2, _) = run_plan(l, &second, Some(&ns))?;
    let first_ns = ok(o1)?;
    let second_out = ok(o2)?;
    ensure!(second_out.lines().next() == first_ns.lines().next(), "{first_ns} vs {second_out}");
    let st = nix::sys::stat::fstat(ns.as_fd())?;
    ensure!(
        first_ns.contains(&st.st_ino.to_string()),
        "returned fd is not the container's userns: {first_ns}"
    );
    // JoinPod without an fd is refused before anything starts.
    let e = expect_spawn_error(l.create(&second, Stdio::default(), None), "JoinPod without fd")?;
    ensure!(e.to_string().contains("no pod user namespace fd"), "{e}");
    Ok(())
}

fn bind_mounts_idmapped_or_not(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    fs::write(fx.host.join("owned-by-host-root"), "x")?;
    let mut p = plan(&fx, "c1", &["sh", "-c", "stat -c '%u %n' /mapped/owned-by-host-root /plain/owned-by-host-root; touch /plain/y 2>/dev/null && echo PLAIN-WRITABLE; touch /mapped/z && echo MAPPED-WRITABLE"]);
    p.mounts.push(mount(
        "/mapped",
        MountKind::Bind { source: fx.host.clone(), recursive: true, idmap: true, from_host: false },
        None,
        false,
        true,
        true,
        false,
    ));
    p.mounts.push(mount(
        "/plain",
        MountKind::Bind {
            source: fx.host.clone(),
            recursive: true,
            idmap: false,
            from_host: false,
        },
        None,
        true,
        true,
        true,
        false,
    ));
    // A target reached through a symlink that points "out of" the root lands inside it.
    p.mounts.push(mount("/escape/sub", MountKind::Tmpfs, None, false, true, true, true));
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(out.contains("0 /mapped/owned-by-host-root"), "{out}");
    ensure!(out.contains("65534 /plain/owned-by-host-root"), "{out}");
    ensure!(!out.contains("PLAIN-WRITABLE") && out.contains("MAPPED-WRITABLE"), "{out}");
    // Written through the idmapped mount by container root: host uid 0 on disk.
    ensure!(fs::metadata(fx.host.join("z"))?.uid() == 0);
    // The mount targets were created in the upper layer, owned by container root.
    ensure!(fs::metadata(fx.upper.join("mapped"))?.uid() == fx.base);
    ensure!(fs::metadata(fx.upper.join("var/run-target/sub"))?.uid() == fx.base);
    ensure!(!Path::new("/var/run-target").exists(), "created a directory on the host");
    Ok(())
}

/// What the master end of a terminal holds once its process exited and the slave is closed:
/// read until the end (EIO marks it).
fn read_console(master: OwnedFd) -> String {
    let mut out = Vec::new();
    let mut f = fs::File::from(master);
    let mut buf = [0u8; 4096];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn terminal_gives_a_controlling_pty(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(&fx, "c1", &["sh", "-c", "tty; stty size; stat -c '%u %g' $(tty)"]);
    p.process.terminal = true;
    p.process.console_size = Some((33, 101));
    let mut pending = l.create(&p, Stdio::default(), None)?;
    let master = pending.console.take().ok_or_else(|| anyhow!("no console fd"))?;
    let pid = pending.pid;
    pending.start()?;
    let code = wait_exit(pid, Duration::from_secs(10))?;
    let out = read_console(master);
    ensure!(code == 0, "{code} {out}");
    ensure!(out.contains("/dev/pts/0") && out.contains("33 101") && out.contains("0 5"), "{out}");
    Ok(())
}

fn readonly_rootfs_refuses_writes(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(
        &fx,
        "c1",
        &[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo ROOT-WRITABLE; touch /dev/shm/y && echo SHM-WRITABLE",
        ],
    );
    p.readonly_rootfs = true;
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(out.trim() == "SHM-WRITABLE", "{out}");
    Ok(())
}

fn bad_rootfs_mount_is_a_clear_error(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(&fx, "c1", &["true"]);
    p.rootfs_mounts[0].options.push(format!("lowerdir={}", fx.host.join("missing").display()));
    let e = expect_spawn_error(l.create(&p, Stdio::default(), None), "missing lowerdir")?;
    ensure!(e.step.contains("lowerdir") && e.errno == Some(nix::errno::Errno::ENOENT), "{e}");
    // An image whose /proc is a symlink: proc is not mounted somewhere else instead.
    let fx2 = fixture()?;
    fs::remove_dir(fx2.lower.join("proc"))?;
    symlink("/tmp", fx2.lower.join("proc"))?;
    let e = expect_spawn_error(
        l.create(&plan(&fx2, "c1", &["true"]), Stdio::default(), None),
        "/proc symlink",
    )?;
    ensure!(e.step.contains("/proc") && e.to_string().contains("symlink"), "{e}");
    let mut p = plan(&fx, "c1", &["true"]);
    p.rootfs_mounts[0].fstype = "ext4".into();
    let e = expect_spawn_error(l.create(&p, Stdio::default(), None), "unsupported rootfs type")?;
    ensure!(e.to_string().contains("unsupported rootfs mount type"), "{e}");
    Ok(())
}

fn app_container_joins_the_pause_namespaces(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut pause = plan(&fx, "pause", &["sleep", "30"]);
    pause.hostname = Some("pod-host".into());
    let mut pending = l.create(&pause, Stdio::default(), None)?;
    let userns = pending.userns.take().ok_or_else(|| anyhow!("no userns"))?;
    let pause_pid = pending.pid;
    pending.start()?;
    let result = (|| -> Result<()> {
        let join = |kind, name: &str| NamespacePlan {
            kind,
            action: NamespaceAction::Join(format!("/proc/{pause_pid}/ns/{name}").into()),
        };
        let mut app = plan(&fx, "app", &["sh", "-c", "hostname; for n in net ipc uts; do readlink /proc/self/ns/$n; done; ps -o pid,comm | grep sleep; cat /proc/sys/net/ipv4/ip_unprivileged_port_start"]);
        app.hostname = None;
        // (JoinPod with the fd is covered elsewhere; here the user namespace is joined by path.)
        app.user.action =
            UserNamespaceAction::JoinPath(format!("/proc/{pause_pid}/ns/user").into());
        app.namespaces = vec![
            join(NamespaceKind::Network, "net"),
            join(NamespaceKind::Ipc, "ipc"),
            join(NamespaceKind::Uts, "uts"),
            join(NamespaceKind::Pid, "pid"),
            NamespacePlan { kind: NamespaceKind::Cgroup, action: NamespaceAction::Create },
        ];
        app.sysctls.insert("net.ipv4.ip_unprivileged_port_start".into(), "80".into());
        let (o, app_userns) = run_plan(l, &app, None)?;
        let out = ok(o)?;
        let (a, b) = (
            nix::sys::stat::fstat(userns.as_fd())?,
            nix::sys::stat::fstat(app_userns.ok_or_else(|| anyhow!("no userns"))?.as_fd())?,
        );
        ensure!(a.st_ino == b.st_ino, "app is not in the pod's user namespace");
        let lines: Vec<&str> = out.lines().collect();
        ensure!(lines.first() == Some(&"pod-host"), "{out}");
        for (i, name) in ["net", "ipc", "uts"].iter().enumerate() {
            let want = fs::read_link(format!("/proc/{pause_pid}/ns/{name}"))?;
            ensure!(
                lines.get(i + 1).map(PathBuf::from) == Some(want.clone()),
                "{name}: {out} vs {want:?}"
            );
        }
        ensure!(
            lines.get(4).map(|l| l.split_whitespace().collect::<Vec<_>>())
                == Some(vec!["1", "sleep"]),
            "{out}"
        );
        ensure!(lines.get(5) == Some(&"80"), "{out}");
        Ok(())
    })();
    let _ = nix::sys::signal::kill(Pid::from_raw(pause_pid), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_exit(pause_pid, Duration::from_secs(10));
    result
}

/// A plan that joins the host's namespaces (a spec path `/proc/<host pid>/ns/*`, or a netns file that
/// is a bind mount of the host's, which the policy's path rule cannot tell apart) is refused
/// when the namespace is opened, before anything runs: the container would otherwise run in
/// the host's network namespace (the helper is a member already, so joining is a no-op).
fn a_plan_joining_the_hosts_namespaces_is_refused(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let script = "readlink /proc/self/ns/net";
    // The test runs in the host's network namespace (/proc/1/ns is unreadable on some hosts).
    let host_net = fs::read_link("/proc/self/ns/net")?;
    let netns_file = fx.host.join("netns-of-the-host");
    fs::write(&netns_file, "")?;
    nix::mount::mount(
        Some(Path::new("/proc/self/ns/net")),
        &netns_file,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )?;
    let result = (|| -> Result<()> {
        for path in
            [PathBuf::from(format!("/proc/{}/ns/net", std::process::id())), netns_file.clone()]
        {
            let mut p = plan(&fx, "host-net", &["sh", "-c", script]);
            p.namespaces.retain(|n| n.kind != NamespaceKind::Network);
            p.namespaces.push(NamespacePlan {
                kind: NamespaceKind::Network,
                action: NamespaceAction::Join(path.clone()),
            });
            match run_plan(l, &p, None) {
                Ok((o, _)) => bail!(
                    "joining {} was accepted: the container saw {:?} (the host's is {host_net:?})",
                    path.display(),
                    o.stdout.trim()
                ),
                Err(e) => ensure!(
                    format!("{e:#}").contains("the host's net namespace"),
                    "joining {}: unexpected error {e:#}",
                    path.display()
                ),
            }
        }
        let mut p = plan(&fx, "host-user", &["id", "-u"]);
        p.user.action =
            UserNamespaceAction::JoinPath(format!("/proc/{}/ns/user", std::process::id()).into());
        match run_plan(l, &p, None) {
            Ok((o, _)) => bail!("joining the host's user namespace was accepted: id -u = {o:?}"),
            Err(e) => ensure!(
                format!("{e:#}").contains("the host's user namespace"),
                "joining the host's user namespace: unexpected error {e:#}"
            ),
        }
        Ok(())
    })();
    nix::mount::umount2(&netns_file, nix::mount::MntFlags::MNT_DETACH)?;
    result
}

/// A cgroup in the pids (v1) and unified (v2) hierarchies, removed on drop.
struct TestCgroup(Vec<PathBuf>);

impl TestCgroup {
    fn new() -> Result<TestCgroup> {
        let name = format!("moat-spawn-test-{}", random_base()?);
        let mut dirs = Vec::new();
        for h in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"] {
            let d = Path::new(h).join(&name);
            fs::create_dir(&d).with_context(|| d.display().to_string())?;
            dirs.push(d);
        }
        fs::write(dirs[0].join("pids.max"), "64")?;
        Ok(TestCgroup(dirs))
    }
    fn procs(&self) -> Vec<PathBuf> {
        self.0.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = fs::remove_dir(d);
        }
    }
}

fn init_and_exec_enter_their_cgroup_and_see_only_it(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let cg = TestCgroup::new()?;
    let mut p = plan(&fx, "c1", &["sleep", "30"]);
    p.cgroup_procs = cg.procs();
    let result = with_running_init(l, &p, |init, init_fd| {
        let host_procs = fs::read_to_string(cg.0[0].join("cgroup.procs"))?;
        ensure!(
            host_procs.lines().any(|l| l == init.to_string()),
            "init {init} not in {host_procs:?}"
        );
        let mut e = exec_plan("e1", init, &["sh", "-c", "grep -E ':pids:|^0::' /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max; wc -l < /sys/fs/cgroup/pids/cgroup.procs; ls /sys/fs/cgroup; touch /sys/fs/cgroup/pids/x 2>/dev/null && echo WRITABLE"]);
        e.cgroup_procs = cg.procs();
        let Outcome { stdout: out, stderr: err, .. } = run_exec(l, &e, init_fd)?;
        let lines: Vec<&str> = out.lines().collect();
        ensure!(
            lines.first().is_some_and(|l| l.ends_with(":pids:/")) && lines.get(1) == Some(&"0::/"),
            "{out} {err}"
        );
        ensure!(lines.get(2) == Some(&"64"), "pids.max seen inside: {out}");
        // init, sh and wc: the exec'd process is in the container's cgroup.
        ensure!(lines.get(3).map(|s| s.trim()) == Some("3"), "{out}");
        ensure!(
            out.contains("unified") && out.contains("pids") && !out.contains("WRITABLE"),
            "{out}"
        );
        Ok(())
    });
    drop(cg);
    result
}

/// Waits until no process is left in `procs` (a cgroup.procs file).
fn cgroup_empties(procs: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = fs::read_to_string(procs)?;
        if left.trim().is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{left:?} still in {}", procs.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The parent's side of the fork sequence (`spawn/child.rs`) failing after fork, for the init
/// and for an exec: the child is in its first cgroup, the second cgroup.procs (/dev/full)
/// refuses its pid. The error names that step; the child never runs anything and is gone.
fn a_child_that_cannot_join_its_cgroup_runs_nothing_and_is_gone(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let cg = TestCgroup::new()?;
    let procs = cg.procs();
    let refusing = vec![procs[0].clone(), PathBuf::from("/dev/full")];
    let mut p = plan(&fx, "c1", &["sh", "-c", "touch /init-ran"]);
    p.cgroup_procs = refusing.clone();
    let e = expect_spawn_error(l.create(&p, Stdio::default(), None), "/dev/full as cgroup.procs")?;
    ensure!(
        e.container_id == "c1"
            && e.step.starts_with("write pid ")
            && e.step.ends_with(" to /dev/full")
            && e.errno == Some(nix::errno::Errno::ENOSPC),
        "{e}"
    );
    cgroup_empties(&procs[0])?;
    ensure!(!fx.upper.join("init-ran").exists(), "the init ran");

    let mut p = plan(&fx, "c1", &["sleep", "30"]);
    p.cgroup_procs = procs.clone();
    let result = with_running_init(l, &p, |init, init_fd| {
        let mut x = exec_plan("e1", init, &["sh", "-c", "touch /exec-ran"]);
        x.cgroup_procs = refusing;
        let e = expect_spawn_error(l.exec(&x, Stdio::default(), init_fd), "exec, /dev/full")?;
        ensure!(
            e.exec_id.as_deref() == Some("e1")
                && e.step.ends_with(" to /dev/full")
                && e.errno == Some(nix::errno::Errno::ENOSPC),
            "{e}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = fs::read_to_string(&procs[0])?;
            if left.trim() == init.to_string() {
                break;
            }
            ensure!(Instant::now() < deadline, "{left:?} in the cgroup, not only init {init}");
            std::thread::sleep(Duration::from_millis(10));
        }
        ensure!(!fx.upper.join("exec-ran").exists(), "the exec ran");
        ensure!(init_fd.check_alive().is_ok(), "the init died with the exec");
        Ok(())
    });
    cgroup_empties(&procs[0])?;
    drop(cg);
    result
}

fn seccomp_filters_are_loaded_in_order(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let deny = |name: &str, syscalls: &[&str], errno: u32| SeccompPlan {
        name: name.into(),
        default_action: SeccompAction::Allow,
        architectures: vec![],
        rules: vec![SeccompRule {
            names: syscalls.iter().map(|s| s.to_string()).collect(),
            action: SeccompAction::Errno(errno),
            args: vec![],
        }],
        flags: vec![],
        bpf: None,
    };
    let mut p = plan(&fx, "c1", &["sh", "-c", "mkdir /d 2>&1; rmdir /tmp 2>&1; echo done"]);
    p.process.seccomp =
        vec![deny("first", &["mkdir", "mkdirat"], 1), deny("second", &["rmdir", "unlinkat"], 13)];
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(
        out.contains("Operation not permitted")
            && out.contains("Permission denied")
            && out.contains("done"),
        "{out}"
    );
    ensure!(!fx.upper.join("d").exists());
    // The same filters precompiled (as the shim sends them) behave the same.
    for filter in &mut p.process.seccomp {
        moat_sandbox::seccomp::precompile(filter)?;
        ensure!(filter.bpf.is_some());
    }
    p.container_id = "c1-precompiled".into();
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(
        out.contains("Operation not permitted")
            && out.contains("Permission denied")
            && out.contains("done"),
        "{out}"
    );
    Ok(())
}

fn oom_score_adj_is_set_or_clamped(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut p = plan(&fx, "c1", &["cat", "/proc/self/oom_score_adj"]);
    p.process.oom_score_adj = Some(500);
    ensure!(ok(run_plan(l, &p, None)?.0)?.trim() == "500");
    // Lowering below the current value needs CAP_SYS_RESOURCE, which this host withholds:
    // the container still starts, with the current value.
    let current = fs::read_to_string("/proc/self/oom_score_adj")?;
    p.process.oom_score_adj = Some(-998);
    let out = ok(run_plan(l, &p, None)?.0)?;
    let can_lower =
        caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE)?;
    ensure!(out.trim() == if can_lower { "-998" } else { current.trim() }, "{out}");
    Ok(())
}

fn concurrent_creates_from_many_threads(l: &Launcher) -> Result<()> {
    // The shim calls the launcher from many threads at once; each container gets its own
    // fixture (own upper dir) and its own output.
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                scope.spawn(move || -> Result<()> {
                    let fx = fixture()?;
                    let out = ok(run(l, &fx, &format!("echo container-{i}; touch /mine-{i}"))?)?;
                    ensure!(out.trim() == format!("container-{i}"), "{out}");
                    ensure!(fx.upper.join(format!("mine-{i}")).exists());
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("thread panicked"))))
            .collect()
    });
    results.into_iter().collect()
}

fn bind_rootfs_and_prepopulated_rootfs_are_idmapped(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    // containerd's bind rootfs (a read-only view snapshot).
    let mut p = plan(&fx, "c1", &["sh", "-c", "stat -c '%u %n' /etc/passwd /home/user; touch /x 2>/dev/null && echo WRITABLE; echo ok"]);
    p.rootfs_mounts = vec![RootfsMount {
        fstype: "bind".into(),
        source: fx.lower.display().to_string(),
        options: vec!["rbind".into(), "ro".into()],
    }];
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(
        out.contains("0 /etc/passwd")
            && out.contains("1000 /home/user")
            && !out.contains("WRITABLE"),
        "{out}"
    );
    // No rootfs mounts: the populated rootfs directory itself, bound idmapped. Mount targets
    // and files created by container root are stored with container ids on disk.
    let mut p = plan(
        &fx,
        "c1",
        &["sh", "-c", "stat -c '%u %n' /etc/passwd; echo hi > /root/written; ls -d /newmnt"],
    );
    p.rootfs = fx.lower.clone();
    p.rootfs_mounts = vec![];
    p.mounts.push(mount("/newmnt", MountKind::Tmpfs, None, false, true, true, true));
    let out = ok(run_plan(l, &p, None)?.0)?;
    ensure!(out.contains("0 /etc/passwd") && out.contains("/newmnt"), "{out}");
    for rel in ["root/written", "newmnt"] {
        let m = fs::metadata(fx.lower.join(rel))?;
        ensure!(m.uid() == 0 && m.gid() == 0, "{rel} stored as {}:{}", m.uid(), m.gid());
    }
    Ok(())
}

fn exec_with_a_terminal(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    with_running_init(l, &plan(&fx, "c1", &["sleep", "30"]), |init, init_fd| {
        let mut e = exec_plan("e1", init, &["sh", "-c", "tty; stty size; echo $$"]);
        e.process.terminal = true;
        e.process.console_size = Some((12, 34));
        let mut pending = l.exec(&e, Stdio::default(), init_fd)?;
        let master = pending.console.take().ok_or_else(|| anyhow!("no console fd"))?;
        let pid = pending.pid;
        pending.start()?;
        ensure!(wait_exit(pid, Duration::from_secs(10))? == 0);
        let out = read_console(master);
        ensure!(out.contains("/dev/pts/0") && out.contains("12 34"), "{out}");
        Ok(())
    })
}

/// An image layer holding a device node (`c 1 3` at /opt/null-copy, as containerd unpacks one):
/// the root is `nodev` (overlay, bind and pre-populated roots alike), so the node does not open,
/// and `nosuid` while the process runs with no_new_privs (not without it).
fn image_device_nodes_are_dead_on_every_root(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    fs::create_dir_all(fx.lower.join("opt"))?;
    nix::sys::stat::mknod(
        &fx.lower.join("opt/null-copy"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )?;
    let script = "awk '$5 == \"/\" { print \"ROOT\", $6 }' /proc/self/mountinfo; \
                  if (exec 3<>/opt/null-copy) 2>/dev/null; then echo NODE-OPEN; else echo NODE-DEAD; fi";
    let options = |out: &str| -> Vec<String> {
        let line = out.lines().rfind(|l| l.starts_with("ROOT ")).unwrap_or("");
        line.trim_start_matches("ROOT ").split(',').map(str::to_string).collect()
    };
    let overlay = plan(&fx, "c1", &["sh", "-c", script]);
    let mut bind = plan(&fx, "c2", &["sh", "-c", script]);
    bind.rootfs_mounts = vec![RootfsMount {
        fstype: "bind".into(),
        source: fx.lower.display().to_string(),
        options: vec!["rbind".into(), "ro".into()],
    }];
    let mut populated = plan(&fx, "c3", &["sh", "-c", script]);
    populated.rootfs = fx.lower.clone();
    populated.rootfs_mounts = vec![];
    for (what, p) in [("overlay", overlay.clone()), ("bind", bind), ("populated", populated)] {
        let out = ok(run_plan(l, &p, None)?.0)?;
        let o = options(&out);
        ensure!(
            o.iter().any(|x| x == "nodev") && o.iter().any(|x| x == "nosuid"),
            "{what} root: {out}"
        );
        ensure!(out.contains("NODE-DEAD"), "{what} root: the image's c 1 3 node opened: {out}");
    }
    // A plan without no_new_privs keeps setuid binaries working: nodev, but not nosuid.
    let mut escalating = overlay;
    escalating.process.no_new_privileges = false;
    let out = ok(run_plan(l, &escalating, None)?.0)?;
    let o = options(&out);
    ensure!(o.iter().any(|x| x == "nodev") && !o.iter().any(|x| x == "nosuid"), "{out}");
    Ok(())
}

/// A plan without no_new_privs (allowPrivilegeEscalation at level baseline) for a non-root
/// user without CAP_SYS_ADMIN: its filters are loaded while it still holds CAP_SYS_ADMIN in
/// the pod's user namespace (the kernel refuses a filter later), and it runs with
/// no_new_privs off, under every filter, libseccomp-compiled or precompiled.
fn a_non_root_process_without_no_new_privs_still_gets_its_filters(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let deny_mkdir = SeccompPlan {
        name: "deny-mkdir".into(),
        default_action: SeccompAction::Allow,
        architectures: vec![],
        rules: vec![SeccompRule {
            names: vec!["mkdir".into(), "mkdirat".into()],
            action: SeccompAction::Errno(1),
            args: vec![],
        }],
        flags: vec![],
        bpf: None,
    };
    let script =
        "grep -E '^(Uid|NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/d 2>&1; echo done";
    let mut p = plan(&fx, "c1", &["sh", "-c", script]);
    p.process.uid = 1000;
    p.process.gid = 1000;
    p.process.no_new_privileges = false;
    p.process.seccomp = vec![moat_sandbox::seccomp::baseline(), deny_mkdir];
    for precompiled in [false, true] {
        if precompiled {
            for filter in &mut p.process.seccomp {
                moat_sandbox::seccomp::precompile(filter)?;
            }
            p.container_id = "c1-precompiled".into();
        }
        let out = ok(run_plan(l, &p, None)?.0)?;
        ensure!(
            out.contains("Uid:\t1000\t1000")
                && out.contains("NoNewPrivs:\t0")
                && out.contains("Seccomp:\t2")
                && out.contains("Operation not permitted")
                && out.contains("done"),
            "precompiled {precompiled}: {out}"
        );
    }
    Ok(())
}
