//! The baseline allowlist: its table (classes, justifications) and what the compiled filter
//! answers, run through a small classic-BPF interpreter over `seccomp_data` as the kernel
//! would run it; and the OCI conversion. Loading is tested by attack in
//! `tests/seccomp_attack.rs`.

use std::collections::BTreeSet;

use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use super::*;
use crate::plan::{SeccompArg, SeccompRule};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const EAFNOSUPPORT: u32 = 97;
const EPROTONOSUPPORT: u32 = 93;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Every namespace flag of clone/unshare (NEWTIME's bit is clone's exit-signal byte).
const NAMESPACE_FLAGS: [(&str, u64); 8] = [
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWNET", 0x4000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWTIME", 0x0000_0080),
];

/// The classes rules are grouped by (field `class` of each rule).
const CLASSES: &[&str] = &[
    "file-io",
    "filesystem",
    "memory",
    "process",
    "namespaces",
    "signals",
    "time",
    "scheduling",
    "credentials",
    "system",
    "network",
    "ipc",
    "refused",
];

/// Syscalls the baseline must refuse with EPERM (moat's denials before the allowlist; the
/// e2e confinement tests expect EPERM for them).
const REQUIRED_EPERM: &[&str] = &[
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "mount_setattr",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "syslog",
    "kcmp",
    "fanotify_init",
];

/// Syscalls the baseline leaves out on purpose (ENOSYS): what Docker allows that moat does
/// not, and newer calls libc falls back from.
const REQUIRED_ENOSYS: &[&str] = &[
    "clone3",
    "modify_ldt",
    "pidfd_getfd",
    "process_madvise",
    "sethostname",
    "setdomainname",
    "vhangup",
    "fanotify_mark",
];

/// What the compiled filter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allow,
    Errno(u32),
    Other(u32),
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A classic-BPF interpreter for seccomp programs: runs `bpf` (as `precompile` exports it)
/// over the `seccomp_data` of one syscall the way the kernel does. Implements the
/// instructions libseccomp emits; an unknown one fails the test.
fn run_bpf(bpf: &[u8], arch: u32, nr: u32, args: [u64; 6]) -> Answer {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let prog: Vec<(u16, u8, u8, u32)> = bpf
        .chunks_exact(8)
        .map(|i| {
            (
                u16::from_ne_bytes([i[0], i[1]]),
                i[2],
                i[3],
                u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
            )
        })
        .collect();
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    let word = |k: u32| {
        let k = k as usize;
        u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]])
    };
    loop {
        let (code, jt, jf, k) = prog[pc];
        pc += 1;
        let jump = |cond: bool| if cond { jt as usize } else { jf as usize };
        match code {
            0x20 => a = word(k),            // ld [k]
            0x00 => a = k,                  // ld #k
            0x01 => x = k,                  // ldx #k
            0x60 => a = mem[k as usize],    // ld M[k]
            0x61 => x = mem[k as usize],    // ldx M[k]
            0x02 => mem[k as usize] = a,    // st M[k]
            0x03 => mem[k as usize] = x,    // stx M[k]
            0x07 => x = a,                  // tax
            0x87 => a = x,                  // txa
            0x54 => a &= k,                 // and #k
            0x44 => a |= k,                 // or #k
            0x04 => a = a.wrapping_add(k),  // add #k
            0x14 => a = a.wrapping_sub(k),  // sub #k
            0x05 => pc += k as usize,       // ja
            0x15 => pc += jump(a == k),     // jeq #k
            0x25 => pc += jump(a > k),      // jgt #k
            0x35 => pc += jump(a >= k),     // jge #k
            0x45 => pc += jump(a & k != 0), // jset #k
            0x1d => pc += jump(a == x),     // jeq x
            0x2d => pc += jump(a > x),      // jgt x
            0x3d => pc += jump(a >= x),     // jge x
            0x06 => return decode(k),       // ret #k
            0x16 => return decode(a),       // ret a
            other => panic!("BPF instruction {other:#x} at {} not implemented", pc - 1),
        }
    }
}

