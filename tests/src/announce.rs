//! What the simulated home's devices announce about themselves that no
//! packaged program sends: mDNS/DNS-SD responses, SSDP NOTIFYs and M-SEARCH
//! answers, and UPnP description documents. `iot-lab-announce` sends them
//! from inside a device namespace; this module holds the profiles and
//! builds the bytes (so they can be tested without namespaces).
//!
//! The DHCP side is done by the real udhcpc against dnsmasq with each
//! profile's [`Profile::dhcp_hostname`] and [`Profile::dhcp_vendor_class`].

use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{A, AAAA, PTR, RData, SRV, TXT};
use simple_dns::{
    CLASS, CharacterString, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, ResourceRecord, TYPE,
};

/// One DNS-SD service instance a device offers.
#[derive(Clone, Debug)]
pub struct Service {
    /// Instance label (may contain spaces, dots, anything: hostile too).
    pub instance: String,
    /// `_ipp._tcp`
    pub service: &'static str,
    pub port: u16,
    /// TXT strings, raw (`key=value`), each at most 255 bytes.
    pub txt: Vec<Vec<u8>>,
}

/// SSDP identity of a UPnP device.
#[derive(Clone, Debug)]
pub struct Ssdp {
    pub server: String,
    /// `uuid:...` (without `::type`).
    pub uuid: String,
    /// Notification types announced besides `upnp:rootdevice` and the uuid.
    pub types: Vec<String>,
    /// Path of the description document on the device's HTTP port.
    pub path: &'static str,
}

/// A simulated device's announcements.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: &'static str,
    /// A MAC for the lab device: a block of the vendor in the OUI table, or
    /// a locally administered (randomised) one.
    pub mac: &'static str,
    /// `udhcpc -x hostname:NAME`
    pub dhcp_hostname: &'static str,
    /// `udhcpc -V VENDOR` (None: udhcpc's default).
    pub dhcp_vendor_class: Option<&'static str>,
    /// mDNS host label (`<label>.local`).
    pub mdns_host: String,
    pub services: Vec<Service>,
    /// Service types the device asks about (mDNS queries).
    pub queries: Vec<&'static str>,
    pub ssdp: Option<Ssdp>,
    /// UPnP description XML (`{ip}` is replaced by the device's address).
    pub description: Option<String>,
    /// What identification should conclude: (kind, vendor, model).
    pub expect: (&'static str, Option<&'static str>, Option<&'static str>),
}

pub const PROFILES: [&str; 8] = [
    "camera", "plug", "speaker", "tv", "printer", "phone", "laptop", "hostile",
];

