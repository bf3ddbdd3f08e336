//! DHCPv6 client messages (RFC 8415): DUID, client FQDN (RFC 4704), vendor
//! class and the option request list.
//!
//! Written by hand for the same reason as `dhcp.rs` (dhcproto's dependency
//! weight); the format is a 4-byte header and a flat TLV option list, read
//! with bounds checks and a loop bounded by the payload length.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{DissectStats, Mac, Observation, Packet, Transport};
use crate::identify::text::{self, MAX_TEXT};

/// What a DHCPv6 client told us.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dhcpv6Request {
    pub mac: Mac,
    /// The (link-local) source address.
    pub ip: Option<IpAddr>,
    /// 1 SOLICIT, 3 REQUEST, 5 RENEW, 11 INFORMATION-REQUEST ...
    pub message_type: u8,
    /// Option 1 (client DUID), hex.
    pub duid: Option<String>,
    /// Option 39 (client FQDN), dotted.
    pub fqdn: Option<String>,
    /// Option 16: enterprise number and the first vendor-class string.
    pub vendor_enterprise: Option<u32>,
    pub vendor_class: Option<String>,
    /// Option 6 (ORO): the client's DHCPv6 fingerprint.
    pub option_request: Vec<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Server or relay messages.
    NotClient,
    Malformed,
}

const CLIENT_MESSAGES: [u8; 8] = [1, 3, 4, 5, 6, 8, 9, 11];

pub fn parse(
    payload: &[u8],
    mac: Mac,
    ip: Option<IpAddr>,
    truncated: &mut u64,
) -> Result<Dhcpv6Request, Reject> {
    if payload.len() < 4 {
        return Err(Reject::Malformed);
    }
    let message_type = payload[0];
    if !CLIENT_MESSAGES.contains(&message_type) {
        return Err(Reject::NotClient);
    }
    let mut req = Dhcpv6Request {
        mac,
        ip,
        message_type,
        duid: None,
        fqdn: None,
        vendor_enterprise: None,
        vendor_class: None,
        option_request: Vec::new(),
    };
    let mut i = 4;
    while i < payload.len() {
        let head = payload.get(i..i + 4).ok_or(Reject::Malformed)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let data = payload.get(i + 4..i + 4 + len).ok_or(Reject::Malformed)?;
        i += 4 + len;
        match code {
            1 => req.duid = Some(text::hex(data, 32, truncated)),
            6 => {
                req.option_request = data
                    .chunks_exact(2)
                    .take(64)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            }
            16 if len >= 6 => {
                req.vendor_enterprise =
                    Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                let n = u16::from_be_bytes([data[4], data[5]]) as usize;
                let s = data.get(6..6 + n).ok_or(Reject::Malformed)?;
                req.vendor_class = Some(text::bounded(s, MAX_TEXT, truncated));
            }
            39 if !data.is_empty() => req.fqdn = Some(wire_name(&data[1..], truncated)?),
            _ => {}
        }
    }
    Ok(req)
}

/// An uncompressed DNS wire name (labels, possibly without the root label:
/// RFC 4704 allows a partial name), dotted.
fn wire_name(mut data: &[u8], truncated: &mut u64) -> Result<String, Reject> {
    let mut labels: Vec<String> = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(Reject::Malformed);
        }
        let label = rest.get(..len as usize).ok_or(Reject::Malformed)?;
        labels.push(text::bounded(label, 63, truncated));
        data = &rest[len as usize..];
    }
    let name = labels.join(".");
    Ok(text::bounded_str(&name, MAX_TEXT, truncated))
}

/// Client → server (546 → 547) frames.
pub(crate) fn dissect(stats: &mut DissectStats, p: &Packet<'_>, out: &mut Vec<Observation>) {
    if p.transport != Transport::Udp || p.src_port != 546 || p.dst_port != 547 {
        return;
    }
    let Some((mac, ip)) = crate::identify::sender(p) else {
        return;
    };
    match parse(p.payload, mac, ip, &mut stats.identify_truncated) {
        Ok(req) => out.push(Observation::Dhcpv6(req)),
        Err(Reject::NotClient) => {}
        Err(Reject::Malformed) => stats.dhcpv6_malformed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::testutil::{dissect_all, udp6};

    const MAC: Mac = Mac([0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03]);

    fn opt(code: u16, data: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn solicit() -> Vec<u8> {
        let mut p = vec![1, 0xab, 0xcd, 0xef];
        p.extend(opt(1, &[0, 3, 0, 1, 0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03]));
        p.extend(opt(6, &[0, 23, 0, 24, 0, 39]));
        let mut vc = 311u32.to_be_bytes().to_vec();
        vc.extend_from_slice(&8u16.to_be_bytes());
        vc.extend_from_slice(b"MSFT 5.0");
        p.extend(opt(16, &vc));
        p.extend(opt(39, b"\x00\x09Janes-MBP\x03lan\x00"));
        p
    }

    #[test]
    fn reads_a_solicit_from_a_full_frame() {
        let mut sip = [0u8; 16];
        sip[0] = 0xfe;
        sip[1] = 0x80;
        sip[15] = 7;
        let mut dip = [0u8; 16];
        dip[0] = 0xff;
        dip[1] = 0x02;
        dip[13] = 1;
        dip[15] = 2;
        let frame = udp6(MAC, sip, dip, 546, 547, &solicit());
        let (obs, stats) = dissect_all(&[frame]);
        let Some(Observation::Dhcpv6(r)) = obs.iter().find(|o| matches!(o, Observation::Dhcpv6(_)))
        else {
            panic!("none in {obs:?}")
        };
        assert_eq!(r.mac, MAC);
        assert_eq!(r.message_type, 1);
        assert_eq!(r.duid.as_deref(), Some("00:03:00:01:3c:22:fb:01:02:03"));
        assert_eq!(r.option_request, [23, 24, 39]);
        assert_eq!(r.vendor_enterprise, Some(311));
        assert_eq!(r.vendor_class.as_deref(), Some("MSFT 5.0"));
        assert_eq!(r.fqdn.as_deref(), Some("Janes-MBP.lan"));
        assert_eq!(stats.dhcpv6_malformed, 0);
    }

    #[test]
    fn truncated_and_hostile_inputs() {
        let mut t = 0;
        let good = solicit();
        for n in 0..good.len() {
            let _ = parse(&good[..n], MAC, None, &mut t);
        }
        assert_eq!(parse(&good[..7], MAC, None, &mut t), Err(Reject::Malformed));
        let mut bad = vec![1, 0, 0, 0];
        bad.extend(opt(39, b"\x00\x50abc"));
        assert_eq!(parse(&bad, MAC, None, &mut t), Err(Reject::Malformed));
        // Advertise (2) is the server's.
        assert_eq!(
            parse(&[2, 0, 0, 0], MAC, None, &mut t),
            Err(Reject::NotClient)
        );
    }
}
