//! The egress guard (issue 15), tried from inside pods: the bed puts an HTTP server on the
//! metadata address 169.254.169.254, on an operator-denied address (198.51.100.7, in
//! `egress.deny = ["198.51.100.0/24"]`) and on an allowed one (198.51.100.8, in
//! `egress.allow`). Under runc a pod reaches all three; under moat only the allowed one. And
//! the pod cannot take the guard down: container root with CAP_NET_ADMIN, CAP_NET_RAW and
//! CAP_SYS_ADMIN (the operator allowed them) and no seccomp filter at all (the operator
//! allowed that too) cannot flush the namespace's nftables ruleset.
//!
//! The servers run in a network namespace this test makes (`MetadataHost`), behind a veth
//! pair; the host routes to it only what comes from the test's own pods (a policy-routing
//! rule per pod IP), so nothing else on the host, or the host itself, sees these addresses.
//! Each test has a private bed (its moat config carries the `[egress]` keys) and removes
//! everything it added.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, ensure, Context, Result};
use common::{attack, attack_volume, must_fail_with, must_succeed, sh, sleeper};
use k8s_cri::v1::{security_profile::ProfileType, Capability, SecurityProfile};
use moat_e2e::{configs, e2e_tests, moat_config, Container, Pod, TestBed};

e2e_tests!(
    metadata_and_denied_addresses_answer_under_runc_not_under_moat,
    the_pod_cannot_remove_the_guard_even_as_root_with_net_admin_and_no_seccomp,
    node_addresses_are_closed_when_asked_but_the_node_still_reaches_the_pod,
);

const METADATA: &str = "169.254.169.254";
const DENIED: &str = "198.51.100.7";
const ALLOWED: &str = "198.51.100.8";
/// What the test server answers with.
const MARKER: &str = "moat-egress-test-server";

/// The `[egress]` section the moat beds of this file run with.
const EGRESS_CONFIG: &str =
    "\n[egress]\ndeny = [\"198.51.100.0/24\"]\nallow = [\"198.51.100.8\"]\n";

/// A private bed for `test` whose moat config has `EGRESS_CONFIG` and `top_level` keys.
fn egress_bed(test: &str, handler: &str, top_level: &str) -> Result<Option<TestBed>> {
    egress_bed_with(test, handler, top_level, "")
}

/// `egress_bed` with more `[egress]` keys.
fn egress_bed_with(
    test: &str,
    handler: &str,
    top_level: &str,
    egress: &str,
) -> Result<Option<TestBed>> {
    let Some(bed) = TestBed::private(&format!("{test}::{handler}"), handler, "egress")? else {
        return Ok(None);
    };
    moat_config::edit(bed.layout(), |text| {
        let mut text = moat_config::with_top_level_keys(text, top_level);
        text.push_str(EGRESS_CONFIG);
        text.push_str(egress);
        Ok(text)
    })?;
    Ok(Some(bed))
}

/// The pod's IPv4 address on eth0, as `c` in it sees it.
fn pod_ip(pod: &Pod, c: &Container) -> Result<String> {
    let out = sh(pod, c, "ip -4 -o addr show eth0")?;
    out.stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .with_context(|| format!("the pod's address: {out:?}"))
}

/// Runs `cmd args...`, failing with its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The test servers: a network namespace of the test's own with the three addresses on its
/// end of a veth pair and busybox httpd answering on all of them; the host end carries only
/// routes in a table of its own, used by rules for the test's pods' source addresses.
struct MetadataHost {
    netns: String,
    host_if: String,
    table: String,
    /// Pod IPs with a rule into `table`.
    pods: Vec<String>,
    httpd: Option<Child>,
    web_root: PathBuf,
}

impl MetadataHost {
    fn start(bed: &TestBed, handler: &str) -> Result<MetadataHost> {
        // One per test of this process (both tests of both handlers run at once).
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 8;
        let tag = format!("{}{n}", &handler[..1]);
        let table = (20_000 + (pid % 100_000) * 8 + n).to_string();
        let mut host = MetadataHost {
            netns: format!("moat-egress-{pid}-{tag}"),
            host_if: format!("meg{pid}{tag}"),
            table,
            pods: Vec::new(),
            httpd: None,
            web_root: bed.layout().dir.join(format!("egress-www-{tag}")),
        };
        host.set_up().context("setting up the test servers' namespace")?;
        Ok(host)
    }

