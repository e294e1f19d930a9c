//! Which host paths a bind mount may come from.
//!
//! Order of the checks:
//! 1. the per-pod files containerd's CRI and kubelet manage for THIS pod/container are accepted
//!    (`<cri dir>/sandboxes/<pod id>/...` — the CRI dirs derived by `containerd_dirs`, or
//!    `cri_state_dirs` when set —, `<cri dir>/containers/<container id>/...`,
//!    `<kubelet root>/pods/<pod uid>/{volumes,volume-subpaths,etc-hosts,containers}/...`);
//! 2. the built-in denylist refuses, whatever the config says: the host root, /proc, /sys,
//!    /dev, /etc (with /etc/cni, /etc/kubernetes, /etc/rancher), /boot, /root, runtime sockets
//!    and state (containerd, docker, cri-o/podman, runc, k3s, k0s, microk8s, kubelet, etcd,
//!    moat's own), every pod's logs (/var/log), CNI plugins and their state (the next pod's
//!    network setup runs them as host root), network namespace handles, systemd's and D-Bus's
//!    sockets, kubelet's exec plugins, the configured kubelet/pool directories, the CRI
//!    directories and containerd's `root` and `state` as derived from what containerd handed
//!    the shim (`containerd_dirs`) — each with
//!    everything under it AND every directory above it (binding /var/lib would expose
//!    /var/lib/kubelet);
//! 3. `allowed_host_paths` accepts paths under one of its entries; the most specific entry
//!    (the longest path) that contains the source says whether the bind is idmapped;
//! 4. everything else is refused.
//!
//! Paths are compared after lexical normalisation (`//`, `.`, `..`), component-wise (`/data2`
//! is not under `/data`). Policy is pure, so it cannot see symlinks: the code that performs
//! the bind must resolve the source without following symlinks (openat2 RESOLVE_NO_SYMLINKS)
//! and mount through that fd, or a tenant-writable allowed directory could point elsewhere.

use std::path::{Path, PathBuf};

use super::config::Config;
use super::containerd_dirs::ContainerdDirs;

/// Built-in denied host paths (plus the configured CRI, kubelet and ID-pool directories).
pub const DENIED: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/root",
    "/run/containerd",
    "/var/run/containerd",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/docker",
    "/var/run/docker",
    "/run/crio",
    "/var/run/crio",
    "/run/moat",
    "/var/run/moat",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/kubelet",
    "/var/lib/moat",
    // Every pod's and the host's logs (kubelet's /var/log/pods, /var/log/containers).
    "/var/log",
    // Other runtimes' and distributions' state: k3s (its containerd root and state, server
    // tokens), k0s, microk8s, cri-o/podman, runc's state, etcd's data (every Secret).
    "/var/lib/rancher",
    "/run/k3s",
    "/var/run/k3s",
    "/var/lib/k0s",
    "/run/k0s",
    "/var/snap/microk8s",
    "/var/lib/containers",
    "/run/containers",
    "/var/run/containers",
    "/run/runc",
    "/var/run/runc",
    "/var/lib/etcd",
    // CNI plugins (run as host root for every pod's network) and their IPAM/cache state.
    "/opt/cni",
    "/usr/lib/cni",
    "/usr/libexec/cni",
    "/var/lib/cni",
    // Network namespace handles of every pod (`ip netns`, CNI).
    "/run/netns",
    "/var/run/netns",
    // Host service managers' sockets: systemd's private socket, the system D-Bus.
    "/run/systemd",
    "/var/run/systemd",
    "/run/dbus",
    "/var/run/dbus",
    // kubelet's FlexVolume drivers, executed by kubelet as host root.
    "/usr/libexec/kubernetes",
];

/// kubelet's per-pod entries a container may receive.
const KUBELET_POD_ENTRIES: [&str; 4] = ["volumes", "volume-subpaths", "etc-hosts", "containers"];