fn txt(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn description(
    device_type: &str,
    friendly: &str,
    manufacturer: &str,
    model: &str,
    number: &str,
    udn: &str,
) -> String {
    format!(
        r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <URLBase>http://{{ip}}:49152/</URLBase>
  <device>
    <deviceType>{device_type}</deviceType>
    <friendlyName>{friendly}</friendlyName>
    <manufacturer>{manufacturer}</manufacturer>
    <modelName>{model}</modelName>
    <modelNumber>{number}</modelNumber>
    <UDN>{udn}</UDN>
  </device>
</root>
"#
    )
}

/// The billion-laughs document the hostile profile serves.
pub const XML_BOMB: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<root><device><friendlyName>&lol9;</friendlyName><manufacturer>&lol9;</manufacturer></device></root>
"#;

/// The HTML payload hostile names carry.
pub const HTML: &str = "<img src=x onerror=alert(1)>";

/// The profile called `name`.
pub fn profile(name: &str) -> Option<Profile> {
    let p = match name {
        // A Reolink-like Wi-Fi camera: RTSP over mDNS, a UPnP camera device.
        "camera" => Profile {
            name: "camera",
            mac: "ec:71:db:31:00:10",
            dhcp_hostname: "Reolink-E1-Pro",
            dhcp_vendor_class: None,
            mdns_host: "Reolink-E1-Pro".into(),
            services: vec![Service {
                instance: "Reolink E1 Pro".into(),
                service: "_rtsp._tcp",
                port: 554,
                txt: txt(&["path=/h264Preview_01_main"]),
            }],
            queries: vec![],
            ssdp: Some(Ssdp {
                server: "Linux/4.19 UPnP/1.0 Reolink/3.0".into(),
                uuid: "uuid:2b7ac1b4-5a51-4d1e-9a6e-ec71db310010".into(),
                types: vec!["urn:schemas-upnp-org:device:DigitalSecurityCamera:1".into()],
                path: "/description.xml",
            }),
            description: Some(description(
                "urn:schemas-upnp-org:device:DigitalSecurityCamera:1",
                "Front Door Camera",
                "Reolink",
                "E1 Pro",
                "E1-Pro-V2",
                "uuid:2b7ac1b4-5a51-4d1e-9a6e-ec71db310010",
            )),
            expect: ("camera", Some("Reolink"), Some("E1 Pro E1-Pro-V2")),
        },
        // A Belkin Wemo-like plug on an Espressif module.
        "plug" => Profile {
            name: "plug",
            mac: "24:0a:c4:31:00:11",
            dhcp_hostname: "wemo-plug-1A2B",
            dhcp_vendor_class: None,
            mdns_host: "wemo-plug-1A2B".into(),
            services: vec![Service {
                instance: "Wemo Mini 1A2B".into(),
                service: "_hap._tcp",
                port: 49153,
                txt: txt(&[
                    "c#=2",
                    "ff=1",
                    "id=3A:1B:2C:4D:5E:6F",
                    "md=Wemo Mini",
                    "pv=1.1",
                    "s#=1",
                    "sf=0",
                    "ci=7",
                ]),
            }],
            queries: vec![],
            ssdp: Some(Ssdp {
                server: "Unspecified, UPnP/1.0, Unspecified".into(),
                uuid: "uuid:Socket-1_0-221517K0101769".into(),
                types: vec![
                    "urn:Belkin:device:controllee:1".into(),
                    "urn:Belkin:service:basicevent:1".into(),
                ],
                path: "/setup.xml",
            }),
            description: Some(description(
                "urn:Belkin:device:controllee:1",
                "Kitchen Kettle",
                "Belkin International Inc.",
                "Socket",
                "1.0",
                "uuid:Socket-1_0-221517K0101769",
            )),
            expect: ("plug", Some("Belkin"), Some("Socket 1.0")),
        },
        // A Sonos-like speaker.
        "speaker" => Profile {
            name: "speaker",
            mac: "00:0e:58:31:00:12",
            dhcp_hostname: "SonosZP",
            dhcp_vendor_class: None,
            mdns_host: "Sonos-000E58310012".into(),
            services: vec![
                Service {
                    instance: "RINCON_000E5831001201400@Living Room".into(),
                    service: "_sonos._tcp",
                    port: 1443,
                    txt: txt(&[
                        "info=/api/v1/players/RINCON_000E5831001201400/info",
                        "vers=3",
                        "protovers=1.40.0",
                    ]),
                },
                Service {
                    instance: "Living Room".into(),
                    service: "_spotify-connect._tcp",
                    port: 1400,
                    txt: txt(&["CPath=/spotifyzc", "VERSION=1.0"]),
                },
            ],
            queries: vec![],
            ssdp: Some(Ssdp {
                server: "Linux UPnP/1.0 Sonos/70.3-35220 (ZPS39)".into(),
                uuid: "uuid:RINCON_000E5831001201400".into(),
                types: vec!["urn:schemas-upnp-org:device:ZonePlayer:1".into()],
                path: "/xml/device_description.xml",
            }),
            description: Some(description(
                "urn:schemas-upnp-org:device:ZonePlayer:1",
                "192.0.2.12 - Sonos Era 100",
                "Sonos, Inc.",
                "Sonos Era 100",
                "S39",
                "uuid:RINCON_000E5831001201400",
            )),
            expect: ("speaker", Some("Sonos"), Some("Sonos Era 100 S39")),
        },
        // A Roku-like streamer: ECP over SSDP, AirPlay over mDNS.
        "tv" => Profile {
            name: "tv",
            mac: "08:05:81:31:00:13",
            dhcp_hostname: "Roku-Ultra",
            dhcp_vendor_class: None,
            mdns_host: "Roku-Ultra-YH00AB".into(),
            services: vec![Service {
                instance: "Living Room Roku Ultra".into(),
                service: "_airplay._tcp",
                port: 7000,
                txt: txt(&["manufacturer=Roku", "model=4800X", "srcvers=377.40.00"]),
            }],
            queries: vec![],
            ssdp: Some(Ssdp {
                server: "Roku/12.5.0 UPnP/1.0 Roku/12.5.0".into(),
                uuid: "uuid:roku:ecp:YH00AB123456".into(),
                types: vec!["roku:ecp".into()],
                path: "/",
            }),
            description: Some(description(
                "urn:roku-com:device:player:1-0",
                "Living Room Roku Ultra",
                "Roku",
                "Roku Ultra",
                "4800X",
                "uuid:29600009-5406-1005-8080-080581310013",
            )),
            expect: ("tv", Some("Roku"), Some("Roku Ultra 4800X")),
        },
        // An HP-like network printer: IPP Everywhere over mDNS.
        "printer" => Profile {
            name: "printer",
            mac: "00:0f:20:31:00:14",
            dhcp_hostname: "NPI310014",
            dhcp_vendor_class: Some("Hewlett-Packard JetDirect"),
            mdns_host: "HP310014".into(),
            services: vec![
                Service {
                    instance: "HP LaserJet Pro M404dn (310014)".into(),
                    service: "_ipp._tcp",
                    port: 631,
                    txt: txt(&[
                        "txtvers=1",
                        "qtotal=1",
                        "rp=ipp/print",
                        "ty=HP LaserJet Pro M404dn",
                        "product=(HP LaserJet Pro M404dn)",
                        "usb_MFG=HP",
                        "usb_MDL=LaserJet Pro M404dn",
                        "pdl=application/pdf,image/urf,image/pwg-raster",
                        "note=Office",
                    ]),
                },
                Service {
                    instance: "HP LaserJet Pro M404dn (310014)".into(),
                    service: "_pdl-datastream._tcp",
                    port: 9100,
                    txt: txt(&["ty=HP LaserJet Pro M404dn"]),
                },
            ],
            queries: vec![],
            ssdp: None,
            description: None,
            expect: ("printer", Some("HP"), Some("LaserJet Pro M404dn")),
        },
        // An iPhone with a private (randomised) Wi-Fi address.
        "phone" => Profile {
            name: "phone",
            mac: "da:a1:19:31:00:15",
            dhcp_hostname: "Janes-iPhone",
            dhcp_vendor_class: None,
            mdns_host: "Janes-iPhone".into(),
            services: vec![
                Service {
                    instance: "da:a1:19:31:00:15@fe80::d8a1:19ff:fe31:15".into(),
                    service: "_apple-mobdev2._tcp",
                    port: 32498,
                    txt: vec![],
                },
                Service {
                    instance: "Jane's iPhone".into(),
                    service: "_companion-link._tcp",
                    port: 49154,
                    txt: txt(&["rpVr=510.1", "rpFl=0x20000"]),
                },
            ],
            queries: vec!["_googlecast._tcp", "_airplay._tcp"],
            ssdp: None,
            description: None,
            expect: ("phone", Some("Apple"), None),
        },
        // A MacBook.
        "laptop" => Profile {
            name: "laptop",
            mac: "00:03:93:31:00:16",
            dhcp_hostname: "Janes-MacBook-Pro",
            dhcp_vendor_class: None,
            mdns_host: "Janes-MacBook-Pro".into(),
            services: vec![
                Service {
                    instance: "Jane's MacBook Pro".into(),
                    service: "_smb._tcp",
                    port: 445,
                    txt: vec![],
                },
                Service {
                    instance: "Jane's MacBook Pro".into(),
                    service: "_device-info._tcp",
                    port: 0,
                    txt: txt(&["model=MacBookPro18,3", "osxvers=23"]),
                },
            ],
            queries: vec!["_airplay._tcp"],
            ssdp: None,
            description: None,
            expect: ("computer", Some("Apple"), Some("MacBookPro18,3")),
        },
        // Everything a hostile device can put in its announcements.
        "hostile" => {
            // Long TXT entries, but a message that still fits one frame: a
            // larger one is IP-fragmented and only its first fragment
            // reaches the dissector (the 10 kB case is a unit test of
            // dissect::mdns).
            let mut big = Vec::new();
            for i in 0..4 {
                let mut s = format!("k{i:02}=").into_bytes();
                s.resize(250, b'A' + (i % 26) as u8);
                big.push(s);
            }
            big.push(format!("md={HTML}\x1b[2J").into_bytes());
            Profile {
                name: "hostile",
                mac: "02:00:5e:31:00:17",
                dhcp_hostname: "hostile-device",
                dhcp_vendor_class: None,
                mdns_host: "hostile-device".into(),
                services: vec![Service {
                    instance: format!("{HTML}\x07\x1b[31m"),
                    service: "_http._tcp",
                    port: 80,
                    txt: big,
                }],
                queries: vec![],
                ssdp: Some(Ssdp {
                    server: format!("{HTML} UPnP/1.0"),
                    uuid: "uuid:00000000-0000-0000-0000-000000000000".into(),
                    types: vec!["urn:schemas-upnp-org:device:Basic:1".into()],
                    path: "/bomb.xml",
                }),
                description: Some(XML_BOMB.to_string()),
                expect: (
                    "unknown",
                    None,
                    Some("<img src=x onerror=alert(1)>\u{FFFD}[2J"),
                ),
            }
        }
        _ => return None,
    };
    Some(p)
}

/// A malformed mDNS message: a question whose name points at itself.
pub fn mdns_compression_loop() -> Vec<u8> {
    let mut p = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1]);
    p
}

