//! The seccomp baseline as an allowlist (issue 9, "Seal the boundary"), attacked from inside
//! pods: namespaces cannot be made even by a container granted CAP_SYS_ADMIN, socket families
//! outside the allowlist (AF_VSOCK, AF_ALG) are refused, a syscall the filter does not list
//! answers ENOSYS (whether the kernel has it or not), and the i386 ABI is closed.
//!
//! Every test runs under both handlers; runc runs these pods without a seccomp filter (no
//! profile asked), so where it lets the attack through the test asserts that it does: that is
//! the difference moat's baseline makes on this host. The attacks are `seal-*` modes of
//! `tests/attack/attack.c`.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{
    attack, attack_pod, attack_volume, moat_refuses_with, must_fail, must_fail_with, must_succeed,
    sh, sleeper, verdict, ATTACK,
};
use k8s_cri::v1::Capability;
use moat_e2e::stream::Session;
use moat_e2e::{configs, e2e_tests, moat_config, TestBed};

e2e_tests!(
    vsock_and_alg_sockets_fail_but_unix_inet_and_netlink_route_work,
    no_namespace_can_be_made_even_with_sys_admin,
    syscalls_the_filter_does_not_list_answer_enosys,
    the_i386_abi_is_closed,
    tiocsti_fails_in_an_exec_with_a_terminal,
);

/// The namespace flags of clone/unshare, by the names `attack seal-unshare` takes.
const NAMESPACE_FLAGS: [&str; 8] =
    ["NEWUSER", "NEWNS", "NEWNET", "NEWPID", "NEWIPC", "NEWUTS", "NEWCGROUP", "NEWTIME"];

fn vsock_and_alg_sockets_fail_but_unix_inet_and_netlink_route_work(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "sockfam")?;
    // AF_VSOCK reaches the hypervisor's transport (this VM has one). runc: allowed.
    let a = attack(&pod, &c, &["seal-socket", "vsock"])?;
    moat_refuses_with(&a, handler, &["EAFNOSUPPORT"])?;
    // AF_ALG: this host's kernel has none, so runc fails too (EAFNOSUPPORT from the kernel);
    // moat answers the same errno from its filter (see the seccomp unit tests for the filter's
    // own answer on a kernel that has it).
    must_fail_with(&attack(&pod, &c, &["seal-socket", "alg"])?, handler, &["EAFNOSUPPORT"])?;
    // nf_tables' netlink protocol: refused by the filter under moat (EPROTONOSUPPORT).
    let a = attack(&pod, &c, &["seal-socket", "netlink-netfilter"])?;
    moat_refuses_with(&a, handler, &["EPROTONOSUPPORT"])?;
    // The ordinary families work, and `ip` reads the pod's addresses over NETLINK_ROUTE.
    for family in ["unix", "inet6", "netlink-route"] {
        must_succeed(&attack(&pod, &c, &["seal-socket", family])?, handler)?;
    }
    let out = sh(&pod, &c, "ip addr show lo")?;
    ensure!(out.exit_code == 0 && out.stdout.contains("127.0.0.1"), "ip addr show lo: {out:?}");
    pod.teardown()
}

