//! The research export of the simulated home's devices, and label
//! warnings on them.
//!
//! The devices are the lab's announcement profiles (camera, plug, speaker,
//! TV, printer, phone, laptop): their DHCP, mDNS, SSDP and UPnP messages as
//! real frames through the real dissector and identification; their
//! traffic is stored through the real `Store::commit_window`, as the daemon
//! does every window. No namespaces: this runs without root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use iot_inspector::dissect::{Direction, Dissector, Frame, Mac};
use iot_inspector::export::{self, ExportOptions, Format};
use iot_inspector::identify::{Evidence, Identity, identify, upnp};
use iot_inspector::labels;
use iot_inspector::store::{DeviceRecord, FlowRecord, Retention, Store, WindowCommit};
use iot_inspector_lab::announce::{PROFILES, Profile, profile};
use iot_inspector_lab::{GW_V4, SERVER_V4, SERVER_V6, SERVER2_V4};

const T0: u64 = 1_800_000_000;
/// Two minutes of 5-second windows.
const WINDOWS: u64 = 24;

fn udp4(mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac.0, [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa])
        .ipv4(src.octets(), dst.octets(), 255)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn ip4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, host)
}

fn ip6(host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, host)
}

/// A profile's announcements through the dissector and identification.
fn identity_of(p: &Profile, host: u8) -> Identity {
    let mac: Mac = p.mac.parse().unwrap();
    let ip = ip4(host);
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    let mut frames = vec![
        udp4(
            mac,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &iot_inspector_lab::announce::dhcp_request(mac.0, p.dhcp_hostname, p.dhcp_vendor_class),
        ),
        udp4(
            mac,
            ip,
            mdns,
            5353,
            5353,
            &p.mdns_announcement(ip, Some(ip6(host as u16))),
        ),
    ];
    for n in p.ssdp_notifies(ip, 49152) {
        frames.push(udp4(
            mac,
            ip,
            Ipv4Addr::new(239, 255, 255, 250),
            1900,
            1900,
            &n,
        ));
    }
    let mut d = Dissector::new();
    let mut obs = Vec::new();
    for data in &frames {
        let frame = Frame {
            timestamp_ns: 1,
            direction: Direction::Up,
            data,
        };
        d.dissect(&frame, &mut obs);
    }
    let mut ev = Evidence::default();
    for o in &obs {
        ev.absorb(o);
    }
    if let Some(loc) = ev.ssdp_locations.first().cloned() {
        let (_, path) = upnp::parse_location(&loc).unwrap();
        let resp = p.http_response(&path, ip);
        let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        ev.absorb_upnp(&upnp::parse_description(&resp[at..]).unwrap());
    }
    for name in remote_names(p.name) {
        ev.note_domain(name);
    }
    identify(mac, &ev)
}

/// Whom each simulated device talks to on the internet (names the lab's
/// DNS server answers with the wan namespace's servers).
fn remote_names(profile: &str) -> &'static [&'static str] {
    match profile {
        "camera" => &["p2p.reolink.com", "pool.ntp.org"],
        "plug" => &["api.xbcs.net", "pool.ntp.org"],
        "speaker" => &["api.sonos.com", "avs-alexa-na.amazon.com"],
        "tv" => &["api.roku.com", "scribe.logs.roku.com", "doubleclick.net"],
        "printer" => &["hpeprint.com"],
        "phone" => &["gateway.icloud.com", "courier.push.apple.com"],
        _ => &["www.example.com"],
    }
}

struct Home {
    _dir: tempfile::TempDir,
    store: Store,
    devices: Vec<(Profile, u8)>,
    identities: BTreeMap<Mac, Identity>,
    labels: BTreeMap<Mac, String>,
}

