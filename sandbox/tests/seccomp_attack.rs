//! Attack test: a process under moat's baseline filter tries what the filter exists to stop.
//!
//! The test re-runs its own binary (`probe_child`) with MOAT_SECCOMP_PROBE set: once with the
//! baseline loaded ("filtered") and once without ("control"), so each refusal is shown to come
//! from the filter. Runs as root: the control run must be able to create every namespace, so
//! that the filtered run's refusal is the filter's.

use std::process::Command;

const PROBE_ENV: &str = "MOAT_SECCOMP_PROBE";
const CLONE_NEWUSER: libc::c_ulong = 0x1000_0000;

/// Every namespace flag of clone/unshare, by the name the probes carry.
const NAMESPACE_FLAGS: [(&str, libc::c_ulong); 8] = [
    ("newuser", 0x1000_0000),
    ("newns", 0x0002_0000),
    ("newnet", 0x4000_0000),
    ("newpid", 0x2000_0000),
    ("newipc", 0x0800_0000),
    ("newuts", 0x0400_0000),
    ("newcgroup", 0x0200_0000),
    ("newtime", 0x0000_0080),
];

/// lsm_list_modules(2) (Linux 6.8): a syscall the kernel has and libseccomp 2.5 does not name.
const SYS_LSM_LIST_MODULES: libc::c_long = 461;
/// A syscall number no kernel has.
const SYS_NONE: libc::c_long = 1000;
const AF_VSOCK: libc::c_int = 40;
const AF_ALG: libc::c_int = 38;
const NETLINK_NETFILTER: libc::c_int = 12;

/// Runs `call` in a forked child and returns the errno it ended with (0 = succeeded): for
/// calls that change the calling process (unshare) or need a session of their own (TIOCSTI).
fn in_child(call: fn() -> libc::c_long) -> i32 {
    // SAFETY: fork in the probe process (one test thread runs); the child makes raw syscalls
    // only and leaves with _exit, so nothing of the parent's runtime state is touched there.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let ret = call();
            let errno = if ret == -1 { *libc::__errno_location() } else { 0 };
            libc::_exit(errno);
        }
        if pid < 0 {
            return -1;
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        }
    }
}

/// clone(flags | SIGCHLD) through the raw syscall; the child exits at once.
fn clone_with(flags: libc::c_ulong) -> i32 {
    // SAFETY: raw clone without CLONE_VM: the child is a copy that exits at once.
    unsafe {
        let pid =
            libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        if pid == 0 {
            libc::_exit(0);
        }
        if pid > 0 {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        outcome(pid)
    }
}

/// unshare(flag) in a child process (it changes the caller).
fn unshare_in_child(flag: libc::c_ulong) -> i32 {
    static FLAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    FLAG.store(flag, std::sync::atomic::Ordering::SeqCst);
    in_child(|| {
        // SAFETY: unshare of one namespace in this short-lived child.
        unsafe { libc::syscall(libc::SYS_unshare, FLAG.load(std::sync::atomic::Ordering::SeqCst)) }
    })
}

/// A socket of `domain`/`ty`/`proto`, closed again: 0 or the errno.
fn socket_with(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> i32 {
    // SAFETY: socket(2) and close(2) of the fd it returned.
    unsafe {
        let fd = libc::socket(domain, ty, proto);
        if fd >= 0 {
            libc::close(fd);
        }
        outcome(fd as libc::c_long)
    }
}

/// getpid through the i386 ABI (int 0x80, eax = 20): the pid, or -errno.
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> libc::c_long {
    let r: libc::c_long;
    // SAFETY: `int 0x80` with eax = 20 (i386 getpid) reads no memory and writes only eax;
    // the i386 entry path preserves every other register of a 64-bit caller.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("rax") 20_i64 => r, options(nostack));
    }
    r
}

/// In a new session: opens a pty as the controlling terminal and calls ioctl(`cmd`) on it.
fn tty_ioctl(cmd: u64) -> i32 {
    static CMD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    CMD.store(cmd, std::sync::atomic::Ordering::SeqCst);
    in_child(|| {
        // SAFETY: in the forked child: a new session, a new pty pair (the slave becomes the
        // controlling terminal), then one ioctl with a pointer to a local byte.
        unsafe {
            if libc::setsid() < 0 {
                return -1;
            }
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            if master < 0 || libc::grantpt(master) < 0 || libc::unlockpt(master) < 0 {
                return -1;
            }
            let name = libc::ptsname(master);
            if name.is_null() {
                return -1;
            }
            let slave = libc::open(name, libc::O_RDWR);
            if slave < 0 {
                return -1;
            }
            let mut byte: u8 = 0;
            libc::syscall(
                libc::SYS_ioctl,
                slave,
                CMD.load(std::sync::atomic::Ordering::SeqCst),
                &mut byte as *mut u8,
            )
        }
    })
}

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
    for (name, flag) in NAMESPACE_FLAGS {
        out.push((format_name("ns_clone", name), clone_with(flag)));
        out.push((format_name("ns_unshare", name), unshare_in_child(flag)));
    }
    // SAFETY: raw syscalls with harmless arguments (a buffer on the stack for the LSM list).
    unsafe {
        out.push(("syscall_1000", outcome(libc::syscall(SYS_NONE, 0, 0, 0, 0, 0, 0))));
        let mut ids = [0u64; 64];
        let mut size = std::mem::size_of_val(&ids) as u32;
        out.push((
            "lsm_list_modules",
            outcome(libc::syscall(SYS_LSM_LIST_MODULES, ids.as_mut_ptr(), &mut size, 0)),
        ));
    }
    out.push(("socket_vsock", socket_with(AF_VSOCK, libc::SOCK_STREAM, 0)));
    out.push(("socket_alg", socket_with(AF_ALG, libc::SOCK_SEQPACKET, 0)));
    out.push(("socket_unix", socket_with(libc::AF_UNIX, libc::SOCK_STREAM, 0)));
    out.push(("socket_inet", socket_with(libc::AF_INET, libc::SOCK_STREAM, 0)));
    out.push(("socket_inet6", socket_with(libc::AF_INET6, libc::SOCK_DGRAM, 0)));
    out.push(("socket_netlink_route", socket_with(libc::AF_NETLINK, libc::SOCK_RAW, 0)));
    out.push((
        "socket_netlink_netfilter",
        socket_with(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_NETFILTER),
    ));
    // The kernel reads ioctl's command as 32 bits: 0x1_0000_5412 is TIOCSTI too.
    out.push(("tiocsti", tty_ioctl(libc::TIOCSTI)));
    out.push(("tiocsti_high_bits", tty_ioctl(0x1_0000_0000 | libc::TIOCSTI)));
    out.push(("tioclinux", tty_ioctl(libc::TIOCLINUX)));
    out.push(("tiocgwinsz", tty_ioctl(libc::TIOCGWINSZ)));
    #[cfg(target_arch = "x86_64")]
    {
        let r = int80_getpid();
        out.push(("int80_getpid", if r < 0 { -r as i32 } else { 0 }));
    }
    // A thread (clone with CLONE_VM|CLONE_THREAD|...).
    let thread = std::thread::spawn(|| 7).join().unwrap_or(0);
    out.push(("thread", if thread == 7 { 0 } else { -1 }));
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

/// `ns_clone_newnet`-style probe names, leaked once (the probe list holds `&'static str`).
fn format_name(call: &str, flag: &str) -> &'static str {
    Box::leak(format!("{call}_{flag}").into_boxed_str())
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

    check_allowlist(&filtered, &control);
}

