//! The egress guard: packet-filter rules in each pod's network namespace that drop traffic to
//! the cloud metadata endpoints, the operator's `deny` networks and (optionally) the node's
//! own addresses, with `allow` exceptions (`[egress]` in moat's config).
//!
//! Owns: the `[egress]` keys (`config`), their translation into ordered rules (`ruleset`,
//! pure), the nf_tables messages that install them (`nftables`), and `install`, which enters
//! the pod's network namespace on a thread of its own and sends them. The shim calls
//! `install` for the pod's sandbox container before any of the pod's processes runs.
//!
//! Why the pod cannot undo it: the namespace CNI (or containerd 2.x) made belongs to the
//! host's user namespace, where the pod's capabilities count for nothing, and the seccomp
//! baseline refuses NETLINK_NETFILTER sockets besides. A pod on the host's network
//! (`hostNetwork`, only with `allow_host_network`) is outside the guard: moat never puts
//! rules into the host's namespace.

pub mod config;
pub mod nftables;
pub mod ruleset;

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;

pub use config::{Cidr, EgressConfig};
pub use ruleset::{Ruleset, Verdict};

/// Why the guard could not be put in place (the pod is then refused).
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress guard: opening the pod's network namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "egress guard: {path} is the host's network namespace; moat puts no rules there \
         (a hostNetwork pod is outside the guard)"
    )]
    HostNamespace { path: PathBuf },
    #[error("egress guard: entering the pod's network namespace {path}: {source}")]
    Enter { path: PathBuf, source: Errno },
    #[error("egress guard in {path}: {source}")]
    Netlink { path: PathBuf, source: nftables::NetlinkError },
    #[error("egress guard: a thread to enter {path} could not run: {detail}")]
    Thread { path: PathBuf, detail: String },
    #[error("egress guard: listing the node's addresses (egress.deny_node_addresses): {0}")]
    NodeAddresses(Errno),
}

/// The ruleset for `config` on this node: reads the node's addresses (from the caller's
/// network namespace, the host's for the shim) only when `deny_node_addresses` asks for them.
pub fn ruleset_for_node(config: &EgressConfig) -> Result<Ruleset, EgressError> {
    let node = if config.deny_node_addresses { node_addresses()? } else { Vec::new() };
    Ok(Ruleset::derive(config, &node))
}

/// The addresses of the caller's network namespace's interfaces.
pub fn node_addresses() -> Result<Vec<IpAddr>, EgressError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(EgressError::NodeAddresses)?;
    Ok(addrs
        .filter_map(|a| {
            let addr = a.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}

/// Installs `ruleset` in the network namespace at `netns` (replacing moat's table there, if
/// any). Refuses the host's own namespace. Nothing is installed for an empty ruleset.
pub fn install(netns: &Path, ruleset: &Ruleset) -> Result<(), EgressError> {
    if ruleset.is_empty() {
        return Ok(());
    }
    let path = netns.to_path_buf();
    let file = std::fs::File::open(netns)
        .map_err(|source| EgressError::Open { path: path.clone(), source })?;
    let target =
        file.metadata().map_err(|source| EgressError::Open { path: path.clone(), source })?;
    for host in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        if let Ok(h) = std::fs::metadata(host) {
            if (h.dev(), h.ino()) == (target.dev(), target.ino()) {
                return Err(EgressError::HostNamespace { path });
            }
        }
    }
    let batch = nftables::encode_batch(ruleset, std::process::id());
    // setns(CLONE_NEWNET) changes only the calling thread's namespace: a thread of its own
    // enters the pod's, opens the netlink socket there (a socket stays in the namespace it was
    // made in) and ends, so no other thread of the shim ever runs in the pod's namespace.
    let thread_path = path.clone();
    let worker = std::thread::Builder::new()
        .name("moat-egress".into())
        .spawn(move || -> Result<(), EgressError> {
            nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|source| EgressError::Enter { path: thread_path.clone(), source })?;
            nftables::apply(&batch)
                .map_err(|source| EgressError::Netlink { path: thread_path, source })
        })
        .map_err(|e| EgressError::Thread { path: path.clone(), detail: e.to_string() })?;
    worker.join().map_err(|_| EgressError::Thread { path, detail: "it panicked".into() })?
}
