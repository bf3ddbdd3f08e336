//! Plain-HTTP request heads a device sends (User-Agent, Host), parsed with
//! httparse. The kernel samples only the first bytes of a request, so a
//! head cut mid-way is read up to its last complete header line.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{DissectStats, Mac, Observation, Packet, Transport};
use crate::identify::text::{self, MAX_TEXT};

/// Most header lines read from one head; more is hostile or not HTTP.
pub const MAX_HEADERS: usize = 48;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub mac: Mac,
    pub ip: Option<IpAddr>,
    pub method: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Does not start like an HTTP request (other TCP data on the port).
    NotHttp,
    Malformed,
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"SUBSCRIBE ",
];

pub fn parse(
    payload: &[u8],
    mac: Mac,
    ip: Option<IpAddr>,
    truncated: &mut u64,
) -> Result<HttpRequest, Reject> {
    if !METHODS.iter().any(|m| payload.starts_with(m)) {
        return Err(Reject::NotHttp);
    }
    let head = complete_head(payload).ok_or(Reject::Malformed)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Reject::Malformed),
    }
    let mut out = HttpRequest {
        mac,
        ip,
        method: text::bounded_str(req.method.unwrap_or_default(), 16, truncated),
        host: None,
        user_agent: None,
    };
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            out.host = Some(text::bounded(h.value, MAX_TEXT, truncated));
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            out.user_agent = Some(text::bounded(h.value, MAX_TEXT, truncated));
        }
    }
    Ok(out)
}

/// The head up to and including its blank line; for a head cut short, the
/// complete lines with a blank line added. None when not even the request
/// line is complete.
pub(crate) fn complete_head(payload: &[u8]) -> Option<Cow<'_, [u8]>> {
    if let Some(end) = find(payload, b"\r\n\r\n") {
        return Some(Cow::Borrowed(&payload[..end + 4]));
    }
    let last = payload.windows(2).rposition(|w| w == b"\r\n")?;
    let mut v = payload[..last + 2].to_vec();
    v.extend_from_slice(b"\r\n");
    Some(Cow::Owned(v))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// TCP segments the device sends that start an HTTP request.
pub(crate) fn dissect(stats: &mut DissectStats, p: &Packet<'_>, out: &mut Vec<Observation>) {
    if p.transport != Transport::Tcp || p.payload.is_empty() {
        return;
    }
    let Some((mac, ip)) = crate::identify::sender(p) else {
        return;
    };
    match parse(p.payload, mac, ip, &mut stats.identify_truncated) {
        Ok(r) => out.push(Observation::HttpRequest(r)),
        Err(Reject::NotHttp) => {}
        Err(Reject::Malformed) => stats.http_malformed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::testutil::{dissect_all, tcp4};

    const MAC: Mac = Mac([0xb0, 0xa7, 0x37, 1, 2, 3]);

    #[test]
    fn reads_host_and_user_agent_from_a_full_frame() {
        let payload = b"GET /query/device-info HTTP/1.1\r\nHost: 192.0.2.50:8060\r\nUser-Agent: Roku/DVP-12.5 (12.5.0.4174-88)\r\nAccept: */*\r\n\r\n";
        let frame = tcp4(MAC, [192, 0, 2, 50], [203, 0, 113, 10], 40000, 80, payload);
        let (obs, stats) = dissect_all(&[frame]);
        let Some(Observation::HttpRequest(r)) = obs
            .iter()
            .find(|o| matches!(o, Observation::HttpRequest(_)))
        else {
            panic!("none in {obs:?}")
        };
        assert_eq!(r.method, "GET");
        assert_eq!(r.host.as_deref(), Some("192.0.2.50:8060"));
        assert_eq!(
            r.user_agent.as_deref(),
            Some("Roku/DVP-12.5 (12.5.0.4174-88)")
        );
        assert_eq!(stats.http_malformed, 0);
    }

    #[test]
    fn truncated_heads_keep_complete_lines() {
        let p = b"GET / HTTP/1.1\r\nUser-Agent: Wget/1.21\r\nHost: exam";
        let r = parse(p, MAC, None, &mut 0).unwrap();
        assert_eq!(r.user_agent.as_deref(), Some("Wget/1.21"));
        assert_eq!(r.host, None);
        assert_eq!(
            parse(b"GET / HTT", MAC, None, &mut 0),
            Err(Reject::Malformed)
        );
        assert_eq!(
            parse(b"\x16\x03\x01", MAC, None, &mut 0),
            Err(Reject::NotHttp)
        );
    }

    #[test]
    fn hostile_heads() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many, MAC, None, &mut 0), Err(Reject::Malformed));
        let mut t = 0;
        let long = format!(
            "GET / HTTP/1.1\r\nUser-Agent: <img src=x onerror=alert(1)>{}\r\n\r\n",
            "A".repeat(5000)
        );
        let r = parse(long.as_bytes(), MAC, None, &mut t).unwrap();
        let ua = r.user_agent.unwrap();
        assert!(ua.starts_with("<img src=x onerror=alert(1)>AAA"));
        assert_eq!(ua.len(), MAX_TEXT);
        assert_eq!(t, 1);
        let frame = tcp4(MAC, [192, 0, 2, 50], [203, 0, 113, 10], 40000, 80, &many);
        let (_, stats) = dissect_all(&[frame]);
        assert_eq!(stats.http_malformed, 1);
    }
}
