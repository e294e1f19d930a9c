//! Deploying moat on real nodes (issue 13, "Deploy on real clusters").
//!
//! - `cri_files_work_with_moved_containerd_dirs_and_an_empty_config`: containerd with its
//!   `root` and `state` away from the defaults (as k3s, RKE2 and microk8s move them; here the
//!   bed's private dirs under /tmp/moat-e2e) and a moat config that names none of them: a pod
//!   gets CRI's hostname, hosts, resolv.conf and /dev/shm binds of ITS OWN sandbox, found by
//!   moat from what containerd handed the shim.
//!
//! Each test runs a private bed (its own containerd), since each changes containerd's or
//! moat's config. moat only: what is tested is how the moat shim finds its way on a node.

mod common;

use anyhow::{ensure, Context, Result};
use common::sh;
use moat_e2e::TestBed;

/// Runs `body` on a private bed of its own (named `name`), shut down afterwards.
fn on_private_bed(test: &str, name: &str, body: impl FnOnce(&TestBed) -> Result<()>) {
    let bed = match TestBed::private(test, "moat", name) {
        Ok(Some(bed)) => bed,
        Ok(None) => return,
        Err(e) => panic!("{test}: the private test bed did not start: {e:#}"),
    };
    let result = body(&bed);
    if let Err(e) = result {
        let message = format!("{e:#}\n---- containerd log tail:\n{}", bed.log_tail(60));
        bed.shutdown();
        panic!("{test}: {message}");
    }
    bed.shutdown();
}

/// The moat config of a node that says nothing about containerd: only the ID pool's
/// directory is set, because the default (/var/lib/moat/userns) is the host's own pool, which
/// a test must neither write to nor allocate ranges from.
fn empty_moat_config(bed: &TestBed) -> String {
    format!(
        "# no cri_state_dirs, no allowed_host_paths: containerd's dirs are derived\n\
         [userns]\n\
         state_dir = {}\n",
        moat_e2e::moat_config::toml_str(&bed.layout().dir.join("idranges-empty-config"))
    )
}

#[test]
fn cri_files_work_with_moved_containerd_dirs_and_an_empty_config() {
    on_private_bed(
        "cri_files_work_with_moved_containerd_dirs_and_an_empty_config",
        "emptyconfig",
        |bed| {
            let layout = bed.layout();
            ensure!(
                !layout.root.starts_with("/var/lib/containerd")
                    && !layout.state.starts_with("/run/containerd"),
                "the bed's containerd must use non-default dirs, it has {} and {}",
                layout.root.display(),
                layout.state.display()
            );
            std::fs::write(&layout.moat_config, empty_moat_config(bed))
                .with_context(|| format!("writing {}", layout.moat_config.display()))?;

            let pod = bed.run_pod("emptyconfig", "moat")?;
            let c = pod.run("app", &["sleep", "3600"])?;
            // CRI binds these four from <root|state>/io.containerd.grpc.v1.cri/sandboxes/<pod>/.
            let mountinfo = sh(&pod, &c, "cat /proc/self/mountinfo")?.stdout;
            for target in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"] {
                let line = mountinfo
                    .lines()
                    .find(|l| l.split_whitespace().nth(4) == Some(target))
                    .with_context(|| format!("no mount at {target} in:\n{mountinfo}"))?;
                let root = line.split_whitespace().nth(3).unwrap_or("");
                // /dev/shm: CRI's tmpfs named `shm` (mounted at <state>/.../sandboxes/<pod>/shm
                // and bound from there; mountinfo shows the tmpfs's own root).
                let ours = if target == "/dev/shm" {
                    line.contains(" - tmpfs shm ")
                } else {
                    root.contains(&format!("io.containerd.grpc.v1.cri/sandboxes/{}/", pod.id))
                };
                ensure!(ours, "{target} is not this pod's CRI file: {line}");
            }
            let out = sh(&pod, &c, "cat /etc/hostname; echo 10.0.0.1 x >> /etc/hosts && echo HOSTS-RW; echo shm > /dev/shm/probe && cat /dev/shm/probe")?;
            ensure!(
                out.stdout.lines().next() == Some(pod.config.hostname.as_str()),
                "/etc/hostname is not the pod's hostname {:?}: {out:?}",
                pod.config.hostname
            );
            ensure!(
                out.stdout.contains("HOSTS-RW") && out.stdout.contains("shm"),
                "CRI files not usable: {out:?}"
            );
            pod.teardown()
        },
    );
}