fn decode(ret: u32) -> Answer {
    match ret & 0xffff_0000 {
        0x7fff_0000 => Answer::Allow,
        0x0005_0000 => Answer::Errno(ret & 0xffff),
        _ => Answer::Other(ret),
    }
}

/// The baseline compiled to BPF, once per test.
fn baseline_bpf() -> Vec<u8> {
    let mut plan = baseline();
    precompile(&mut plan).expect("the baseline compiles");
    plan.bpf.expect("precompile fills the BPF")
}

/// The x86_64 number of `name`, if libseccomp knows it there.
fn nr(name: &str) -> Option<u32> {
    let sc = ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664).ok()?;
    u32::try_from(i32::from(sc)).ok()
}

/// What the baseline answers on x86_64 for `name(args)`.
fn answer(bpf: &[u8], name: &str, args: [u64; 6]) -> Answer {
    let n = nr(name).unwrap_or_else(|| panic!("libseccomp does not know {name} on x86_64"));
    run_bpf(bpf, AUDIT_ARCH_X86_64, n, args)
}

fn arg0(v: u64) -> [u64; 6] {
    [v, 0, 0, 0, 0, 0]
}

/// The raw profile (for the fields OCI does not carry: `class`, `comment`).
fn table() -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(BASELINE_JSON).expect("baseline is JSON");
    doc["syscalls"].as_array().expect("syscalls array").clone()
}

/// Names of the table's rules of `class` with `action`, and whether they carry arguments.
fn names_in(class: &str, allow: bool) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for r in table() {
        let is_allow = r["action"] == "SCMP_ACT_ALLOW";
        if r["class"] == class && is_allow == allow {
            let has_args = r["args"].as_array().is_some_and(|a| !a.is_empty());
            for n in r["names"].as_array().expect("names") {
                out.push((n.as_str().expect("name").to_string(), has_args));
            }
        }
    }
    out
}

// ------------------------------------------------------------------ the table

#[test]
fn baseline_is_an_allowlist_with_default_enosys_for_64_bit_abis_only() {
    let b = baseline();
    assert_eq!(b.name, BASELINE_NAME);
    assert_eq!(b.default_action, SeccompAction::Errno(ENOSYS), "unlisted syscalls: ENOSYS");
    assert_eq!(b.architectures, vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]);
    assert!(b.rules.iter().any(|r| r.action == SeccompAction::Allow), "an allow list");
}

#[test]
fn every_rule_has_a_class_and_a_justification() {
    let rules = table();
    assert!(rules.len() > 20);
    for (i, r) in rules.iter().enumerate() {
        let class = r["class"].as_str().unwrap_or_default();
        assert!(CLASSES.contains(&class), "syscalls[{i}] ({}): class {class:?}", r["names"]);
        let comment = r["comment"].as_str().unwrap_or_default();
        assert!(
            comment.split_whitespace().count() >= 5,
            "syscalls[{i}] ({}) needs a justification",
            r["names"]
        );
    }
    for class in CLASSES {
        assert!(rules.iter().any(|r| r["class"] == *class), "class {class} has no rule");
    }
    let doc: serde_json::Value = serde_json::from_str(BASELINE_JSON).expect("JSON");
    assert!(doc["comment"].as_str().is_some_and(|c| c.len() > 40), "the profile explains itself");
}

#[test]
fn no_syscall_is_both_allowed_unconditionally_and_filtered() {
    // libseccomp lets an unconditional rule win over every conditional rule of the same
    // syscall, whatever their order: such a pair would silently drop the argument filter.
    let b = baseline();
    let mut unconditional = BTreeSet::new();
    let mut conditional = BTreeSet::new();
    for r in &b.rules {
        for n in &r.names {
            if r.args.is_empty() {
                assert!(unconditional.insert(n.clone()), "{n} is named twice without arguments");
            } else {
                conditional.insert(n.clone());
            }
        }
    }
    let both: Vec<_> = unconditional.intersection(&conditional).collect();
    assert!(both.is_empty(), "unconditional and filtered at once: {both:?}");
}

