//! Enforcement: the project's own nftables table `inet iot_inspector`.
//!
//! ```text
//! table inet iot_inspector {
//!     set blocked_macs { type ether_addr }
//!     set blocked_v4   { type ipv4_addr }
//!     set blocked_v6   { type ipv6_addr }
//!     set dest_v4      { type ipv4_addr . ipv4_addr; flags timeout }  # device . remote
//!     set dest_v6      { type ipv6_addr . ipv6_addr; flags timeout }
//!     chain forward {
//!         type filter hook forward priority filter - 10; policy accept;
//!         ether saddr @blocked_macs counter reject with icmpx no-route  # device -> anywhere
//!         ip saddr @blocked_v4 counter reject …     # device -> anywhere, by address
//!         ip daddr @blocked_v4 counter reject …     # anywhere -> device
//!         ip6 saddr @blocked_v6 counter reject …
//!         ip6 daddr @blocked_v6 counter reject …
//!         ip saddr . ip daddr @dest_v4 counter reject … # device -> blocked remote
//!         ip daddr . ip saddr @dest_v4 counter reject … # blocked remote -> device
//!         ip6 saddr . ip6 daddr @dest_v6 counter reject …
//!         ip6 daddr . ip6 saddr @dest_v6 counter reject …
//!     }
//! }
//! ```
//!
//! A rule is there only while its set has elements, and the chain only
//! while it has a rule: every forwarded packet pays for the hook and each
//! rule's set lookup (the nine lookups cost a quarter of the forwarding
//! throughput in the benchmark's veth router).
//!
//! Why this shape:
//! - **Own table.** fw4 (`fw4 reload`) flushes and rebuilds only `table inet
//!   fw4`; a separate table survives it and we never touch fw4's rules.
//! - **Forward hook, both directions.** Upstream, the device's MAC is the
//!   Ethernet source of its frames when they reach the router, so
//!   `ether saddr` stops it even before we know its addresses. Downstream, at
//!   forward time the packet's Ethernet header is the upstream router's (the
//!   destination MAC is ours, the new one is written after routing), so the
//!   device can only be recognised by its IP addresses: `ip daddr`/`ip6
//!   daddr` against the addresses the device is known to use. Masquerade is
//!   undone in prerouting, so replies already carry the device's LAN address
//!   here; source NAT happens in postrouting, after us. `ip saddr` is kept
//!   as well for devices behind a MAC-rewriting repeater. The router's own
//!   services (DHCP, DNS) stay reachable: a blocked device keeps its lease and
//!   comes back the moment it is unblocked.
//! - **Priority `filter - 10`**, before fw4's forward chain (`filter`). An
//!   `accept` in fw4's chain would not save a packet from a later drop of
//!   ours (accept only ends one base chain), but fw4's chain also runs
//!   `flow add @ft` for software/hardware flow offloading: once a connection
//!   is in the flowtable its packets skip the forward hook entirely. Dropping
//!   before fw4 sees the packet keeps blocked connections from being
//!   offloaded again.
//! - **Reject with ICMP "no route"** (`icmpx no-route`: ICMP net
//!   unreachable, ICMPv6 no route), not a silent drop. A TCP sender whose
//!   segments vanish backs its retransmission timer off exponentially, so
//!   after an unblock an open transfer would sit idle for seconds. RFC 6069
//!   (TCP-LD, in Linux for IPv4 and IPv6) has a sender that gets these
//!   errors for its retransmissions undo that backoff, so it keeps probing
//!   at its base RTO while blocked and resumes within a fraction of a
//!   second of the unblock. It also tells a device's apps at once that the
//!   network is gone instead of letting them hang. The kernel rate-limits
//!   these errors (`net.ipv4.icmp_ratelimit`, ~1/s per host after a burst
//!   of 6; IPv6 allows more for /64 routes), which bounds both their cost
//!   and, on a long IPv4 block, how far the backoff can grow back.
//! - **Connections open before a block are cut** by deleting their conntrack
//!   entries, which also removes their flowtable (offload) entries; without
//!   this an offloaded connection would keep flowing past our chain.
//! - **Sets**, so a change is one `nft -j -f -` transaction: the batch
//!   deletes and recreates the table, which the kernel applies atomically —
//!   packets see the old rules or the new ones, never none.
//! - **Destination sets** hold `device address . remote address` pairs from
//!   the DNS answers the device received, each with a timeout from the
//!   answer's TTL (clamped, see [`MIN_DEST_TIMEOUT`]).
//!
//! Commands run as `nft`/`conntrack`, or `ip netns exec NS nft` in tests.
//! Conntrack entries are deleted with the `conntrack` tool (package
//! `conntrack` on OpenWrt): ctnetlink deletion by address needs nested
//! netlink attributes and there is no small maintained pure-Rust crate for
//! it; the tool is a few KiB and does exactly this.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use nftables::batch::Batch;
use nftables::expr::{Elem, Expression, NamedExpression, Payload, PayloadField};
use nftables::schema::{
    Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Counter, Match, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};
