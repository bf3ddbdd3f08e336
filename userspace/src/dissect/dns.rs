//! DNS answers a device received: the question, the CNAME chain and the
//! A/AAAA addresses with their TTLs, over UDP and over TCP (RFC 1035 §4.2.2:
//! each message prefixed by its 2-byte length).
//!
//! Decoding is `simple-dns`'s. Before it sees a message, [`precheck`] walks
//! the whole wire structure with hard bounds, because two hostile shapes get
//! through `simple-dns` 0.13: a compression pointer that points at itself
//! (no label in between, so its name-length guard never trips and the loop
//! never ends), and huge section counts (it reserves `count` records up
//! front). The walk only accepts pointers that go strictly backwards (what
//! every real compressor emits, RFC 1035 §4.1.4 "a prior occurrence"),
//! which makes every name walk terminate, and only counts that the bytes
//! present can hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, RCODE};

use super::{DissectStats, Mac, Observation, Transport};

/// An address a DNS answer gave for a name, with the answer's TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAddress {
    pub ip: IpAddr,
    pub ttl_s: u32,
}

/// Largest message we decode (TCP messages can be 64 KiB; an answer that
/// names hosts for a device never needs that).
const MAX_MESSAGE: usize = 8 * 1024;
/// Most records (answer + authority + additional) a message may declare.
const MAX_RECORDS: usize = 256;
/// Most questions: real resolvers send exactly one.
const MAX_QUESTIONS: usize = 4;
/// Most compression pointers followed within one name.
const MAX_POINTER_HOPS: usize = 32;
/// Longest CNAME chain followed from the question.
const MAX_CHAIN: usize = 16;
/// Most messages taken from one TCP segment.
const MAX_TCP_MESSAGES: usize = 8;

/// Why a message was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Shorter than its header or declared records.
    Truncated,
    /// Counts no message of this size can hold, or above our bounds.
    Counts,
    /// A compression pointer that loops, points forward or out of bounds,
    /// or a name longer than 255 bytes.
    BadName,
    /// A name that is not text (invalid UTF-8 or control characters).
    NotText,
    /// `simple-dns` refused it.
    Decode,
}

/// Dissects a packet whose source port is 53: a DNS answer to the
/// device it is delivered to.
pub(crate) fn dissect(
    stats: &mut DissectStats,
    packet: &super::Packet<'_>,
    out: &mut Vec<Observation>,
) {
    // The device is the receiver of the answer whatever the frame's
    // direction says (a capture file has none).
    let mac = packet.dst_mac;
    if mac.is_group() {
        return;
    }
    let ctx = Ctx {
        mac,
        ip: packet.dst_ip,
        server_ip: packet.src_ip,
        timestamp_ns: packet.frame.timestamp_ns,
    };
    match packet.transport {
        Transport::Udp => handle(stats, &ctx, packet.payload, out),
        Transport::Tcp => {
            // A segment may hold several length-prefixed messages; one that
            // continues in the next segment is skipped (answers to devices
            // fit in one segment in practice; the kernel samples bounded
            // bytes anyway).
            let mut rest = packet.payload;
            for _ in 0..MAX_TCP_MESSAGES {
                if rest.len() < 2 {
                    break;
                }
                let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(msg) = rest.get(2..2 + len) else {
                    stats.dns_rejected += 1;
                    break;
                };
                handle(stats, &ctx, msg, out);
                rest = &rest[2 + len..];
            }
        }
    }
}

struct Ctx {
    mac: Mac,
    ip: IpAddr,
    server_ip: IpAddr,
    timestamp_ns: u64,
}

fn handle(stats: &mut DissectStats, ctx: &Ctx, msg: &[u8], out: &mut Vec<Observation>) {
    stats.dns_messages += 1;
    match parse_answer(msg) {
        Ok(Some(answer)) => out.push(Observation::DnsAnswer {
            mac: ctx.mac,
            ip: ctx.ip,
            server_ip: ctx.server_ip,
            timestamp_ns: ctx.timestamp_ns,
            question: answer.question,
            cnames: answer.cnames,
            addresses: answer.addresses,
        }),
        Ok(None) => {}
        Err(_) => stats.dns_rejected += 1,
    }
}