#[test]
fn every_refusing_rule_names_syscalls_libseccomp_knows() {
    // An allow rule may name syscalls newer than the node's libseccomp (they stay ENOSYS
    // there); a refusing rule must not, or its exact errno would be lost on this node.
    for rule in baseline().rules.iter().filter(|r| r.action != SeccompAction::Allow) {
        for name in &rule.names {
            assert!(ScmpSyscall::from_name(name).is_ok(), "libseccomp does not know {name}");
        }
    }
}

#[test]
fn the_filter_allows_exactly_the_syscalls_the_table_allows() {
    // Every x86_64 syscall number, with all-zero arguments: allowed only if the table names it
    // in an allow rule. Numbers libseccomp has no name for (newer syscalls) are never allowed.
    let bpf = baseline_bpf();
    let allowed: BTreeSet<String> = baseline()
        .rules
        .iter()
        .filter(|r| r.action == SeccompAction::Allow)
        .flat_map(|r| r.names.clone())
        .collect();
    let mut wrong = Vec::new();
    for n in 0..1024u32 {
        if run_bpf(&bpf, AUDIT_ARCH_X86_64, n, [0; 6]) != Answer::Allow {
            continue;
        }
        let name = ScmpSyscall::from(n as i32).get_name_by_arch(ScmpArch::X8664).ok();
        match name {
            Some(name) if allowed.contains(&name) => {}
            other => wrong.push(format!("{n} ({other:?})")),
        }
    }
    assert!(wrong.is_empty(), "allowed but not in the table: {wrong:?}");
}

/// For `class`: every name in `must_allow` is allowed by a rule of that class; the filter
/// allows every unconditional allow of the class and gives every refusal of the class its
/// errno (arguments all zero).
fn check_class(class: &str, must_allow: &[&str]) {
    let bpf = baseline_bpf();
    let allows = names_in(class, true);
    for name in must_allow {
        assert!(allows.iter().any(|(n, _)| n == name), "{class}: {name} is not allowed");
    }
    for (name, has_args) in &allows {
        if *has_args || nr(name).is_none() {
            continue; // argument filters have their own tests; unknown names stay ENOSYS
        }
        assert_eq!(answer(&bpf, name, [0; 6]), Answer::Allow, "{class}: {name}");
    }
    for r in table() {
        if r["class"] != class || r["action"] == "SCMP_ACT_ALLOW" {
            continue;
        }
        if r["args"].as_array().is_some_and(|a| !a.is_empty()) {
            continue;
        }
        let errno = r["errnoRet"].as_u64().expect("errnoRet") as u32;
        for n in r["names"].as_array().expect("names") {
            let name = n.as_str().expect("name");
            if nr(name).is_some() {
                assert_eq!(answer(&bpf, name, [0; 6]), Answer::Errno(errno), "{class}: {name}");
            }
        }
    }
}

#[test]
fn class_file_io() {
    check_class(
        "file-io",
        &["read", "write", "openat", "close", "lseek", "fcntl", "epoll_wait", "sendfile", "ioctl"],
    );
}

#[test]
fn class_filesystem() {
    check_class(
        "filesystem",
        &["newfstatat", "statx", "getdents64", "mkdirat", "unlinkat", "chown", "chroot"],
    );
    check_class("filesystem", &["name_to_handle_at", "renameat2", "fchmodat", "utimensat"]);
}

#[test]
fn class_memory() {
    check_class("memory", &["brk", "mmap", "munmap", "mprotect", "madvise", "mremap"]);
}

#[test]
fn class_process() {
    check_class(
        "process",
        &["execve", "exit_group", "fork", "vfork", "wait4", "clone", "prctl", "ptrace", "rseq"],
    );
}

#[test]
fn class_namespaces() {
    check_class("namespaces", &["unshare"]);
}

