//! DHCPv4 client messages (RFC 2131/2132): what a device says about itself
//! when it asks for an address.
//!
//! Written by hand on purpose: the fixed BOOTP header plus a TLV option list
//! is all we read, and `dhcproto` (the well-kept crate) pulls in
//! hickory-proto, url/idna, rand and tracing, too much for a router binary
//! with 16 MB of flash. Every read below is bounds-checked; the option loop
//! is bounded by the payload length.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{DissectStats, Mac, Observation, Packet, Transport};
use crate::identify::text::{self, MAX_TEXT};

/// What a DHCPv4 client told us.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DhcpRequest {
    pub mac: Mac,
    /// Address the device uses or asks for (ciaddr, else option 50).
    pub ip: Option<IpAddr>,
    /// Option 53 (1 DISCOVER, 3 REQUEST, 8 INFORM ...).
    pub message_type: Option<u8>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 55, in the order sent: the client's DHCP fingerprint.
    pub param_request_list: Vec<u8>,
    /// Option 60.
    pub vendor_class: Option<String>,
    /// Option 61, as hex (`01:aa:bb:...`).
    pub client_id: Option<String>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
}

/// Why a payload was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// A server reply (BOOTREPLY): it says nothing about the device.
    NotClient,
    Malformed,
}

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const HEADER: usize = 236;

/// Parses a BOOTREQUEST. `mac` is the device the frame came from (the
/// chaddr field is not trusted over the Ethernet source).
pub fn parse(payload: &[u8], mac: Mac, truncated: &mut u64) -> Result<DhcpRequest, Reject> {
    let op = *payload.first().ok_or(Reject::Malformed)?;
    if payload.len() < HEADER + 4 {
        return Err(Reject::Malformed);
    }
    if op != 1 {
        return Err(Reject::NotClient);
    }
    if payload[HEADER..HEADER + 4] != MAGIC {
        return Err(Reject::Malformed);
    }
    let ciaddr = Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]);
    let mut req = DhcpRequest {
        mac,
        ip: None,
        message_type: None,
        hostname: None,
        param_request_list: Vec::new(),
        vendor_class: None,
        client_id: None,
        requested_ip: None,
    };
    let mut i = HEADER + 4;
    let mut ended = false;
    while i < payload.len() {
        let code = payload[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => {
                ended = true;
                break;
            }
            _ => {}
        }
        let len = *payload.get(i + 1).ok_or(Reject::Malformed)? as usize;
        let data = payload.get(i + 2..i + 2 + len).ok_or(Reject::Malformed)?;
        i += 2 + len;
        match code {
            12 => req.hostname = Some(text::bounded(data, MAX_TEXT, truncated)),
            50 if len == 4 => {
                req.requested_ip = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
            }
            53 if len == 1 => req.message_type = Some(data[0]),
            55 => req.param_request_list = data.to_vec(),
            60 => req.vendor_class = Some(text::bounded(data, MAX_TEXT, truncated)),
            61 => req.client_id = Some(text::hex(data, 64, truncated)),
            _ => {}
        }
    }
    // The kernel samples a bounded prefix; a missing END option is normal
    // for a truncated sample, so it is not an error by itself.
    let _ = ended;
    req.ip = if !ciaddr.is_unspecified() {
        Some(IpAddr::V4(ciaddr))
    } else {
        req.requested_ip.map(IpAddr::V4)
    };
    Ok(req)
}

/// Client → server (port 68 → 67) frames.
pub(crate) fn dissect(stats: &mut DissectStats, p: &Packet<'_>, out: &mut Vec<Observation>) {
    if p.transport != Transport::Udp || p.src_port != 68 || p.dst_port != 67 {
        return;
    }
    let Some((mac, _)) = crate::identify::sender(p) else {
        return;
    };
    match parse(p.payload, mac, &mut stats.identify_truncated) {
        Ok(req) => out.push(Observation::Dhcp(req)),
        Err(Reject::NotClient) => {}
        Err(Reject::Malformed) => stats.dhcp_malformed += 1,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identify::testutil::{dissect_all, udp4};

    /// A real-format DHCPREQUEST from `mac` with `options` (code, data).
    pub(crate) fn request(mac: Mac, options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER];
        p[0] = 1; // BOOTREQUEST
        p[1] = 1; // Ethernet
        p[2] = 6;
        p[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        p[28..34].copy_from_slice(&mac.0);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(&[53, 1, 3]);
        for (code, data) in options {
            p.push(*code);
            p.push(data.len() as u8);
            p.extend_from_slice(data);
        }
        p.push(255);
        p
    }

    const MAC: Mac = Mac([0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56]);

    #[test]
    fn reads_client_options_from_a_full_frame() {
        let payload = request(
            MAC,
            &[
                (12, b"wemo-plug-1A2B"),
                (55, &[1, 3, 6, 15, 28, 42]),
                (60, b"udhcp 1.36.1"),
                (61, &[1, 0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56]),
                (50, &[192, 0, 2, 23]),
            ],
        );
        let frame = udp4(MAC, [0, 0, 0, 0], [255, 255, 255, 255], 68, 67, &payload);
        let (obs, stats) = dissect_all(&[frame]);
        let Some(Observation::Dhcp(d)) = obs.iter().find(|o| matches!(o, Observation::Dhcp(_)))
        else {
            panic!("no dhcp observation in {obs:?}");
        };
        assert_eq!(d.mac, MAC);
        assert_eq!(d.message_type, Some(3));
        assert_eq!(d.hostname.as_deref(), Some("wemo-plug-1A2B"));
        assert_eq!(d.param_request_list, [1, 3, 6, 15, 28, 42]);
        assert_eq!(d.vendor_class.as_deref(), Some("udhcp 1.36.1"));
        assert_eq!(d.client_id.as_deref(), Some("01:24:0a:c4:12:34:56"));
        assert_eq!(d.requested_ip, Some(Ipv4Addr::new(192, 0, 2, 23)));
        assert_eq!(d.ip, Some("192.0.2.23".parse().unwrap()));
        assert_eq!(stats.dhcp_malformed, 0);
    }

    #[test]
    fn hostile_and_truncated_requests_are_counted_not_fatal() {
        let mut t = 0;
        // Option length running past the end.
        let mut p = request(MAC, &[]);
        p.pop();
        p.extend_from_slice(&[12, 200, b'a']);
        assert_eq!(parse(&p, MAC, &mut t), Err(Reject::Malformed));
        // Every truncation of a good request either parses or is Malformed.
        let good = request(MAC, &[(12, b"cam"), (55, &[1, 3])]);
        for n in 0..good.len() {
            let _ = parse(&good[..n], MAC, &mut t);
        }
        assert_eq!(parse(&good[..10], MAC, &mut t), Err(Reject::Malformed));
        // Server replies are ignored, not counted.
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(parse(&reply, MAC, &mut t), Err(Reject::NotClient));
        // Control characters and HTML come through as inert text.
        let p = request(MAC, &[(12, b"<img src=x onerror=alert(1)>\x07\x1b")]);
        let r = parse(&p, MAC, &mut t).unwrap();
        assert_eq!(
            r.hostname.as_deref(),
            Some("<img src=x onerror=alert(1)>\u{FFFD}\u{FFFD}")
        );
        // A bad frame through the dissector bumps the counter.
        let frame = udp4(MAC, [0, 0, 0, 0], [255; 4], 68, 67, &[1, 1, 6]);
        let (_, stats) = dissect_all(&[frame]);
        assert_eq!(stats.dhcp_malformed, 1);
    }
}