/// What one DNS response said about its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name asked, lower case, no trailing dot.
    pub question: String,
    /// The CNAME chain from the question on, in order.
    pub cnames: Vec<String>,
    /// A/AAAA addresses of the question or of a name in its chain.
    pub addresses: Vec<DnsAddress>,
}

/// Parses one DNS message. `Ok(None)` for a well-formed message that names
/// nothing (a query, an error answer, an answer without addresses or CNAMEs).
pub fn parse_answer(msg: &[u8]) -> Result<Option<Answer>, Reject> {
    if msg.len() > MAX_MESSAGE {
        return Err(Reject::Counts);
    }
    precheck(msg)?;
    let packet = Packet::parse(msg).map_err(|_| Reject::Decode)?;
    if !packet.has_flags(PacketFlag::RESPONSE) || packet.rcode() != RCODE::NoError {
        return Ok(None);
    }
    let Some(q) = packet.questions.first() else {
        return Ok(None);
    };
    let question = name_text(&q.qname)?;

    // Follow the chain question -> cname -> cname ... (bounded; a chain
    // that loops stops where it would revisit a name).
    let mut cnames: Vec<String> = Vec::new();
    let mut current = question.clone();
    for _ in 0..MAX_CHAIN {
        let mut next = None;
        for rr in &packet.answers {
            if let RData::CNAME(target) = &rr.rdata
                && name_text(&rr.name)? == current
            {
                next = Some(name_text(&target.0)?);
                break;
            }
        }
        match next {
            Some(n) if n != question && !cnames.contains(&n) => {
                cnames.push(n.clone());
                current = n;
            }
            _ => break,
        }
    }

    let mut addresses = Vec::new();
    for rr in &packet.answers {
        let ip: IpAddr = match &rr.rdata {
            RData::A(a) => Ipv4Addr::from(a.address).into(),
            RData::AAAA(a) => Ipv6Addr::from(a.address).into(),
            _ => continue,
        };
        let owner = name_text(&rr.name)?;
        // Only records for the question or its chain: anything else in the
        // answer section is not what the device asked for.
        if owner == question || cnames.contains(&owner) {
            addresses.push(DnsAddress { ip, ttl_s: rr.ttl });
        }
    }
    if addresses.is_empty() && cnames.is_empty() {
        return Ok(None);
    }
    Ok(Some(Answer {
        question,
        cnames,
        addresses,
    }))
}

/// A name as text: labels joined by dots, ASCII lower-cased. Labels that
/// are not valid UTF-8, or hold control characters, dots or spaces, are
/// refused (a name we show or match must be text).
fn name_text(name: &Name<'_>) -> Result<String, Reject> {
    let mut s = String::new();
    for label in name.as_bytes() {
        let text = std::str::from_utf8(label).map_err(|_| Reject::NotText)?;
        if text.is_empty()
            || text
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '.')
        {
            return Err(Reject::NotText);
        }
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(text);
    }
    s.make_ascii_lowercase();
    Ok(s)
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, Reject> {
    match msg.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Reject::Truncated),
    }
}

/// Walks the whole message's structure with bounds (see the module
/// comment): header counts against the bytes present, every name's labels
/// and pointers, every record's data length. Also usable by other DNS-based
/// dissectors (mDNS) before they hand bytes to `simple-dns`.
pub fn precheck(msg: &[u8]) -> Result<(), Reject> {
    if msg.len() < 12 {
        return Err(Reject::Truncated);
    }
    let qd = u16_at(msg, 4)? as usize;
    let records = u16_at(msg, 6)? as usize + u16_at(msg, 8)? as usize + u16_at(msg, 10)? as usize;
    // A question takes at least 5 bytes, a record at least 11.
    if qd > MAX_QUESTIONS || records > MAX_RECORDS || 12 + qd * 5 + records * 11 > msg.len() {
        return Err(Reject::Counts);
    }
    let mut pos = 12;
    for _ in 0..qd {
        pos = walk_name(msg, pos)? + 4;
        if pos > msg.len() {
            return Err(Reject::Truncated);
        }
    }
    for _ in 0..records {
        pos = walk_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let rdlen = u16_at(msg, pos + 8)? as usize;
        let rdata = pos + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return Err(Reject::Truncated);
        }
        // Names inside the record data that simple-dns will decode.
        // CNAME, NS, PTR: one name filling the data.
        if matches!(rtype, 5 | 2 | 12) && walk_name(msg, rdata)? > end {
            return Err(Reject::Truncated);
        }
        pos = end;
    }
    Ok(())
}