#[test]
fn class_signals() {
    check_class("signals", &["rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "kill", "tgkill"]);
}

#[test]
fn class_time() {
    check_class("time", &["clock_gettime", "nanosleep", "clock_nanosleep", "adjtimex"]);
}

#[test]
fn class_scheduling() {
    check_class("scheduling", &["sched_yield", "sched_getaffinity", "getpriority"]);
}

#[test]
fn class_credentials() {
    check_class("credentials", &["getuid", "setuid", "setgid", "setgroups", "setresuid"]);
}

#[test]
fn class_system() {
    check_class("system", &["uname", "sysinfo", "getrandom"]);
}

#[test]
fn class_network() {
    check_class(
        "network",
        &["socket", "socketpair", "bind", "listen", "accept4", "connect", "sendmsg", "recvmsg"],
    );
}

#[test]
fn class_ipc() {
    check_class("ipc", &["pipe2", "futex", "eventfd2", "shmget", "semop", "mq_open"]);
}

#[test]
fn class_refused() {
    check_class("refused", &[]);
    let bpf = baseline_bpf();
    for name in REQUIRED_EPERM {
        assert_eq!(answer(&bpf, name, [0; 6]), Answer::Errno(EPERM), "{name}");
    }
    for name in REQUIRED_ENOSYS.iter().filter(|n| nr(n).is_some()) {
        assert_eq!(answer(&bpf, name, [0; 6]), Answer::Errno(ENOSYS), "{name}");
    }
}

// ------------------------------------------------------------------ argument filters

#[test]
fn clone_and_unshare_refuse_every_namespace_flag() {
    let bpf = baseline_bpf();
    for call in ["clone", "unshare"] {
        for (flag, bit) in NAMESPACE_FLAGS {
            assert_eq!(answer(&bpf, call, arg0(bit)), Answer::Errno(EPERM), "{call}({flag})");
            // Among other flags, and with upper bits the kernel ignores.
            let mixed = bit | 0x0001_0000_0000_0000 | 0x0000_0400 | 0x11;
            assert_eq!(answer(&bpf, call, arg0(mixed)), Answer::Errno(EPERM), "{call}({flag}|..)");
        }
    }
    // fork as glibc does it (CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD), and threads.
    assert_eq!(answer(&bpf, "clone", arg0(0x0120_0011)), Answer::Allow);
    assert_eq!(answer(&bpf, "clone", arg0(0x003d_0f00)), Answer::Allow);
    // unshare of the file table, fs context or semaphore undo list.
    for flags in [0x0000_0400, 0x0000_0200, 0x0004_0000, 0] {
        assert_eq!(answer(&bpf, "unshare", arg0(flags)), Answer::Allow, "unshare({flags:#x})");
    }
    assert_eq!(answer(&bpf, "clone3", [0; 6]), Answer::Errno(ENOSYS), "clone3: ENOSYS");
    assert_eq!(answer(&bpf, "setns", arg0(3)), Answer::Errno(EPERM), "setns: EPERM");
}

#[test]
fn socket_allows_only_unix_inet_inet6_and_route_or_diag_netlink() {
    let bpf = baseline_bpf();
    for call in ["socket", "socketpair"] {
        let sock = |family: u64, proto: u64| answer(&bpf, call, [family, 1, proto, 0, 0, 0]);
        for family in [1, 2, 10] {
            assert_eq!(sock(family, 0), Answer::Allow, "{call}({family})");
            assert_eq!(sock(family, 6), Answer::Allow, "{call}({family}, proto 6)");
        }
        // Netlink: route and sock_diag only.
        assert_eq!(sock(16, 0), Answer::Allow, "{call} NETLINK_ROUTE");
        assert_eq!(sock(16, 4), Answer::Allow, "{call} NETLINK_SOCK_DIAG");
        for proto in [1, 2, 3, 5, 9, 12, 15, 16, 31, 0xffff_ffff, u64::MAX] {
            assert_eq!(sock(16, proto), Answer::Errno(EPROTONOSUPPORT), "{call} netlink {proto}");
        }
        // AF_PACKET: EPERM, as the kernel answers a pod without CAP_NET_RAW over its netns.
        assert_eq!(sock(17, 0), Answer::Errno(EPERM), "{call} AF_PACKET");
        // Every other family, AF_VSOCK (40) and AF_ALG (38) among them.
        for family in (0..64).filter(|f| ![1, 2, 10, 16, 17].contains(f)) {
            assert_eq!(sock(family, 0), Answer::Errno(EAFNOSUPPORT), "{call} family {family}");
        }
        // Upper bits the kernel drops (it reads an int) never turn a refusal into an allow.
        for family in [40u64, 38, 17] {
            assert_ne!(sock(family | 0x1_0000_0000, 0), Answer::Allow, "{call} {family}+hi");
        }
        assert_ne!(sock(2 | 0x1_0000_0000, 0), Answer::Allow, "fail closed on odd upper bits");
    }
}

#[test]
fn ioctl_refuses_tiocsti_and_tioclinux_whatever_the_upper_bits() {
    const TIOCSTI: u64 = 0x5412;
    const TIOCLINUX: u64 = 0x541c;
    let bpf = baseline_bpf();
    let ioctl = |cmd: u64| answer(&bpf, "ioctl", [0, cmd, 0, 0, 0, 0]);
    for high in [0u64, 0x1_0000_0000, 0xffff_ffff_0000_0000, 0x8000_0000_0000_0000] {
        assert_eq!(ioctl(high | TIOCSTI), Answer::Errno(EPERM), "TIOCSTI {high:#x}");
        assert_eq!(ioctl(high | TIOCLINUX), Answer::Errno(EPERM), "TIOCLINUX {high:#x}");
    }
    // Every 16-bit command (with upper bits zero or set) but those two is allowed, and every
    // 32-bit value one or two bits away from them.
    for cmd in 0..=0xffffu64 {
        if cmd == TIOCSTI || cmd == TIOCLINUX {
            continue;
        }
        assert_eq!(ioctl(cmd), Answer::Allow, "ioctl {cmd:#x}");
        assert_eq!(ioctl(cmd | 0x7fff_0000_0000_0000), Answer::Allow, "ioctl {cmd:#x} + hi");
    }
    for base in [TIOCSTI, TIOCLINUX] {
        for i in 0..32 {
            for j in i..32 {
                let v = base ^ (1u64 << i) ^ if j > i { 1u64 << j } else { 0 };
                if v == TIOCSTI || v == TIOCLINUX {
                    continue;
                }
                assert_eq!(ioctl(v), Answer::Allow, "ioctl {v:#x}");
            }
        }
    }
    // Ordinary terminal and socket commands.
    for cmd in [0x5401u64, 0x5413, 0x5414, 0x541b, 0x540f, 0x8915, 0xc020_6600] {
        assert_eq!(ioctl(cmd), Answer::Allow, "ioctl {cmd:#x}");
    }
}

#[test]
fn personality_allows_exactly_dockers_values_and_refuses_the_rest_with_eperm() {
    let bpf = baseline_bpf();
    let allowed = [0u64, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
    for v in allowed {
        assert_eq!(answer(&bpf, "personality", arg0(v)), Answer::Allow, "{v:#x}");
    }
    // Every single bit, every pair of bits, and their complements: only the allowed pass.
    let mut samples = Vec::new();
    for i in 0..32 {
        samples.push(1u64 << i);
        for j in 0..32 {
            samples.push((1u64 << i) | (1u64 << j));
        }
    }
    let complements: Vec<u64> = samples.iter().map(|s| !s & 0xffff_ffff).collect();
    samples.extend(complements);
    samples.extend([0x0004_0000, 0x0040_0000, 0x0010_0000, 0x8004_0000, 0xffff_fffe, 0x0004_0008]);
    for v in samples {
        let expected = if allowed.contains(&v) { Answer::Allow } else { Answer::Errno(EPERM) };
        assert_eq!(answer(&bpf, "personality", arg0(v)), expected, "personality({v:#x})");
    }
}

// ------------------------------------------------------------------ architectures, numbers

#[test]
fn unknown_numbers_the_i386_abi_and_the_x32_abi_answer_enosys() {
    let bpf = baseline_bpf();
    // A number no kernel has, and syscalls newer than this libseccomp (lsm_list_modules 461,
    // open_tree_attr 467): not in the table, so ENOSYS.
    for n in [1000u32, 461, 467, 0xffff, 0x3fff_ffff] {
        assert_eq!(run_bpf(&bpf, AUDIT_ARCH_X86_64, n, [0; 6]), Answer::Errno(ENOSYS), "{n}");
    }
    // The i386 ABI (int 0x80): getpid is 20 there, read 3, socketcall 102.
    for n in [20u32, 3, 102, 1000] {
        assert_eq!(run_bpf(&bpf, AUDIT_ARCH_I386, n, [0; 6]), Answer::Errno(ENOSYS), "i386 {n}");
    }
    // The x32 ABI: x86_64's arch with __X32_SYSCALL_BIT; x32's own numbers 512-547 too.
    for n in [0u32, 1, 39, 57, 59, 512, 520, 545] {
        let x32 = X32_SYSCALL_BIT | n;
        assert_eq!(
            run_bpf(&bpf, AUDIT_ARCH_X86_64, x32, [0; 6]),
            Answer::Errno(ENOSYS),
            "x32 {x32:#x}"
        );
    }
    // The native numbers themselves are allowed.
    assert_eq!(answer(&bpf, "getpid", [0; 6]), Answer::Allow);
}

#[test]
fn compile_adds_only_the_compat_abis_of_this_node() {
    // aarch64 in a filter loaded on x86_64 is dead code: left out. i386 in a spec filter is
    // filtered by that filter's rules (the baseline, loaded too, answers ENOSYS for it).
    let p = oci(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
    }));
    let mut plan = from_oci(&p, "spec").expect("converts");
    precompile(&mut plan).expect("compiles");
    let bpf = plan.bpf.expect("bpf");
    let getpid = nr("getpid").expect("getpid");
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_X86_64, getpid, [0; 6]), Answer::Errno(5));
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_I386, 20, [0; 6]), Answer::Errno(5), "i386 getpid");
    assert_eq!(run_bpf(&bpf, 0xc000_00b7, 172, [0; 6]), Answer::Errno(ENOSYS), "aarch64: bad arch");
}