use serde::{Deserialize, Serialize};

use super::RuleState;
use crate::dissect::Mac;

pub const TABLE: &str = "iot_inspector";
pub const CHAIN: &str = "forward";
/// `filter - 10`: before fw4's forward chain at `filter` (0).
pub const PRIORITY: i32 = -10;
/// Shortest timeout for a destination element. Devices (and their stub
/// resolvers) keep using an address well past a short TTL, and an open
/// connection does not look the name up again; a block that lapsed after a
/// 30 s TTL would not be a block.
pub const MIN_DEST_TIMEOUT: u32 = 300;
/// Longest timeout for a destination element (a day): stale answers must
/// not block an address forever after it moved to another service.
pub const MAX_DEST_TIMEOUT: u32 = 86_400;

/// The addresses each device is known to use (from the inventory).
pub type DeviceAddresses = BTreeMap<Mac, Vec<IpAddr>>;

/// A remote address a device resolved, under a destination rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationEntry {
    /// The rule whose filter the name matched (see
    /// [`super::DestinationFilter::matches`]).
    pub rule: String,
    pub device: Mac,
    pub remote: IpAddr,
    /// The DNS answer's TTL in seconds.
    pub ttl: u32,
}

/// Remote addresses to block per device, from the DNS answers each device
/// received. The enforcer uses an entry only while its rule is in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationSets {
    pub entries: Vec<DestinationEntry>,
}

impl DestinationSets {
    pub fn add(&mut self, rule: &str, device: Mac, remote: IpAddr, ttl: u32) {
        self.entries.push(DestinationEntry {
            rule: rule.to_owned(),
            device,
            remote,
            ttl,
        });
    }
}

/// What one `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub blocked_macs: usize,
    pub blocked_addresses: usize,
    pub destination_pairs: usize,
    /// Addresses and pairs blocked now that were not before, whose
    /// connections were cut.
    pub newly_blocked: Vec<String>,
    /// (device address, remote address for a destination block) no longer
    /// blocked since the last apply: their open transfers can be nudged
    /// back into motion (see `rules::resume`).
    pub released: Vec<(IpAddr, Option<IpAddr>)>,
    /// Conntrack entries deleted.
    pub conntrack_deleted: u64,
    /// Problems cutting connections (the block itself is in force).
    pub warnings: Vec<String>,
    /// From the start of `apply` to the transaction being committed.
    pub commit_micros: u64,
}

/// The table as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    pub hook: Option<String>,
    pub priority: Option<i64>,
    pub blocked_macs: Vec<Mac>,
    pub blocked_v4: Vec<Ipv4Addr>,
    pub blocked_v6: Vec<Ipv6Addr>,
    /// (device, remote) pairs with their remaining seconds, if given.
    pub dest_v4: Vec<(Ipv4Addr, Ipv4Addr, Option<u64>)>,
    pub dest_v6: Vec<(Ipv6Addr, Ipv6Addr, Option<u64>)>,
}

