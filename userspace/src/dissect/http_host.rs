//! The `Host` header of plain-HTTP requests, as a name for the remote end.
//!
//! The request head is parsed by the identify dissector's
//! [`super::http::parse`] (httparse underneath); this only adds what names
//! need and its `HttpRequest` observation does not carry: the remote
//! address and port, and the frame time.

use std::net::IpAddr;

use super::{Direction, Observation, Packet, Transport};

/// Longest host name kept (RFC 1035 text form).
const MAX_NAME: usize = 253;

pub(crate) fn dissect(packet: &Packet<'_>, out: &mut Vec<Observation>) {
    if packet.transport != Transport::Tcp
        || packet.payload.is_empty()
        || packet.frame.direction == Direction::Down
        || packet.src_mac.is_group()
    {
        return;
    }
    // Cheap test first: the identify parser would say NotHttp anyway.
    if !packet.payload.first().is_some_and(u8::is_ascii_uppercase) {
        return;
    }
    let mut truncated = 0;
    let Ok(req) = super::http::parse(
        packet.payload,
        packet.src_mac,
        Some(packet.src_ip),
        &mut truncated,
    ) else {
        return;
    };
    let Some(host) = req.host.as_deref().and_then(host_name) else {
        return;
    };
    out.push(Observation::HttpHost {
        mac: packet.src_mac,
        ip: packet.src_ip,
        port: packet.src_port,
        remote_ip: packet.dst_ip,
        remote_port: packet.dst_port,
        timestamp_ns: packet.frame.timestamp_ns,
        host,
    });
}

/// The host name in a `Host` header value: without a port, lower case;
/// `None` for an address literal (it names nothing) or anything that is not
/// a host name.
pub fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    if value.starts_with('[') {
        return None; // [v6]:port
    }
    let host = match value.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host.len() > MAX_NAME
        || host.parse::<IpAddr>().is_ok()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || host.split('.').any(str::is_empty)
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::{Dissector, Frame, Mac};
    use etherparse::PacketBuilder;

    #[test]
    fn host_header_names_the_remote_end() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([0x02, 0, 0x5e, 0, 0, 9], [0x02, 0, 0x5e, 0, 0, 1])
            .ipv4([192, 0, 2, 9], [198, 51, 100, 80], 64)
            .tcp(40001, 80, 1, 1000)
            .write(
                &mut v,
                b"GET /x HTTP/1.1\r\nHost: Firmware.Example.COM:8080\r\nUser-Agent: t\r\n\r\n",
            )
            .unwrap();
        let mut d = Dissector::new();
        let mut out = Vec::new();
        d.dissect(
            &Frame {
                timestamp_ns: 5,
                direction: Direction::Up,
                data: &v,
            },
            &mut out,
        );
        let hosts: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, Observation::HttpHost { .. }))
            .collect();
        assert_eq!(
            hosts,
            vec![&Observation::HttpHost {
                mac: Mac([0x02, 0, 0x5e, 0, 0, 9]),
                ip: "192.0.2.9".parse().unwrap(),
                port: 40001,
                remote_ip: "198.51.100.80".parse().unwrap(),
                remote_port: 80,
                timestamp_ns: 5,
                host: "firmware.example.com".into(),
            }]
        );
    }

    #[test]
    fn literals_and_junk_name_nothing() {
        assert_eq!(host_name("192.0.2.50:8060"), None);
        assert_eq!(host_name("[2001:db8::1]:80"), None);
        assert_eq!(host_name("a..b"), None);
        assert_eq!(host_name("bad host"), None);
        assert_eq!(host_name("ok.example."), Some("ok.example".into()));
    }
}
