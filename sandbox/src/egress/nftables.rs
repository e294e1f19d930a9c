//! The ruleset as nf_tables netlink messages, and the one send that installs them.
//!
//! Hand-written on purpose: the crates that speak nf_tables either need the C library
//! libnftnl (`nftnl`), run the `nft` binary (`nftables`, which nodes need not have) or are
//! GPL-3.0 (`rustables`, which this Apache-2.0 project cannot link); generic netlink crates
//! (`neli`, `netlink-packet-*`) know no nf_tables attributes, so the messages below would be
//! the same. It is one batch of a handful of message kinds, all encoded by the pure
//! `encode_batch` (unit-tested) and sent by `apply`, the only part that touches the system.
//!
//! The batch replaces the table `inet moat_egress` atomically (new, delete, new: the kernel
//! applies a batch all or nothing) with one base chain on the output hook, so every packet
//! the pod sends, by any socket in its namespace, passes it.

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::ruleset::{Rule, Ruleset, Verdict};

/// The table moat owns in every pod's network namespace.
pub const TABLE: &str = "moat_egress";
/// Its one chain, on the output hook.
pub const CHAIN: &str = "output";

// From <linux/netlink.h>, <linux/netfilter/nfnetlink.h> and <linux/netfilter/nf_tables.h>.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNETLINK_V0: u8 = 0;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_NFPROTO: u32 = 15;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_CT_STATE: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)` (1 << 1 | 1 << 2),
/// compared in host byte order as the kernel stores it in the register.
const CT_ESTABLISHED_OR_RELATED: u32 = 0b110;

/// One message of the batch, for naming it when the kernel refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub seq: u32,
    pub what: String,
}

/// The encoded batch and the steps the kernel acknowledges one by one.
#[derive(Debug, Clone)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub steps: Vec<Step>,
}

/// The batch that replaces `inet moat_egress` with `ruleset`; sequence numbers from `seq`.
pub fn encode_batch(ruleset: &Ruleset, seq: u32) -> Batch {
    let mut b = Builder { bytes: Vec::new(), steps: Vec::new(), seq };
    b.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES, &[], None);
    let table = str_attr(NFTA_TABLE_NAME, TABLE);
    let create = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
    b.nft(NFT_MSG_NEWTABLE, create, &table, format!("create table inet {TABLE}"));
    b.nft(NFT_MSG_DELTABLE, NLM_F_REQUEST | NLM_F_ACK, &table, format!("flush table {TABLE}"));
    b.nft(NFT_MSG_NEWTABLE, create, &table, format!("create table inet {TABLE}"));
    let mut hook = u32_attr(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
    hook.extend(u32_attr(NFTA_HOOK_PRIORITY, 0));
    let mut chain = str_attr(NFTA_CHAIN_TABLE, TABLE);
    chain.extend(str_attr(NFTA_CHAIN_NAME, CHAIN));
    chain.extend(nested(NFTA_CHAIN_HOOK, &hook));
    chain.extend(u32_attr(NFTA_CHAIN_POLICY, NF_ACCEPT));
    chain.extend(str_attr(NFTA_CHAIN_TYPE, "filter"));
    b.nft(NFT_MSG_NEWCHAIN, create, &chain, format!("create chain {CHAIN} on the output hook"));
    let append = create | NLM_F_APPEND;
    b.nft(
        NFT_MSG_NEWRULE,
        append,
        &rule_attrs(&replies_pass()),
        "rule `ct state established,related accept`".into(),
    );
    for rule in &ruleset.rules {
        let verdict = if rule.verdict == Verdict::Drop { "drop" } else { "accept" };
        b.nft(
            NFT_MSG_NEWRULE,
            append,
            &rule_attrs(&destination_rule(rule)),
            format!("rule `daddr {} {verdict}` ({})", rule.destination, rule.origin.key()),
        );
    }
    b.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES, &[], None);
    Batch { bytes: b.bytes, steps: b.steps }
}

