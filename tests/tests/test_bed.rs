//! The test bed itself. The private beds of one test process (tests running at once, each on a
//! containerd of its own) share the CNI bridge and its host-local address leases: a bed that
//! starts must not clear the leases of another that is running, or two pods get one address
//! and the node's packets go to either.

use anyhow::{ensure, Context, Result};
use moat_e2e::bed::{private_bed_or_panic, test_on_private_bed};
use moat_e2e::{Container, Pod};

const TEST: &str = "a_bed_that_starts_keeps_the_address_leases_of_a_running_one";

/// The pod's IPv4 address on eth0.
fn pod_ip(pod: &Pod, c: &Container) -> Result<String> {
    let out = pod.exec(c, &["ip", "-4", "-o", "addr", "show", "eth0"])?;
    out.stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .with_context(|| format!("the pod's address: {out:?}"))
}

#[test]
fn a_bed_that_starts_keeps_the_address_leases_of_a_running_one() {
    test_on_private_bed(TEST, "runc", "leases-a", |first| {
        let pod_a = first.run_pod("lease-a", "runc")?;
        let a = pod_a.run("a", &["sleep", "3600"])?;
        let ip_a = pod_ip(&pod_a, &a)?;
        // A second bed starts while the first one's pod holds its address.
        let Some(second) = private_bed_or_panic(TEST, "runc", "leases-b") else {
            return Ok(());
        };
        let checked = (|| {
            let pod_b = second.run_pod("lease-b", "runc")?;
            let b = pod_b.run("b", &["sleep", "3600"])?;
            let ip_b = pod_ip(&pod_b, &b)?;
            ensure!(ip_a != ip_b, "the second bed's pod was given {ip_b}, the first bed's address");
            pod_b.teardown()
        })();
        second.shutdown();
        checked?;
        pod_a.teardown()
    });
}