#[test]
fn unknown_names_never_widen_the_filters() {
    // In an allow rule: the name is left out and the syscall stays ENOSYS.
    let p = oci(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read", "no_such_syscall_2099"], "action": "SCMP_ACT_ALLOW"}
    ]}));
    let mut plan = from_oci(&p, "x").expect("converts");
    precompile(&mut plan).expect("unknown names are skipped");
    let bpf = plan.bpf.expect("bpf");
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_X86_64, nr("read").expect("read"), [0; 6]), Answer::Allow);
    // In a refusing rule of a spec filter: skipped there, but every number the baseline allows
    // has a name this libseccomp knows (`the_filter_allows_exactly_the_syscalls_the_table_allows`),
    // so a syscall it cannot name is refused by the baseline loaded under the spec filter.
    let spec = oci(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall_2099"], "action": "SCMP_ACT_ERRNO"}
    ]}));
    compile(&from_oci(&spec, "spec").expect("converts")).expect("compiles without the name");
    let baseline = baseline_bpf();
    for n in 0..1024u32 {
        let known = ScmpSyscall::from(n as i32).get_name_by_arch(ScmpArch::X8664).is_ok();
        if !known {
            assert_ne!(run_bpf(&baseline, AUDIT_ARCH_X86_64, n, [0; 6]), Answer::Allow, "{n}");
        }
    }
}

