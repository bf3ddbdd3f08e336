//! mDNS / DNS-SD (RFC 6762/6763) messages a device sends: the services it
//! offers (PTR), its instance and host names (SRV, A/AAAA), the TXT
//! key/values that often carry model and manufacturer, and what it queries.
//!
//! Wire parsing is simple-dns (bounded names, compression-loop checks). We
//! only bound its allocations: section counts are checked against the
//! payload length first, since the crate reserves `count` records up front.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use simple_dns::rdata::RData;
use simple_dns::{Name, PacketFlag};

use super::{DissectStats, Mac, Observation, Packet, Transport};
use crate::identify::text::{self, MAX_TEXT};

/// Most TXT key/values kept from one message.
pub const MAX_TXT: usize = 64;
/// Most names kept in each list of one message.
pub const MAX_NAMES: usize = 32;

/// What one mDNS message from the device said.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MdnsMessage {
    pub mac: Mac,
    pub ip: Option<IpAddr>,
    /// A response (announcement) rather than a query.
    pub response: bool,
    /// Names asked about in the question section (`_googlecast._tcp.local`).
    pub queries: Vec<String>,
    /// Service types the device offers, without `.local` (`_ipp._tcp`).
    pub services: Vec<String>,
    /// Service instance names (the first label: `HP LaserJet 4000`).
    pub instances: Vec<String>,
    /// Host names (SRV targets, A/AAAA owners), without `.local`.
    pub hosts: Vec<String>,
    /// TXT key/values of the device's services.
    pub txt: Vec<TxtEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxtEntry {
    /// The instance's service type (`_ipp._tcp`), if it could be told.
    pub service: String,
    pub key: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    Malformed,
}