fn no_namespace_can_be_made_even_with_sys_admin(_shared: &TestBed, handler: &str) -> Result<()> {
    // The shared bed's policy refuses CAP_SYS_ADMIN (level restricted, no
    // allowed_capabilities): a bed of its own whose moat config allows it. The shim reads its
    // config when it starts, once per pod, so the line added here applies to the pod below.
    let test = format!("no_namespace_can_be_made_even_with_sys_admin::{handler}");
    let Some(bed) = TestBed::private(&test, handler, "sysadmin")? else {
        return Ok(());
    };
    moat_config::edit(bed.layout(), |text| {
        Ok(moat_config::with_top_level_keys(text, "allowed_capabilities = [\"CAP_SYS_ADMIN\"]\n"))
    })?;

    let pod = bed.run_pod("sysadmin", handler)?;
    let attack_dir = attack_volume(&bed)?;
    let c = sleeper(&pod, "admin", &attack_dir, |config| {
        configs::security_context(config).capabilities =
            Some(Capability { add_capabilities: vec!["SYS_ADMIN".into()], ..Default::default() });
    })?;
    let out = sh(&pod, &c, "grep ^CapEff /proc/self/status")?;
    let caps = u64::from_str_radix(out.stdout.split_whitespace().nth(1).unwrap_or(""), 16)
        .with_context(|| format!("CapEff: {out:?}"))?;
    ensure!(caps & (1 << 21) != 0, "the container does not hold CAP_SYS_ADMIN: {out:?}");

    // A network namespace of its own, and nf_tables in it: the attack of issue 9.
    let a = attack(&pod, &c, &["seal-netns-nft"])?;
    moat_refuses_with(&a, handler, &["EPERM"])?;
    // Every namespace flag, by unshare and by clone.
    for flag in NAMESPACE_FLAGS {
        for mode in ["seal-unshare", "seal-clone"] {
            let a = attack(&pod, &c, &[mode, flag])?;
            if mode == "seal-clone" && flag == "NEWTIME" {
                // clone reads this bit as part of the exit signal: no namespace either way.
                if handler == "moat" {
                    must_fail_with(&a, handler, &["EPERM"])?;
                }
                continue;
            }
            moat_refuses_with(&a, handler, &["EPERM"])?;
        }
    }
    // The ordinary thing: a child process (clone without namespace flags).
    let out = sh(&pod, &c, "sh -c 'echo child'; echo parent")?;
    ensure!(out.stdout == "child\nparent\n", "forking a child: {out:?}");
    pod.teardown()
}

fn syscalls_the_filter_does_not_list_answer_enosys(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "enosys")?;
    // A number no kernel has: ENOSYS from the kernel under runc, from the filter under moat.
    must_fail_with(&attack(&pod, &c, &["seal-syscall", "1000"])?, handler, &["ENOSYS"])?;
    // lsm_list_modules (Linux 6.8): this kernel has it, the node's libseccomp 2.5 does not
    // name it. A default-allow filter leaves such syscalls open; the allowlist closes them.
    let a = attack(&pod, &c, &["seal-new-syscall"])?;
    moat_refuses_with(&a, handler, &["ENOSYS"])?;
    // clone3 answers ENOSYS (its flags are in memory, out of the filter's sight) ...
    let a = attack(&pod, &c, &["seal-clone3"])?;
    moat_refuses_with(&a, handler, &["ENOSYS"])?;
    // ... and programs fall back to clone: busybox starts children.
    let out = sh(&pod, &c, "echo $(echo nested)")?;
    ensure!(out.stdout == "nested\n", "a subshell: {out:?}");
    pod.teardown()
}

fn the_i386_abi_is_closed(bed: &TestBed, handler: &str) -> Result<()> {
    let (pod, c) = attack_pod(bed, handler, "int80")?;
    // getpid through `int 0x80` from the 64-bit attack program: the i386 syscall table, with
    // its own numbers and compat code, which a filter written for x86_64 must not let by.
    let a = attack(&pod, &c, &["seal-int80"])?;
    moat_refuses_with(&a, handler, &["ENOSYS"])?;
    must_fail(&attack(&pod, &c, &["seal-syscall", "1000"])?, handler)?;
    pod.teardown()
}

fn tiocsti_fails_in_an_exec_with_a_terminal(bed: &TestBed, handler: &str) -> Result<()> {
    // `kubectl exec -it`: the exec's terminal is its controlling terminal; TIOCSTI would push
    // input into it (and so into whatever else reads that terminal).
    let (pod, c) = attack_pod(bed, handler, "tiocsti")?;
    let what = format!("{ATTACK} seal-tiocsti");
    let url = bed.cri().exec(&c.id, &[ATTACK, "seal-tiocsti"], true, true)?;
    let mut s = Session::connect(&url)?;
    s.read_until(Duration::from_secs(20), "the verdict line", |s| {
        s.stdout_text().contains("seal-tiocsti: ")
    })?;
    s.wait_closed(Duration::from_secs(20))?;
    // A terminal ends lines with \r\n.
    let stdout = s.stdout_text().replace('\r', "");
    let output = moat_e2e::ExecOutput {
        stdout,
        stderr: String::new(),
        exit_code: s.exit_code().unwrap_or(-1),
    };
    let a = verdict(&what, output)?;
    moat_refuses_with(&a, handler, &["EPERM"])?;
    pod.teardown()
}
