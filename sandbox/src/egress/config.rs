//! `[egress]`: which destinations a pod's traffic may not reach, as the operator writes them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

/// The cloud metadata endpoints every pod is kept from by default (`deny_metadata`): AWS,
/// GCP, Azure, OpenStack, Oracle and DigitalOcean answer on 169.254.169.254, AWS's IPv6
/// endpoint is fd00:ec2::254.
pub const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];

/// `[egress]` of moat's config: the pod network's guard (see `docs/config.example.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Drop traffic to the cloud metadata endpoints (`METADATA_ADDRESSES`).
    pub deny_metadata: bool,
    /// Drop traffic to every address of the node's own interfaces (loopback and IPv6
    /// link-local ones excepted: those name the pod's own interfaces inside its namespace).
    pub deny_node_addresses: bool,
    /// More destinations to drop: addresses or CIDRs (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
    pub deny: Vec<Cidr>,
    /// Exceptions, checked first: destinations answered even when a deny entry covers them
    /// (a node-local DNS cache on `169.254.20.10`, an in-cluster service on a node address).
    pub allow: Vec<Cidr>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            deny_metadata: true,
            deny_node_addresses: false,
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// An IPv4 or IPv6 network: an address and a prefix length, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; `None` when the prefix is longer than the address or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let cidr = Cidr { addr, prefix };
        (prefix <= cidr.max_prefix() && cidr.network() == addr).then_some(cidr)
    }

    /// The one address `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address bytes (4 or 16, network order).
    pub fn addr_bytes(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// The prefix as a byte mask of the address's length.
    pub fn mask_bytes(&self) -> Vec<u8> {
        let len = usize::from(self.max_prefix() / 8);
        (0..len)
            .map(|i| {
                let bits = usize::from(self.prefix).saturating_sub(i * 8).min(8);
                // `bits` (0..=8) ones from the top: the low byte of 0xff00 >> bits.
                (0xff00u16 >> bits) as u8
            })
            .collect()
    }

    /// The address with its host bits cleared.
    fn network(&self) -> IpAddr {
        let masked: Vec<u8> =
            self.addr_bytes().iter().zip(self.mask_bytes()).map(|(a, m)| a & m).collect();
        match self.addr {
            IpAddr::V4(_) => {
                let mut o = [0u8; 4];
                o.copy_from_slice(&masked);
                IpAddr::V4(Ipv4Addr::from(o))
            }
            IpAddr::V6(_) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&masked);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    /// True when `other` lies wholly inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && other.prefix >= self.prefix
            && Cidr { addr: other.addr, prefix: self.prefix }.network() == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a `deny`/`allow` entry is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "{0:?} is not an IPv4 or IPv6 address (write `192.0.2.0/24`, `fd00::/8` or `192.0.2.7`)"
    )]
    Address(String),
    #[error("{0:?}: the prefix length is not a number up to 32 (IPv4) or 128 (IPv6)")]
    Prefix(String),
    #[error("{text:?} has host bits set: the network is {network}")]
    HostBits { text: String, network: String },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr_text.trim().parse().map_err(|_| CidrError::Address(text.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix(text.to_string()))?,
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(cidr)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(text: String) -> Result<Cidr, CidrError> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_parse() {
        let c: Cidr = "169.254.169.254".parse().expect("address");
        assert_eq!(c.to_string(), "169.254.169.254/32");
        let c: Cidr = "10.0.0.0/8".parse().expect("network");
        assert_eq!((c.prefix(), c.mask_bytes()), (8, vec![0xff, 0, 0, 0]));
        let c: Cidr = "fd00:ec2::254".parse().expect("v6 address");
        assert_eq!(c.to_string(), "fd00:ec2::254/128");
        assert_eq!(c.mask_bytes(), vec![0xff; 16]);
        let c: Cidr = "fd00::/9".parse().expect("v6 network");
        assert_eq!(&c.mask_bytes()[..3], &[0xff, 0x80, 0]);
        let c: Cidr = "0.0.0.0/0".parse().expect("everything");
        assert_eq!(c.mask_bytes(), vec![0; 4]);
        let c: Cidr = "192.0.2.0/27".parse().expect("/27");
        assert_eq!(c.mask_bytes(), vec![0xff, 0xff, 0xff, 0xe0]);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry() {
        for (text, says) in [
            ("metadata", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "prefix length"),
            ("fd00::/129", "prefix length"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.1/8", "the network is 10.0.0.0/8"),
            ("", "not an IPv4"),
        ] {
            let err = text.parse::<Cidr>().expect_err(text).to_string();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text:?} is not named: {err}");
        }
    }

    #[test]
    fn a_bad_entry_in_the_config_file_names_file_line_and_entry() {
        use crate::policy::Config;
        let text = "level = \"restricted\"\n\n[egress]\nallow = [\"169.254.20.10\"]\ndeny = [\"10.0.0.1/8\"]\n";
        let err = Config::parse(text, "/etc/moat/config.toml").expect_err("accepted").to_string();
        for part in ["/etc/moat/config.toml", "line 5", "\"10.0.0.1/8\"", "10.0.0.0/8"] {
            assert!(err.contains(part), "{part:?} missing: {err}");
        }
        let err = Config::parse("[egress]\ndenied = []\n", "c.toml").expect_err("unknown key");
        assert!(err.to_string().contains("denied"), "{err}");
        let ok = Config::parse(
            "[egress]\ndeny_node_addresses = true\ndeny = [\"fd00::/8\"]\n",
            "c.toml",
        )
        .expect("valid");
        assert!(ok.egress.deny_node_addresses && ok.egress.deny_metadata);
        assert_eq!(ok.egress.deny, vec!["fd00::/8".parse::<Cidr>().expect("cidr")]);
    }

    #[test]
    fn containment() {
        let net: Cidr = "169.254.0.0/16".parse().expect("net");
        assert!(net.contains(&"169.254.169.254".parse().expect("a")));
        assert!(!net.contains(&"169.253.0.1".parse().expect("b")));
        assert!(!net.contains(&"fd00::1".parse().expect("v6")));
        assert!(!net.contains(&"169.0.0.0/8".parse().expect("wider")));
    }
}