    fn set_up(&mut self) -> Result<()> {
        let (ns, hif) = (self.netns.clone(), self.host_if.clone());
        run("ip", &["netns", "add", &ns])?;
        run("ip", &["link", "add", &hif, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        // The host answers ARP for the pods' addresses on the veth (it routes them to the
        // bridge), so the namespace needs no address of the host's.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{hif}/proxy_arp"), "1")
            .context("proxy_arp on the host end")?;
        run("ip", &["link", "set", &hif, "up"])?;
        let in_ns = |args: &[&str]| -> Result<String> {
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["link", "set", "eth0", "up"])?;
        for addr in [METADATA, DENIED, ALLOWED] {
            in_ns(&["addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
            run("ip", &["route", "add", &format!("{addr}/32"), "dev", &hif, "table", &self.table])?;
        }
        in_ns(&["route", "add", "default", "dev", "eth0"])?;
        std::fs::create_dir_all(&self.web_root)?;
        std::fs::write(self.web_root.join("index.html"), format!("{MARKER}\n"))?;
        let root = self.web_root.to_string_lossy().into_owned();
        let httpd = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "80", "-h", &root])
            .stdin(Stdio::null())
            .spawn()
            .context("starting busybox httpd in the test namespace")?;
        self.httpd = Some(httpd);
        // Up when it answers from inside its own namespace.
        for _ in 0..50 {
            let out = Command::new("ip")
                // (busybox 1.35's `wget -T` crashes: `timeout` bounds it instead.)
                .args(["netns", "exec", &ns, "busybox", "timeout", "1", "busybox", "wget", "-q"])
                .args(["-O", "-"])
                .arg(format!("http://{METADATA}/"))
                .output()?;
            if String::from_utf8_lossy(&out.stdout).contains(MARKER) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("busybox httpd in {ns} does not answer")
    }

    /// Routes what `pod`'s address sends to the servers into the test namespace.
    fn route_pod(&mut self, pod: &Pod, c: &Container) -> Result<()> {
        let ip = pod_ip(pod, c)?;
        run("ip", &["rule", "add", "from", &ip, "lookup", &self.table])?;
        self.pods.push(ip);
        Ok(())
    }
}

impl MetadataHost {
    /// Routing and neighbour state, for a failure message.
    fn diagnose(&self) -> String {
        let mut out = String::new();
        let cmds: Vec<Vec<&str>> = vec![
            vec!["rule"],
            vec!["route", "show", "table", &self.table],
            vec!["neigh", "show", "dev", &self.host_if],
            vec!["-s", "link", "show", &self.host_if],
            vec!["netns", "exec", &self.netns, "ip", "neigh"],
            vec!["netns", "exec", &self.netns, "ip", "addr"],
        ];
        for args in cmds {
            let o = Command::new("ip").args(&args).output();
            let text =
                o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            out.push_str(&format!("ip {}:\n{text}", args.join(" ")));
        }
        out.push_str(&format!("pods routed: {:?}\n", self.pods));
        out
    }
}

impl Drop for MetadataHost {
    fn drop(&mut self) {
        if let Some(mut httpd) = self.httpd.take() {
            let _ = httpd.kill();
            let _ = httpd.wait();
        }
        for ip in &self.pods {
            let _ = run("ip", &["rule", "del", "from", ip, "lookup", &self.table]);
        }
        let _ = run("ip", &["route", "flush", "table", &self.table]);
        // Deleting the namespace deletes its veth end and with it the host's.
        let _ = run("ip", &["netns", "del", &self.netns]);
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = std::fs::remove_dir_all(&self.web_root);
    }
}

/// `wget` of the test server at `addr` from inside `c`: true when it answered. `tries` more
/// than 1 where an answer is expected (a loaded machine may miss one 4-second deadline).
fn fetch(pod: &Pod, c: &Container, addr: &str, tries: u32) -> Result<bool> {
    for _ in 0..tries {
        let out = sh(pod, c, &format!("timeout 4 wget -q -O - http://{addr}/ 2>&1; echo exit=$?"))?;
        let answered = out.stdout.contains(MARKER);
        eprintln!("{}: wget {addr}: {}", pod.handler, out.stdout.trim().replace('\n', " | "));
        ensure!(answered || !out.stdout.contains("exit=0"), "wget {addr}: {out:?}");
        if answered {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What the runc pod reaches and the moat pod must not.
fn check_reach(pod: &Pod, c: &Container, handler: &str, servers: &MetadataHost) -> Result<()> {
    let expect_answer = if handler == "moat" { 1 } else { 3 };
    let metadata = fetch(pod, c, METADATA, expect_answer)?;
    let denied = fetch(pod, c, DENIED, expect_answer)?;
    let allowed = fetch(pod, c, ALLOWED, 3)?;
    ensure!(
        allowed,
        "under {handler} the allowed address {ALLOWED} does not answer\n{}",
        servers.diagnose()
    );
    match handler {
        "moat" => {
            ensure!(!metadata, "under moat the pod reached the metadata address {METADATA}");
            ensure!(!denied, "under moat the pod reached {DENIED}, denied by egress.deny");
        }
        _ => ensure!(
            metadata && denied,
            "under runc the pod was expected to reach both {METADATA} ({metadata}) and \
             {DENIED} ({denied}): the test no longer shows the exposure moat closes"
        ),
    }
    Ok(())
}

fn metadata_and_denied_addresses_answer_under_runc_not_under_moat(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    let test = "metadata_and_denied_addresses_answer_under_runc_not_under_moat";
    let Some(bed) = egress_bed(test, handler, "")? else { return Ok(()) };
    let mut servers = MetadataHost::start(&bed, handler)?;
    let pod = bed.run_pod("egress", handler)?;
    let c = pod.run("client", &["sleep", "3600"])?;
    servers.route_pod(&pod, &c)?;
    check_reach(&pod, &c, handler, &servers)?;
    pod.teardown()
}

fn the_pod_cannot_remove_the_guard_even_as_root_with_net_admin_and_no_seccomp(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    let test = "the_pod_cannot_remove_the_guard_even_as_root_with_net_admin_and_no_seccomp";
    let policy = "allowed_capabilities = [\"CAP_NET_ADMIN\", \"CAP_NET_RAW\", \"CAP_SYS_ADMIN\"]\n\
                  allow_unconfined_seccomp = true\n";
    let Some(bed) = egress_bed(test, handler, policy)? else { return Ok(()) };
    let mut servers = MetadataHost::start(&bed, handler)?;
    let pod = bed.run_pod("tamper", handler)?;
    let attack_dir = attack_volume(&bed)?;
    let caps = || Capability {
        add_capabilities: vec!["NET_ADMIN".into(), "NET_RAW".into(), "SYS_ADMIN".into()],
        ..Default::default()
    };
    // No seccomp filter at all: only the kernel's own check stands between the pod and
    // nf_tables.
    let bare = sleeper(&pod, "bare", &attack_dir, |config| {
        let sc = configs::security_context(config);
        sc.capabilities = Some(caps());
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
    })?;
    // The same capabilities under the runtime's default filter (moat: its baseline first).
    let filtered = sleeper(&pod, "filtered", &attack_dir, |config| {
        let sc = configs::security_context(config);
        sc.capabilities = Some(caps());
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    })?;
    let out = sh(&pod, &bare, "grep -E '^(CapEff|Seccomp):' /proc/self/status")?;
    let caps_hex = out.stdout.split_whitespace().nth(1).unwrap_or("");
    let eff = u64::from_str_radix(caps_hex, 16).with_context(|| format!("CapEff: {out:?}"))?;
    ensure!(eff & (1 << 12) != 0, "the container does not hold CAP_NET_ADMIN: {out:?}");
    ensure!(out.stdout.contains("Seccomp:\t0"), "the container has a seccomp filter: {out:?}");
    servers.route_pod(&pod, &bare)?;

    let a = attack(&pod, &bare, &["egress-flush"])?;
    eprintln!("{handler}: {}", a.line);
    match handler {
        // The namespace belongs to the host's user namespace: CAP_NET_ADMIN of the pod's
        // does not count there (nfnetlink answers EPERM).
        "moat" => must_fail_with(&a, handler, &["EPERM"])?,
        _ => must_succeed(&a, handler)
            .context("runc's pod root with CAP_NET_ADMIN owns its network namespace")?,
    }
    let a = attack(&pod, &filtered, &["egress-flush"])?;
    eprintln!("{handler}: {}", a.line);
    if handler == "moat" {
        // The baseline refuses the nf_tables netlink protocol before the kernel is asked.
        must_fail_with(&a, handler, &["EPROTONOSUPPORT"])?;
    }
    // The guard still stands (and under runc there was none).
    check_reach(&pod, &bare, handler, &servers)?;
    pod.teardown()
}

/// A node service on the bed's bridge address (the pod's gateway, an address of the node):
/// answers each HTTP request with `NODE_MARKER`, until the returned flag is set.
fn node_service(addr: &str) -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicBool>)> {
    use std::io::{Read, Write};
    let listener =
        std::net::TcpListener::bind((addr, 0)).with_context(|| format!("bind {addr}"))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !done.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{NODE_MARKER}\n"
                        )
                        .as_bytes(),
                    );
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    });
    Ok((port, stop))
}

const NODE_MARKER: &str = "moat-egress-node-service";

fn node_addresses_are_closed_when_asked_but_the_node_still_reaches_the_pod(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    use std::io::{Read, Write};
    let test = "node_addresses_are_closed_when_asked_but_the_node_still_reaches_the_pod";
    let Some(bed) = egress_bed_with(test, handler, "", "deny_node_addresses = true\n")? else {
        return Ok(());
    };
    let pod = bed.run_pod("node", handler)?;
    let c = pod.run("client", &["sleep", "3600"])?;
    // The pod's gateway is the bridge's address on the node.
    let route = sh(&pod, &c, "ip -4 route show default")?;
    let gateway = route
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("no default route in the pod: {route:?}"))?;
    let (port, stop) = node_service(&gateway)?;
    let out = sh(
        &pod,
        &c,
        &format!("timeout 4 wget -q -O - http://{gateway}:{port}/ 2>&1; echo exit=$?"),
    )?;
    stop.store(true, Ordering::Relaxed);
    eprintln!("{handler}: wget {gateway}:{port}: {}", out.stdout.trim().replace('\n', " | "));
    let reached = out.stdout.contains(NODE_MARKER);
    match handler {
        "moat" => ensure!(!reached, "under moat the pod reached the node's {gateway}:{port}"),
        _ => ensure!(reached, "under runc the pod was expected to reach the node: {out:?}"),
    }
    // The node (kubelet's probes) still reaches a server in the pod: its replies go to a node
    // address, and pass as replies.
    let pod_ip = pod_ip(&pod, &c)?;
    let serve = "mkdir -p /tmp/www && echo pod-side-server > /tmp/www/index.html && \
                 httpd -p 8080 -h /tmp/www && echo started";
    let out = sh(&pod, &c, serve)?;
    ensure!(out.stdout.contains("started"), "httpd in the pod: {out:?}");
    let mut answer = String::new();
    for _ in 0..20 {
        let attempt = (|| -> Result<String> {
            let addr: std::net::SocketAddr = format!("{pod_ip}:8080").parse()?;
            let mut conn =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
            conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            conn.read_to_string(&mut text)?;
            Ok(text)
        })();
        match attempt {
            Ok(text) if text.contains("pod-side-server") => {
                answer = text;
                break;
            }
            other => eprintln!("{handler}: node -> pod {pod_ip}:8080: {other:?}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ensure!(
        answer.contains("pod-side-server"),
        "under {handler} the node cannot reach a server in the pod (replies dropped?)"
    );
    pod.teardown()
}