impl Profile {
    /// The mDNS response announcing every service (PTR, SRV, TXT) and the
    /// host's addresses.
    pub fn mdns_announcement(&self, ip: Ipv4Addr, ip6: Option<Ipv6Addr>) -> Vec<u8> {
        let host = format!("{}.local", self.mdns_host);
        let types: Vec<String> = self
            .services
            .iter()
            .map(|s| format!("{}.local", s.service))
            .collect();
        let mut p = Packet::new_reply(0);
        p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        for (s, ty) in self.services.iter().zip(&types) {
            let instance_name = instance_name(&s.instance, s.service);
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked(ty),
                CLASS::IN,
                4500,
                RData::PTR(PTR(instance_name.clone())),
            ));
            p.answers.push(
                ResourceRecord::new(
                    instance_name.clone(),
                    CLASS::IN,
                    120,
                    RData::SRV(SRV {
                        priority: 0,
                        weight: 0,
                        port: s.port,
                        target: Name::new_unchecked(&host),
                    }),
                )
                .with_cache_flush(true),
            );
            let mut t = TXT::new();
            for item in &s.txt {
                if let Ok(cs) = CharacterString::new(item) {
                    t.add_char_string(cs);
                }
            }
            p.answers.push(
                ResourceRecord::new(instance_name, CLASS::IN, 4500, RData::TXT(t))
                    .with_cache_flush(true),
            );
        }
        p.answers.push(
            ResourceRecord::new(
                Name::new_unchecked(&host),
                CLASS::IN,
                120,
                RData::A(A {
                    address: u32::from(ip),
                }),
            )
            .with_cache_flush(true),
        );
        if let Some(v6) = ip6 {
            p.answers.push(
                ResourceRecord::new(
                    Name::new_unchecked(&host),
                    CLASS::IN,
                    120,
                    RData::AAAA(AAAA {
                        address: u128::from(v6),
                    }),
                )
                .with_cache_flush(true),
            );
        }
        p.build_bytes_vec_compressed().unwrap_or_default()
    }

    /// An mDNS query for the profile's service types (None if it asks nothing).
    pub fn mdns_query(&self) -> Option<Vec<u8>> {
        if self.queries.is_empty() {
            return None;
        }
        let names: Vec<String> = self.queries.iter().map(|q| format!("{q}.local")).collect();
        let mut p = Packet::new_query(0);
        for n in &names {
            p.questions.push(Question::new(
                Name::new_unchecked(n),
                QTYPE::TYPE(TYPE::PTR),
                QCLASS::CLASS(CLASS::IN),
                false,
            ));
        }
        p.build_bytes_vec().ok()
    }

    fn location(&self, ip: Ipv4Addr, port: u16) -> Option<String> {
        self.ssdp
            .as_ref()
            .map(|s| format!("http://{ip}:{port}{}", s.path))
    }

    /// (NT, USN) pairs: root device, uuid, and each type.
    fn notification_types(&self) -> Vec<(String, String)> {
        let Some(s) = &self.ssdp else { return vec![] };
        let mut v = vec![
            (
                "upnp:rootdevice".to_string(),
                format!("{}::upnp:rootdevice", s.uuid),
            ),
            (s.uuid.clone(), s.uuid.clone()),
        ];
        for t in &s.types {
            v.push((t.clone(), format!("{}::{t}", s.uuid)));
        }
        v
    }

    /// SSDP NOTIFY ssdp:alive messages.
    pub fn ssdp_notifies(&self, ip: Ipv4Addr, http_port: u16) -> Vec<Vec<u8>> {
        let (Some(s), Some(loc)) = (&self.ssdp, self.location(ip, http_port)) else {
            return vec![];
        };
        self.notification_types()
            .into_iter()
            .map(|(nt, usn)| {
                format!(
                    "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\nLOCATION: {loc}\r\nNT: {nt}\r\nNTS: ssdp:alive\r\nSERVER: {}\r\nUSN: {usn}\r\n\r\n",
                    s.server
                )
                .into_bytes()
            })
            .collect()
    }

    /// The responses to an M-SEARCH request (empty when it is not one or
    /// asks for something else).
    pub fn ssdp_responses(&self, request: &[u8], ip: Ipv4Addr, http_port: u16) -> Vec<Vec<u8>> {
        let (Some(s), Some(loc)) = (&self.ssdp, self.location(ip, http_port)) else {
            return vec![];
        };
        let text = String::from_utf8_lossy(request);
        if !text.starts_with("M-SEARCH * HTTP/1.1") {
            return vec![];
        }
        let st = text
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("st"))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        self.notification_types()
            .into_iter()
            .filter(|(nt, _)| st == "ssdp:all" || *nt == st)
            .map(|(nt, usn)| {
                format!(
                    "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: {loc}\r\nSERVER: {}\r\nST: {nt}\r\nUSN: {usn}\r\n\r\n",
                    s.server
                )
                .into_bytes()
            })
            .collect()
    }

    /// The HTTP response for a request of `path` on the description port.
    pub fn http_response(&self, path: &str, ip: Ipv4Addr) -> Vec<u8> {
        match (&self.ssdp, &self.description) {
            (Some(s), Some(d)) if path == s.path => {
                let body = d.replace("{ip}", &ip.to_string());
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body.as_bytes());
                r
            }
            _ => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
        }
    }
}

/// `Instance._type._proto.local` with the instance as one label, whatever
/// it contains.
fn instance_name<'a>(instance: &'a str, service: &'a str) -> Name<'a> {
    use simple_dns::Label;
    let mut labels = vec![Label::new_unchecked(instance.as_bytes())];
    for part in service.split('.').chain(["local"]) {
        labels.push(Label::new_unchecked(part.as_bytes()));
    }
    Name::new_with_labels(&labels)
}

#[cfg(test)]
mod tests;

/// The BOOTP/DHCP payload udhcpc sends: a DHCPREQUEST with hostname and
/// vendor class (for tests that need a device's DHCP bytes without a client).
pub fn dhcp_request(mac: [u8; 6], hostname: &str, vendor: Option<&str>) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, 3]);
    p.extend_from_slice(&[55, 7, 1, 3, 6, 12, 15, 28, 42]);
    p.push(12);
    p.push(hostname.len() as u8);
    p.extend_from_slice(hostname.as_bytes());
    if let Some(v) = vendor {
        p.push(60);
        p.push(v.len() as u8);
        p.extend_from_slice(v.as_bytes());
    }
    p.push(255);
    p
}