#[test]
fn baseline_compiles_and_precompiles() {
    compile(&baseline()).expect("baseline compiles with libseccomp");
    let bpf = baseline_bpf();
    assert!(!bpf.is_empty() && bpf.len().is_multiple_of(8));
}

/// The simple evaluator of plans (no libseccomp): used by the OCI conversion tests.
fn verdict(plan: &SeccompPlan, name: &str, args: [u64; 6]) -> SeccompAction {
    let holds = |a: &SeccompArg| {
        let v = args[a.index as usize];
        match a.op {
            SeccompOp::NotEqual => v != a.value,
            SeccompOp::LessThan => v < a.value,
            SeccompOp::LessOrEqual => v <= a.value,
            SeccompOp::EqualTo => v == a.value,
            SeccompOp::GreaterOrEqual => v >= a.value,
            SeccompOp::GreaterThan => v > a.value,
            SeccompOp::MaskedEqual => v & a.value == a.value_two,
        }
    };
    plan.rules
        .iter()
        .filter(|r: &&SeccompRule| r.names.iter().any(|n| n == name))
        .find(|r| r.args.iter().all(holds))
        .map(|r| r.action)
        .unwrap_or(plan.default_action)
}

#[test]
fn the_plan_evaluator_agrees_with_the_filter_on_the_baseline() {
    // The table read as a plan and the compiled BPF agree on a sample of calls.
    let plan = baseline();
    let bpf = baseline_bpf();
    let calls: &[(&str, u64)] = &[
        ("clone", CLONE_NEWUSER),
        ("clone", 0x0120_0011),
        ("unshare", 0x4000_0000),
        ("socket", 40),
        ("socket", 2),
        ("personality", 0x0004_0000),
        ("getpid", 0),
        ("bpf", 0),
    ];
    for (name, a0) in calls {
        let expected = match verdict(&plan, name, arg0(*a0)) {
            SeccompAction::Allow => Answer::Allow,
            SeccompAction::Errno(e) => Answer::Errno(e),
            other => panic!("{other:?}"),
        };
        assert_eq!(answer(&bpf, name, arg0(*a0)), expected, "{name}({a0:#x})");
    }
}