fn record(device: IpAddr, remote: IpAddr, port: u16, name: Option<&str>, n: u64) -> FlowRecord {
    FlowRecord {
        device_ip: Some(device),
        remote_ip: Some(remote),
        proto: if port == 53 || port == 123 { 17 } else { 6 },
        remote_port: port,
        bytes_up: 300 + n * 7,
        bytes_down: 2_000 + n * 13,
        packets_up: 3,
        packets_down: 4,
        flows: 1,
        name: name.map(str::to_string),
        name_source: name.map(|_| "dns".to_string()),
    }
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    let devices: Vec<(Profile, u8)> = PROFILES
        .iter()
        .filter(|n| **n != "hostile")
        .enumerate()
        .map(|(i, n)| (profile(n).unwrap(), 10 + i as u8))
        .collect();
    let servers: [IpAddr; 3] = [
        SERVER_V4.parse().unwrap(),
        SERVER2_V4.parse().unwrap(),
        SERVER_V6.parse().unwrap(),
    ];
    let gw: IpAddr = GW_V4.parse().unwrap();
    for w in 0..WINDOWS {
        let mut commit = WindowCommit {
            start: T0 + w * 5,
            secs: 5,
            ..Default::default()
        };
        for (k, (p, host)) in devices.iter().enumerate() {
            let mac: Mac = p.mac.parse().unwrap();
            let v4 = IpAddr::V4(ip4(*host));
            let v6 = IpAddr::V6(ip6(*host as u16));
            let mut recs = vec![record(v4, gw, 53, None, w)];
            for (j, name) in remote_names(p.name).iter().enumerate() {
                let dev = if j % 2 == 0 { v4 } else { v6 };
                let srv = servers[(j + k) % 3];
                // Keep the address family of device and server together.
                let dev = if srv.is_ipv6() {
                    v6
                } else {
                    if dev.is_ipv6() { v4 } else { dev }
                };
                recs.push(record(dev, srv, 443, Some(name), w));
            }
            // LAN peers: the phone casts to the TV by its mDNS name.
            if p.name == "phone" {
                let tv = devices.iter().find(|(q, _)| q.name == "tv").unwrap();
                recs.push(record(
                    v4,
                    IpAddr::V4(ip4(tv.1)),
                    8060,
                    Some(&format!("{}.local", tv.0.mdns_host)),
                    w,
                ));
            }
            commit.per_device.insert(mac, recs);
        }
        commit.devices = devices
            .iter()
            .map(|(p, host)| DeviceRecord {
                mac: p.mac.parse().unwrap(),
                first_seen: T0,
                last_seen: T0 + w * 5 + 5,
                ips: vec![IpAddr::V4(ip4(*host)), IpAddr::V6(ip6(*host as u16))],
                ..Default::default()
            })
            .collect();
        store.commit_window(&commit, Retention::default()).unwrap();
    }
    let mut identities = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for (p, host) in &devices {
        let mac: Mac = p.mac.parse().unwrap();
        identities.insert(mac, identity_of(p, *host));
        // Labels as owners type them, one with an owner's name in it.
        let label = match p.name {
            "plug" => "wemo mini",
            "tv" => "Roku Ultra",
            "phone" => "Jane's iPhone",
            "speaker" => "sonos one",
            _ => continue,
        };
        labels.insert(mac, label.to_string());
    }
    Home {
        _dir: dir,
        store,
        devices,
        identities,
        labels,
    }
}

fn export_bytes(h: &Home, format: Format, salt: [u8; 32]) -> (Vec<u8>, export::ExportSummary) {
    let opts = ExportOptions::new(T0, T0 + WINDOWS * 5, format, salt);
    let mut out = Vec::new();
    let s = export::write(&h.store, &opts, &h.identities, &h.labels, &mut out).unwrap();
    (out, s)
}

