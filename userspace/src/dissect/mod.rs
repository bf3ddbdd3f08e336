//! Turns sampled frames (from the kernel's ring buffer, or from a capture
//! file) into [`Observation`]s: what a device said about itself or about the
//! names it uses. One entry point, [`dissect`], serves the daemon and
//! `iot-inspector analyze` alike.
//!
//! Every parser here takes hostile bytes: it bounds what it reads, never
//! panics, and returns text as received (sanitising for display is the
//! UI's job; storing is safe because text is only ever data).

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use serde::{Deserialize, Serialize};

pub mod dhcp;
pub mod dhcpv6;
pub mod dns;
pub mod frame;
pub mod http;
pub mod http_host;
pub mod mdns;
pub mod quic;
pub mod ssdp;
pub mod tls;

pub use frame::{Direction, Frame, Mac};

/// Something a frame told us. Each variant names the device (by MAC, and by
/// IP where the frame carried one) it is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// A device is present at an address (any frame from it).
    Seen { mac: Mac, ip: Option<IpAddr> },
    /// A DHCPv4 client message (identify).
    Dhcp(dhcp::DhcpRequest),
    /// A DHCPv6 client message (identify).
    Dhcpv6(dhcpv6::Dhcpv6Request),
    /// An mDNS/DNS-SD query or response sent by the device (identify).
    Mdns(mdns::MdnsMessage),
    /// An SSDP NOTIFY, M-SEARCH or M-SEARCH response from the device (identify).
    Ssdp(ssdp::SsdpMessage),
    /// A plain-HTTP request head sent by the device (identify).
    HttpRequest(http::HttpRequest),
    /// names: a DNS answer delivered to the device (`mac`, `ip`) by
    /// `server_ip`: the question, its CNAME chain in order, and the
    /// addresses of the question or chain with their TTLs.
    DnsAnswer {
        mac: Mac,
        ip: IpAddr,
        server_ip: IpAddr,
        timestamp_ns: u64,
        question: String,
        cnames: Vec<String>,
        addresses: Vec<dns::DnsAddress>,
    },
    /// names: the server name of a TLS ClientHello the device sent.
    /// `timestamp_ns` is the first segment's (the flow's start).
    TlsSni {
        mac: Mac,
        ip: IpAddr,
        port: u16,
        remote_ip: IpAddr,
        remote_port: u16,
        timestamp_ns: u64,
        sni: String,
    },
    /// names: the server name in a QUIC client Initial's ClientHello.
    QuicSni {
        mac: Mac,
        ip: IpAddr,
        port: u16,
        remote_ip: IpAddr,
        remote_port: u16,
        timestamp_ns: u64,
        sni: String,
        version: u32,
    },
    /// names: the Host header of a plain-HTTP request the device sent
    /// (port and address literals removed).
    HttpHost {
        mac: Mac,
        ip: IpAddr,
        port: u16,
        remote_ip: IpAddr,
        remote_port: u16,
        timestamp_ns: u64,
        host: String,
    },
}

impl Observation {
    /// The LAN device the observation is about.
    pub fn device(&self) -> Mac {
        match self {
            Observation::Seen { mac, .. }
            | Observation::DnsAnswer { mac, .. }
            | Observation::TlsSni { mac, .. }
            | Observation::QuicSni { mac, .. }
            | Observation::HttpHost { mac, .. } => *mac,
            Observation::Dhcp(r) => r.mac,
            Observation::Dhcpv6(r) => r.mac,
            Observation::Mdns(r) => r.mac,
            Observation::Ssdp(r) => r.mac,
            Observation::HttpRequest(r) => r.mac,
        }
    }

    /// A remote name the device used (for identification by the services
    /// it contacts).
    pub fn contacted_name(&self) -> Option<&str> {
        match self {
            Observation::DnsAnswer { question, .. } => Some(question),
            Observation::TlsSni { sni, .. } | Observation::QuicSni { sni, .. } => Some(sni),
            Observation::HttpHost { host, .. } => Some(host),
            _ => None,
        }
    }
}

