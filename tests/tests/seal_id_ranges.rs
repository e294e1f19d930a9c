//! The pod ID ranges of moat's pool after a crash (issue 9, "Seal the boundary", item 4).
//!
//! A pod's host ID range is given back by the shim when the pod is removed, or by
//! `containerd-shim-moat-v2 delete` when containerd sees the pod's shim die. Neither runs when
//! the shim dies while containerd is down and its state directory is lost meanwhile (a host
//! reboot: /run is a tmpfs): containerd then knows no task to clean up, and the pod's range
//! stays allocated until the pool is exhausted. moat records in each range file which shim
//! holds it (pid, start time, boot id) and frees the ranges of gone shims whenever a new pod's
//! shim starts; a live pod's range is never taken.
//!
//! A released range is quarantined (item 3): files a pod left on a shared host path stay owned
//! by its host IDs, so the next pod must not get the same range while never-used ones remain.
//!
//! Runs under moat only (runc has no ID pool); the reclaim test on a private test bed (it kills
//! containerd).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use common::{sh, sleeper_sharing, uid_map};
use moat_e2e::bed::on_private;
use moat_e2e::{Pod, TestBed};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

moat_only_tests!(
    ranges_of_pods_lost_in_a_crash_return_to_the_pool,
    a_new_pod_cannot_read_what_a_removed_pod_left_on_a_shared_path,
);

/// The pool's allocations: pod id -> (host base, range file).
fn allocations(dir: &Path) -> Result<BTreeMap<String, (u32, PathBuf)>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("range") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let field = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
        };
        let (Some(pod), Some(base)) = (field("pod"), field("host_base")) else {
            bail!("{} holds no pod and host_base: {text:?}", path.display());
        };
        out.insert(pod, (base.parse().context("host_base")?, path));
    }
    Ok(out)
}

fn ranges_of_pods_lost_in_a_crash_return_to_the_pool(
    _shared: &TestBed,
    handler: &str,
) -> Result<()> {
    let test = format!("ranges_of_pods_lost_in_a_crash_return_to_the_pool::{handler}");
    on_private(TestBed::private(&test, handler, "idranges")?, |bed| {
        let pool = bed.layout().dir.join("idranges");
        let live = bed.run_pod("live", handler)?;
        let sleeper = live.run("sleeper", &["sleep", "3600"])?;
        let lost: Vec<Pod<'_>> =
            (0..2).map(|i| bed.run_pod(&format!("lost{i}"), handler)).collect::<Result<_>>()?;
        let before = allocations(&pool)?;
        for pod in std::iter::once(&live).chain(&lost) {
            ensure!(
                before.contains_key(&pod.id),
                "pod {} holds no range in {}: {before:?}",
                pod.id,
                pool.display()
            );
        }
        let live_range = before[&live.id].0;
        // What the lost pods run, to kill it as a reboot would.
        let mut victims = Vec::new();
        for pod in &lost {
            let shims = pod.shims();
            ensure!(shims.len() == 1, "expected one shim for pod {}: {shims:?}", pod.id);
            victims.push((shims[0].pid, format!("the shim of {}", pod.id)));
            victims.push((pod.sandbox_pid()?, format!("the sandbox of {}", pod.id)));
        }
        let bundles = bed.layout().state.join("io.containerd.runtime.v2.task/k8s.io");
        // containerd down; meanwhile the lost pods' shims and processes die and their
        // bundles vanish (/run is a tmpfs): nobody will run `delete` for them.
        bed.restart_containerd_after(|| {
            for (pid, what) in &victims {
                kill(Pid::from_raw(*pid), Signal::SIGKILL)
                    .with_context(|| format!("kill {what}"))?;
                moat_e2e::host::wait_dead(*pid, what)?;
            }
            for pod in &lost {
                let bundle = bundles.join(&pod.id);
                std::fs::remove_dir_all(&bundle)
                    .with_context(|| format!("removing the bundle {}", bundle.display()))?;
            }
            Ok(())
        })?;
        let still = allocations(&pool)?;
        for pod in &lost {
            ensure!(
                still.contains_key(&pod.id),
                "pod {} lost its range before any shim started",
                pod.id
            );
        }

        // A new pod's shim starts: it gives back the ranges of the gone shims.
        let fresh = bed.run_pod("fresh", handler)?;
        let after = allocations(&pool)?;
        for pod in &lost {
            ensure!(
                !after.contains_key(&pod.id),
                "the range of pod {} (shim killed, bundle lost) is still allocated after a new \
                 pod started: {}: {:?}",
                pod.id,
                after[&pod.id].1.display(),
                std::fs::read_to_string(&after[&pod.id].1).unwrap_or_default()
            );
        }
        ensure!(
            after.get(&live.id).map(|(base, _)| *base) == Some(live_range),
            "the live pod's range {live_range} was taken from it: {after:?}"
        );
        let fresh_range = after
            .get(&fresh.id)
            .map(|(base, _)| *base)
            .with_context(|| format!("the new pod holds no range: {after:?}"))?;
        ensure!(fresh_range != live_range, "the new pod got the live pod's range {live_range}");
        // The live pod still runs, with its range.
        let out = live.exec(&sleeper, &["id", "-u"])?;
        ensure!(out.exit_code == 0 && out.stdout == "0\n", "exec in the live pod: {out:?}");
        fresh.teardown()?;
        live.teardown()?;
        Ok(())
    })
}

fn a_new_pod_cannot_read_what_a_removed_pod_left_on_a_shared_path(
    bed: &TestBed,
    handler: &str,
) -> Result<()> {
    // A host directory every pod may write (like /tmp), shared as a volume.
    let shared = bed.volume_dir("left-behind")?;
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    let with_shared = |pod: &Pod, name: &str| sleeper_sharing(pod, name, &shared);
    let first = bed.run_pod("first", handler)?;
    let a = with_shared(&first, "a")?;
    let first_range = uid_map(first.container_pid(&a)?)?;
    let out = sh(&first, &a, "umask 077 && echo secret-of-first > /shared/secret")?;
    ensure!(out.exit_code == 0, "the first pod could not write the shared volume: {out:?}");
    first.teardown()?;

    // The next pod, on the same host path.
    let next = bed.run_pod("next", handler)?;
    let b = with_shared(&next, "b")?;
    let next_range = uid_map(next.container_pid(&b)?)?;
    let read = next.exec(&b, &["cat", "/shared/secret"])?;
    ensure!(
        read.exit_code != 0 && !read.stdout.contains("secret-of-first"),
        "the next pod read the 0600 file the removed pod left behind: it got the same host IDs \
         (first pod {first_range:?}, next pod {next_range:?}): {read:?}"
    );
    ensure!(
        first_range.1 != next_range.1,
        "the next pod got the removed pod's range {first_range:?} while never-used ranges remain"
    );
    next.teardown()
}