fn find(hay: &[u8], needle: &str) -> bool {
    let n = needle.to_ascii_lowercase();
    String::from_utf8_lossy(hay)
        .to_ascii_lowercase()
        .contains(&n)
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Binary spellings too: MessagePack would carry an address or a MAC as
/// raw bytes if the schema ever let one through.
fn find_raw(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_export_carries_no_mac_no_lan_address_no_host_name_and_round_trips() {
    let h = home();
    let salt = [0x5a; 32];
    for format in Format::ALL {
        let (bytes, summary) = export_bytes(&h, format, salt);
        assert_eq!(summary.devices, h.devices.len());
        assert_eq!(summary.windows, WINDOWS * h.devices.len() as u64);
        assert!(summary.rows > summary.windows);
        for (p, host) in &h.devices {
            let mac: Mac = p.mac.parse().unwrap();
            for spelling in export::mac_spellings(mac) {
                assert!(!find(&bytes, &spelling), "{format:?}: MAC {spelling}");
            }
            assert!(
                !find_raw(&bytes, &mac.0),
                "{format:?}: raw MAC of {}",
                p.name
            );
            for lan in [ip4(*host).to_string(), ip6(*host as u16).to_string()] {
                assert!(!find(&bytes, &lan), "{format:?}: LAN address {lan}");
            }
            assert!(
                !find(&bytes, p.dhcp_hostname),
                "{format:?}: {}",
                p.dhcp_hostname
            );
            assert!(!find(&bytes, &p.mdns_host), "{format:?}: {}", p.mdns_host);
        }
        assert!(!find(&bytes, GW_V4), "{format:?}: the router's address");
        assert!(!find(&bytes, "Jane"), "{format:?}: the owner's name");
        // What researchers need is there.
        assert!(find(&bytes, SERVER_V4) && find(&bytes, SERVER_V6));
        assert!(find(&bytes, "api.xbcs.net"));
        assert!(find(&bytes, "Belkin"));

        let e = export::read(&bytes, format).unwrap();
        assert_eq!(e.header.schema_version, export::SCHEMA_VERSION);
        assert_eq!(e.devices.len(), h.devices.len());
        assert_eq!(e.windows.len() as u64, summary.rows);
        let stored: u64 = h
            .store
            .windows(iot_inspector::store::Tier::Raw, T0, T0 + WINDOWS * 5, None)
            .unwrap()
            .iter()
            .flat_map(|w| &w.records)
            .map(|r| r.bytes_up + r.bytes_down)
            .sum();
        let exported: u64 = e.windows.iter().map(|w| w.bytes_up + w.bytes_down).sum();
        assert_eq!(exported, stored, "{format:?}: every byte counted once");
        let plug_id = export::device_id(&salt, h.devices[1].0.mac.parse().unwrap());
        let plug = e.devices.iter().find(|d| d.device == plug_id).unwrap();
        assert_eq!(plug.kind, iot_inspector::identify::Kind::Plug);
        assert_eq!(
            plug.label.as_ref().and_then(|l| l.product_id.as_deref()),
            Some("belkin_wemo_plug")
        );
        // Re-encoding what was read gives the same bytes back (modulo
        // nothing: the reader loses no field).
        let jsonl = export::read(&export_bytes(&h, Format::Jsonl, salt).0, Format::Jsonl).unwrap();
        assert_eq!(jsonl.devices, e.devices, "{format:?}");
        assert_eq!(jsonl.windows, e.windows, "{format:?}");
    }
}

#[test]
fn two_installations_hash_the_same_mac_differently() {
    let h = home();
    let a = export::read(&export_bytes(&h, Format::Jsonl, [1; 32]).0, Format::Jsonl).unwrap();
    let b = export::read(&export_bytes(&h, Format::Jsonl, [2; 32]).0, Format::Jsonl).unwrap();
    let ids = |e: &export::Export| -> Vec<String> {
        e.devices.iter().map(|d| d.device.clone()).collect()
    };
    let (ia, ib) = (ids(&a), ids(&b));
    assert_eq!(ia.len(), ib.len());
    assert!(ia.iter().all(|x| !ib.contains(x)), "{ia:?} / {ib:?}");
    assert_ne!(a.header.installation, b.header.installation);
    // The same installation is stable from one export to the next.
    let a2 = export::read(&export_bytes(&h, Format::Jsonl, [1; 32]).0, Format::Jsonl).unwrap();
    assert_eq!(ids(&a2), ia);
}

#[test]
fn a_wrong_label_in_the_home_raises_a_warning_that_names_the_evidence() {
    let h = home();
    let plug = &h.devices[1];
    assert_eq!(plug.0.name, "plug");
    let mac: Mac = plug.0.mac.parse().unwrap();
    let windows = h
        .store
        .windows(
            iot_inspector::store::Tier::Raw,
            T0,
            T0 + WINDOWS * 5,
            Some(mac),
        )
        .unwrap();
    let parties = labels::parties_of(windows.iter().flat_map(|w| &w.records));
    let id = &h.identities[&mac];
    // Wrong: the owner called the Wemo plug a Hue bridge.
    let w = labels::check(&labels::normalise("Philips Hue bridge"), id, &parties);
    let v = w
        .iter()
        .find(|w| w.code == "vendor_not_seen")
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(v.text.contains("Belkin"), "{}", v.text);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("upnp manufacturer `Belkin International Inc.`")),
        "{:?}",
        v.evidence
    );
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("vendor cloud: Belkin")),
        "{:?}",
        v.evidence
    );
    // Right: nothing to say.
    for right in ["wemo mini", "Belkin WeMo plug", "wemo"] {
        assert_eq!(
            labels::check(&labels::normalise(right), id, &parties),
            vec![],
            "{right}"
        );
    }
    // And the suggestion for it unlabelled is the Wemo.
    let s = labels::suggest(id, 3);
    assert_eq!(s[0].product.id, "belkin_wemo_plug", "{s:#?}");
}
