//! Names for remote addresses, per device.
//!
//! A remote address means nothing to a person; the name the device used
//! for it does. [`NameTable`] keeps, per (device MAC, remote IP), the name
//! learnt last from the device's own traffic, where it came from and how
//! long it holds:
//!
//! - a DNS answer the device received binds each address in it to the name
//!   the device *asked for* (the question), for the answer's TTL;
//! - a TLS or QUIC ClientHello's SNI, or a plain-HTTP `Host`, binds the
//!   address it was sent to, and beats a DNS name for that address: SNI is
//!   what the device actually asked that server for, while one address
//!   often serves many names (CDNs);
//! - keyed by device, because a shared address means different names for
//!   different devices.
//!
//! Lifetimes follow the evidence: a DNS binding lasts its TTL (at least
//! [`MIN_DNS_LIFETIME_NS`]), an SNI/Host binding [`SNI_LIFETIME_NS`] from
//! when it was last seen, and either stays usable for [`GRACE_NS`] after
//! that, because devices keep using cached answers a little past the TTL
//! and flows that started within it are accounted for later. Lookups take
//! the flow's time: a name learned *after* a flow started (the SNI comes a
//! round trip after the SYN; the device's DNS answer may have been cached
//! before the flow) still applies to it — there is no lower bound.
//!
//! Memory is bounded: at most [`NameTable::capacity`] bindings (default
//! [`DEFAULT_CAPACITY`], 16,384, about 2 MB), and as many per-flow SNI
//! bindings. When full, bindings past their grace go first, then the
//! oldest-learned eighth.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dissect::{Mac, Observation};

const SECOND_NS: u64 = 1_000_000_000;
/// Bindings kept by [`NameTable::new`].
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Shortest life given to a DNS binding (TTL 0 answers are still used for
/// the connection that asked).
pub const MIN_DNS_LIFETIME_NS: u64 = 30 * SECOND_NS;
/// Life of an SNI/Host binding from when it was last seen.
pub const SNI_LIFETIME_NS: u64 = 3600 * SECOND_NS;
/// How long after expiry a binding still answers lookups and is kept.
pub const GRACE_NS: u64 = 600 * SECOND_NS;

/// Where a name came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NameSource {
    /// A DNS answer the device received. `cname_of`: when the answer went
    /// through a CNAME chain, the canonical name the addresses belonged to
    /// (the last name of the chain), e.g. a CDN host name.
    Dns { cname_of: Option<String> },
    /// The server name in a TLS ClientHello the device sent.
    TlsSni,
    /// The server name in a QUIC Initial the device sent.
    QuicSni,
    /// The `Host` header of a plain-HTTP request the device sent.
    HttpHost,
}

impl NameSource {
    /// Names the device sent to the server itself beat DNS names.
    fn is_sent_by_device(&self) -> bool {
        !matches!(self, NameSource::Dns { .. })
    }
}

/// One name for one remote address, for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Lower case, no trailing dot.
    pub name: String,
    pub source: NameSource,
    /// When the evidence was seen (ns since the Unix epoch).
    pub learned_ns: u64,
    /// When it stops applying to new flows ([`GRACE_NS`] of slack follows).
    pub expires_ns: u64,
}

impl Binding {
    /// Usable for a flow that started at `at_ns`.
    pub fn applies_at(&self, at_ns: u64) -> bool {
        at_ns <= self.expires_ns.saturating_add(GRACE_NS)
    }
}

/// Per-device bindings of remote addresses to names. See the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct NameTable {
    by_address: HashMap<(Mac, IpAddr), Binding>,
    /// SNI/Host of individual flows (device MAC, device port, remote end),
    /// so two flows to one address with different names both get theirs.
    by_flow: HashMap<(Mac, u16, SocketAddr), Binding>,
    capacity: usize,
    evicted: u64,
}