fn oci(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("OCI seccomp parses")
}

#[test]
fn from_oci_maps_actions() {
    let p = oci(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["b"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["c"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["d"], "action": "SCMP_ACT_KILL"},
            {"names": ["e"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["f"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["g"], "action": "SCMP_ACT_TRAP"},
            {"names": ["h"], "action": "SCMP_ACT_LOG"},
            {"names": ["i"], "action": "SCMP_ACT_TRACE"}
        ]
    }));
    let plan = from_oci(&p, "RuntimeDefault").expect("converts");
    assert_eq!(plan.name, "RuntimeDefault");
    assert_eq!(plan.default_action, SeccompAction::Errno(EPERM), "errno without errnoRet is EPERM");
    let actions: Vec<SeccompAction> = plan.rules.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            SeccompAction::Allow,
            SeccompAction::Errno(38),
            SeccompAction::Errno(EPERM),
            SeccompAction::KillThread,
            SeccompAction::KillThread,
            SeccompAction::KillProcess,
            SeccompAction::Trap,
            SeccompAction::Log,
            SeccompAction::Errno(ENOSYS),
        ]
    );
    let p = oci(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13}));
    assert_eq!(from_oci(&p, "x").expect("converts").default_action, SeccompAction::Errno(13));
}

#[test]
fn from_oci_maps_args_architectures_and_flags() {
    let p = oci(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 40, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_NE"},
                {"index": 2, "value": 5, "op": "SCMP_CMP_LT"},
                {"index": 3, "value": 6, "op": "SCMP_CMP_LE"},
                {"index": 4, "value": 7, "op": "SCMP_CMP_GE"},
                {"index": 5, "value": 8, "op": "SCMP_CMP_GT"}
            ]},
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ]}
        ]
    }));
    let plan = from_oci(&p, "x").expect("converts");
    assert_eq!(plan.architectures, vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]);
    assert_eq!(plan.flags, vec!["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
    let ops: Vec<(u32, u64, SeccompOp)> =
        plan.rules[0].args.iter().map(|a| (a.index, a.value, a.op)).collect();
    assert_eq!(
        ops,
        vec![
            (0, 40, SeccompOp::EqualTo),
            (1, 3, SeccompOp::NotEqual),
            (2, 5, SeccompOp::LessThan),
            (3, 6, SeccompOp::LessOrEqual),
            (4, 7, SeccompOp::GreaterOrEqual),
            (5, 8, SeccompOp::GreaterThan),
        ]
    );
    assert_eq!(
        plan.rules[1].args,
        vec![SeccompArg {
            index: 0,
            value: 2_114_060_288,
            value_two: 0,
            op: SeccompOp::MaskedEqual
        }]
    );
    compile(&plan).expect("compiles");
}

#[test]
fn from_oci_splits_comparisons_of_one_argument_into_alternatives() {
    // Docker's personality rule: any of these values.
    let p = oci(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}
        ]}]
    }));
    let plan = from_oci(&p, "x").expect("converts");
    assert_eq!(plan.rules.len(), 3);
    assert_eq!(verdict(&plan, "personality", [8, 0, 0, 0, 0, 0]), SeccompAction::Allow);
    assert_eq!(verdict(&plan, "personality", [9, 0, 0, 0, 0, 0]), SeccompAction::Errno(EPERM));
    compile(&plan).expect("libseccomp accepts the split rules");
}

