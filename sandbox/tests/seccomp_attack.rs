//! Attack test: a process under moat's baseline filter tries what the filter exists to stop.
//!
//! The test re-runs its own binary (`probe_child`) with MOAT_SECCOMP_PROBE set: once with the
//! baseline loaded ("filtered") and once without ("control"), so each refusal is shown to come
//! from the filter. Runs without root.

use std::process::Command;

const PROBE_ENV: &str = "MOAT_SECCOMP_PROBE";
const CLONE_NEWUSER: libc::c_ulong = 0x1000_0000;

/// errno of the last failed call, or 0 when the call succeeded.
fn outcome(ret: libc::c_long) -> i32 {
    if ret == -1 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// Each probe: a name and the errno it ended with (0 = succeeded).
fn probes() -> Vec<(&'static str, i32)> {
    let mut out = Vec::new();
    // SAFETY: raw syscalls with invalid or harmless arguments; any child created by clone is
    // handled right here (it exits at once) and nothing is shared with it.
    unsafe {
        out.push(("getpid", outcome(libc::syscall(libc::SYS_getpid))));
        out.push(("bpf", outcome(libc::syscall(libc::SYS_bpf, 0, 0, 0))));
        // KEYCTL_GET_KEYRING_ID of the session keyring: works for any user without a filter.
        out.push(("keyctl", outcome(libc::syscall(libc::SYS_keyctl, 0, -3, 0))));
        out.push(("io_uring_setup", outcome(libc::syscall(libc::SYS_io_uring_setup, 1, 0))));
        out.push(("userfaultfd", outcome(libc::syscall(libc::SYS_userfaultfd, 0))));
        out.push((
            "perf_event_open",
            outcome(libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)),
        ));
        out.push(("unshare_newuser", outcome(libc::syscall(libc::SYS_unshare, CLONE_NEWUSER))));
        let flags = CLONE_NEWUSER | libc::SIGCHLD as libc::c_ulong;
        let pid = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
        if pid == 0 {
            libc::_exit(0);
        }
        if pid > 0 {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        out.push(("clone_newuser", outcome(pid)));
        out.push(("clone3", outcome(libc::syscall(libc::SYS_clone3, 0, 0))));
        // ADDR_NO_RANDOMIZE, then put the personality back.
        let before = libc::personality(0xffff_ffff);
        out.push(("personality_query", if before == -1 { outcome(-1) } else { 0 }));
        let set = libc::personality(0x0004_0000);
        out.push(("personality_no_aslr", outcome(set as libc::c_long)));
        libc::personality(before as libc::c_ulong);
        // A target that does not exist: harmless in the control run (ENOENT), even as root.
        let target = c"/nonexistent-moat-seccomp-probe";
        let fstype = c"tmpfs";
        out.push((
            "mount",
            outcome(libc::syscall(
                libc::SYS_mount,
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                0,
            )),
        ));
    }
    // Ordinary process creation (glibc posix_spawn tries clone3 first, then falls back).
    let spawned = Command::new("/bin/true").status().map(|s| s.success()).unwrap_or(false);
    out.push(("spawn_true", if spawned { 0 } else { -1 }));
    out
}

/// Not a test of its own: the body of the child process when the parent asks for it.
#[test]
fn probe_child() {
    let Ok(mode) = std::env::var(PROBE_ENV) else { return };
    if mode == "filtered" {
        moat_sandbox::seccomp::load(&moat_sandbox::seccomp::baseline()).expect("load the baseline");
    }
    if mode == "precompiled" {
        // As the shim sends it: compiled once to BPF, loaded with seccomp(2) directly.
        let mut plan = moat_sandbox::seccomp::baseline();
        moat_sandbox::seccomp::precompile(&mut plan).expect("precompile the baseline");
        assert!(plan.bpf.is_some());
        moat_sandbox::seccomp::load(&plan).expect("load the precompiled baseline");
    }
    for (name, errno) in probes() {
        println!("probe:{name}={errno}");
    }
}

fn run_probe(mode: &str) -> Vec<(String, i32)> {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, mode)
        .output()
        .expect("run the probe child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe child ({mode}) failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.find("probe:").map(|i| &l[i + "probe:".len()..]))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(-1)))
        .collect()
}

fn get(results: &[(String, i32)], name: &str) -> i32 {
    results
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| *e)
        .unwrap_or_else(|| panic!("no probe {name}: {results:?}"))
}

#[test]
fn baseline_stops_the_attacks_and_keeps_ordinary_calls() {
    check_baseline(run_probe("filtered"));
}

#[test]
fn the_precompiled_baseline_stops_the_same_attacks() {
    check_baseline(run_probe("precompiled"));
}

fn check_baseline(filtered: Vec<(String, i32)>) {
    let control = run_probe("control");
    let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);

    // Ordinary calls work under the filter.
    assert_eq!(get(&filtered, "getpid"), 0);
    assert_eq!(get(&filtered, "personality_query"), 0, "the personality query stays allowed");
    assert_eq!(get(&filtered, "spawn_true"), 0, "process creation falls back from clone3 to clone");

    // Every attack fails with the filter's errno.
    for name in [
        "bpf",
        "keyctl",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
        "unshare_newuser",
        "clone_newuser",
        "personality_no_aslr",
        "mount",
    ] {
        assert_eq!(get(&filtered, name), eperm, "{name} under the baseline: {filtered:?}");
    }
    assert_eq!(get(&filtered, "clone3"), enosys);

    // And it is the filter that refuses: without it these succeed or fail differently.
    assert_eq!(get(&control, "keyctl"), 0, "control: keyctl works without the filter");
    assert_eq!(
        get(&control, "personality_no_aslr"),
        0,
        "control: personality works without the filter"
    );
    assert_ne!(get(&control, "unshare_newuser"), eperm, "control: {control:?}");
    assert_ne!(get(&control, "clone3"), enosys, "control: clone3 exists on this kernel");
}
