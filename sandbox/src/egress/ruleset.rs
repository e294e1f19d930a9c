//! The pure half of the guard: `[egress]` plus the node's addresses in, the ordered rules out.
//!
//! The rules are what `nftables` installs in the pod's network namespace, in this order,
//! first match wins, anything that matches none passes:
//! 1. replies of connections made *into* the pod (conntrack `established`/`related`) pass,
//!    so kubelet's probes from a node address are answered even with `deny_node_addresses`;
//! 2. each `allow` entry passes;
//! 3. each denied network (metadata, `deny`, the node's addresses) is dropped.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::config::{Cidr, EgressConfig, METADATA_ADDRESSES};

/// What happens to a packet a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// Which key of `[egress]` a rule comes from (for logs and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Allow,
    Metadata,
    Deny,
    NodeAddress,
}

impl Origin {
    pub fn key(self) -> &'static str {
        match self {
            Origin::Allow => "egress.allow",
            Origin::Metadata => "egress.deny_metadata",
            Origin::Deny => "egress.deny",
            Origin::NodeAddress => "egress.deny_node_addresses",
        }
    }
}

/// One rule: packets to `destination` get `verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub destination: Cidr,
    pub verdict: Verdict,
    pub origin: Origin,
}

/// The ordered rules of one pod's guard (the conntrack rule is implied, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
}

impl Ruleset {
    /// The rules for `config`, with `node_addresses` (the addresses of the node's interfaces)
    /// used when `deny_node_addresses` is set. Loopback, unspecified and IPv6 link-local
    /// addresses are left out: inside the pod's namespace they name the pod's own interfaces.
    /// A destination is dropped once even when several keys name it.
    pub fn derive(config: &EgressConfig, node_addresses: &[IpAddr]) -> Ruleset {
        let mut drops: Vec<(Cidr, Origin)> = Vec::new();
        if config.deny_metadata {
            for text in METADATA_ADDRESSES {
                if let Ok(cidr) = text.parse() {
                    drops.push((cidr, Origin::Metadata));
                }
            }
        }
        drops.extend(config.deny.iter().map(|c| (*c, Origin::Deny)));
        if config.deny_node_addresses {
            let mut addrs: Vec<IpAddr> =
                node_addresses.iter().copied().filter(|a| is_node_address(*a)).collect();
            addrs.sort();
            drops.extend(addrs.into_iter().map(|a| (Cidr::host(a), Origin::NodeAddress)));
        }
        let mut seen = BTreeSet::new();
        drops.retain(|(cidr, _)| seen.insert(cidr.to_string()));
        if drops.is_empty() {
            return Ruleset::default();
        }
        let mut seen = BTreeSet::new();
        let allows = config.allow.iter().filter(|c| seen.insert(c.to_string())).map(|c| Rule {
            destination: *c,
            verdict: Verdict::Accept,
            origin: Origin::Allow,
        });
        let drops = drops.into_iter().map(|(destination, origin)| Rule {
            destination,
            verdict: Verdict::Drop,
            origin,
        });
        Ruleset { rules: allows.chain(drops).collect() }
    }

    /// True when the guard drops nothing: then no table is installed at all.
    pub fn is_empty(&self) -> bool {
        !self.rules.iter().any(|r| r.verdict == Verdict::Drop)
    }

    /// The verdict for a packet to `dest` that is not a reply: the first rule whose network
    /// holds it, else accept. (The model the installed rules implement, for tests and docs.)
    pub fn verdict_for(&self, dest: IpAddr) -> Verdict {
        let dest = Cidr::host(dest);
        self.rules
            .iter()
            .find(|r| r.destination.contains(&dest))
            .map(|r| r.verdict)
            .unwrap_or(Verdict::Accept)
    }