/// The allowlist's part: what the old default-allow baseline let through.
fn check_allowlist(filtered: &[(String, i32)], control: &[(String, i32)]) {
    let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);
    let mut wrong = Vec::new();
    let mut expect = |name: &str, errno: i32| {
        let got = get(filtered, name);
        if got != errno {
            wrong.push(format!("{name}: expected {errno}, got {got}"));
        }
    };
    // Every namespace flag, through clone and unshare: EPERM. The control run (root, no
    // filter) creates each of them, so the refusal is the filter's.
    for (flag, _) in NAMESPACE_FLAGS {
        // clone reads CLONE_NEWTIME's bit as part of its exit-signal byte; refused all the same.
        expect(&format!("ns_clone_{flag}"), eperm);
        expect(&format!("ns_unshare_{flag}"), eperm);
    }
    // Numbers the filter does not list: ENOSYS, whether or not the kernel has them.
    expect("syscall_1000", enosys);
    expect("lsm_list_modules", enosys);
    // Socket families outside the allowlist, and netlink protocols beyond route/diag.
    expect("socket_vsock", libc::EAFNOSUPPORT);
    expect("socket_alg", libc::EAFNOSUPPORT);
    expect("socket_netlink_netfilter", libc::EPROTONOSUPPORT);
    // Terminal injection, also with the high bits the kernel ignores.
    expect("tiocsti", eperm);
    expect("tiocsti_high_bits", eperm);
    expect("tioclinux", eperm);
    // The i386 ABI (int 0x80) from a 64-bit process.
    if cfg!(target_arch = "x86_64") {
        expect("int80_getpid", enosys);
    }
    // Ordinary calls keep working.
    for name in [
        "socket_unix",
        "socket_inet",
        "socket_inet6",
        "socket_netlink_route",
        "tiocgwinsz",
        "thread",
        "spawn_true",
    ] {
        expect(name, 0);
    }
    assert!(wrong.is_empty(), "under the baseline:\n{}\nall: {filtered:?}", wrong.join("\n"));

    // The control run shows each of these works without the filter on this host.
    let mut open = Vec::new();
    for (flag, _) in NAMESPACE_FLAGS {
        for call in ["ns_clone", "ns_unshare"] {
            let name = format!("{call}_{flag}");
            if get(control, &name) != 0 {
                open.push(name);
            }
        }
    }
    for name in [
        "lsm_list_modules",
        "socket_vsock",
        "socket_netlink_netfilter",
        "tiocsti",
        "tiocsti_high_bits",
        "int80_getpid",
    ] {
        if name == "int80_getpid" && !cfg!(target_arch = "x86_64") {
            continue;
        }
        if get(control, name) != 0 {
            open.push(name.to_string());
        }
    }
    assert!(open.is_empty(), "control run (no filter): these failed on their own: {open:?}");
    // This host's kernel has no AF_ALG (EAFNOSUPPORT in the control run too): the unit test
    // `seccomp::tests` shows the filter's own answer for it. TIOCLINUX needs a VT: without the
    // filter it fails otherwise than EPERM.
    assert_ne!(get(control, "tioclinux"), eperm, "control: {control:?}");
}