/// Parses one mDNS message sent by `mac`.
pub fn parse(
    payload: &[u8],
    mac: Mac,
    ip: Option<IpAddr>,
    truncated: &mut u64,
) -> Result<MdnsMessage, Reject> {
    plausible_counts(payload)?;
    let packet = simple_dns::Packet::parse(payload).map_err(|_| Reject::Malformed)?;
    let mut m = MdnsMessage {
        mac,
        ip,
        response: packet.has_flags(PacketFlag::RESPONSE),
        ..Default::default()
    };
    for q in &packet.questions {
        text::push_bounded(
            &mut m.queries,
            dotted(&q.qname, truncated),
            MAX_NAMES,
            truncated,
        );
    }
    let records = packet
        .answers
        .iter()
        .chain(&packet.name_servers)
        .chain(&packet.additional_records);
    for rr in records {
        match &rr.rdata {
            RData::PTR(target) => {
                let owner = local_name(&rr.name, truncated);
                if owner.ends_with(".in-addr.arpa") || owner.ends_with(".ip6.arpa") {
                    let host = local_name(&target.0, truncated);
                    text::push_bounded(&mut m.hosts, host, MAX_NAMES, truncated);
                } else if owner == "_services._dns-sd._udp" {
                    let service = local_name(&target.0, truncated);
                    text::push_bounded(&mut m.services, service, MAX_NAMES, truncated);
                } else {
                    text::push_bounded(&mut m.services, owner.clone(), MAX_NAMES, truncated);
                    if let Some(instance) = first_label(&target.0, truncated) {
                        text::push_bounded(&mut m.instances, instance, MAX_NAMES, truncated);
                    }
                }
            }
            RData::SRV(srv) => {
                if let Some(instance) = first_label(&rr.name, truncated) {
                    text::push_bounded(&mut m.instances, instance, MAX_NAMES, truncated);
                }
                let host = local_name(&srv.target, truncated);
                text::push_bounded(&mut m.hosts, host, MAX_NAMES, truncated);
            }
            RData::A(_) | RData::AAAA(_) => {
                let host = local_name(&rr.name, truncated);
                text::push_bounded(&mut m.hosts, host, MAX_NAMES, truncated);
            }
            RData::TXT(txt) => {
                let service = service_of(&rr.name, truncated);
                for (key, value) in txt.iter_raw() {
                    if m.txt.len() >= MAX_TXT {
                        *truncated += 1;
                        break;
                    }
                    m.txt.push(TxtEntry {
                        service: service.clone(),
                        key: text::bounded(key, 64, truncated),
                        value: text::bounded(value.unwrap_or_default(), MAX_TEXT, truncated),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Rejects headers whose section counts cannot fit in the payload (the
/// smallest question is 5 bytes, the smallest record 11), before the
/// parser reserves memory for them.
fn plausible_counts(p: &[u8]) -> Result<(), Reject> {
    if p.len() < 12 {
        return Err(Reject::Malformed);
    }
    let count = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]) as usize;
    let need = count(4) * 5 + (count(6) + count(8) + count(10)) * 11;
    if need > p.len() - 12 {
        return Err(Reject::Malformed);
    }
    Ok(())
}

/// The whole name, dotted, as received (bounded).
fn dotted(name: &Name<'_>, truncated: &mut u64) -> String {
    let mut s = String::new();
    for (i, label) in name.get_labels().iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&text::bounded(label.as_ref(), 63, truncated));
        if s.len() > MAX_TEXT {
            break;
        }
    }
    text::bounded_str(&s, MAX_TEXT, truncated)
}

/// The name without a trailing `.local`, lower-cased when it is a service
/// type (those are case-insensitive identifiers, not display text).
fn local_name(name: &Name<'_>, truncated: &mut u64) -> String {
    let s = dotted(name, truncated);
    let s = s
        .strip_suffix(".local")
        .or_else(|| s.strip_suffix(".LOCAL"))
        .map(str::to_string)
        .unwrap_or(s);
    if s.starts_with('_') {
        s.to_ascii_lowercase()
    } else {
        s
    }
}

/// The instance label of a `Instance._type._proto.local` name.
fn first_label(name: &Name<'_>, truncated: &mut u64) -> Option<String> {
    let labels = name.get_labels();
    if labels.len() < 3 {
        return None;
    }
    Some(text::bounded(labels[0].as_ref(), 63, truncated))
}

/// `_type._proto` of an instance name, or "" when it has none.
fn service_of(name: &Name<'_>, truncated: &mut u64) -> String {
    let labels = name.get_labels();
    let n = labels.len();
    if n >= 4 {
        let t = &labels[n - 3];
        let p = &labels[n - 2];
        if t.as_ref().first() == Some(&b'_') {
            let mut s = text::bounded(t.as_ref(), 63, truncated);
            s.push('.');
            s.push_str(&text::bounded(p.as_ref(), 63, truncated));
            return s.to_ascii_lowercase();
        }
    }
    String::new()
}

/// Frames to or from port 5353, sent by the device.
pub(crate) fn dissect(stats: &mut DissectStats, p: &Packet<'_>, out: &mut Vec<Observation>) {
    if p.transport != Transport::Udp || (p.src_port != 5353 && p.dst_port != 5353) {
        return;
    }
    let Some((mac, ip)) = crate::identify::sender(p) else {
        return;
    };
    match parse(p.payload, mac, ip, &mut stats.identify_truncated) {
        Ok(m) => out.push(Observation::Mdns(m)),
        Err(Reject::Malformed) => stats.mdns_malformed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::testutil::{dissect_all, udp4};
    use simple_dns::rdata::{A, PTR, SRV, TXT};
    use simple_dns::{CLASS, CharacterString, Question, ResourceRecord};

    const MAC: Mac = Mac([0x00, 0x0e, 0x58, 0xaa, 0xbb, 0xcc]);

    fn announcement(instance: &str, txt: TXT<'_>) -> Vec<u8> {
        let mut p = simple_dns::Packet::new_reply(0);
        p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        let full = format!("{instance}._ipp._tcp.local");
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked("_ipp._tcp.local"),
            CLASS::IN,
            4500,
            RData::PTR(PTR(Name::new_unchecked(&full))),
        ));
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked(&full),
            CLASS::IN,
            120,
            RData::SRV(SRV {
                priority: 0,
                weight: 0,
                port: 631,
                target: Name::new_unchecked("HP3C2AF4.local"),
            }),
        ));
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked(&full),
            CLASS::IN,
            4500,
            RData::TXT(txt),
        ));
        p.additional_records.push(
            ResourceRecord::new(
                Name::new_unchecked("HP3C2AF4.local"),
                CLASS::IN,
                120,
                RData::A(A {
                    address: u32::from_be_bytes([192, 0, 2, 40]),
                }),
            )
            .with_cache_flush(true),
        );
        p.build_bytes_vec_compressed().unwrap()
    }

    #[test]
    fn reads_an_ipp_announcement_from_a_full_frame() {
        let txt = TXT::new()
            .with_string("ty=HP LaserJet Pro M404")
            .unwrap()
            .with_string("usb_MFG=HP")
            .unwrap()
            .with_string("usb_MDL=LaserJet Pro M404")
            .unwrap();
        let payload = announcement("HP LaserJet Pro M404 [3C2AF4]", txt);
        let frame = udp4(MAC, [192, 0, 2, 40], [224, 0, 0, 251], 5353, 5353, &payload);
        let (obs, stats) = dissect_all(&[frame]);
        let Some(Observation::Mdns(m)) = obs.iter().find(|o| matches!(o, Observation::Mdns(_)))
        else {
            panic!("none in {obs:?}")
        };
        assert!(m.response);
        assert_eq!(m.mac, MAC);
        assert_eq!(m.services, ["_ipp._tcp"]);
        assert_eq!(m.instances, ["HP LaserJet Pro M404 [3C2AF4]"]);
        assert_eq!(m.hosts, ["HP3C2AF4"]);
        let get = |k: &str| {
            m.txt
                .iter()
                .find(|e| e.key == k)
                .map(|e| (e.service.as_str(), e.value.as_str()))
        };
        assert_eq!(get("usb_MFG"), Some(("_ipp._tcp", "HP")));
        assert_eq!(get("ty"), Some(("_ipp._tcp", "HP LaserJet Pro M404")));
        assert_eq!(stats.mdns_malformed, 0);
    }

    #[test]
    fn reads_queries() {
        let mut p = simple_dns::Packet::new_query(0);
        p.questions.push(Question::new(
            Name::new_unchecked("_googlecast._tcp.local"),
            simple_dns::QTYPE::TYPE(simple_dns::TYPE::PTR),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            true,
        ));
        let m = parse(&p.build_bytes_vec().unwrap(), MAC, None, &mut 0).unwrap();
        assert!(!m.response);
        assert_eq!(m.queries, ["_googlecast._tcp.local"]);
    }

    #[test]
    fn hostile_txt_and_names_are_bounded_and_inert() {
        // 40 strings of 250 bytes: a 10 kB TXT record.
        let big = "x".repeat(250);
        let mut txt = TXT::new();
        for i in 0..40 {
            let s = format!("k{i}={}", &big[..245]);
            txt.add_char_string(CharacterString::new(s.as_bytes()).unwrap().into_owned());
        }
        txt.add_char_string(
            CharacterString::new(b"md=<img src=x onerror=alert(1)>\x1b[2J").unwrap(),
        );
        let payload = announcement("<img src=x onerror=alert(1)>\u{7}", txt);
        assert!(payload.len() > 10_000);
        let mut t = 0;
        let m = parse(&payload, MAC, None, &mut t).unwrap();
        assert_eq!(m.instances, ["<img src=x onerror=alert(1)>\u{FFFD}"]);
        let md = m.txt.iter().find(|e| e.key == "md").unwrap();
        assert_eq!(md.value, "<img src=x onerror=alert(1)>\u{FFFD}[2J");
        assert!(m.txt.len() <= MAX_TXT);
        assert!(m.txt.iter().all(|e| e.value.len() <= MAX_TEXT));
    }

    #[test]
    fn truncated_loops_and_lying_counts_are_rejected() {
        let txt = TXT::new().with_string("md=Socket").unwrap();
        let good = announcement("Plug", txt);
        let mut t = 0;
        for n in 0..good.len() {
            let _ = parse(&good[..n], MAC, None, &mut t);
        }
        // A question whose name is a pointer to itself.
        let mut lp = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        lp.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1]);
        assert_eq!(parse(&lp, MAC, None, &mut t), Err(Reject::Malformed));
        // Two pointers pointing at each other.
        let mut lp2 = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        lp2.extend_from_slice(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12, 0, 12, 0, 1]);
        assert_eq!(parse(&lp2, MAC, None, &mut t), Err(Reject::Malformed));
        // 65535 answers claimed in a 20-byte packet.
        let lie = [
            0, 0, 0x84, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(parse(&lie, MAC, None, &mut t), Err(Reject::Malformed));
        let frame = udp4(MAC, [192, 0, 2, 9], [224, 0, 0, 251], 5353, 5353, &lie);
        let (_, stats) = dissect_all(&[frame]);
        assert_eq!(stats.mdns_malformed, 1);
    }
}