/// Walks one (possibly compressed) name starting at `pos`; returns the
/// position just after it in place. Pointers must point strictly before the
/// label sequence they end, so every walk ends.
fn walk_name(msg: &[u8], mut pos: usize) -> Result<usize, Reject> {
    let mut end_in_place = None;
    let mut seq_start = pos;
    let mut name_len = 0usize;
    let mut hops = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(Reject::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end_in_place.unwrap_or(pos + 1));
                }
                name_len += len + 1;
                if name_len > 255 {
                    return Err(Reject::BadName);
                }
                pos += 1 + len;
                if pos > msg.len() {
                    return Err(Reject::Truncated);
                }
            }
            0xc0 => {
                let target = (u16_at(msg, pos)? & 0x3fff) as usize;
                hops += 1;
                if target >= seq_start || hops > MAX_POINTER_HOPS {
                    return Err(Reject::BadName);
                }
                if end_in_place.is_none() {
                    end_in_place = Some(pos + 2);
                }
                pos = target;
                seq_start = target;
            }
            // 0x40 / 0x80: extended label types, unused in answers.
            _ => return Err(Reject::BadName),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::{CLASS, Question, ResourceRecord, TYPE};

    fn response(question: &str, records: Vec<ResourceRecord<'static>>) -> Vec<u8> {
        let mut p = Packet::new_reply(0x1234);
        p.questions.push(Question::new(
            Name::new_unchecked(question).into_owned(),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        p.answers = records;
        p.build_bytes_vec_compressed().unwrap()
    }

    fn rr(name: &str, ttl: u32, rdata: RData<'static>) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name).into_owned(),
            CLASS::IN,
            ttl,
            rdata,
        )
    }

    #[test]
    fn cname_chain_and_addresses_with_ttls() {
        let msg = response(
            "API.xbcs.net",
            vec![
                rr(
                    "api.xbcs.net",
                    300,
                    RData::CNAME(CNAME(Name::new_unchecked("lb.xbcs.net").into_owned())),
                ),
                rr(
                    "lb.xbcs.net",
                    60,
                    RData::CNAME(CNAME(
                        Name::new_unchecked("edge.example-cdn.net").into_owned(),
                    )),
                ),
                rr(
                    "edge.example-cdn.net",
                    20,
                    RData::A(A {
                        address: u32::from(Ipv4Addr::new(203, 0, 113, 7)),
                    }),
                ),
                rr(
                    "edge.example-cdn.net",
                    30,
                    RData::AAAA(AAAA {
                        address: u128::from("2001:db8::7".parse::<Ipv6Addr>().unwrap()),
                    }),
                ),
                // Not in the chain: ignored.
                rr(
                    "other.example",
                    30,
                    RData::A(A {
                        address: u32::from(Ipv4Addr::new(198, 51, 100, 1)),
                    }),
                ),
            ],
        );
        let a = parse_answer(&msg).unwrap().unwrap();
        assert_eq!(a.question, "api.xbcs.net");
        assert_eq!(a.cnames, vec!["lb.xbcs.net", "edge.example-cdn.net"]);
        assert_eq!(
            a.addresses,
            vec![
                DnsAddress {
                    ip: "203.0.113.7".parse().unwrap(),
                    ttl_s: 20
                },
                DnsAddress {
                    ip: "2001:db8::7".parse().unwrap(),
                    ttl_s: 30
                },
            ]
        );
    }

    #[test]
    fn queries_and_errors_name_nothing() {
        let mut q = Packet::new_query(1);
        q.questions.push(Question::new(
            Name::new_unchecked("example.com"),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        assert_eq!(parse_answer(&q.build_bytes_vec().unwrap()), Ok(None));
        let mut nx = Packet::new_reply(1);
        *nx.rcode_mut() = RCODE::NameError;
        nx.questions = q.questions.clone();
        assert_eq!(parse_answer(&nx.build_bytes_vec().unwrap()), Ok(None));
    }

    #[test]
    fn answers_over_udp_and_tcp_frames() {
        use crate::dissect::{Direction, Dissector, Frame};
        use etherparse::PacketBuilder;
        let msg = response(
            "time.example.net",
            vec![rr(
                "time.example.net",
                120,
                RData::A(A {
                    address: u32::from(Ipv4Addr::new(198, 51, 100, 123)),
                }),
            )],
        );
        let dev = [0x02, 0, 0x5e, 0, 0, 7];
        let gw = [0x02, 0, 0x5e, 0, 0, 1];
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(gw, dev)
            .ipv4([192, 0, 2, 1], [192, 0, 2, 7], 64)
            .udp(53, 40000)
            .write(&mut udp, &msg)
            .unwrap();
        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        let mut tcp = Vec::new();
        PacketBuilder::ethernet2(gw, dev)
            .ipv4([192, 0, 2, 1], [192, 0, 2, 7], 64)
            .tcp(53, 40001, 1, 1000)
            .write(&mut tcp, &framed)
            .unwrap();
        let mut d = Dissector::new();
        for data in [&udp, &tcp] {
            let mut out = Vec::new();
            d.dissect(
                &Frame {
                    timestamp_ns: 9,
                    direction: Direction::Down,
                    data,
                },
                &mut out,
            );
            let answers: Vec<_> = out
                .into_iter()
                .filter(|o| matches!(o, Observation::DnsAnswer { .. }))
                .collect();
            assert_eq!(
                answers,
                vec![Observation::DnsAnswer {
                    mac: Mac(dev),
                    ip: "192.0.2.7".parse().unwrap(),
                    server_ip: "192.0.2.1".parse().unwrap(),
                    timestamp_ns: 9,
                    question: "time.example.net".into(),
                    cnames: vec![],
                    addresses: vec![DnsAddress {
                        ip: "198.51.100.123".parse().unwrap(),
                        ttl_s: 120
                    }],
                }]
            );
        }
        assert_eq!(d.stats.dns_messages, 2);
        assert_eq!(d.stats.dns_rejected, 0);
    }

    fn header(qd: u16, an: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80];
        m.extend_from_slice(&qd.to_be_bytes());
        m.extend_from_slice(&an.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m
    }

    #[test]
    fn hostile_messages_are_rejected() {
        // A question whose name is a pointer to itself.
        let mut self_loop = header(1, 0);
        self_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&self_loop), Err(Reject::BadName));
        // Two pointers pointing at each other, via a label.
        let mut pair = header(1, 0);
        pair.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&pair), Err(Reject::BadName));
        // Forward pointer.
        let mut fwd = header(1, 0);
        fwd.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(parse_answer(&fwd), Err(Reject::BadName));
        // 65535 answers declared in a tiny message.
        let mut huge = header(1, 0xffff);
        huge.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&huge), Err(Reject::Counts));
        // Record data length past the end.
        let mut bogus = header(1, 1);
        bogus.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        bogus.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0xff, 0xf0, 1, 2]);
        assert_eq!(parse_answer(&bogus), Err(Reject::Truncated));
        // Invalid UTF-8 in a label.
        let mut bad_utf8 = header(1, 1);
        bad_utf8.extend_from_slice(&[2, 0xff, 0xfe, 0, 0, 1, 0, 1]);
        bad_utf8.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 1]);
        assert_eq!(parse_answer(&bad_utf8), Err(Reject::NotText));
        // A name longer than 255 bytes.
        let mut long = header(1, 0);
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_answer(&long), Err(Reject::BadName));
        // Truncated everywhere: never a panic.
        let good = response(
            "a.example",
            vec![rr(
                "a.example",
                5,
                RData::A(A {
                    address: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
                }),
            )],
        );
        for cut in 0..good.len() {
            assert!(parse_answer(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_answer(&good).unwrap().is_some());
    }
}