/// The sets' contents wanted for a list of rule states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub macs: BTreeSet<Mac>,
    pub v4: BTreeSet<Ipv4Addr>,
    pub v6: BTreeSet<Ipv6Addr>,
    pub dest_v4: BTreeMap<(Ipv4Addr, Ipv4Addr), u32>,
    pub dest_v6: BTreeMap<(Ipv6Addr, Ipv6Addr), u32>,
}

/// Addresses worth matching in the forward path: not link-local (never
/// routed), multicast, loopback or unspecified.
fn routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

impl Desired {
    pub fn from_states(
        states: &[RuleState],
        addrs: &DeviceAddresses,
        dests: &DestinationSets,
    ) -> Desired {
        let mut d = Desired::default();
        let known = |mac: &Mac| {
            addrs
                .get(mac)
                .into_iter()
                .flatten()
                .filter(|ip| routable(ip))
        };
        for s in states
            .iter()
            .filter(|s| s.blocked && s.destinations.is_none())
        {
            d.macs.insert(s.device);
            for ip in known(&s.device) {
                match ip {
                    IpAddr::V4(a) => d.v4.insert(*a),
                    IpAddr::V6(a) => d.v6.insert(*a),
                };
            }
        }
        let active: HashSet<(&str, Mac)> = states
            .iter()
            .filter(|s| s.blocked && s.destinations.is_some())
            .map(|s| (s.rule.as_str(), s.device))
            .collect();
        for e in &dests.entries {
            if !active.contains(&(e.rule.as_str(), e.device)) || !routable(&e.remote) {
                continue;
            }
            let ttl = e.ttl.clamp(MIN_DEST_TIMEOUT, MAX_DEST_TIMEOUT);
            for ip in known(&e.device) {
                match (ip, e.remote) {
                    (IpAddr::V4(dev), IpAddr::V4(r)) => {
                        let slot = d.dest_v4.entry((*dev, r)).or_insert(ttl);
                        *slot = (*slot).max(ttl);
                    }
                    (IpAddr::V6(dev), IpAddr::V6(r)) => {
                        let slot = d.dest_v6.entry((*dev, r)).or_insert(ttl);
                        *slot = (*slot).max(ttl);
                    }
                    _ => {}
                }
            }
        }
        d
    }

    /// Every blocked address and pair, as the keys used to decide which
    /// connections to cut.
    fn cut_keys(&self) -> BTreeSet<CutKey> {
        let mut k = BTreeSet::new();
        k.extend(self.v4.iter().map(|a| CutKey::Addr(IpAddr::V4(*a))));
        k.extend(self.v6.iter().map(|a| CutKey::Addr(IpAddr::V6(*a))));
        k.extend(
            self.dest_v4
                .keys()
                .map(|(a, b)| CutKey::Pair(IpAddr::V4(*a), IpAddr::V4(*b))),
        );
        k.extend(
            self.dest_v6
                .keys()
                .map(|(a, b)| CutKey::Pair(IpAddr::V6(*a), IpAddr::V6(*b))),
        );
        k
    }