impl Default for NameTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NameTable {
    /// A table of [`DEFAULT_CAPACITY`] bindings.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A table of at most `capacity` address bindings (and as many
    /// per-flow ones); at least 16.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            by_address: HashMap::new(),
            by_flow: HashMap::new(),
            capacity: capacity.max(16),
            evicted: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Address bindings held.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Bindings dropped to stay within the capacity (not counting expired).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Learns from one observation; ignores those that name nothing.
    pub fn observe(&mut self, obs: &Observation) {
        match obs {
            Observation::DnsAnswer {
                mac,
                timestamp_ns,
                question,
                cnames,
                addresses,
                ..
            } => {
                for a in addresses {
                    let life = (u64::from(a.ttl_s) * SECOND_NS).max(MIN_DNS_LIFETIME_NS);
                    self.bind_address(
                        *mac,
                        a.ip,
                        Binding {
                            name: question.clone(),
                            source: NameSource::Dns {
                                cname_of: cnames.last().cloned(),
                            },
                            learned_ns: *timestamp_ns,
                            expires_ns: timestamp_ns.saturating_add(life),
                        },
                    );
                }
            }
            Observation::TlsSni {
                mac,
                port,
                remote_ip,
                remote_port,
                timestamp_ns,
                sni,
                ..
            } => self.bind_sent(
                *mac,
                *port,
                SocketAddr::new(*remote_ip, *remote_port),
                sni,
                NameSource::TlsSni,
                *timestamp_ns,
            ),
            Observation::QuicSni {
                mac,
                port,
                remote_ip,
                remote_port,
                timestamp_ns,
                sni,
                ..
            } => self.bind_sent(
                *mac,
                *port,
                SocketAddr::new(*remote_ip, *remote_port),
                sni,
                NameSource::QuicSni,
                *timestamp_ns,
            ),
            Observation::HttpHost {
                mac,
                port,
                remote_ip,
                remote_port,
                timestamp_ns,
                host,
                ..
            } => self.bind_sent(
                *mac,
                *port,
                SocketAddr::new(*remote_ip, *remote_port),
                host,
                NameSource::HttpHost,
                *timestamp_ns,
            ),
            _ => {}
        }
    }

    /// The name `mac` used for `remote_ip`, for a flow that started at
    /// `at_ns`.
    pub fn lookup(&self, mac: Mac, remote_ip: IpAddr, at_ns: u64) -> Option<&Binding> {
        self.by_address
            .get(&(mac, remote_ip))
            .filter(|b| b.applies_at(at_ns))
    }

    /// The name of one flow: its own SNI/Host if it sent one, else the
    /// address's binding.
    pub fn lookup_flow(
        &self,
        mac: Mac,
        local_port: u16,
        remote: SocketAddr,
        at_ns: u64,
    ) -> Option<&Binding> {
        self.by_flow
            .get(&(mac, local_port, remote))
            .filter(|b| b.applies_at(at_ns))
            .or_else(|| self.lookup(mac, remote.ip(), at_ns))
    }

    /// Drops bindings whose grace ended before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        self.by_address.retain(|_, b| b.applies_at(now_ns));
        self.by_flow.retain(|_, b| b.applies_at(now_ns));
    }

    fn bind_sent(
        &mut self,
        mac: Mac,
        local_port: u16,
        remote: SocketAddr,
        name: &str,
        source: NameSource,
        at_ns: u64,
    ) {
        let binding = Binding {
            name: name.to_string(),
            source,
            learned_ns: at_ns,
            expires_ns: at_ns.saturating_add(SNI_LIFETIME_NS),
        };
        if self.by_flow.len() >= self.capacity {
            Self::make_room(&mut self.by_flow, self.capacity, at_ns, &mut self.evicted);
        }
        self.by_flow
            .insert((mac, local_port, remote), binding.clone());
        self.bind_address(mac, remote.ip(), binding);
    }

    fn bind_address(&mut self, mac: Mac, ip: IpAddr, new: Binding) {
        let key = (mac, ip);
        if let Some(old) = self.by_address.get_mut(&key) {
            // A live name the device sent beats a DNS name that disagrees;
            // agreeing DNS answers extend it.
            if old.source.is_sent_by_device()
                && !new.source.is_sent_by_device()
                && old.applies_at(new.learned_ns)
            {
                if old.name == new.name {
                    old.expires_ns = old.expires_ns.max(new.expires_ns);
                }
                return;
            }
            // Evidence older than what we hold does not replace it.
            if new.learned_ns < old.learned_ns && old.applies_at(new.learned_ns) {
                return;
            }
            *old = new;
            return;
        }
        if self.by_address.len() >= self.capacity {
            Self::make_room(
                &mut self.by_address,
                self.capacity,
                new.learned_ns,
                &mut self.evicted,
            );
        }
        self.by_address.insert(key, new);
    }

    /// Frees room for an eighth of `capacity`: bindings past their grace
    /// first, then the oldest learned. Running once per `capacity / 8`
    /// inserts keeps the cost per insert constant on average.
    fn make_room<K: Copy + Eq + std::hash::Hash>(
        map: &mut HashMap<K, Binding>,
        capacity: usize,
        now_ns: u64,
        evicted: &mut u64,
    ) {
        map.retain(|_, b| b.applies_at(now_ns));
        let target = capacity - (capacity / 8).max(1);
        if map.len() <= target {
            return;
        }
        let mut ages: Vec<(u64, K)> = map.iter().map(|(k, b)| (b.learned_ns, *k)).collect();
        ages.sort_unstable_by_key(|(t, _)| *t);
        let drop = map.len() - target;
        for (_, k) in ages.into_iter().take(drop) {
            map.remove(&k);
            *evicted += 1;
        }
    }

    /// Roughly the heap and inline bytes the table holds (for the
    /// benchmark's memory figure): hash table slots at their allocated
    /// capacity plus the names' heap buffers.
    pub fn approx_memory_bytes(&self) -> usize {
        fn strings(b: &Binding) -> usize {
            b.name.capacity()
                + match &b.source {
                    NameSource::Dns { cname_of: Some(c) } => c.capacity(),
                    _ => 0,
                }
        }
        let slot_a = std::mem::size_of::<((Mac, IpAddr), Binding)>() + 1;
        let slot_f = std::mem::size_of::<((Mac, u16, SocketAddr), Binding)>() + 1;
        std::mem::size_of::<Self>()
            + self.by_address.capacity() * slot_a
            + self.by_flow.capacity() * slot_f
            + self.by_address.values().map(strings).sum::<usize>()
            + self.by_flow.values().map(strings).sum::<usize>()
    }
}

