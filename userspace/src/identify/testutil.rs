//! Test helpers: real-format Ethernet frames through the real dissector.

use etherparse::PacketBuilder;

use crate::dissect::{Direction, DissectStats, Dissector, Frame, Mac, Observation};

/// An Ethernet/IPv4/UDP frame from `src`; the destination MAC follows the
/// destination IP (multicast, broadcast or a fixed unicast router MAC).
pub fn udp4(
    src: Mac,
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let dst_mac = if dip == [255; 4] {
        [0xff; 6]
    } else if dip[0] >= 224 && dip[0] < 240 {
        [0x01, 0x00, 0x5e, dip[1] & 0x7f, dip[2], dip[3]]
    } else {
        [0x02, 0, 0x5e, 0, 0, 1]
    };
    let b = PacketBuilder::ethernet2(src.0, dst_mac)
        .ipv4(sip, dip, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// An Ethernet/IPv6/UDP frame from `src` to a multicast group.
pub fn udp6(
    src: Mac,
    sip: [u8; 16],
    dip: [u8; 16],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let dst_mac = [0x33, 0x33, dip[12], dip[13], dip[14], dip[15]];
    let b = PacketBuilder::ethernet2(src.0, dst_mac)
        .ipv6(sip, dip, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// An Ethernet/IPv4/TCP segment (PSH|ACK) from `src`.
pub fn tcp4(
    src: Mac,
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, [0x02, 0, 0x5e, 0, 0, 1])
        .ipv4(sip, dip, 64)
        .tcp(sport, dport, 1000, 64240)
        .psh()
        .ack(1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// Runs frames (sent by the device: direction Up) through a fresh dissector.
pub fn dissect_all(frames: &[Vec<u8>]) -> (Vec<Observation>, DissectStats) {
    let mut d = Dissector::new();
    let mut out = Vec::new();
    for data in frames {
        let frame = Frame {
            timestamp_ns: 1,
            direction: Direction::Up,
            data,
        };
        d.dissect(&frame, &mut out);
    }
    (out, d.stats)
}