    /// The nftables batch replacing the whole table with this content.
    pub fn to_nftables(&self) -> Nftables<'static> {
        let mut b = Batch::new();
        // `add` first so `delete` cannot fail on a missing table; then the
        // table is rebuilt. One batch = one kernel transaction.
        b.add(NfListObject::Table(table()));
        b.delete(NfListObject::Table(table()));
        b.add(NfListObject::Table(table()));
        let timeout = Some(HashSet::from([SetFlag::Timeout]));
        for (name, ty, flags) in [
            (
                "blocked_macs",
                SetTypeValue::Single(SetType::EtherAddr),
                None,
            ),
            ("blocked_v4", SetTypeValue::Single(SetType::Ipv4Addr), None),
            ("blocked_v6", SetTypeValue::Single(SetType::Ipv6Addr), None),
            (
                "dest_v4",
                SetTypeValue::Concatenated(vec![SetType::Ipv4Addr, SetType::Ipv4Addr].into()),
                timeout.clone(),
            ),
            (
                "dest_v6",
                SetTypeValue::Concatenated(vec![SetType::Ipv6Addr, SetType::Ipv6Addr].into()),
                timeout.clone(),
            ),
        ] {
            b.add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: name.into(),
                set_type: ty,
                flags,
                ..Default::default()
            })));
        }
        let plain = |items: Vec<String>| {
            items
                .into_iter()
                .map(|s| Expression::String(s.into()))
                .collect::<Vec<_>>()
        };
        add_elements(
            &mut b,
            "blocked_macs",
            plain(self.macs.iter().map(Mac::to_string).collect()),
        );
        add_elements(
            &mut b,
            "blocked_v4",
            plain(self.v4.iter().map(Ipv4Addr::to_string).collect()),
        );
        add_elements(
            &mut b,
            "blocked_v6",
            plain(self.v6.iter().map(Ipv6Addr::to_string).collect()),
        );
        let pair = |a: String, r: String, ttl: u32| {
            Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(Expression::Named(NamedExpression::Concat(vec![
                    Expression::String(a.into()),
                    Expression::String(r.into()),
                ]))),
                timeout: Some(ttl),
                expires: None,
                comment: None,
                counter: None,
            }))
        };
        add_elements(
            &mut b,
            "dest_v4",
            self.dest_v4
                .iter()
                .map(|((a, r), t)| pair(a.to_string(), r.to_string(), *t))
                .collect(),
        );
        add_elements(
            &mut b,
            "dest_v6",
            self.dest_v6
                .iter()
                .map(|((a, r), t)| pair(a.to_string(), r.to_string(), *t))
                .collect(),
        );

        let rules: [RuleSpec; 9] = [
            (
                &[("ether", "saddr")],
                "blocked_macs",
                "blocked device, upstream (by MAC)",
            ),
            (
                &[("ip", "saddr")],
                "blocked_v4",
                "blocked device, upstream (by address)",
            ),
            (
                &[("ip", "daddr")],
                "blocked_v4",
                "blocked device, downstream",
            ),
            (
                &[("ip6", "saddr")],
                "blocked_v6",
                "blocked device, upstream (by address)",
            ),
            (
                &[("ip6", "daddr")],
                "blocked_v6",
                "blocked device, downstream",
            ),
            (
                &[("ip", "saddr"), ("ip", "daddr")],
                "dest_v4",
                "blocked destination, upstream",
            ),
            (
                &[("ip", "daddr"), ("ip", "saddr")],
                "dest_v4",
                "blocked destination, downstream",
            ),
            (
                &[("ip6", "saddr"), ("ip6", "daddr")],
                "dest_v6",
                "blocked destination, upstream",
            ),
            (
                &[("ip6", "daddr"), ("ip6", "saddr")],
                "dest_v6",
                "blocked destination, downstream",
            ),
        ];
        // Every forwarded packet pays for the hook and for each rule's set
        // lookup, blocked or not (measured: nine lookups cost a quarter of
        // the throughput through a veth router), so only sets with
        // something in them get a rule, and the chain (the hook) is there
        // only when there is a rule.
        let rules: Vec<RuleSpec> = rules
            .into_iter()
            .filter(|(_, set, _)| match *set {
                "blocked_macs" => !self.macs.is_empty(),
                "blocked_v4" => !self.v4.is_empty(),
                "blocked_v6" => !self.v6.is_empty(),
                "dest_v4" => !self.dest_v4.is_empty(),
                _ => !self.dest_v6.is_empty(),
            })
            .collect();
        if !rules.is_empty() {
            b.add(NfListObject::Chain(Chain {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: CHAIN.into(),
                _type: Some(NfChainType::Filter),
                hook: Some(NfHook::Forward),
                prio: Some(PRIORITY),
                policy: Some(NfChainPolicy::Accept),
                ..Default::default()
            }));
        }
        for (fields, set, comment) in rules {
            let mut keys: Vec<Expression<'static>> =
                fields.iter().map(|(p, f)| payload(p, f)).collect();
            let left = if keys.len() == 1 {
                keys.remove(0)
            } else {
                Expression::Named(NamedExpression::Concat(keys))
            };
            b.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: TABLE.into(),
                chain: CHAIN.into(),
                expr: vec![
                    Statement::Match(Match {
                        left,
                        right: Expression::String(format!("@{set}").into()),
                        op: Operator::EQ,
                    }),
                    Statement::Counter(Counter::Anonymous(None)),
                    Statement::Reject(Some(Reject::new(
                        Some(RejectType::ICMPX),
                        Some(RejectCode::NoRoute),
                    ))),
                ]
                .into(),
                comment: Some(comment.into()),
                ..Default::default()
            }));
        }
        b.to_nftables()
    }
}