#[test]
fn from_oci_refuses_notify_and_bad_argument_indexes() {
    let p = oci(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    let e = from_oci(&p, "agent").expect_err("notify");
    assert!(e.to_string().contains("agent") && e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
    let p = oci(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
    ]}));
    let e = from_oci(&p, "x").expect_err("index 6");
    assert!(e.to_string().contains("syscalls[0]") && e.to_string().contains("index 6"), "{e}");
}

#[test]
fn compile_rejects_unknown_flags() {
    let mut plan = baseline();
    plan.flags.push("SECCOMP_FILTER_FLAG_BOGUS".into());
    let Err(e) = compile(&plan) else { panic!("an unknown flag must be refused") };
    assert!(e.to_string().contains("SECCOMP_FILTER_FLAG_BOGUS"), "{e}");
}

#[test]
fn the_baseline_program_stays_well_inside_the_kernel_limit() {
    // BPF_MAXINSNS is 4096 per filter; the argument filters (ioctl, socket, personality)
    // cost most of it. Room is left for a spec filter's own program.
    let instructions = baseline_bpf().len() / 8;
    eprintln!("baseline: {instructions} BPF instructions");
    assert!(instructions < 2048, "{instructions} instructions");
}

#[test]
fn the_aarch64_filter_makes_the_same_decisions_and_closes_aarch32() {
    const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
    const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
    let ctx = compile_for(&baseline(), ScmpArch::Aarch64).expect("compiles for aarch64");
    let bpf = export(&ctx, "baseline").expect("exports");
    let nr = |name: &str| {
        let sc = ScmpSyscall::from_name_by_arch(name, ScmpArch::Aarch64).expect(name);
        u32::try_from(i32::from(sc)).expect(name)
    };
    let on = |name: &str, args: [u64; 6]| run_bpf(&bpf, AUDIT_ARCH_AARCH64, nr(name), args);
    for name in ["read", "openat", "mmap", "execve", "getpid", "futex", "newfstatat"] {
        assert_eq!(on(name, [0; 6]), Answer::Allow, "aarch64 {name}");
    }
    for (flag, bit) in NAMESPACE_FLAGS {
        assert_eq!(on("clone", arg0(bit)), Answer::Errno(EPERM), "aarch64 clone {flag}");
        assert_eq!(on("unshare", arg0(bit)), Answer::Errno(EPERM), "aarch64 unshare {flag}");
    }
    assert_eq!(on("clone", arg0(0x0120_0011)), Answer::Allow, "aarch64 fork");
    assert_eq!(on("clone3", [0; 6]), Answer::Errno(ENOSYS));
    assert_eq!(on("socket", arg0(40)), Answer::Errno(EAFNOSUPPORT), "aarch64 AF_VSOCK");
    assert_eq!(on("socket", arg0(2)), Answer::Allow, "aarch64 AF_INET");
    assert_eq!(on("ioctl", [0, 0x5412, 0, 0, 0, 0]), Answer::Errno(EPERM), "aarch64 TIOCSTI");
    assert_eq!(on("bpf", [0; 6]), Answer::Errno(EPERM));
    // AArch32 (compat) and numbers no rule names.
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_ARM, 20, [0; 6]), Answer::Errno(ENOSYS), "arm getpid");
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_AARCH64, 1000, [0; 6]), Answer::Errno(ENOSYS));
    // The x86_64 program is not in there.
    assert_eq!(run_bpf(&bpf, AUDIT_ARCH_X86_64, 39, [0; 6]), Answer::Errno(ENOSYS));
}