/// The outcome of checking one bind source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A file CRI or kubelet manages for this pod or container.
    PodFile,
    /// Under an `allowed_host_paths` entry; `idmap` is that entry's (the most specific one's).
    Allowed { idmap: bool },
    /// Denied by the built-in list (this entry); no configuration can allow it.
    Denied(PathBuf),
    /// Not denied, but not under any `allowed_host_paths` entry either.
    NotAllowed,
}

pub use super::lexical::normalize;

/// Classifies a (normalised) bind source for the container `container_id` of pod `pod_id`,
/// run by the containerd whose directories are `containerd`.
pub fn classify(
    source: &Path,
    config: &Config,
    containerd: &ContainerdDirs,
    pod_id: &str,
    container_id: &str,
    pod_uid: Option<&str>,
) -> Verdict {
    let cri_dirs = containerd.cri_dirs(&config.cri_state_dirs);
    if is_pod_file(source, config, &cri_dirs, pod_id, container_id, pod_uid) {
        return Verdict::PodFile;
    }
    let configured = cri_dirs
        .into_iter()
        .chain(config.cri_state_dirs.iter().cloned())
        .chain(containerd.denied())
        .chain([config.kubelet_root_dir.clone(), config.userns.state_dir.clone()]);
    let denied = DENIED.iter().map(PathBuf::from).chain(configured);
    for d in denied {
        let d = normalize(&d).unwrap_or(d);
        if source.starts_with(&d) || d.starts_with(source) {
            return Verdict::Denied(d);
        }
    }
    let most_specific = config
        .allowed_host_paths
        .iter()
        .filter_map(|a| normalize(&a.path).map(|p| (p, a.idmap)))
        .filter(|(p, _)| source.starts_with(p))
        .max_by_key(|(p, _)| p.components().count());
    match most_specific {
        Some((_, idmap)) => Verdict::Allowed { idmap },
        None => Verdict::NotAllowed,
    }
}

fn is_pod_file(
    source: &Path,
    config: &Config,
    cri_dirs: &[PathBuf],
    pod_id: &str,
    container_id: &str,
    pod_uid: Option<&str>,
) -> bool {
    let strictly_under = |base: PathBuf| source.starts_with(&base) && source != base;
    let ids_ok = valid_component(pod_id) && valid_component(container_id);
    if ids_ok {
        for dir in cri_dirs.iter().filter_map(|d| normalize(d)) {
            if strictly_under(dir.join("sandboxes").join(pod_id))
                || strictly_under(dir.join("containers").join(container_id))
            {
                return true;
            }
        }
    }
    let Some(uid) = pod_uid.filter(|u| valid_component(u)) else { return false };
    let Some(kubelet) = normalize(&config.kubelet_root_dir) else { return false };
    let pod_dir = kubelet.join("pods").join(uid);
    KUBELET_POD_ENTRIES.iter().any(|entry| {
        let base = pod_dir.join(entry);
        // etc-hosts is a file: the path itself; the others are directories: strictly below.
        if *entry == "etc-hosts" {
            source == base
        } else {
            strictly_under(base)
        }
    })
}

