//! `iot-inspector analyze FILE`: a pcap or pcapng capture through the same
//! dissect → inventory → identify → names → explain pipeline the daemon
//! runs. Only the counting differs: there is no kernel table for a file, so
//! each frame's IP-layer bytes are added here, keyed as the eBPF programs
//! key them (device MAC, device and remote address, protocol, remote port).
//!
//! Which side of a frame is the LAN device: the router is the MAC that sends
//! from the most distinct IP addresses (it forwards the whole internet's
//! traffic); frames from it go *down* to devices, everything else is sent
//! *up* by a device. `--router MAC` overrides the guess.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use serde::{Deserialize, Serialize};

use crate::api::{DeviceView, FlowView, IdentityView, protocol_name};
use crate::dissect::{Direction, Dissector, Frame, Mac, Observation, frame::macs};
use crate::explain::KnowledgeBase;
use crate::identify::{Evidence, identify};
use crate::inventory::Inventory;
use crate::names::NameTable;

/// Frames read at most (a bound on runaway files).
const MAX_FRAMES: u64 = 50_000_000;
/// Frames looked at to find the router.
const ROUTER_SAMPLE: u64 = 200_000;

/// What a capture showed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Analysis {
    pub frames: u64,
    pub router: Option<Mac>,
    pub devices: Vec<DeviceView>,
    pub flows: Vec<FlowView>,
    pub dissect: crate::dissect::DissectStats,
}

/// Calls `each` with every Ethernet frame of a pcap or pcapng file.
fn frames(path: &Path, mut each: impl FnMut(u64, &[u8]) -> bool) -> Result<u64> {
    let open = || -> Result<BufReader<File>> {
        Ok(BufReader::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        open()?
            .read_exact(&mut magic)
            .with_context(|| format!("{} is too short to be a capture", path.display()))?;
    }
    let mut n = 0u64;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(open()?).context("reading the pcapng header")?;
        while let Some(block) = r.next_block() {
            let block = block.context("a damaged pcapng block")?;
            let (ts, data, iface) = match &block {
                Block::EnhancedPacket(p) => (
                    p.timestamp.as_nanos() as u64,
                    p.data.to_vec(),
                    p.interface_id,
                ),
                Block::SimplePacket(p) => (0, p.data.to_vec(), 0),
                _ => continue,
            };
            let link = r.interfaces().get(iface as usize).map(|i| i.linktype);
            if link != Some(DataLink::ETHERNET) {
                bail!(
                    "interface {iface} of the capture is {link:?}, not Ethernet (capture on the LAN bridge or its ports)"
                );
            }
            n += 1;
            if n > MAX_FRAMES || !each(ts, &data) {
                break;
            }
        }
    } else {
        let mut r = PcapReader::new(open()?)
            .with_context(|| format!("{} is neither pcap nor pcapng", path.display()))?;
        if r.header().datalink != DataLink::ETHERNET {
            bail!(
                "the capture's link type is {:?}, not Ethernet (capture on the LAN bridge or its ports)",
                r.header().datalink
            );
        }
        while let Some(p) = r.next_packet() {
            let p = p.context("a damaged pcap record")?;
            n += 1;
            if n > MAX_FRAMES || !each(p.timestamp.as_nanos() as u64, &p.data) {
                break;
            }
        }
    }
    Ok(n)
}