struct Builder {
    bytes: Vec<u8>,
    steps: Vec<Step>,
    seq: u32,
}

impl Builder {
    fn nft(&mut self, msg: u16, flags: u16, attrs: &[u8], what: String) {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        self.message(ty, flags, NFPROTO_INET, 0, attrs, Some(what));
    }

    /// nlmsghdr (len, type, flags, seq, pid) + nfgenmsg (family, version, res_id BE) + attrs.
    fn message(
        &mut self,
        ty: u16,
        flags: u16,
        family: u8,
        res_id: u16,
        attrs: &[u8],
        what: Option<String>,
    ) {
        let len = 16 + 4 + attrs.len();
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.bytes.extend((len as u32).to_ne_bytes());
        self.bytes.extend(ty.to_ne_bytes());
        self.bytes.extend(flags.to_ne_bytes());
        self.bytes.extend(seq.to_ne_bytes());
        self.bytes.extend(0u32.to_ne_bytes());
        self.bytes.extend([family, NFNETLINK_V0]);
        self.bytes.extend(res_id.to_be_bytes());
        self.bytes.extend(attrs);
        if let Some(what) = what {
            self.steps.push(Step { seq, what });
        }
    }
}

/// `ct state established,related accept`.
fn replies_pass() -> Vec<Vec<u8>> {
    vec![
        expr("ct", &[u32_attr(NFTA_CT_DREG, NFT_REG_1), u32_attr(NFTA_CT_KEY, NFT_CT_STATE)]),
        bitwise(&CT_ESTABLISHED_OR_RELATED.to_ne_bytes()),
        cmp(NFT_CMP_NEQ, &[0; 4]),
        verdict(NF_ACCEPT),
    ]
}

/// `meta nfproto ipv4|ipv6 ip|ip6 daddr <network> accept|drop`.
fn destination_rule(rule: &Rule) -> Vec<Vec<u8>> {
    let cidr = &rule.destination;
    let (proto, offset) = if cidr.is_ipv4() { (NFPROTO_IPV4, 16) } else { (NFPROTO_IPV6, 24) };
    let addr = cidr.addr_bytes();
    let mut exprs = vec![
        expr(
            "meta",
            &[u32_attr(NFTA_META_DREG, NFT_REG_1), u32_attr(NFTA_META_KEY, NFT_META_NFPROTO)],
        ),
        cmp(NFT_CMP_EQ, &[proto]),
        expr(
            "payload",
            &[
                u32_attr(NFTA_PAYLOAD_DREG, NFT_REG_1),
                u32_attr(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
                u32_attr(NFTA_PAYLOAD_OFFSET, offset),
                u32_attr(NFTA_PAYLOAD_LEN, addr.len() as u32),
            ],
        ),
    ];
    if usize::from(cidr.prefix()) < addr.len() * 8 {
        exprs.push(bitwise(&cidr.mask_bytes()));
    }
    exprs.push(cmp(NFT_CMP_EQ, &addr));
    exprs.push(verdict(if rule.verdict == Verdict::Drop { NF_DROP } else { NF_ACCEPT }));
    exprs
}

/// reg1 = reg1 & mask (xor 0), over mask's length.
fn bitwise(mask: &[u8]) -> Vec<u8> {
    expr(
        "bitwise",
        &[
            u32_attr(NFTA_BITWISE_SREG, NFT_REG_1),
            u32_attr(NFTA_BITWISE_DREG, NFT_REG_1),
            u32_attr(NFTA_BITWISE_LEN, mask.len() as u32),
            nested(NFTA_BITWISE_MASK, &attr(NFTA_DATA_VALUE, mask)),
            nested(NFTA_BITWISE_XOR, &attr(NFTA_DATA_VALUE, &vec![0; mask.len()])),
        ],
    )
}

fn cmp(op: u32, data: &[u8]) -> Vec<u8> {
    expr(
        "cmp",
        &[
            u32_attr(NFTA_CMP_SREG, NFT_REG_1),
            u32_attr(NFTA_CMP_OP, op),
            nested(NFTA_CMP_DATA, &attr(NFTA_DATA_VALUE, data)),
        ],
    )
}

fn verdict(code: u32) -> Vec<u8> {
    let v = nested(NFTA_DATA_VERDICT, &u32_attr(NFTA_VERDICT_CODE, code));
    expr(
        "immediate",
        &[u32_attr(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT), nested(NFTA_IMMEDIATE_DATA, &v)],
    )
}

fn expr(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
    let mut e = str_attr(NFTA_EXPR_NAME, name);
    e.extend(nested(NFTA_EXPR_DATA, &data.concat()));
    nested(NFTA_LIST_ELEM, &e)
}

fn rule_attrs(exprs: &[Vec<u8>]) -> Vec<u8> {
    let mut r = str_attr(NFTA_RULE_TABLE, TABLE);
    r.extend(str_attr(NFTA_RULE_CHAIN, CHAIN));
    r.extend(nested(NFTA_RULE_EXPRESSIONS, &exprs.concat()));
    r
}

/// One netlink attribute: len, type, payload, padded to 4 bytes.
fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity(len + 3);
    a.extend((len as u16).to_ne_bytes());
    a.extend(ty.to_ne_bytes());
    a.extend(payload);
    a.resize(len.div_ceil(4) * 4, 0);
    a
}

