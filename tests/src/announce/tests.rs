//! Each profile's announcements, as real frames through the real dissector
//! and identification, come out as the profile expects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use iot_inspector::dissect::{Direction, Dissector, Frame, Mac, Observation};
use iot_inspector::identify::{Evidence, identify, upnp};

use super::*;

fn udp4(mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac.0, [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa])
        .ipv4(src.octets(), dst.octets(), 255)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);

fn run(p: &Profile) -> (iot_inspector::identify::Identity, Dissector) {
    let mac: Mac = p.mac.parse().unwrap();
    let mut frames = vec![
        udp4(
            mac,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &dhcp_request(mac.0, p.dhcp_hostname, p.dhcp_vendor_class),
        ),
        udp4(
            mac,
            IP,
            Ipv4Addr::new(224, 0, 0, 251),
            5353,
            5353,
            &p.mdns_announcement(IP, Some(IP6)),
        ),
    ];
    if let Some(q) = p.mdns_query() {
        frames.push(udp4(mac, IP, Ipv4Addr::new(224, 0, 0, 251), 5353, 5353, &q));
    }
    for n in p.ssdp_notifies(IP, 49152) {
        frames.push(udp4(
            mac,
            IP,
            Ipv4Addr::new(239, 255, 255, 250),
            1900,
            1900,
            &n,
        ));
    }
    let mut d = Dissector::new();
    let mut obs = Vec::new();
    for data in &frames {
        d.dissect(
            &Frame {
                timestamp_ns: 1,
                direction: Direction::Up,
                data,
            },
            &mut obs,
        );
    }
    let mut ev = Evidence::default();
    for o in &obs {
        ev.absorb(o);
    }
    if p.ssdp.is_some() {
        let loc = ev.ssdp_locations.first().expect("a LOCATION").clone();
        let (addr, path) = upnp::parse_location(&loc).unwrap();
        assert_eq!(addr.ip(), IpAddr::V4(IP));
        let resp = p.http_response(&path, IP);
        let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let desc = upnp::parse_description(&resp[body_at..]).unwrap();
        ev.absorb_upnp(&desc);
    }
    assert!(obs.iter().any(|o| matches!(o, Observation::Dhcp(_))));
    (identify(mac, &ev), d)
}

#[test]
fn every_profile_is_identified_as_expected() {
    for name in PROFILES {
        let p = profile(name).unwrap();
        let (id, _) = run(&p);
        let (kind, vendor, model) = p.expect;
        assert_eq!(
            serde_json::to_value(id.kind).unwrap(),
            kind,
            "{name}: {id:#?}"
        );
        assert_eq!(id.vendor.as_deref(), vendor, "{name}: {id:#?}");
        assert_eq!(id.model.as_deref(), model, "{name}: {id:#?}");
        if kind != "unknown" {
            assert!(id.confidence >= 0.8, "{name}: {id:#?}");
        }
    }
}

#[test]
fn hostile_profile_is_bounded_and_counted() {
    let p = profile("hostile").unwrap();
    let packet = p.mdns_announcement(IP, None);
    // Long entries, but one frame: the profile is sent for real.
    assert!(
        packet.len() > 1_000 && packet.len() < 1_400,
        "{}",
        packet.len()
    );
    let (id, _) = run(&p);
    assert!(id.evidence.iter().all(|s| s.value.len() <= 300));
    let mut d = Dissector::new();
    let mac: Mac = p.mac.parse().unwrap();
    let f = udp4(mac, IP, Ipv4Addr::new(224, 0, 0, 251), 5353, 5353, &packet);
    let mut obs = Vec::new();
    d.dissect(
        &Frame {
            timestamp_ns: 1,
            direction: Direction::Up,
            data: &f,
        },
        &mut obs,
    );
    let Some(Observation::Mdns(m)) = obs.iter().find(|o| matches!(o, Observation::Mdns(_))) else {
        panic!("no mdns in {obs:?}")
    };
    assert_eq!(m.txt.len(), 5);
    assert!(m.txt.iter().all(|e| e.value.len() <= 256));
    assert_eq!(
        m.instances,
        ["<img src=x onerror=alert(1)>\u{FFFD}\u{FFFD}[31m"]
    );
    let f = udp4(
        mac,
        IP,
        Ipv4Addr::new(224, 0, 0, 251),
        5353,
        5353,
        &mdns_compression_loop(),
    );
    d.dissect(
        &Frame {
            timestamp_ns: 1,
            direction: Direction::Up,
            data: &f,
        },
        &mut Vec::new(),
    );
    assert_eq!(d.stats.mdns_malformed, 1);
    // The bomb parses without expansion.
    let resp = p.http_response("/bomb.xml", IP);
    let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        upnp::parse_description(&resp[body_at..]).unwrap(),
        upnp::UpnpDescription::default()
    );
}

#[test]
fn msearch_is_answered_only_for_what_it_asks() {
    let p = profile("plug").unwrap();
    let ask = |st: &str| {
        let req = format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
        );
        p.ssdp_responses(req.as_bytes(), IP, 49152)
    };
    assert_eq!(ask("ssdp:all").len(), 4);
    let r = ask("urn:Belkin:device:controllee:1");
    assert_eq!(r.len(), 1);
    let text = String::from_utf8(r[0].clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("LOCATION: http://192.0.2.20:49152/setup.xml\r\n"));
    assert!(ask("urn:schemas-upnp-org:device:Printer:1").is_empty());
    assert!(
        p.ssdp_responses(b"NOTIFY * HTTP/1.1\r\n\r\n", IP, 49152)
            .is_empty()
    );
    assert!(p.http_response("/other", IP).starts_with(b"HTTP/1.1 404"));
}