/// An id usable as one path component (no `/`, not `.`/`..`, not empty).
fn valid_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/') && !id.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            allowed_host_paths: vec!["/data".into(), "/srv/shared/".into()],
            ..Config::default()
        }
    }

    fn verdict(path: &str) -> Verdict {
        let p = normalize(Path::new(path)).expect("absolute");
        classify(&p, &cfg(), &ContainerdDirs::default(), "pod1", "ctr1", Some("uid-1"))
    }

    #[test]
    fn normalisation_is_lexical() {
        assert_eq!(normalize(Path::new("/a//b/./c/../d")), Some(PathBuf::from("/a/b/d")));
        assert_eq!(normalize(Path::new("/../../etc")), Some(PathBuf::from("/etc")));
        assert_eq!(normalize(Path::new("rel/x")), None);
    }

    #[test]
    fn allowlist_is_component_prefix() {
        assert_eq!(verdict("/data"), Verdict::Allowed { idmap: false });
        assert_eq!(verdict("/data/x/y"), Verdict::Allowed { idmap: false });
        assert_eq!(verdict("/data2"), Verdict::NotAllowed);
        assert_eq!(verdict("/srv/shared/a"), Verdict::Allowed { idmap: false });
        assert_eq!(verdict("/data/../etc/shadow"), Verdict::Denied("/etc".into()));
        assert_eq!(verdict("/tmp/x"), Verdict::NotAllowed);
    }

    #[test]
    fn denylist_covers_below_and_above() {
        assert_eq!(verdict("/"), Verdict::Denied("/proc".into()));
        assert_eq!(verdict("/var/lib"), Verdict::Denied("/var/lib/containerd".into()));
        assert_eq!(verdict("/run"), Verdict::Denied("/run/containerd".into()));
        assert_eq!(
            verdict("/run/containerd/containerd.sock"),
            Verdict::Denied("/run/containerd".into())
        );
        assert_eq!(verdict("/var/run/docker.sock"), Verdict::Denied("/var/run/docker.sock".into()));
        assert_eq!(verdict("/dev/sda"), Verdict::Denied("/dev".into()));
        assert_eq!(verdict("/sys/kernel"), Verdict::Denied("/sys".into()));
        assert_eq!(verdict("/var/lib/moat/userns"), Verdict::Denied("/var/lib/moat".into()));
    }

    #[test]
    fn runtime_state_logs_and_network_plumbing_are_denied() {
        // Input: each path an attacker would want from another runtime, distribution or the
        // network plumbing, with the denylist entry that must refuse it.
        let cases = [
            ("/var/log/pods/ns_other_uid/app/0.log", "/var/log"),
            ("/var/log", "/var/log"),
            ("/var/lib/rancher/k3s/server/token", "/var/lib/rancher"),
            ("/var/lib/rancher/k3s/agent/containerd", "/var/lib/rancher"),
            ("/run/k3s/containerd/containerd.sock", "/run/k3s"),
            ("/var/lib/k0s/pki", "/var/lib/k0s"),
            ("/var/snap/microk8s/common/run", "/var/snap/microk8s"),
            ("/var/lib/containers/storage", "/var/lib/containers"),
            ("/run/containers/storage", "/run/containers"),
            ("/run/runc/abc/state.json", "/run/runc"),
            ("/var/lib/etcd/member/snap/db", "/var/lib/etcd"),
            ("/var/lib/docker/overlay2", "/var/lib/docker"),
            ("/opt/cni/bin/bridge", "/opt/cni"),
            ("/opt", "/opt/cni"),
            ("/usr/lib/cni/bridge", "/usr/lib/cni"),
            ("/usr", "/usr/lib/cni"),
            ("/var/lib/cni/networks/pods/10.0.0.5", "/var/lib/cni"),
            ("/run/netns/cni-1234", "/run/netns"),
            ("/run/systemd/private", "/run/systemd"),
            ("/run/dbus/system_bus_socket", "/run/dbus"),
            ("/usr/libexec/kubernetes/kubelet-plugins/volume/exec", "/usr/libexec/kubernetes"),
            // Already covered by /etc: CNI's config, kubernetes' and k3s' credentials.
            ("/etc/cni/net.d", "/etc"),
            ("/etc/kubernetes/admin.conf", "/etc"),
            ("/etc/rancher/k3s/k3s.yaml", "/etc"),
        ];
        for (path, entry) in cases {
            assert_eq!(verdict(path), Verdict::Denied(entry.into()), "{path}");
        }
        // Beside the entries (not under, not above) is not denied.
        assert_eq!(verdict("/opt/data"), Verdict::NotAllowed);
        assert_eq!(verdict("/var/logs"), Verdict::NotAllowed);
        assert_eq!(verdict("/usr/lib/cnix"), Verdict::NotAllowed);
    }

    #[test]
    fn this_pods_cri_files_stay_accepted_on_k3s() {
        // Input: k3s' CRI directories as cri_state_dirs: its containerd lives under the newly
        // denied /var/lib/rancher and /run/k3s, and the pod-file exception comes first.
        let config = Config {
            cri_state_dirs: vec![
                "/var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri".into(),
                "/run/k3s/containerd/io.containerd.grpc.v1.cri".into(),
            ],
            ..Config::default()
        };
        let of =
            |s: &str| classify(Path::new(s), &config, &ContainerdDirs::default(), "p1", "c1", None);
        assert_eq!(
            of("/var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes/p1/hosts"),
            Verdict::PodFile
        );
        assert_eq!(
            of("/run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/p1/shm"),
            Verdict::PodFile
        );
        assert_eq!(
            of("/run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/p2/shm"),
            Verdict::Denied("/run/k3s".into())
        );
    }

    #[test]
    fn the_most_specific_entry_chooses_the_id_mapping() {
        // Input: an idmapped directory with a plain one inside it, and the reverse.
        let config = Config {
            allowed_host_paths: vec![
                crate::policy::AllowedHostPath { path: "/data".into(), idmap: true },
                "/data/plain".into(),
                "/srv".into(),
                crate::policy::AllowedHostPath { path: "/srv/mapped/".into(), idmap: true },
            ],
            ..Config::default()
        };
        let of =
            |s: &str| classify(Path::new(s), &config, &ContainerdDirs::default(), "p", "c", None);
        assert_eq!(of("/data"), Verdict::Allowed { idmap: true });
        assert_eq!(of("/data/x"), Verdict::Allowed { idmap: true });
        assert_eq!(of("/data/plain/x"), Verdict::Allowed { idmap: false });
        assert_eq!(of("/data/plainer"), Verdict::Allowed { idmap: true });
        assert_eq!(of("/srv/a"), Verdict::Allowed { idmap: false });
        assert_eq!(of("/srv/mapped/a"), Verdict::Allowed { idmap: true });
    }

    #[test]
    fn allowlist_cannot_override_the_denylist() {
        let config =
            Config { allowed_host_paths: vec!["/".into(), "/etc".into()], ..Config::default() };
        let v =
            classify(Path::new("/etc/passwd"), &config, &ContainerdDirs::default(), "p", "c", None);
        assert_eq!(v, Verdict::Denied("/etc".into()));
    }

    #[test]
    fn cri_files_of_this_pod_only() {
        let cri = "/var/lib/containerd/io.containerd.grpc.v1.cri";
        assert_eq!(verdict(&format!("{cri}/sandboxes/pod1/hostname")), Verdict::PodFile);
        assert_eq!(
            verdict("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/pod1/shm"),
            Verdict::PodFile
        );
        assert_eq!(verdict(&format!("{cri}/containers/ctr1/volumes/abc")), Verdict::PodFile);
        assert_eq!(
            verdict(&format!("{cri}/sandboxes/pod2/hostname")),
            Verdict::Denied("/var/lib/containerd".into())
        );
        assert_eq!(
            verdict(&format!("{cri}/sandboxes/pod1")),
            Verdict::Denied("/var/lib/containerd".into())
        );
        assert_eq!(
            verdict(&format!("{cri}/sandboxes/pod1/../pod2/hostname")),
            Verdict::Denied("/var/lib/containerd".into())
        );
    }

    #[test]
    fn kubelet_files_of_this_pod_only() {
        assert_eq!(verdict("/var/lib/kubelet/pods/uid-1/etc-hosts"), Verdict::PodFile);
        assert_eq!(
            verdict(
                "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-x"
            ),
            Verdict::PodFile
        );
        assert_eq!(verdict("/var/lib/kubelet/pods/uid-1/containers/app/1234"), Verdict::PodFile);
        assert_eq!(
            verdict("/var/lib/kubelet/pods/uid-2/volumes/x"),
            Verdict::Denied("/var/lib/kubelet".into())
        );
        assert_eq!(
            verdict("/var/lib/kubelet/pods/uid-1/plugins/x"),
            Verdict::Denied("/var/lib/kubelet".into())
        );
        assert_eq!(
            verdict("/var/lib/kubelet/pods/uid-1/volumes"),
            Verdict::Denied("/var/lib/kubelet".into())
        );
        // Without a known pod UID nothing under kubelet's directory is accepted.
        let p = Path::new("/var/lib/kubelet/pods/uid-1/etc-hosts");
        assert_eq!(
            classify(p, &cfg(), &ContainerdDirs::default(), "pod1", "ctr1", None),
            Verdict::Denied("/var/lib/kubelet".into())
        );
    }

    #[test]
    fn configured_state_dirs_are_denied_and_their_pod_files_accepted() {
        let config = Config {
            cri_state_dirs: vec!["/tmp/e2e/root/io.containerd.grpc.v1.cri".into()],
            allowed_host_paths: vec!["/tmp".into()],
            ..Config::default()
        };
        let under =
            |s: &str| classify(Path::new(s), &config, &ContainerdDirs::default(), "p1", "c1", None);
        assert_eq!(
            under("/tmp/e2e/root/io.containerd.grpc.v1.cri/sandboxes/p1/hosts"),
            Verdict::PodFile
        );
        assert_eq!(
            under("/tmp/e2e/root/io.containerd.grpc.v1.cri/sandboxes/p2/hosts"),
            Verdict::Denied("/tmp/e2e/root/io.containerd.grpc.v1.cri".into())
        );
        assert_eq!(
            under("/tmp"),
            Verdict::Denied("/tmp/e2e/root/io.containerd.grpc.v1.cri".into())
        );
        assert_eq!(under("/tmp/vol"), Verdict::Allowed { idmap: false });
    }

    #[test]
    fn derived_containerd_dirs_open_only_this_pods_files() {
        // Input: containerd with root and state under /srv (no config key names them).
        let containerd = ContainerdDirs {
            root: Some("/srv/ctd/root".into()),
            state: Some("/srv/ctd/state".into()),
        };
        let config = Config { allowed_host_paths: vec!["/srv".into()], ..Config::default() };
        let of = |s: &str| classify(Path::new(s), &config, &containerd, "p1", "c1", None);
        let cri_root = "/srv/ctd/root/io.containerd.grpc.v1.cri";
        let cri_state = "/srv/ctd/state/io.containerd.grpc.v1.cri";
        assert_eq!(of(&format!("{cri_root}/sandboxes/p1/hostname")), Verdict::PodFile);
        assert_eq!(of(&format!("{cri_state}/sandboxes/p1/shm")), Verdict::PodFile);
        assert_eq!(of(&format!("{cri_root}/containers/c1/volumes/v")), Verdict::PodFile);
        assert_eq!(
            of(&format!("{cri_root}/sandboxes/p2/hostname")),
            Verdict::Denied(cri_root.into())
        );
        assert_eq!(of(&format!("{cri_root}/sandboxes/p1")), Verdict::Denied(cri_root.into()));
        // The rest of containerd's root and state (every snapshot, every socket) is denied,
        // with what is above it, although allowed_host_paths names /srv.
        assert_eq!(
            of("/srv/ctd/root/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs"),
            Verdict::Denied("/srv/ctd/root".into())
        );
        assert_eq!(
            of("/srv/ctd/state/io.containerd.runtime.v2.task/k8s.io/c2"),
            Verdict::Denied("/srv/ctd/state".into())
        );
        assert_eq!(of("/srv/ctd"), Verdict::Denied(cri_root.into()));
        assert_eq!(of("/srv/other"), Verdict::Allowed { idmap: false });
        // With the override, the derived CRI dirs no longer open pod files (still denied).
        let config = Config { cri_state_dirs: vec!["/x/cri".into()], ..config };
        let v = classify(
            Path::new(&format!("{cri_state}/sandboxes/p1/shm")),
            &config,
            &containerd,
            "p1",
            "c1",
            None,
        );
        assert_eq!(v, Verdict::Denied("/srv/ctd/state".into()));
    }

    #[test]
    fn odd_ids_never_open_a_pod_file_exception() {
        let config = Config::default();
        let p = Path::new("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/x");
        assert_eq!(
            classify(p, &config, &ContainerdDirs::default(), "", "", None),
            Verdict::Denied("/var/lib/containerd".into())
        );
    }
}