/// The router: the MAC that answers as a DHCP or DNS server, else the one
/// sending from the most distinct routable addresses (it forwards the
/// internet's traffic).
fn guess_router(path: &Path) -> Result<Option<Mac>> {
    let mut sources: HashMap<Mac, (HashSet<IpAddr>, bool)> = HashMap::new();
    let mut seen = 0u64;
    frames(path, |_, data| {
        seen += 1;
        if let (Some((src, dst)), Ok(p)) = (macs(data), SlicedPacket::from_ethernet(data)) {
            if src.is_group()
                || dst.is_group() && !matches!(&p.transport, Some(TransportSlice::Udp(_)))
            {
                return seen < ROUTER_SAMPLE;
            }
            let ip: Option<IpAddr> = match &p.net {
                Some(NetSlice::Ipv4(v4)) => Some(v4.header().source_addr().into()),
                Some(NetSlice::Ipv6(v6)) => Some(v6.header().source_addr().into()),
                _ => None,
            };
            let server = matches!(&p.transport,
                Some(TransportSlice::Udp(u)) if matches!(u.source_port(), 53 | 67 | 547));
            let entry = sources.entry(src).or_default();
            entry.1 |= server;
            if let Some(ip) = ip.filter(|ip| !ip.is_unspecified() && !is_link_local(ip))
                && entry.0.len() < 10_000
            {
                entry.0.insert(ip);
            }
        }
        seen < ROUTER_SAMPLE
    })?;
    Ok(sources
        .into_iter()
        .filter(|(_, (ips, server))| *server || ips.len() > 1)
        .max_by_key(|(_, (ips, server))| (*server, ips.len()))
        .map(|(m, _)| m))
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[derive(Default)]
struct Count {
    up: (u64, u64),
    down: (u64, u64),
    first_ns: u64,
    last_ns: u64,
}

type FlowKey = (Mac, Option<IpAddr>, Option<IpAddr>, u8, u16);

/// Reads a capture and runs the pipeline over it.
pub fn analyze(path: &Path, router: Option<Mac>) -> Result<Analysis> {
    let router = match router {
        Some(r) => Some(r),
        None => guess_router(path)?,
    };
    let mut dissector = Dissector::new();
    let mut names = NameTable::new();
    let mut inventory = Inventory::new();
    let mut evidence: HashMap<Mac, Evidence> = HashMap::new();
    let mut flows: HashMap<FlowKey, Count> = HashMap::new();
    let mut obs: Vec<Observation> = Vec::new();
    let n = frames(path, |ts, data| {
        let Some((src, dst)) = macs(data) else {
            return true;
        };
        let direction = if Some(src) == router {
            Direction::Down
        } else {
            Direction::Up
        };
        if direction == Direction::Down && dst.is_group() {
            return true;
        }
        count(&mut flows, direction, src, dst, ts, data);
        obs.clear();
        dissector.dissect(
            &Frame {
                timestamp_ns: ts,
                direction,
                data,
            },
            &mut obs,
        );
        for o in &obs {
            if let Observation::Seen { mac, ip } = o {
                if Some(*mac) != router {
                    inventory.seen(*mac, *ip, ts / 1_000_000_000);
                }
                continue;
            }
            names.observe(o);
            let mac = o.device();
            if Some(mac) == router || mac.is_group() {
                continue;
            }
            let ev = evidence.entry(mac).or_default();
            ev.absorb(o);
            if let Some(name) = o.contacted_name() {
                ev.note_domain(name);
            }
        }
        true
    })?;
    // Devices and their totals.
    let mut totals: BTreeMap<Mac, (u64, u64, u64, u64, u64, u64)> = BTreeMap::new();
    for ((mac, ..), c) in &flows {
        let t = totals.entry(*mac).or_insert((0, 0, 0, 0, u64::MAX, 0));
        t.0 += c.up.0;
        t.1 += c.down.0;
        t.2 += c.up.1;
        t.3 += c.down.1;
        t.4 = t.4.min(c.first_ns);
        t.5 = t.5.max(c.last_ns);
    }
    let mut devices = Vec::new();
    for (mac, t) in &totals {
        let rec = inventory.get(mac);
        let identity = evidence.get(mac).map(|ev| identify(*mac, ev));
        devices.push(DeviceView {
            mac: *mac,
            label: None,
            identity: identity.as_ref().map(IdentityView::from),
            names: evidence
                .get(mac)
                .map(|e| e.self_names())
                .unwrap_or_default(),
            label_entry: None,
            label_warnings: Vec::new(),
            label_confirmed: false,
            suggestions: identity
                .as_ref()
                .map(|i| crate::labels::suggest(i, 3))
                .unwrap_or_default(),
            ips: rec
                .map(|r| r.ips.iter().rev().copied().collect())
                .unwrap_or_default(),
            first_seen: t.4 / 1_000_000_000,
            last_seen: t.5 / 1_000_000_000,
            online: false,
            bytes_up: t.0,
            bytes_down: t.1,
            packets_up: t.2,
            packets_down: t.3,
        });
    }
    // Flows with names and explanations.
    let kb = KnowledgeBase::builtin();
    let vendors: HashMap<Mac, Option<String>> = devices
        .iter()
        .map(|d| (d.mac, d.identity.as_ref().and_then(|i| i.vendor.clone())))
        .collect();
    let mut out: Vec<FlowView> = flows
        .into_iter()
        .map(|((mac, dip, rip, proto, rport), c)| {
            let binding = rip.and_then(|ip| names.lookup(mac, ip, c.first_ns));
            let name = binding.map(|b| b.name.clone());
            let vendor = vendors.get(&mac).cloned().flatten();
            let explanation = match (&name, rip) {
                (Some(n), _) => kb.explain(n, &[], vendor.as_deref()),
                (None, Some(ip)) => kb.explain_address(ip),
                (None, None) => kb.explain("", &[], None),
            };
            FlowView {
                device: mac,
                device_ip: dip,
                remote_ip: rip,
                protocol: protocol_name(proto),
                remote_port: rport,
                bytes_up: c.up.0,
                bytes_down: c.down.0,
                packets_up: c.up.1,
                packets_down: c.down.1,
                first: c.first_ns / 1_000_000_000,
                last: c.last_ns / 1_000_000_000,
                name,
                name_source: binding.map(|b| crate::daemon::source_name(&b.source).to_string()),
                explanation,
            }
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.bytes_up + f.bytes_down));
    Ok(Analysis {
        frames: n,
        router,
        devices,
        flows: out,
        dissect: dissector.stats,
    })
}

/// Adds one frame's IP-layer bytes to its flow, keyed like the kernel keys it.
fn count(
    flows: &mut HashMap<FlowKey, Count>,
    direction: Direction,
    src: Mac,
    dst: Mac,
    ts: u64,
    data: &[u8],
) {
    let Ok(p) = SlicedPacket::from_ethernet(data) else {
        return;
    };
    let (s_ip, d_ip, proto, len): (IpAddr, IpAddr, u8, u64) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
            v4.header().protocol().0,
            v4.header().total_len() as u64,
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
            v6.payload().ip_number.0,
            40 + v6.header().payload_length() as u64,
        ),
        _ => return,
    };
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => (0, 0),
    };
    let up = direction != Direction::Down;
    let (mac, dip, rip, rport) = if up {
        (src, s_ip, d_ip, dport)
    } else {
        (dst, d_ip, s_ip, sport)
    };
    let c = flows
        .entry((mac, Some(dip), Some(rip), proto, rport))
        .or_default();
    let slot = if up { &mut c.up } else { &mut c.down };
    slot.0 += len;
    slot.1 += 1;
    if c.first_ns == 0 || ts < c.first_ns {
        c.first_ns = ts;
    }
    c.last_ns = c.last_ns.max(ts);
}