/// Counters of what [`dissect`] rejected, by protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DissectStats {
    pub frames: u64,
    /// Frames whose Ethernet/IP/transport headers did not parse.
    pub malformed_frames: u64,
    /// identify: rejected DHCPv4/DHCPv6/mDNS/SSDP/HTTP payloads.
    #[serde(default)]
    pub dhcp_malformed: u64,
    #[serde(default)]
    pub dhcpv6_malformed: u64,
    #[serde(default)]
    pub mdns_malformed: u64,
    #[serde(default)]
    pub ssdp_malformed: u64,
    #[serde(default)]
    pub http_malformed: u64,
    /// identify: texts cut to their bound, and list items dropped at a cap.
    #[serde(default)]
    pub identify_truncated: u64,
    /// names: DNS messages seen from port 53, and those rejected (hostile
    /// or malformed: see dissect::dns::Reject).
    #[serde(default)]
    pub dns_messages: u64,
    #[serde(default)]
    pub dns_rejected: u64,
    /// names: TLS ClientHellos seen, and those rejected.
    #[serde(default)]
    pub tls_client_hellos: u64,
    #[serde(default)]
    pub tls_rejected: u64,
    /// names: QUIC client Initials decrypted, rejected (bad header, frames
    /// or ClientHello), and long-header packets whose tag did not verify.
    #[serde(default)]
    pub quic_initials: u64,
    #[serde(default)]
    pub quic_rejected: u64,
    #[serde(default)]
    pub quic_undecryptable: u64,
    /// names: partial ClientHellos evicted to make room for newer flows.
    #[serde(default)]
    pub hello_buffers_evicted: u64,
}

/// The transport-level view of a frame that protocol parsers work from.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub frame: &'a Frame<'a>,
    /// MAC of the LAN device this frame belongs to (source when it is sent
    /// by the device, destination when it is delivered to it).
    pub device_mac: Mac,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub transport: Transport,
    pub src_port: u16,
    pub dst_port: u16,
    /// Transport payload.
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The dissectors' state: counters, and the bounded per-flow reassembly
/// buffers some protocols need (a TLS ClientHello spanning two segments).
#[derive(Debug, Default)]
pub struct Dissector {
    pub stats: DissectStats,
    /// names: partial TLS/QUIC ClientHellos, at most 64 flows x 4 KiB.
    pub hello_buffers: tls::HelloBuffers,
}

impl Dissector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Dissects one frame, appending what it learnt to `out`.
    pub fn dissect(&mut self, frame: &Frame<'_>, out: &mut Vec<Observation>) {
        dissect(self, frame, out)
    }
}

fn dissect(d: &mut Dissector, frame: &Frame<'_>, out: &mut Vec<Observation>) {
    let stats = &mut d.stats;
    stats.frames += 1;
    let Ok(sliced) = SlicedPacket::from_ethernet(frame.data) else {
        stats.malformed_frames += 1;
        return;
    };
    let Some(link) = frame::macs(frame.data) else {
        stats.malformed_frames += 1;
        return;
    };
    let (src_mac, dst_mac) = link;
    let device_mac = match frame.direction {
        Direction::Down => dst_mac,
        _ => src_mac,
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return,
    };
    let device_ip = match frame.direction {
        Direction::Down => dst_ip,
        _ => src_ip,
    };
    if !device_mac.is_group() {
        out.push(Observation::Seen {
            mac: device_mac,
            ip: Some(device_ip),
        });
    }
    let (transport, src_port, dst_port, payload) = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => (
            Transport::Tcp,
            t.source_port(),
            t.destination_port(),
            t.payload(),
        ),
        Some(TransportSlice::Udp(u)) => (
            Transport::Udp,
            u.source_port(),
            u.destination_port(),
            u.payload(),
        ),
        _ => return,
    };
    let packet = Packet {
        frame,
        device_mac,
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        transport,
        src_port,
        dst_port,
        payload,
    };
    dispatch(d, &packet, out);
}

/// Hands the packet to the protocol parsers its ports point at.
fn dispatch(d: &mut Dissector, packet: &Packet<'_>, out: &mut Vec<Observation>) {
    // identify: each checks its own ports and returns early.
    dhcp::dissect(&mut d.stats, packet, out);
    dhcpv6::dissect(&mut d.stats, packet, out);
    mdns::dissect(&mut d.stats, packet, out);
    ssdp::dissect(&mut d.stats, packet, out);
    http::dissect(&mut d.stats, packet, out);
    // names: DNS answers to the device; ClientHellos (TCP) and QUIC
    // Initials (UDP) by content, whatever the port; HTTP Host.
    if packet.src_port == 53 && packet.frame.direction != Direction::Up {
        dns::dissect(&mut d.stats, packet, out);
    }
    tls::dissect(d, packet, out);
    quic::dissect(d, packet, out);
    http_host::dissect(packet, out);
}
