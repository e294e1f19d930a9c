//! Attack test: an exec (and a signal) aimed at a container whose init died, after another
//! process took the init's pid number. It must fail and never run in that other process's
//! namespaces (here a host process: an exec landing there would run as host root), and the
//! signal must not reach that process. Likewise a container created to join a dead pod
//! sandbox's namespaces by their `/proc/<pid>/ns/*` paths (as containerd's spec names them)
//! must fail rather than share the host's namespaces.
//!
//! Harness as in `spawn.rs` (`harness = false`): this binary doubles as the sandbox helper,
//! is a child subreaper and reaps everything on a reaper thread.
//!
//! Run as root: `cargo test -p moat-sandbox --test pid_reuse`.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::Duration;

#[path = "common/container.rs"]
mod container;
#[path = "common/reaper.rs"]
mod reaper;
#[path = "common/root.rs"]
mod root;

use anyhow::{bail, ensure, Context, Result};
use container::{own_container, random_base, OverlayRoot};
use moat_sandbox::plan::*;
use moat_sandbox::spawn::{helper_main, Launcher, Pending, SpawnError, Stdio, HELPER_ARG};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reaper::{reaper, wait_exit};

fn main() {
    if std::env::args().nth(1).as_deref() == Some(HELPER_ARG) {
        helper_main();
    }
    if !root::root_or_skip("pid_reuse") {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    std::thread::spawn(reaper);
    let launcher = Launcher::new().expect("Launcher::new");
    let tests: [Test; 2] = [
        (
            "exec_into_a_dead_container_whose_pid_was_reused_fails",
            exec_into_a_dead_container_whose_pid_was_reused_fails,
        ),
        (
            "joining_a_dead_pause_by_a_reused_pid_path_fails",
            joining_a_dead_pause_by_a_reused_pid_path_fails,
        ),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        match test(&launcher) {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED\n    {e:#}");
                failed.push(name);
            }
        }
    }
    println!("\n{ran} run, {} failed {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

type Test = (&'static str, fn(&Launcher) -> Result<()>);

/// A busybox root as one overlay lower layer.
struct Fixture {
    dir: tempfile::TempDir,
    base: u32,
}

fn fixture() -> Result<Fixture> {
    let dir = tempfile::Builder::new().prefix("moat-spawn-test-").tempdir_in("/var/tmp")?;
    let lower = dir.path().join("lower");
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(lower.join(sub))?;
    }
    fs::set_permissions(lower.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy("/bin/busybox", lower.join("bin/busybox"))?;
    for applet in ["sh", "sleep", "readlink", "cat", "echo"] {
        symlink("busybox", lower.join("bin").join(applet))?;
    }
    fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(lower.join("etc/group"), "root:x:0:\n")?;
    for d in ["upper", "work", "bundle/rootfs"] {
        fs::create_dir_all(dir.path().join(d))?;
    }
    Ok(Fixture { base: random_base()?, dir })
}

fn process(args: &[&str]) -> ProcessPlan {
    let caps: Vec<String> = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"].map(String::from).to_vec();
    ProcessPlan {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin:/usr/bin:/sbin:/usr/sbin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        umask: Some(0o022),
        terminal: false,
        console_size: None,
        rlimits: vec![],
        capabilities: CapabilityPlan {
            bounding: caps.clone(),
            effective: caps.clone(),
            inheritable: vec![],
            permitted: caps,
            ambient: vec![],
        },
        no_new_privileges: true,
        seccomp: vec![],
        oom_score_adj: None,
    }
}

fn plan(fx: &Fixture, args: &[&str]) -> ContainerPlan {
    plan_for(fx, "victim", args)
}

fn plan_for(fx: &Fixture, id: &str, args: &[&str]) -> ContainerPlan {
    let d = fx.dir.path();
    let root = OverlayRoot {
        lower: &d.join("lower"),
        upper: &d.join("upper"),
        work: &d.join("work"),
        rootfs: &d.join("bundle/rootfs"),
    };
    ContainerPlan {
        hostname: Some("victim".into()),
        mounts: vec![MountPlan {
            destination: "/proc".into(),
            kind: MountKind::Proc,
            readonly: false,
            nosuid: true,
            nodev: true,
            noexec: true,
            data: None,
        }],
        ..own_container(id, root, fx.base, process(args))
    }
}

/// The namespaces of a process, as `readlink /proc/<pid>/ns/<name>` shows them.
fn namespaces_of(pid: &str) -> Result<Vec<String>> {
    ["user", "mnt", "pid", "net", "ipc", "uts"]
        .iter()
        .map(|n| {
            let p = format!("/proc/{pid}/ns/{n}");
            Ok(fs::read_link(&p).with_context(|| p.clone())?.display().to_string())
        })
        .collect()
}

/// Starts a host process (`sleep`) whose pid is `want`: writes `want - 1` to
/// `/proc/sys/kernel/ns_last_pid` (under its flock, as CRIU does) and forks, until the kernel
/// hands out `want` (other processes on the machine take pids too). Bounded.
fn impostor_with_pid(want: i32) -> Result<i32> {
    let mut last = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/sys/kernel/ns_last_pid")
        .context("open /proc/sys/kernel/ns_last_pid")?;
    // SAFETY: flock on an fd we own; no memory is involved.
    let rc = unsafe { libc::flock(last.as_raw_fd(), libc::LOCK_EX) };
    ensure!(rc == 0, "flock ns_last_pid: {}", std::io::Error::last_os_error());
    for attempt in 0..500 {
        last.write_all((want - 1).to_string().as_bytes()).context("write ns_last_pid")?;
        let child = std::process::Command::new("/bin/sleep")
            .arg("3600")
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("spawn the impostor")?;
        let pid = child.id() as i32;
        if pid == want {
            eprintln!("the impostor got pid {want} after {} attempt(s)", attempt + 1);
            return Ok(pid);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = wait_exit(pid, Duration::from_secs(5));
    }
    bail!("no process could be given pid {want} in 500 attempts")
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    let _ = fs::File::from(fd).read_to_string(&mut s);
    s
}

/// A `sh -c` script printing the namespaces of its process, in the order of [`namespaces_of`].
const PRINT_NAMESPACES: &str =
    "for n in user mnt pid net ipc uts; do readlink /proc/self/ns/$n; done";

/// Kills `victim` (a container's init), waits until it is reaped, has a host process (the
/// impostor) take its pid number and runs `attack(impostor)`; then kills and reaps the
/// impostor, whatever the attack returned.
fn once_its_pid_is_reused(victim: i32, attack: impl FnOnce(i32) -> Result<()>) -> Result<()> {
    kill(Pid::from_raw(victim), Signal::SIGKILL)?;
    wait_exit(victim, Duration::from_secs(10))?;
    let impostor = impostor_with_pid(victim)?;
    let result = attack(impostor);
    let _ = kill(Pid::from_raw(impostor), Signal::SIGKILL);
    let _ = wait_exit(impostor, Duration::from_secs(10));
    result
}

/// What became of a process that should have been refused.
enum Attempt {
    /// It ran (and has exited): the lines it printed.
    Ran(Vec<String>),
    /// Refused: the error, and what reached its stdout all the same.
    Refused(SpawnError, String),
}

/// `spawn` (a create or an exec) with stdout on a pipe, then its start; waits for the process
/// when it ran.
fn attempt(spawn: impl FnOnce(Stdio) -> Result<Pending, SpawnError>) -> Result<Attempt> {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let stdio = Stdio { stdin: None, stdout: Some(out_w), stderr: None };
    let outcome = spawn(stdio).and_then(|pending| {
        let pid = pending.pid;
        pending.start().map(|()| pid)
    });
    let out = read_all(out_r);
    Ok(match outcome {
        Ok(pid) => {
            let _ = wait_exit(pid, Duration::from_secs(10));
            Attempt::Ran(out.lines().map(str::to_string).collect())
        }
        Err(e) => Attempt::Refused(e, out),
    })
}

fn exec_into_a_dead_container_whose_pid_was_reused_fails(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let pending = l.create(&plan(&fx, &["sleep", "3600"]), Stdio::default(), None)?;
    let init = pending.pid;
    // What the shim keeps of the init: its pidfd, taken before the pid could be reused.
    let init_fd = pending.pidfd.clone();
    pending.start()?;
    // The container's init dies and is reaped: its pid number is free again.
    once_its_pid_is_reused(init, |impostor| {
        let host = namespaces_of("self")?;
        ensure!(namespaces_of(&impostor.to_string())? == host, "the impostor is a host process");
        let exec = ExecPlan {
            container_id: "victim".into(),
            exec_id: "e1".into(),
            init_pid: init,
            cgroup_procs: vec![],
            process: process(&["sh", "-c", PRINT_NAMESPACES]),
        };
        match attempt(|stdio| l.exec(&exec, stdio, &init_fd))? {
            Attempt::Ran(seen) => {
                let landed = if seen == host { "in the host's namespaces" } else { "somewhere" };
                bail!(
                    "the exec into dead container victim (init pid {init}, now the host's \
                     `sleep` {impostor}) ran {landed}: its namespaces {seen:?}, the host's {host:?}"
                );
            }
            Attempt::Refused(e, out) => {
                ensure!(out.is_empty(), "the refused exec still printed {out:?}");
                ensure!(
                    e.container_id == "victim" && e.errno == Some(nix::errno::Errno::ESRCH),
                    "the exec failed, but not with ESRCH naming container victim: {e}"
                );
                eprintln!("refused as it should be: {e}");
            }
        }
        // A signal for the dead init, sent as the shim sends it (through the pidfd), must not
        // reach the process that took its pid either.
        let signal = init_fd.send_signal(Signal::SIGKILL);
        ensure!(
            signal == Err(nix::errno::Errno::ESRCH),
            "SIGKILL through the dead init's pidfd: {signal:?} instead of ESRCH"
        );
        std::thread::sleep(Duration::from_millis(100));
        ensure!(
            kill(Pid::from_raw(impostor), None).is_ok()
                && fs::read_to_string(format!("/proc/{impostor}/stat"))
                    .is_ok_and(|s| !s.contains(") Z ")),
            "the impostor {impostor} died during the attempt"
        );
        Ok(())
    })
}

fn joining_a_dead_pause_by_a_reused_pid_path_fails(l: &Launcher) -> Result<()> {
    let fx = fixture()?;
    let mut pending =
        l.create(&plan_for(&fx, "pause", &["sleep", "3600"]), Stdio::default(), None)?;
    let pod_userns = pending.userns.take().context("no user namespace from the pause")?;
    let pause = pending.pid;
    pending.start()?;
    once_its_pid_is_reused(pause, |impostor| {
        let host = namespaces_of("self")?;
        // The app container of the pod, as containerd's spec asks for it: the pause's ipc and
        // uts namespaces by path (its own rootfs: a second overlay upper dir is not needed,
        // the pause is gone).
        let mut app = plan_for(&fx, "app", &["sh", "-c", PRINT_NAMESPACES]);
        app.hostname = None;
        app.user.action = UserNamespaceAction::JoinPod;
        let join = |kind, name: &str| NamespacePlan {
            kind,
            action: NamespaceAction::Join(format!("/proc/{pause}/ns/{name}").into()),
        };
        app.namespaces = vec![
            join(NamespaceKind::Ipc, "ipc"),
            join(NamespaceKind::Uts, "uts"),
            NamespacePlan { kind: NamespaceKind::Pid, action: NamespaceAction::Create },
            NamespacePlan { kind: NamespaceKind::Network, action: NamespaceAction::Create },
            NamespacePlan { kind: NamespaceKind::Cgroup, action: NamespaceAction::Create },
        ];
        match attempt(|stdio| l.create(&app, stdio, Some(pod_userns.as_fd())))? {
            Attempt::Ran(seen) => {
                let shared: Vec<&String> = seen.iter().filter(|n| host.contains(n)).collect();
                bail!(
                    "the app container joined the dead pause (pid {pause}, now the host's \
                     `sleep` {impostor}) by path and shares the host's namespaces {shared:?} \
                     (its namespaces {seen:?})"
                );
            }
            Attempt::Refused(e, out) => {
                ensure!(out.is_empty(), "the refused container still printed {out:?}");
                ensure!(
                    e.container_id == "app" && e.step.contains(&format!("/proc/{pause}/ns/")),
                    "the create failed, but not naming container app and the path: {e}"
                );
                eprintln!("refused as it should be: {e}");
            }
        }
        Ok(())
    })
}
