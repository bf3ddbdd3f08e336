//! Getting a device's open TCP transfers going again right after an unblock.
//!
//! While a device is blocked its TCP keeps retransmitting the oldest
//! unacknowledged segment and backs its retransmission timer off
//! exponentially. Our nftables rules reject those segments with ICMP "no
//! route", and a sender that implements RFC 6069 (TCP-LD; Linux does for
//! IPv4 and IPv6) undoes one backoff step for each such error that quotes
//! exactly that segment. The kernel rate-limits the errors it generates
//! (about one per second per host for IPv4), so over a long block the
//! backoff still creeps up and the next retransmission after an unblock
//! could be more than a second away.
//!
//! So after an unblock we send the device a few more of those errors
//! ourselves, each quoting the segment its TCP is retransmitting: the
//! flow map keeps the sequence number of each flow's latest segment from
//! the device (`FlowCounters::last_seq_up`), which during a block is the
//! retransmitted one. Each error undoes one backoff step; once the timer
//! has nothing left to wait for, the kernel retransmits at once — and the
//! path is open again. Errors quoting any other sequence number are
//! ignored by the device's TCP, so quoting every CPU's value is harmless.
//!
//! Only the device's own transfers are nudged this way: a remote sender's
//! retransmissions never reach the LAN ports where the flow map is kept;
//! the rejects it got while blocked still kept its backoff small.
//!
//! The messages are sent from raw ICMP sockets (the daemon runs as root);
//! the kernel adds the outer IP header, and computes the ICMPv6 checksum.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use iot_inspector_common::{FlowKey, family, proto};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Errors sent per quoted segment: each undoes one backoff step, and a
/// timer at its 120 s ceiling has backed off about ten times.
pub const ERRORS_PER_SEGMENT: usize = 12;

/// One ICMP error to send: where to, and the ICMP message (no IP header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub to: IpAddr,
    pub message: Vec<u8>,
}

/// The ICMP "no route" errors that quote the device's segment with `seq`
/// on flow `key`; `None` for flows that are not TCP from a device address.
pub fn nudge_for(key: &FlowKey, seq: u32) -> Option<Nudge> {
    if key.proto != proto::TCP {
        return None;
    }
    // The first 8 bytes of the TCP header: all RFC 792 promises to quote
    // and all the receiving TCP needs (ports to find the socket, sequence
    // number to match the retransmitted segment).
    let mut tcp = [0u8; 8];
    tcp[0..2].copy_from_slice(&key.device_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&key.remote_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    match key.family {
        family::IPV4 => {
            let dev = Ipv6Addr::from(key.device_ip).to_ipv4_mapped()?;
            let rem = Ipv6Addr::from(key.remote_ip).to_ipv4_mapped()?;
            let mut inner =
                Ipv4Header::new(20 + 20, 64, IpNumber::TCP, dev.octets(), rem.octets()).ok()?;
            inner.dont_fragment = true;
            inner.header_checksum = inner.calc_header_checksum();
            let mut quoted = inner.to_bytes().to_vec();
            quoted.extend_from_slice(&tcp);
            // Type 3 (destination unreachable), code 0 (net unreachable):
            // one of the two codes Linux's TCP-LD acts on.
            let mut msg = vec![3, 0, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&quoted);
            let sum = internet_checksum(&msg);
            msg[2..4].copy_from_slice(&sum.to_be_bytes());
            Some(Nudge {
                to: IpAddr::V4(dev),
                message: msg,
            })
        }
        family::IPV6 => {
            let dev = Ipv6Addr::from(key.device_ip);
            let rem = Ipv6Addr::from(key.remote_ip);
            let inner = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 20,
                next_header: IpNumber::TCP,
                hop_limit: 64,
                source: dev.octets(),
                destination: rem.octets(),
            };
            // Type 1 (destination unreachable), code 0 (no route): the code
            // Linux's TCP-LD acts on for IPv6. The checksum (which covers
            // a pseudo-header) is filled in by the kernel for raw ICMPv6
            // sockets.
            let mut msg = vec![1, 0, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&inner.to_bytes());
            msg.extend_from_slice(&tcp);
            Some(Nudge {
                to: IpAddr::V6(dev),
                message: msg,
            })
        }
        _ => None,
    }
}

