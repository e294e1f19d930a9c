//! The baseline profile's content and the OCI conversion. Loading is tested by attack in
//! `tests/seccomp_attack.rs`.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use super::*;
use crate::plan::{SeccompArg, SeccompRule};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Syscalls the baseline must refuse outright (brief + review).
const REQUIRED_DENIED: &[&str] = &[
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
    "syslog",
];

/// Syscalls an ordinary workload needs: no baseline rule may name them.
const MUST_STAY_ALLOWED: &[&str] = &[
    "read",
    "write",
    "openat",
    "execve",
    "fork",
    "vfork",
    "wait4",
    "socket",
    "bind",
    "listen",
    "accept4",
    "connect",
    "epoll_wait",
    "mmap",
    "mprotect",
    "chroot",
    "chown",
    "setuid",
    "setgid",
    "setgroups",
    "ptrace",
    "prctl",
    "name_to_handle_at",
    "adjtimex",
];

fn rules_for<'a>(plan: &'a SeccompPlan, name: &str) -> Vec<&'a SeccompRule> {
    plan.rules.iter().filter(|r| r.names.iter().any(|n| n == name)).collect()
}

/// What the filter answers for `name(args)`, evaluated in Rust the way the kernel would
/// (libseccomp compares 64-bit values; masked-eq: `arg & value == value_two`).
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
    rules_for(plan, name)
        .into_iter()
        .find(|r| r.args.iter().all(holds))
        .map(|r| r.action)
        .unwrap_or(plan.default_action)
}

#[test]
fn baseline_parses_and_converts() {
    let b = baseline();
    assert_eq!(b.name, BASELINE_NAME);
    assert_eq!(b.default_action, SeccompAction::Allow);
    assert!(b.architectures.iter().any(|a| a == "SCMP_ARCH_X86_64"));
    assert!(b.architectures.iter().any(|a| a == "SCMP_ARCH_X86"), "32-bit calls are filtered too");
    assert!(b.rules.iter().all(|r| r.action != SeccompAction::Allow), "a deny list");
}

#[test]
fn baseline_refuses_every_required_syscall() {
    let b = baseline();
    for name in REQUIRED_DENIED {
        assert_eq!(verdict(&b, name, [0; 6]), SeccompAction::Errno(EPERM), "{name}");
    }
    assert_eq!(verdict(&b, "clone3", [0; 6]), SeccompAction::Errno(ENOSYS), "clone3 -> ENOSYS");
}

#[test]
fn baseline_leaves_ordinary_syscalls_alone() {
    let b = baseline();
    for name in MUST_STAY_ALLOWED {
        assert!(rules_for(&b, name).is_empty(), "{name} must stay allowed");
    }
}

#[test]
fn baseline_refuses_only_new_user_namespaces_in_clone_and_unshare() {
    let b = baseline();
    for name in ["clone", "unshare"] {
        assert_eq!(
            verdict(&b, name, [CLONE_NEWUSER, 0, 0, 0, 0, 0]),
            SeccompAction::Errno(EPERM),
            "{name}"
        );
        // CLONE_NEWUSER among other flags.
        let flags = CLONE_NEWUSER | 0x0002_0000 | 0x11;
        assert_eq!(
            verdict(&b, name, [flags, 0, 0, 0, 0, 0]),
            SeccompAction::Errno(EPERM),
            "{name}"
        );
    }
    // fork as glibc does it (CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD), and threads.
    assert_eq!(verdict(&b, "clone", [0x0120_0011, 0, 0, 0, 0, 0]), SeccompAction::Allow);
    assert_eq!(verdict(&b, "clone", [0x003d_0f00, 0, 0, 0, 0, 0]), SeccompAction::Allow);
    // unshare of the file table or fs context (used by ordinary programs).
    assert_eq!(verdict(&b, "unshare", [0x0000_0400, 0, 0, 0, 0, 0]), SeccompAction::Allow);
}

#[test]
fn baseline_allows_exactly_dockers_personality_values() {
    let b = baseline();
    let allowed = [0u64, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
    for v in allowed {
        assert_eq!(verdict(&b, "personality", [v, 0, 0, 0, 0, 0]), SeccompAction::Allow, "{v:#x}");
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
        let expected =
            if allowed.contains(&v) { SeccompAction::Allow } else { SeccompAction::Errno(EPERM) };
        assert_eq!(verdict(&b, "personality", [v, 0, 0, 0, 0, 0]), expected, "personality({v:#x})");
    }
}

#[test]
fn every_baseline_rule_has_a_justification() {
    let doc: serde_json::Value = serde_json::from_str(BASELINE_JSON).expect("baseline is JSON");
    let rules = doc["syscalls"].as_array().expect("syscalls array");
    assert!(!rules.is_empty());
    for (i, r) in rules.iter().enumerate() {
        let comment = r["comment"].as_str().unwrap_or_default();
        assert!(
            comment.split_whitespace().count() >= 5,
            "syscalls[{i}] ({}) needs a justification",
            r["names"]
        );
    }
    assert!(doc["comment"].as_str().is_some_and(|c| c.len() > 40), "the profile explains itself");
}

#[test]
fn every_baseline_syscall_is_known_to_libseccomp() {
    // An unknown name would be skipped by `compile`: the baseline must never lose a rule so.
    for rule in &baseline().rules {
        for name in &rule.names {
            assert!(
                libseccomp::ScmpSyscall::from_name(name).is_ok(),
                "libseccomp does not know {name}"
            );
        }
    }
}

#[test]
fn baseline_compiles() {
    compile(&baseline()).expect("baseline compiles with libseccomp");
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
fn compile_skips_unknown_syscalls_and_rejects_unknown_flags() {
    let p = oci(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "no_such_syscall_2099"], "action": "SCMP_ACT_ALLOW"}
    ]}));
    compile(&from_oci(&p, "x").expect("converts")).expect("unknown names are skipped");
    let mut plan = baseline();
    plan.flags.push("SECCOMP_FILTER_FLAG_BOGUS".into());
    let Err(e) = compile(&plan) else { panic!("an unknown flag must be refused") };
    assert!(e.to_string().contains("SECCOMP_FILTER_FLAG_BOGUS"), "{e}");
}
