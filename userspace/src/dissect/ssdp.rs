//! SSDP (UPnP discovery, HTTP over UDP on port 1900): NOTIFY announcements,
//! M-SEARCH queries and the unicast responses to them, parsed with
//! httparse like any HTTP head.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{DissectStats, Mac, Observation, Packet, Transport};
use crate::identify::text::{self, MAX_TEXT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SsdpKind {
    /// `NOTIFY * HTTP/1.1` (ssdp:alive / ssdp:byebye).
    Notify,
    /// `M-SEARCH * HTTP/1.1`: the device looks for others (its ST says
    /// what it wants, not what it is).
    Search,
    /// `HTTP/1.1 200 OK` answering an M-SEARCH: the device describes itself.
    Response,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SsdpMessage {
    pub mac: Mac,
    pub ip: Option<IpAddr>,
    pub message: SsdpKind,
    pub server: Option<String>,
    pub usn: Option<String>,
    /// NT of a NOTIFY, ST of a search or response.
    pub nt: Option<String>,
    /// NTS of a NOTIFY (`ssdp:alive`).
    pub nts: Option<String>,
    pub location: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    Malformed,
}

pub fn parse(
    payload: &[u8],
    mac: Mac,
    ip: Option<IpAddr>,
    truncated: &mut u64,
) -> Result<SsdpMessage, Reject> {
    let head = super::http::complete_head(payload).ok_or(Reject::Malformed)?;
    let mut headers = [httparse::EMPTY_HEADER; super::http::MAX_HEADERS];
    let (message, parsed_headers): (SsdpKind, &[httparse::Header<'_>]) =
        if head.starts_with(b"HTTP/") {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&head) {
                Ok(httparse::Status::Complete(_)) if resp.code == Some(200) => {}
                _ => return Err(Reject::Malformed),
            }
            (SsdpKind::Response, resp.headers)
        } else {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {}
                _ => return Err(Reject::Malformed),
            }
            let kind = match req.method {
                Some(m) if m.eq_ignore_ascii_case("NOTIFY") => SsdpKind::Notify,
                Some(m) if m.eq_ignore_ascii_case("M-SEARCH") => SsdpKind::Search,
                _ => return Err(Reject::Malformed),
            };
            (kind, req.headers)
        };
    let mut m = SsdpMessage {
        mac,
        ip,
        message,
        server: None,
        usn: None,
        nt: None,
        nts: None,
        location: None,
        user_agent: None,
    };
    for h in parsed_headers {
        let slot = match h.name.to_ascii_lowercase().as_str() {
            "server" => &mut m.server,
            "usn" => &mut m.usn,
            "nt" | "st" => &mut m.nt,
            "nts" => &mut m.nts,
            "location" => &mut m.location,
            "user-agent" => &mut m.user_agent,
            _ => continue,
        };
        *slot = Some(text::bounded(h.value, MAX_TEXT, truncated));
    }
    Ok(m)
}

/// Frames from or to port 1900 sent by the device.
pub(crate) fn dissect(stats: &mut DissectStats, p: &Packet<'_>, out: &mut Vec<Observation>) {
    if p.transport != Transport::Udp || (p.src_port != 1900 && p.dst_port != 1900) {
        return;
    }
    let Some((mac, ip)) = crate::identify::sender(p) else {
        return;
    };
    match parse(p.payload, mac, ip, &mut stats.identify_truncated) {
        Ok(m) => out.push(Observation::Ssdp(m)),
        Err(Reject::Malformed) => stats.ssdp_malformed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::testutil::{dissect_all, udp4};

    const MAC: Mac = Mac([0x94, 0x10, 0x3e, 1, 2, 3]);

    #[test]
    fn reads_a_notify_from_a_full_frame() {
        let payload = b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\nLOCATION: http://192.0.2.30:49152/setup.xml\r\nNT: urn:Belkin:device:controllee:1\r\nNTS: ssdp:alive\r\nSERVER: Unspecified, UPnP/1.0, Unspecified\r\nUSN: uuid:Socket-1_0-221517K0101769::urn:Belkin:device:controllee:1\r\n\r\n";
        let frame = udp4(
            MAC,
            [192, 0, 2, 30],
            [239, 255, 255, 250],
            1900,
            1900,
            payload,
        );
        let (obs, stats) = dissect_all(&[frame]);
        let Some(Observation::Ssdp(m)) = obs.iter().find(|o| matches!(o, Observation::Ssdp(_)))
        else {
            panic!("none in {obs:?}")
        };
        assert_eq!(m.message, SsdpKind::Notify);
        assert_eq!(m.nt.as_deref(), Some("urn:Belkin:device:controllee:1"));
        assert_eq!(m.nts.as_deref(), Some("ssdp:alive"));
        assert_eq!(
            m.location.as_deref(),
            Some("http://192.0.2.30:49152/setup.xml")
        );
        assert_eq!(
            m.usn.as_deref(),
            Some("uuid:Socket-1_0-221517K0101769::urn:Belkin:device:controllee:1")
        );
        assert_eq!(m.ip, Some("192.0.2.30".parse().unwrap()));
        assert_eq!(stats.ssdp_malformed, 0);
    }

    #[test]
    fn reads_responses_and_searches() {
        let resp = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nST: roku:ecp\r\nLocation: http://192.0.2.50:8060/\r\nUSN: uuid:roku:ecp:X004000AB123\r\nServer: Roku/12.5.0 UPnP/1.0 Roku/12.5.0\r\n\r\n";
        let m = parse(resp, MAC, None, &mut 0).unwrap();
        assert_eq!(m.message, SsdpKind::Response);
        assert_eq!(m.nt.as_deref(), Some("roku:ecp"));
        assert_eq!(
            m.server.as_deref(),
            Some("Roku/12.5.0 UPnP/1.0 Roku/12.5.0")
        );
        let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:dial-multiscreen-org:service:dial:1\r\nUSER-AGENT: Google Chrome/120.0 Linux\r\n\r\n";
        let m = parse(search, MAC, None, &mut 0).unwrap();
        assert_eq!(m.message, SsdpKind::Search);
        assert_eq!(m.user_agent.as_deref(), Some("Google Chrome/120.0 Linux"));
    }

    #[test]
    fn hostile_and_truncated() {
        let mut t = 0;
        let p = b"NOTIFY * HTTP/1.1\r\nSERVER: <img src=x onerror=alert(1)>\x01\r\n\r\n";
        // httparse refuses control characters in header values.
        assert_eq!(parse(p, MAC, None, &mut t), Err(Reject::Malformed));
        let p = b"NOTIFY * HTTP/1.1\r\nSERVER: <img src=x onerror=alert(1)>\r\nUSN: uuid:1\r\nLOCA";
        let m = parse(p, MAC, None, &mut t).unwrap();
        assert_eq!(m.server.as_deref(), Some("<img src=x onerror=alert(1)>"));
        assert_eq!(m.location, None);
        for bad in [
            &b""[..],
            b"NOTIFY",
            b"GARBAGE * HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\n\r\n",
        ] {
            assert_eq!(parse(bad, MAC, None, &mut t), Err(Reject::Malformed));
        }
        let frame = udp4(
            MAC,
            [192, 0, 2, 30],
            [239, 255, 255, 250],
            1900,
            1900,
            b"\x00\x01",
        );
        let (_, stats) = dissect_all(&[frame]);
        assert_eq!(stats.ssdp_malformed, 1);
    }
}