/// RFC 1071 checksum (ICMPv4 has no pseudo-header, so this is all of it).
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends each nudge [`ERRORS_PER_SEGMENT`] times; returns how many
/// messages went out. Failures (no raw sockets) are logged, not fatal:
/// the transfer still resumes at the sender's next retransmission.
pub fn send(nudges: &[Nudge]) -> usize {
    let mut sent = 0;
    let mut v4: Option<Socket> = None;
    let mut v6: Option<Socket> = None;
    for n in nudges {
        let (slot, domain, protocol) = match n.to {
            IpAddr::V4(_) => (&mut v4, Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (&mut v6, Domain::IPV6, Protocol::ICMPV6),
        };
        if slot.is_none() {
            match Socket::new(domain, Type::RAW, Some(protocol)) {
                Ok(s) => *slot = Some(s),
                Err(e) => {
                    log::warn!("cannot send ICMP errors to resume transfers: {e}");
                    continue;
                }
            }
        }
        let Some(sock) = slot.as_ref() else { continue };
        let to = SockAddr::from(SocketAddr::new(n.to, 0));
        for _ in 0..ERRORS_PER_SEGMENT {
            match sock.send_to(&n.message, &to) {
                Ok(_) => sent += 1,
                Err(e) => {
                    log::debug!("ICMP error to {} not sent: {e}", n.to);
                    break;
                }
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use etherparse::{Icmpv4Slice, Icmpv4Type, Ipv4HeaderSlice};

    fn v4_key() -> FlowKey {
        FlowKey {
            device_ip: Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped().octets(),
            remote_ip: Ipv4Addr::new(203, 0, 113, 10).to_ipv6_mapped().octets(),
            device_mac: [2, 0, 0, 0, 0, 1],
            device_port: 40000,
            remote_port: 5601,
            family: family::IPV4,
            proto: proto::TCP,
        }
    }

    #[test]
    fn ipv4_error_quotes_the_segment_and_checks_out() {
        let n = nudge_for(&v4_key(), 0xdead_beef).unwrap();
        assert_eq!(n.to, "192.0.2.10".parse::<IpAddr>().unwrap());
        let icmp = Icmpv4Slice::from_slice(&n.message).unwrap();
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Network)
        ));
        // The checksum over the whole message verifies.
        assert_eq!(internet_checksum(&n.message), 0);
        let quoted = icmp.payload();
        let ip = Ipv4HeaderSlice::from_slice(quoted).unwrap();
        assert_eq!(ip.source(), [192, 0, 2, 10]);
        assert_eq!(ip.destination(), [203, 0, 113, 10]);
        assert_eq!(ip.protocol(), IpNumber::TCP);
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        let tcp = &quoted[20..28];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 40000);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 5601);
        assert_eq!(
            u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            0xdead_beef
        );
    }

    #[test]
    fn ipv6_error_quotes_the_segment() {
        let dev: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let rem: Ipv6Addr = "2001:db8:ee::10".parse().unwrap();
        let key = FlowKey {
            device_ip: dev.octets(),
            remote_ip: rem.octets(),
            family: family::IPV6,
            ..v4_key()
        };
        let n = nudge_for(&key, 7).unwrap();
        assert_eq!(n.to, IpAddr::V6(dev));
        assert_eq!(&n.message[..2], &[1, 0]);
        let (ip, rest) = Ipv6Header::from_slice(&n.message[8..]).unwrap();
        assert_eq!(ip.source, dev.octets());
        assert_eq!(ip.destination, rem.octets());
        assert_eq!(ip.next_header, IpNumber::TCP);
        assert_eq!(&rest[4..8], &7u32.to_be_bytes());
    }

    #[test]
    fn only_tcp_flows_are_nudged() {
        let udp = FlowKey {
            proto: proto::UDP,
            ..v4_key()
        };
        assert_eq!(nudge_for(&udp, 1), None);
        let other = FlowKey {
            family: family::NON_IP,
            ..v4_key()
        };
        assert_eq!(nudge_for(&other, 1), None);
    }
}