    /// One line per rule, `drop 169.254.169.254/32 (egress.deny_metadata)`, for the log.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|r| {
                let v = if r.verdict == Verdict::Drop { "drop" } else { "accept" };
                format!("{v} {} ({})", r.destination, r.origin.key())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An address of the node's interfaces that a pod must not reach when `deny_node_addresses`.
fn is_node_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_unspecified(),
        IpAddr::V6(a) => {
            !a.is_loopback() && !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_defaults_drop_the_metadata_endpoints_only() {
        let r = Ruleset::derive(&EgressConfig::default(), &[ip("192.0.2.2")]);
        assert_eq!(
            r.describe(),
            "drop 169.254.169.254/32 (egress.deny_metadata), \
             drop fd00:ec2::254/128 (egress.deny_metadata)"
        );
        assert_eq!(r.verdict_for(ip("169.254.169.254")), Verdict::Drop);
        assert_eq!(r.verdict_for(ip("fd00:ec2::254")), Verdict::Drop);
        assert_eq!(r.verdict_for(ip("169.254.169.253")), Verdict::Accept);
        // The node's address is reachable unless deny_node_addresses.
        assert_eq!(r.verdict_for(ip("192.0.2.2")), Verdict::Accept);
        assert!(!r.is_empty());
    }

    #[test]
    fn allow_entries_come_first_and_win_over_every_deny() {
        let config = EgressConfig {
            deny: cidrs(&["198.51.100.0/24", "10.0.0.0/8"]),
            allow: cidrs(&["198.51.100.8", "10.96.0.10"]),
            ..EgressConfig::default()
        };
        let r = Ruleset::derive(&config, &[]);
        assert_eq!(r.rules[0].verdict, Verdict::Accept);
        assert_eq!(r.rules[1].verdict, Verdict::Accept);
        assert!(r.rules[2..].iter().all(|rule| rule.verdict == Verdict::Drop));
        assert_eq!(r.verdict_for(ip("198.51.100.7")), Verdict::Drop);
        assert_eq!(r.verdict_for(ip("198.51.100.8")), Verdict::Accept);
        assert_eq!(r.verdict_for(ip("10.1.2.3")), Verdict::Drop);
        assert_eq!(r.verdict_for(ip("10.96.0.10")), Verdict::Accept);
        assert_eq!(r.verdict_for(ip("8.8.8.8")), Verdict::Accept);
    }

    #[test]
    fn node_addresses_are_dropped_only_when_asked_without_loopback_or_link_local() {
        let node = [
            ip("192.0.2.2"),
            ip("127.0.0.1"),
            ip("::1"),
            ip("fe80::fc:ff:fe00:1"),
            ip("fd00::2"),
            ip("10.88.77.1"),
            ip("192.0.2.2"),
        ];
        let config = EgressConfig { deny_node_addresses: true, ..EgressConfig::default() };
        let r = Ruleset::derive(&config, &node);
        let nodes: Vec<String> = r
            .rules
            .iter()
            .filter(|rule| rule.origin == Origin::NodeAddress)
            .map(|rule| rule.destination.to_string())
            .collect();
        assert_eq!(nodes, ["10.88.77.1/32", "192.0.2.2/32", "fd00::2/128"]);
        assert_eq!(r.verdict_for(ip("127.0.0.1")), Verdict::Accept);
        assert_eq!(r.verdict_for(ip("fe80::fc:ff:fe00:1")), Verdict::Accept);
        let off = Ruleset::derive(&EgressConfig::default(), &node);
        assert_eq!(off.verdict_for(ip("10.88.77.1")), Verdict::Accept);
    }

    #[test]
    fn a_destination_named_twice_is_dropped_once() {
        let config = EgressConfig {
            deny: cidrs(&["169.254.169.254", "192.0.2.2"]),
            deny_node_addresses: true,
            ..EgressConfig::default()
        };
        let r = Ruleset::derive(&config, &[ip("192.0.2.2")]);
        assert_eq!(r.rules.len(), 3, "{}", r.describe());
        assert_eq!(r.rules[0].origin, Origin::Metadata);
    }

    #[test]
    fn nothing_denied_means_no_rules_even_with_allow_entries() {
        let config = EgressConfig {
            deny_metadata: false,
            allow: cidrs(&["10.0.0.0/8"]),
            ..EgressConfig::default()
        };
        let r = Ruleset::derive(&config, &[ip("192.0.2.2")]);
        assert!(r.is_empty() && r.rules.is_empty(), "{r:?}");
    }
}
