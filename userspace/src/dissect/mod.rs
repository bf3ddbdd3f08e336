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

pub mod frame;

pub use frame::{Direction, Frame, Mac};

/// Something a frame told us. Each variant names the device (by MAC, and by
/// IP where the frame carried one) it is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// A device is present at an address (any frame from it).
    Seen { mac: Mac, ip: Option<IpAddr> },
}

/// Counters of what [`dissect`] rejected, by protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DissectStats {
    pub frames: u64,
    /// Frames whose Ethernet/IP/transport headers did not parse.
    pub malformed_frames: u64,
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
fn dispatch(_d: &mut Dissector, _packet: &Packet<'_>, _out: &mut Vec<Observation>) {}