fn nested(ty: u16, inner: &[u8]) -> Vec<u8> {
    attr(ty | NLA_F_NESTED, inner)
}

fn str_attr(ty: u16, s: &str) -> Vec<u8> {
    let mut payload = s.as_bytes().to_vec();
    payload.push(0);
    attr(ty, &payload)
}

/// nf_tables' 32-bit attributes are big-endian.
fn u32_attr(ty: u16, v: u32) -> Vec<u8> {
    attr(ty, &v.to_be_bytes())
}

/// Why the kernel did not take the batch.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a NETLINK_NETFILTER socket: {0}")]
    Socket(Errno),
    #[error("sending the nf_tables batch: {0}")]
    Send(Errno),
    #[error("reading the kernel's answer to the nf_tables batch: {0}")]
    Recv(Errno),
    #[error("the kernel refused {what}: {errno}")]
    Refused { what: String, errno: Errno },
    #[error("the kernel acknowledged {acked} of {expected} nf_tables messages")]
    Incomplete { acked: usize, expected: usize },
}

/// Sends `batch` on a NETLINK_NETFILTER socket of the calling thread's network namespace and
/// waits for the kernel's acknowledgement of each step.
pub fn apply(batch: &Batch) -> Result<(), NetlinkError> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(NetlinkError::Socket)?;
    let timeout = TimeVal::from(libc::timeval { tv_sec: 5, tv_usec: 0 });
    setsockopt(&sock, sockopt::ReceiveTimeout, &timeout).map_err(NetlinkError::Socket)?;
    let kernel = NetlinkAddr::new(0, 0);
    use std::os::fd::AsRawFd;
    let sent = sendto(sock.as_raw_fd(), &batch.bytes, &kernel, MsgFlags::empty())
        .map_err(NetlinkError::Send)?;
    if sent != batch.bytes.len() {
        return Err(NetlinkError::Send(Errno::EMSGSIZE));
    }
    let mut acked = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while acked < batch.steps.len() {
        let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                return Err(NetlinkError::Incomplete { acked, expected: batch.steps.len() })
            }
            Err(e) => return Err(NetlinkError::Recv(e)),
        };
        for (seq, error) in acks(&buf[..n]) {
            if error != 0 {
                let what = batch
                    .steps
                    .iter()
                    .find(|s| s.seq == seq)
                    .map(|s| s.what.clone())
                    .unwrap_or_else(|| format!("nf_tables message {seq}"));
                return Err(NetlinkError::Refused { what, errno: Errno::from_raw(-error) });
            }
            acked += 1;
        }
    }
    Ok(())
}