/// (packet fields matched, set, comment) of one drop rule.
type RuleSpec = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn add_elements(b: &mut Batch<'static>, set: &'static str, elem: Vec<Expression<'static>>) {
    if elem.is_empty() {
        return;
    }
    b.add(NfListObject::Element(Element {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: set.into(),
        elem: elem.into(),
    }));
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CutKey {
    Addr(IpAddr),
    /// (device, remote)
    Pair(IpAddr, IpAddr),
}

impl std::fmt::Display for CutKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutKey::Addr(a) => write!(f, "{a}"),
            CutKey::Pair(a, r) => write!(f, "{a} <-> {r}"),
        }
    }
}

/// Applies rule states to the kernel.
#[derive(Debug)]
pub struct Enforcer {
    netns: Option<String>,
    /// What the last successful apply blocked, to find what is new.
    applied: BTreeSet<CutKey>,
    /// Delete conntrack entries of newly blocked addresses (on by default).
    pub cut_connections: bool,
}

impl Enforcer {
    /// `netns`: run `nft`/`conntrack` inside this network namespace (tests);
    /// `None` on the router.
    pub fn new(netns: Option<String>) -> Self {
        Enforcer {
            netns,
            applied: BTreeSet::new(),
            cut_connections: true,
        }
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn nft_json(&self, doc: &Nftables<'_>) -> Result<()> {
        let json = serde_json::to_vec(doc)?;
        let mut child = self
            .command("nft")
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("nft stdin")?;
            stdin.write_all(&json).context("writing to nft")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft -j -f - failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Makes the table match `states` in one transaction, then cuts the
    /// connections of what became blocked. On error the previous table stays
    /// in force unchanged (the transaction is all or nothing).
    pub fn apply(
        &mut self,
        states: &[RuleState],
        addrs: &DeviceAddresses,
        dests: &DestinationSets,
    ) -> Result<ApplyReport> {
        let started = Instant::now();
        let desired = Desired::from_states(states, addrs, dests);
        self.nft_json(&desired.to_nftables())?;
        let mut report = ApplyReport {
            blocked_macs: desired.macs.len(),
            blocked_addresses: desired.v4.len() + desired.v6.len(),
            destination_pairs: desired.dest_v4.len() + desired.dest_v6.len(),
            commit_micros: started.elapsed().as_micros() as u64,
            ..Default::default()
        };
        let keys = desired.cut_keys();
        let new: Vec<&CutKey> = keys.difference(&self.applied).collect();
        if self.cut_connections {
            for k in &new {
                let filters: Vec<Vec<String>> = match k {
                    CutKey::Addr(a) => vec![
                        vec!["-s".into(), a.to_string()],
                        vec!["-d".into(), a.to_string()],
                    ],
                    CutKey::Pair(a, r) => vec![
                        vec!["-s".into(), a.to_string(), "-d".into(), r.to_string()],
                        vec!["-s".into(), r.to_string(), "-d".into(), a.to_string()],
                    ],
                };
                for f in filters {
                    match self.conntrack_delete(&f) {
                        Ok(n) => report.conntrack_deleted += n,
                        Err(e) => report.warnings.push(e.to_string()),
                    }
                }
            }
        }
        report.newly_blocked = new.iter().map(|k| k.to_string()).collect();
        report.released = self
            .applied
            .difference(&keys)
            .map(|k| match k {
                CutKey::Addr(a) => (*a, None),
                CutKey::Pair(a, r) => (*a, Some(*r)),
            })
            .collect();
        self.applied = keys;
        Ok(report)
    }

    /// `conntrack -D <filter>`; the number of entries deleted.
    fn conntrack_delete(&self, filter: &[String]) -> Result<u64> {
        let out = self
            .command("conntrack")
            .arg("-D")
            .args(filter)
            .output()
            .context("running conntrack (install the conntrack package)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted."
        // It exits 1 when nothing matched, which is not an error here.
        let deleted = stderr.lines().find_map(|l| {
            l.split("): ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
        match deleted {
            Some(n) => Ok(n),
            None if out.status.success() => Ok(0),
            None => bail!("conntrack -D {}: {}", filter.join(" "), stderr.trim()),
        }
    }

    /// Removes the table (clean stop with nothing persistent).
    pub fn remove(&mut self) -> Result<()> {
        let mut b = Batch::new();
        b.add(NfListObject::Table(table()));
        b.delete(NfListObject::Table(table()));
        self.nft_json(&b.to_nftables())?;
        self.applied.clear();
        Ok(())
    }

    /// Clean stop: keeps only blocks whose rule says `persist`, removing the
    /// table when there are none. (Persistent blocks stay in the kernel until
    /// reboot or the next start, which reconciles them with the config.)
    pub fn shutdown(
        &mut self,
        states: &[RuleState],
        addrs: &DeviceAddresses,
        dests: &DestinationSets,
    ) -> Result<()> {
        let keep: Vec<RuleState> = states
            .iter()
            .filter(|s| s.persist && s.blocked)
            .cloned()
            .collect();
        if keep.is_empty() {
            self.remove()
        } else {
            self.apply(&keep, addrs, dests).map(|_| ())
        }
    }

    /// Reads the table back (`nft -j list table inet iot_inspector`);
    /// `None` if it does not exist.
    pub fn current(&self) -> Result<Option<TableState>> {
        let out = self
            .command("nft")
            .args(["-j", "list", "table", "inet", TABLE])
            .output()
            .context("running nft")?;
        if !out.status.success() {
            let e = String::from_utf8_lossy(&out.stderr);
            if e.contains("No such file or directory") {
                return Ok(None);
            }
            bail!("nft list table: {}", e.trim());
        }
        parse_table(&out.stdout).map(Some)
    }
}

/// Parses `nft -j list table` output. Read as plain JSON rather than with
/// the crate's schema types: listing output carries fields (counters,
/// handles, expiries) that differ between nft versions, and we only need
/// the chain's hook and the sets' elements.
pub fn parse_table(json: &[u8]) -> Result<TableState> {
    let v: serde_json::Value = serde_json::from_slice(json).context("nft output is not JSON")?;
    let mut t = TableState::default();
    let objs = v
        .get("nftables")
        .and_then(|o| o.as_array())
        .context("no nftables array")?;
    for o in objs {
        if let Some(c) = o.get("chain")
            && c.get("name").and_then(|n| n.as_str()) == Some(CHAIN)
        {
            t.hook = c.get("hook").and_then(|h| h.as_str()).map(str::to_owned);
            t.priority = c.get("prio").and_then(|p| p.as_i64());
        }
        let Some(s) = o.get("set") else { continue };
        let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("");
        for e in s
            .get("elem")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            // An element is a value, or {"elem": {"val": value, "expires": n, ...}}.
            let (val, expires) = match e.get("elem") {
                Some(inner) => (
                    inner.get("val").unwrap_or(inner),
                    inner.get("expires").and_then(|x| x.as_u64()),
                ),
                None => (e, None),
            };
            let concat: Vec<&str> = val
                .get("concat")
                .and_then(|c| c.as_array())
                .map(|c| c.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            match name {
                "blocked_macs" => t
                    .blocked_macs
                    .extend(val.as_str().and_then(|s| s.parse::<Mac>().ok())),
                "blocked_v4" => t
                    .blocked_v4
                    .extend(val.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok())),
                "blocked_v6" => t
                    .blocked_v6
                    .extend(val.as_str().and_then(|s| s.parse::<Ipv6Addr>().ok())),
                "dest_v4" => {
                    if let [a, r] = concat[..]
                        && let (Ok(a), Ok(r)) = (a.parse(), r.parse())
                    {
                        t.dest_v4.push((a, r, expires));
                    }
                }
                "dest_v6" => {
                    if let [a, r] = concat[..]
                        && let (Ok(a), Ok(r)) = (a.parse(), r.parse())
                    {
                        t.dest_v6.push((a, r, expires));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rule: &str, mac: Mac, blocked: bool, dest: bool) -> RuleState {
        RuleState {
            rule: rule.into(),
            device: mac,
            device_name: rule.into(),
            blocked,
            destinations: dest.then(|| super::super::DestinationFilter {
                categories: vec!["advertising".into()],
                ..Default::default()
            }),
            reason: String::new(),
            next_change: None,
            persist: false,
            clock_unset: false,
        }
    }

    const CAM: Mac = Mac([2, 0, 0x5e, 0, 0x53, 0x10]);
    const TV: Mac = Mac([2, 0, 0x5e, 0, 0x53, 0x30]);

    #[test]
    fn desired_sets_follow_states() {
        let mut addrs = DeviceAddresses::new();
        addrs.insert(
            CAM,
            vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
                "fe80::1".parse().unwrap(),
            ],
        );
        addrs.insert(
            TV,
            vec![
                "192.0.2.30".parse().unwrap(),
                "2001:db8::30".parse().unwrap(),
            ],
        );
        let mut dests = DestinationSets::default();
        dests.add("tv_ads", TV, "198.51.100.7".parse().unwrap(), 30);
        dests.add("tv_ads", TV, "198.51.100.7".parse().unwrap(), 4000);
        dests.add("tv_ads", TV, "2001:db8:ff::7".parse().unwrap(), 999_999);
        dests.add("other_rule", TV, "198.51.100.8".parse().unwrap(), 600);
        let states = [
            state("cam", CAM, true, false),
            state("tv_ads", TV, true, true),
            state("tv_off", TV, false, false),
        ];
        let d = Desired::from_states(&states, &addrs, &dests);
        assert_eq!(d.macs, BTreeSet::from([CAM]));
        assert_eq!(d.v4, BTreeSet::from(["192.0.2.10".parse().unwrap()]));
        assert_eq!(
            d.v6,
            BTreeSet::from(["2001:db8::10".parse().unwrap()]),
            "link-local left out"
        );
        let v4: Vec<_> = d
            .dest_v4
            .iter()
            .map(|((a, r), t)| (a.to_string(), r.to_string(), *t))
            .collect();
        assert_eq!(v4, vec![("192.0.2.30".into(), "198.51.100.7".into(), 4000)]);
        assert_eq!(
            d.dest_v6.values().copied().collect::<Vec<_>>(),
            vec![MAX_DEST_TIMEOUT]
        );
        // The rule out of force takes its destinations with it.
        let off = [state("tv_ads", TV, false, true)];
        assert!(
            Desired::from_states(&off, &addrs, &dests)
                .dest_v4
                .is_empty()
        );
        // Short TTLs are raised to the minimum.
        let mut short = DestinationSets::default();
        short.add("tv_ads", TV, "198.51.100.9".parse().unwrap(), 5);
        let d = Desired::from_states(&states[1..2], &addrs, &short);
        assert_eq!(
            d.dest_v4.values().copied().collect::<Vec<_>>(),
            vec![MIN_DEST_TIMEOUT]
        );
    }

    #[test]
    fn batch_json_has_the_table_chain_sets_and_rules() {
        let mut d = Desired::default();
        d.macs.insert(CAM);
        d.dest_v4.insert(
            (
                "192.0.2.30".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ),
            600,
        );
        let json = serde_json::to_value(d.to_nftables()).unwrap();
        let cmds = json["nftables"].as_array().unwrap();
        assert!(cmds[1]["delete"]["table"]["name"] == TABLE, "{}", cmds[1]);
        let chain = cmds.iter().find_map(|c| c["add"].get("chain")).unwrap();
        assert_eq!(chain["hook"], "forward");
        assert_eq!(chain["prio"], PRIORITY);
        let text = serde_json::to_string(&json).unwrap();
        assert!(
            text.contains(r#"{"concat":["192.0.2.30","198.51.100.7"]}"#),
            "{text}"
        );
        assert!(text.contains(r#""timeout":600"#));
        assert!(text.contains(r#""right":"@blocked_macs""#));
        // Rules only for the sets in use: MACs (1) and IPv4 pairs (2).
        let rules: Vec<&str> = cmds
            .iter()
            .filter_map(|c| c["add"]["rule"]["comment"].as_str())
            .collect();
        assert_eq!(
            rules,
            [
                "blocked device, upstream (by MAC)",
                "blocked destination, upstream",
                "blocked destination, downstream"
            ]
        );
        // Nothing blocked: the table and its sets, but no hook to pay for.
        let json = serde_json::to_value(Desired::default().to_nftables()).unwrap();
        let cmds = json["nftables"].as_array().unwrap();
        assert!(cmds.iter().any(|c| c["add"].get("set").is_some()));
        assert!(!cmds.iter().any(|c| c["add"].get("chain").is_some()));
        assert!(!cmds.iter().any(|c| c["add"].get("rule").is_some()));
    }

    #[test]
    fn parses_listed_tables() {
        let json = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "iot_inspector", "handle": 1}},
          {"chain": {"family": "inet", "table": "iot_inspector", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": -10, "policy": "accept"}},
          {"set": {"family": "inet", "name": "blocked_macs", "table": "iot_inspector", "type": "ether_addr", "handle": 2, "elem": ["02:00:5e:00:53:10"]}},
          {"set": {"family": "inet", "name": "blocked_v6", "table": "iot_inspector", "type": "ipv6_addr", "handle": 3, "elem": ["2001:db8::10"]}},
          {"set": {"family": "inet", "name": "dest_v4", "table": "iot_inspector", "type": ["ipv4_addr", "ipv4_addr"], "handle": 4, "flags": ["timeout"],
             "elem": [{"elem": {"val": {"concat": ["192.0.2.30", "198.51.100.7"]}, "timeout": 600, "expires": 599}}]}}]}"#;
        let t = parse_table(json).unwrap();
        assert_eq!(t.hook.as_deref(), Some("forward"));
        assert_eq!(t.priority, Some(-10));
        assert_eq!(t.blocked_macs, vec![CAM]);
        assert_eq!(
            t.blocked_v6,
            vec!["2001:db8::10".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            t.dest_v4,
            vec![(
                "192.0.2.30".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
                Some(599)
            )]
        );
        assert!(parse_table(b"garbage").is_err());
    }
}
