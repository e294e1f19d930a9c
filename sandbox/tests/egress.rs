//! The egress guard in a real network namespace (needs root): `egress::install` puts the
//! rules into a fresh namespace, and connections from inside to denied addresses fail while
//! allowed and unlisted ones are answered. Every address lives on the namespace's own
//! loopback, so no packet leaves it.

#[path = "common/harness.rs"]
mod harness;
#[path = "common/root.rs"]
mod root;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use moat_sandbox::egress::{self, Cidr, EgressConfig, Ruleset};

/// Runs `f` on a thread of its own in a new network namespace with `addrs` on its loopback.
fn in_new_netns<T: Send + 'static>(
    addrs: &'static [&'static str],
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || -> Result<T> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(NEWNET)")?;
        // A child forked from this thread starts in this thread's namespaces.
        let mut cmds = vec![vec!["link", "set", "lo", "up"]];
        for a in addrs {
            // nodad: an IPv6 address is usable at once (not tentative).
            let extra: &[&str] = if a.contains(':') { &["nodad"] } else { &[] };
            cmds.push([&["addr", "add", a, "dev", "lo"][..], extra].concat());
        }
        for args in cmds {
            let out = Command::new("ip").args(&args).output().context("running ip")?;
            ensure!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// Connects to `addr:port`: Ok(true) when answered, Ok(false) when it timed out or was refused.
fn reaches(addr: &str, port: u16) -> Result<bool> {
    let ip: IpAddr = addr.parse()?;
    match TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(700)) {
        Ok(_) => Ok(true),
        Err(e) => {
            eprintln!("connect {addr}:{port}: {e}");
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    if !root::root_or_skip("egress") {
        return ExitCode::SUCCESS;
    }
    harness::run(&[
        (
            "denied_destinations_do_not_answer_allowed_ones_do",
            denied_destinations_do_not_answer_allowed_ones_do,
        ),
        ("the_host_namespace_is_refused", the_host_namespace_is_refused),
    ])
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| s.parse().expect("test CIDR")).collect()
}

fn denied_destinations_do_not_answer_allowed_ones_do() -> Result<()> {
    const ADDRS: &[&str] = &[
        "169.254.169.254/32",
        "198.51.100.7/32",
        "198.51.100.8/32",
        "192.0.2.50/32",
        "fd00:ec2::254/128",
        "fd00::50/128",
    ];
    in_new_netns(ADDRS, || {
        let config = EgressConfig {
            deny: cidrs(&["198.51.100.0/24"]),
            allow: cidrs(&["198.51.100.8"]),
            ..EgressConfig::default()
        };
        let listeners: Vec<(&str, TcpListener)> = [
            "169.254.169.254",
            "198.51.100.7",
            "198.51.100.8",
            "192.0.2.50",
            "fd00:ec2::254",
            "fd00::50",
        ]
        .into_iter()
        .map(|a| Ok((a, TcpListener::bind((a, 0)).with_context(|| format!("bind {a}"))?)))
        .collect::<Result<_>>()?;
        let port = |a: &str| -> Result<u16> {
            let l = listeners.iter().find(|(x, _)| *x == a).context("listener")?;
            Ok(l.1.local_addr()?.port())
        };
        // Before the guard every address answers (the test would prove nothing otherwise).
        // (A new IPv6 address may need a moment before it answers: a few tries.)
        for (a, _) in &listeners {
            let mut answered = false;
            for _ in 0..10 {
                answered = reaches(a, port(a)?)?;
                if answered {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            ensure!(answered, "{a} does not answer even without the guard");
        }
        let ruleset = Ruleset::derive(&config, &[]);
        let began = std::time::Instant::now();
        egress::install(std::path::Path::new("/proc/thread-self/ns/net"), &ruleset)
            .context("installing the guard")?;
        eprintln!("installing the guard took {:?}", began.elapsed());
        ensure!(!reaches("169.254.169.254", port("169.254.169.254")?)?, "metadata answered");
        ensure!(!reaches("198.51.100.7", port("198.51.100.7")?)?, "a denied network answered");
        ensure!(reaches("198.51.100.8", port("198.51.100.8")?)?, "the allowed address is dropped");
        ensure!(reaches("192.0.2.50", port("192.0.2.50")?)?, "an unlisted address is dropped");
        ensure!(!reaches("fd00:ec2::254", port("fd00:ec2::254")?)?, "IPv6 metadata answered");
        ensure!(reaches("fd00::50", port("fd00::50")?)?, "an unlisted IPv6 address is dropped");
        // Installing again replaces the table rather than adding rules: with the metadata
        // rule off, it answers again.
        let off = EgressConfig { deny_metadata: false, ..config };
        let began = std::time::Instant::now();
        egress::install(
            std::path::Path::new("/proc/thread-self/ns/net"),
            &Ruleset::derive(&off, &[]),
        )
        .context("replacing the guard")?;
        eprintln!("replacing it took {:?}", began.elapsed());
        ensure!(reaches("169.254.169.254", port("169.254.169.254")?)?, "the old table stayed");
        ensure!(!reaches("198.51.100.7", port("198.51.100.7")?)?, "a denied network answered");
        Ok(())
    })
}

fn the_host_namespace_is_refused() -> Result<()> {
    let ruleset = Ruleset::derive(&EgressConfig::default(), &[]);
    let err = egress::install(std::path::Path::new("/proc/self/ns/net"), &ruleset)
        .err()
        .context("rules went into the host's namespace")?;
    ensure!(err.to_string().contains("host's network namespace"), "{err}");
    Ok(())
}