/// The persisted form: flat lists (JSON and MessagePack maps need string
/// keys; tuples are not).
#[derive(Serialize, Deserialize)]
struct Persisted {
    capacity: usize,
    addresses: Vec<AddressEntry>,
    #[serde(default)]
    flows: Vec<FlowEntry>,
}

#[derive(Serialize, Deserialize)]
struct AddressEntry {
    mac: Mac,
    remote_ip: IpAddr,
    #[serde(flatten)]
    binding: Binding,
}

#[derive(Serialize, Deserialize)]
struct FlowEntry {
    mac: Mac,
    local_port: u16,
    remote: SocketAddr,
    #[serde(flatten)]
    binding: Binding,
}

impl Serialize for NameTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Persisted {
            capacity: self.capacity,
            addresses: self
                .by_address
                .iter()
                .map(|((mac, ip), b)| AddressEntry {
                    mac: *mac,
                    remote_ip: *ip,
                    binding: b.clone(),
                })
                .collect(),
            flows: self
                .by_flow
                .iter()
                .map(|((mac, port, remote), b)| FlowEntry {
                    mac: *mac,
                    local_port: *port,
                    remote: *remote,
                    binding: b.clone(),
                })
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NameTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = Persisted::deserialize(d)?;
        let mut t = NameTable::with_capacity(p.capacity);
        // Keep at most the capacity (a file could hold more).
        for e in p.addresses.into_iter().take(t.capacity) {
            t.by_address.insert((e.mac, e.remote_ip), e.binding);
        }
        for e in p.flows.into_iter().take(t.capacity) {
            t.by_flow.insert((e.mac, e.local_port, e.remote), e.binding);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::dns::DnsAddress;

    const S: u64 = SECOND_NS;
    const PLUG: Mac = Mac([0x02, 0, 0x5e, 0, 0, 1]);
    const TV: Mac = Mac([0x02, 0, 0x5e, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dns(mac: Mac, t: u64, q: &str, cnames: &[&str], addrs: &[(&str, u32)]) -> Observation {
        Observation::DnsAnswer {
            mac,
            ip: ip("192.0.2.10"),
            server_ip: ip("192.0.2.1"),
            timestamp_ns: t,
            question: q.into(),
            cnames: cnames.iter().map(|c| c.to_string()).collect(),
            addresses: addrs
                .iter()
                .map(|(a, ttl)| DnsAddress {
                    ip: ip(a),
                    ttl_s: *ttl,
                })
                .collect(),
        }
    }

    fn sni(mac: Mac, t: u64, port: u16, remote: &str, name: &str) -> Observation {
        Observation::TlsSni {
            mac,
            ip: ip("192.0.2.10"),
            port,
            remote_ip: ip(remote),
            remote_port: 443,
            timestamp_ns: t,
            sni: name.into(),
        }
    }

    #[test]
    fn dns_binding_lives_its_ttl_plus_grace_and_applies_to_earlier_flows() {
        let mut t = NameTable::new();
        t.observe(&dns(
            PLUG,
            100 * S,
            "api.xbcs.net",
            &["lb.example-cdn.net"],
            &[("203.0.113.7", 300)],
        ));
        let b = t.lookup(PLUG, ip("203.0.113.7"), 150 * S).unwrap();
        assert_eq!(b.name, "api.xbcs.net");
        assert_eq!(
            b.source,
            NameSource::Dns {
                cname_of: Some("lb.example-cdn.net".into())
            }
        );
        assert_eq!(b.expires_ns, 400 * S);
        // A flow that started before the answer was seen (answer cached in
        // the device, or seen late) still gets the name.
        assert!(t.lookup(PLUG, ip("203.0.113.7"), 50 * S).is_some());
        // Past the TTL, within the grace: still; after it: no.
        assert!(
            t.lookup(PLUG, ip("203.0.113.7"), 400 * S + GRACE_NS)
                .is_some()
        );
        assert!(
            t.lookup(PLUG, ip("203.0.113.7"), 400 * S + GRACE_NS + 1)
                .is_none()
        );
        // Another device never asked: nothing.
        assert!(t.lookup(TV, ip("203.0.113.7"), 150 * S).is_none());
        t.expire(400 * S + GRACE_NS + 1);
        assert!(t.is_empty());
    }

    #[test]
    fn shared_address_means_different_names_per_device() {
        let mut t = NameTable::new();
        t.observe(&dns(PLUG, S, "api.xbcs.net", &[], &[("203.0.113.9", 60)]));
        t.observe(&dns(TV, S, "ads.example.net", &[], &[("203.0.113.9", 60)]));
        assert_eq!(
            t.lookup(PLUG, ip("203.0.113.9"), 2 * S).unwrap().name,
            "api.xbcs.net"
        );
        assert_eq!(
            t.lookup(TV, ip("203.0.113.9"), 2 * S).unwrap().name,
            "ads.example.net"
        );
    }

    #[test]
    fn sni_beats_dns_and_flows_keep_their_own_names() {
        let mut t = NameTable::new();
        t.observe(&dns(TV, S, "cdn-a.example", &[], &[("198.51.100.4", 60)]));
        t.observe(&sni(TV, 2 * S, 50001, "198.51.100.4", "video.example"));
        let b = t.lookup(TV, ip("198.51.100.4"), 3 * S).unwrap();
        assert_eq!(
            (b.name.as_str(), &b.source),
            ("video.example", &NameSource::TlsSni)
        );
        // A later DNS answer naming the address differently does not
        // replace the name the device sent.
        t.observe(&dns(
            TV,
            4 * S,
            "cdn-b.example",
            &[],
            &[("198.51.100.4", 60)],
        ));
        assert_eq!(
            t.lookup(TV, ip("198.51.100.4"), 5 * S).unwrap().name,
            "video.example"
        );
        // A second flow to the same address with another SNI: each flow
        // keeps its own; the address takes the latest.
        t.observe(&sni(TV, 6 * S, 50002, "198.51.100.4", "ads.example"));
        let r = SocketAddr::new(ip("198.51.100.4"), 443);
        assert_eq!(
            t.lookup_flow(TV, 50001, r, 3 * S).unwrap().name,
            "video.example"
        );
        assert_eq!(
            t.lookup_flow(TV, 50002, r, 6 * S).unwrap().name,
            "ads.example"
        );
        assert_eq!(
            t.lookup_flow(TV, 50003, r, 7 * S).unwrap().name,
            "ads.example"
        );
    }

    #[test]
    fn bounded_and_persistable() {
        let mut t = NameTable::with_capacity(1000);
        for i in 0..5000u32 {
            let a = IpAddr::from([203, 0, (i >> 8) as u8, i as u8]);
            t.observe(&dns(
                PLUG,
                u64::from(i) * S,
                "n.example",
                &[],
                &[(&a.to_string(), 3600)],
            ));
        }
        assert!(t.len() <= 1000, "{}", t.len());
        assert!(t.evicted() >= 4000);
        // The newest survive, the oldest went.
        assert!(
            t.lookup(PLUG, IpAddr::from([203, 0, 19, 135]), 5000 * S)
                .is_some()
        );
        assert!(
            t.lookup(PLUG, IpAddr::from([203, 0, 0, 0]), 5000 * S)
                .is_none()
        );
        assert!(t.approx_memory_bytes() > 1000 * std::mem::size_of::<Binding>());

        let json = serde_json::to_string(&t).unwrap();
        let back: NameTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), t.len());
        assert_eq!(
            back.lookup(PLUG, IpAddr::from([203, 0, 19, 135]), 5000 * S),
            t.lookup(PLUG, IpAddr::from([203, 0, 19, 135]), 5000 * S)
        );
        let mp = rmp_serde::to_vec_named(&t).unwrap();
        let back: NameTable = rmp_serde::from_slice(&mp).unwrap();
        assert_eq!(back.len(), t.len());
    }
}