/// The (sequence number, error) of each NLMSG_ERROR message in `buf` (0 is an ack).
pub fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let word = |at: usize| -> u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&buf[at..at + 4]);
            u32::from_ne_bytes(w)
        };
        let len = word(off) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let seq = word(off + 8);
        if ty == NLMSG_ERROR && len >= 20 {
            // struct nlmsgerr: int error, then the offending message's header.
            out.push((seq, word(off + 16) as i32));
        }
        off += len.div_ceil(4) * 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::config::EgressConfig;

    /// The messages of a batch: (type, flags, seq, family, attributes).
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < bytes.len() {
            let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().expect("len")) as usize;
            assert!(len >= 20 && off + len <= bytes.len(), "bad length {len} at {off}");
            let ty = u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]);
            let flags = u16::from_ne_bytes([bytes[off + 6], bytes[off + 7]]);
            let seq = u32::from_ne_bytes(bytes[off + 8..off + 12].try_into().expect("seq"));
            out.push((ty, flags, seq, bytes[off + 16], bytes[off + 20..off + len].to_vec()));
            assert_eq!(len % 4, 0, "messages are 4-aligned");
            off += len;
        }
        out
    }

    /// The top-level attributes (type without flags, payload) of one attribute stream.
    fn attrs(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
            let ty = u16::from_ne_bytes([bytes[2], bytes[3]]) & !NLA_F_NESTED;
            assert!(len >= 4 && len <= bytes.len(), "attribute length {len}");
            out.push((ty, bytes[4..len].to_vec()));
            bytes = &bytes[(len.div_ceil(4) * 4).min(bytes.len())..];
        }
        out
    }

    /// An expression's name and its data's attributes.
    type Expression = (String, Vec<(u16, Vec<u8>)>);

    /// The expressions of one NEWRULE message's attributes.
    fn expressions(rule: &[u8]) -> Vec<Expression> {
        let top = attrs(rule);
        assert_eq!(top[0], (NFTA_RULE_TABLE, b"moat_egress\0".to_vec()));
        assert_eq!(top[1], (NFTA_RULE_CHAIN, b"output\0".to_vec()));
        assert_eq!(top[2].0, NFTA_RULE_EXPRESSIONS);
        attrs(&top[2].1)
            .into_iter()
            .map(|(ty, elem)| {
                assert_eq!(ty, NFTA_LIST_ELEM);
                let e = attrs(&elem);
                let name = String::from_utf8(e[0].1.clone()).expect("name");
                (name.trim_end_matches('\0').to_string(), attrs(&e[1].1))
            })
            .collect()
    }

    fn data_value(nested_attr: &[u8]) -> Vec<u8> {
        let inner = attrs(nested_attr);
        assert_eq!(inner[0].0, NFTA_DATA_VALUE);
        inner[0].1.clone()
    }

    #[test]
    fn the_batch_replaces_the_table_then_adds_chain_and_rules_in_order() {
        let config = EgressConfig {
            deny: vec!["198.51.100.0/24".parse().expect("cidr")],
            allow: vec!["198.51.100.8".parse().expect("cidr")],
            ..EgressConfig::default()
        };
        let ruleset = Ruleset::derive(&config, &[]);
        let batch = encode_batch(&ruleset, 100);
        let msgs = messages(&batch.bytes);
        let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        let nft = |m: u16| (10 << 8) | m;
        assert_eq!(
            types,
            [
                0x10,
                nft(NFT_MSG_NEWTABLE),
                nft(NFT_MSG_DELTABLE),
                nft(NFT_MSG_NEWTABLE),
                nft(NFT_MSG_NEWCHAIN),
                nft(NFT_MSG_NEWRULE), // conntrack replies
                nft(NFT_MSG_NEWRULE), // allow 198.51.100.8
                nft(NFT_MSG_NEWRULE), // metadata v4
                nft(NFT_MSG_NEWRULE), // metadata v6
                nft(NFT_MSG_NEWRULE), // deny 198.51.100.0/24
                0x11
            ]
        );
        // Sequence numbers count up from 100; every nf_tables message asks for an ack and
        // is a step that names itself.
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(seqs, (100..111).collect::<Vec<_>>());
        assert_eq!(batch.steps.len(), 9);
        assert!(msgs[1..10].iter().all(|m| m.1 & NLM_F_ACK != 0 && m.3 == NFPROTO_INET));
        assert_eq!(msgs[0].4, Vec::<u8>::new());
        assert!(batch.steps[8].what.contains("198.51.100.0/24 drop"), "{:?}", batch.steps);

        // The chain: output hook, priority 0, policy accept, type filter.
        let chain = attrs(&msgs[4].4);
        let hook = attrs(&chain[2].1);
        assert_eq!(hook, [(1, 3u32.to_be_bytes().to_vec()), (2, 0u32.to_be_bytes().to_vec())]);
        assert_eq!(chain[3], (NFTA_CHAIN_POLICY, 1u32.to_be_bytes().to_vec()));
        assert_eq!(chain[4], (NFTA_CHAIN_TYPE, b"filter\0".to_vec()));

        // The first rule lets replies through.
        let ct = expressions(&msgs[5].4);
        let names: Vec<&str> = ct.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["ct", "bitwise", "cmp", "immediate"]);
        assert_eq!(data_value(&ct[1].1[3].1), 6u32.to_ne_bytes().to_vec());

        // The allow rule: IPv4, daddr at offset 16, the whole address, accept.
        let allow = expressions(&msgs[6].4);
        let names: Vec<&str> = allow.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["meta", "cmp", "payload", "cmp", "immediate"]);
        assert_eq!(data_value(&allow[1].1[2].1), vec![NFPROTO_IPV4]);
        assert_eq!(allow[2].1[2], (NFTA_PAYLOAD_OFFSET, 16u32.to_be_bytes().to_vec()));
        assert_eq!(data_value(&allow[3].1[2].1), vec![198, 51, 100, 8]);
        let verdict = attrs(&attrs(&allow[4].1[1].1)[0].1);
        assert_eq!(verdict, [(NFTA_VERDICT_CODE, NF_ACCEPT.to_be_bytes().to_vec())]);

        // The IPv6 metadata rule: daddr at offset 24, 16 bytes, drop.
        let v6 = expressions(&msgs[8].4);
        assert_eq!(data_value(&v6[1].1[2].1), vec![NFPROTO_IPV6]);
        assert_eq!(v6[2].1[2], (NFTA_PAYLOAD_OFFSET, 24u32.to_be_bytes().to_vec()));
        assert_eq!(v6[2].1[3], (NFTA_PAYLOAD_LEN, 16u32.to_be_bytes().to_vec()));
        let verdict = attrs(&attrs(&v6[4].1[1].1)[0].1);
        assert_eq!(verdict, [(NFTA_VERDICT_CODE, NF_DROP.to_be_bytes().to_vec())]);

        // The /24: masked before the compare.
        let net = expressions(&msgs[9].4);
        let names: Vec<&str> = net.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["meta", "cmp", "payload", "bitwise", "cmp", "immediate"]);
        assert_eq!(data_value(&net[3].1[3].1), vec![255, 255, 255, 0]);
        assert_eq!(data_value(&net[4].1[2].1), vec![198, 51, 100, 0]);
    }

    #[test]
    fn acks_are_read_with_their_errors() {
        let mut buf = Vec::new();
        for (seq, err) in [(7u32, 0i32), (8, -1)] {
            buf.extend(36u32.to_ne_bytes());
            buf.extend(NLMSG_ERROR.to_ne_bytes());
            buf.extend(0u16.to_ne_bytes());
            buf.extend(seq.to_ne_bytes());
            buf.extend(0u32.to_ne_bytes());
            buf.extend(err.to_ne_bytes());
            buf.extend([0u8; 16]);
        }
        buf.extend([1, 2, 3]); // a truncated tail is ignored
        assert_eq!(acks(&buf), [(7, 0), (8, -1)]);
        assert_eq!(acks(&[]), []);
        assert_eq!(acks(&[255; 40]), []);
    }
}
