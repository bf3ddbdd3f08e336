//! What is this device? Evidence gathered from what a device says about
//! itself (DHCP, mDNS/DNS-SD, SSDP/UPnP, HTTP user agents), its MAC vendor
//! and the vendor clouds it contacts, combined into a kind, vendor and
//! model with a confidence and the signals that led there.
//!
//! The knowledge (which service type means what, ...) is data under
//! `data/identify/*.toml`, see [`rules`].

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dissect::{Mac, Observation, Packet, ssdp::SsdpKind};

pub mod kind;
pub mod leases;
pub mod oui;
pub mod rules;
pub mod text;
pub mod upnp;

#[cfg(test)]
pub(crate) mod testutil;

pub use kind::Kind;
use oui::MacVendor;
use rules::{Rule, TxtField, knowledge};
use text::{MAX_TEXT, push_bounded};

/// The device a frame speaks for: its sender, unless that is a group
/// address. The IP is the sender's, unless unspecified (DHCP DISCOVER).
pub(crate) fn sender(p: &Packet<'_>) -> Option<(Mac, Option<IpAddr>)> {
    if p.src_mac.is_group() {
        return None;
    }
    let ip = (!p.src_ip.is_unspecified()).then_some(p.src_ip);
    Some((p.src_mac, ip))
}

/// Items kept per list of [`Evidence`] (names, services, ...).
pub const MAX_ITEMS: usize = 16;
/// Domains kept per device.
pub const MAX_DOMAINS: usize = 256;
/// TXT key/values kept per device.
pub const MAX_TXT: usize = 64;

/// Everything a device has said about itself, deduplicated and bounded
/// (every list is capped; every text is at most [`MAX_TEXT`] bytes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    pub dhcp_hostnames: Vec<String>,
    pub dhcp_vendor_classes: Vec<String>,
    /// Option 55 lists, as "1,3,6,15".
    pub dhcp_fingerprints: Vec<String>,
    pub dhcpv6_fqdns: Vec<String>,
    pub dhcpv6_vendor_classes: Vec<String>,
    pub lease_hostnames: Vec<String>,
    pub mdns_services: Vec<String>,
    pub mdns_instances: Vec<String>,
    pub mdns_hosts: Vec<String>,
    /// `service key=value` TXT entries.
    pub mdns_txt: Vec<crate::dissect::mdns::TxtEntry>,
    /// SSDP NT/ST/USN of NOTIFYs and search responses.
    pub ssdp_types: Vec<String>,
    pub ssdp_servers: Vec<String>,
    pub ssdp_locations: Vec<String>,
    pub user_agents: Vec<String>,
    pub upnp: Option<upnp::UpnpDescription>,
    pub domains: Vec<String>,
    /// Items dropped at a cap.
    pub dropped: u64,
}

impl Evidence {
    /// The names the device gave itself (DHCP, DHCPv6, leases, mDNS, UPnP),
    /// as received: shown to the owner as inert text.
    pub fn self_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let upnp = self.upnp.as_ref().and_then(|u| u.friendly_name.clone());
        for n in self
            .dhcp_hostnames
            .iter()
            .chain(&self.lease_hostnames)
            .chain(&self.dhcpv6_fqdns)
            .chain(&self.mdns_instances)
            .chain(&self.mdns_hosts)
            .chain(upnp.iter())
        {
            if !out.contains(n) && out.len() < MAX_ITEMS {
                out.push(n.clone());
            }
        }
        out
    }

    /// Takes in what an observation says about its device (the caller
    /// routes observations to the evidence of `obs`'s MAC).
    pub fn absorb(&mut self, obs: &Observation) {
        let d = &mut self.dropped;
        match obs {
            Observation::Seen { .. } => {}
            Observation::Dhcp(r) => {
                if let Some(h) = &r.hostname {
                    push_bounded(&mut self.dhcp_hostnames, h.clone(), MAX_ITEMS, d);
                }
                if let Some(v) = &r.vendor_class {
                    push_bounded(&mut self.dhcp_vendor_classes, v.clone(), MAX_ITEMS, d);
                }
                if !r.param_request_list.is_empty() {
                    let fp: Vec<String> = r.param_request_list.iter().map(u8::to_string).collect();
                    push_bounded(&mut self.dhcp_fingerprints, fp.join(","), MAX_ITEMS, d);
                }
            }
            Observation::Dhcpv6(r) => {
                if let Some(f) = &r.fqdn {
                    push_bounded(&mut self.dhcpv6_fqdns, f.clone(), MAX_ITEMS, d);
                }
                if let Some(v) = &r.vendor_class {
                    push_bounded(&mut self.dhcpv6_vendor_classes, v.clone(), MAX_ITEMS, d);
                }
            }
            Observation::Mdns(m) => {
                for s in &m.services {
                    push_bounded(&mut self.mdns_services, s.clone(), MAX_ITEMS, d);
                }
                for s in &m.instances {
                    push_bounded(&mut self.mdns_instances, s.clone(), MAX_ITEMS, d);
                }
                for s in &m.hosts {
                    push_bounded(&mut self.mdns_hosts, s.clone(), MAX_ITEMS, d);
                }
                for t in &m.txt {
                    if self.mdns_txt.contains(t) {
                        continue;
                    }
                    if self.mdns_txt.len() >= MAX_TXT {
                        *d += 1;
                        break;
                    }
                    self.mdns_txt.push(t.clone());
                }
            }
            Observation::Ssdp(m) => {
                if let Some(ua) = &m.user_agent {
                    push_bounded(&mut self.user_agents, ua.clone(), MAX_ITEMS, d);
                }
                // What a device searches for says what it wants, not what it is.
                if m.message == SsdpKind::Search {
                    return;
                }
                for t in [&m.nt, &m.usn].into_iter().flatten() {
                    push_bounded(&mut self.ssdp_types, t.clone(), MAX_ITEMS, d);
                }
                if let Some(s) = &m.server {
                    push_bounded(&mut self.ssdp_servers, s.clone(), MAX_ITEMS, d);
                }
                if let Some(l) = &m.location {
                    push_bounded(&mut self.ssdp_locations, l.clone(), MAX_ITEMS, d);
                }
            }
            Observation::HttpRequest(r) => {
                if let Some(ua) = &r.user_agent {
                    push_bounded(&mut self.user_agents, ua.clone(), MAX_ITEMS, d);
                }
                if let Some(h) = &r.host {
                    let host = match h.rsplit_once(':') {
                        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                        _ => h.as_str(),
                    };
                    if host.parse::<IpAddr>().is_err() && !host.starts_with('[') {
                        self.note_domain(host);
                    }
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// A name the device contacted (DNS question/answer, TLS/QUIC SNI, HTTP Host).
    pub fn note_domain(&mut self, domain: &str) {
        let mut t = 0;
        let name =
            text::bounded_str(domain.trim_end_matches('.'), MAX_TEXT, &mut t).to_ascii_lowercase();
        push_bounded(&mut self.domains, name, MAX_DOMAINS, &mut self.dropped);
    }

    /// A host name from the DHCP server's lease table.
    pub fn note_lease(&mut self, lease: &leases::Lease) {
        if let Some(h) = &lease.hostname {
            push_bounded(
                &mut self.lease_hostnames,
                h.clone(),
                MAX_ITEMS,
                &mut self.dropped,
            );
        }
    }

    /// The device's own UPnP description (fetched from its SSDP LOCATION).
    pub fn absorb_upnp(&mut self, description: &upnp::UpnpDescription) {
        self.upnp = Some(description.clone());
    }
}

/// One piece of evidence and what it pointed to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Where it came from: "dhcp hostname", "mdns service", "ssdp server",
    /// "oui", "user agent", "contacted domain", ...
    pub source: String,
    /// What the device said.
    pub value: String,
    /// What it pointed to ("plug/switch, Belkin").
    pub suggests: String,
    pub weight: f32,
}

/// The answer to "what is this device?".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub kind: Kind,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// 0..1: how sure the kind is.
    pub confidence: f32,
    /// The signals, strongest first.
    pub evidence: Vec<Signal>,
}

/// Collects suggestions and combines them.
#[derive(Default)]
struct Tally {
    /// Noisy-OR of the weights suggesting each kind.
    kinds: HashMap<Kind, f32>,
    /// Noisy-OR per vendor, and whether it is a chip maker.
    vendors: HashMap<String, (f32, bool)>,
    /// Model names with their weight, and whether the device itself said
    /// it (its own words beat a product name from the knowledge files).
    models: Vec<(String, f32, bool)>,
    signals: Vec<Signal>,
}

fn or(acc: &mut f32, w: f32) {
    *acc = 1.0 - (1.0 - *acc) * (1.0 - w.clamp(0.0, 0.99));
}

struct Suggestion<'a> {
    kind: Option<Kind>,
    vendor: Option<&'a str>,
    model: Option<&'a str>,
    chip: bool,
    weight: f32,
    /// The model text is the device's own (TXT, UPnP), not a rule's.
    reported: bool,
}

impl Tally {
    fn add(&mut self, source: &str, value: &str, s: Suggestion<'_>) {
        let mut parts = Vec::new();
        if let Some(k) = s.kind {
            or(self.kinds.entry(k).or_default(), s.weight);
            parts.push(k.label().to_string());
        }
        if let Some(v) = s.vendor {
            let e = self.vendors.entry(v.to_string()).or_insert((0.0, s.chip));
            or(&mut e.0, s.weight);
            e.1 &= s.chip;
            parts.push(if s.chip {
                format!("{v} (chip/module maker)")
            } else {
                v.to_string()
            });
        }
        if let Some(m) = s.model {
            self.models.push((m.to_string(), s.weight, s.reported));
            parts.push(format!("model {m}"));
        }
        self.signals.push(Signal {
            source: source.into(),
            value: value.into(),
            suggests: parts.join(", "),
            weight: s.weight,
        });
    }

    fn rule(&mut self, source: &str, value: &str, rules: &[Rule]) {
        for r in rules.iter().filter(|r| r.matches(value)) {
            self.add(
                source,
                value,
                Suggestion {
                    kind: r.kind,
                    vendor: r.vendor.as_deref(),
                    model: r.model.as_deref(),
                    chip: false,
                    weight: r.weight,
                    reported: false,
                },
            );
        }
    }
}

/// Identifies the device `mac` from its evidence.
pub fn identify(mac: Mac, ev: &Evidence) -> Identity {
    let k = knowledge();
    let mut t = Tally::default();

    match oui::lookup(mac) {
        MacVendor::Vendor { name, chip, kind } => {
            let weight = if chip { 0.2 } else { 0.5 };
            t.add(
                "oui",
                &mac.to_string(),
                Suggestion {
                    kind: None,
                    vendor: Some(name),
                    model: None,
                    chip,
                    weight,
                    reported: false,
                },
            );
            if let Some(kind) = kind {
                t.add(
                    "oui",
                    &mac.to_string(),
                    Suggestion {
                        kind: Some(kind),
                        vendor: None,
                        model: None,
                        chip,
                        weight: 0.3,
                        reported: false,
                    },
                );
            }
        }
        MacVendor::Randomised => t.signals.push(Signal {
            source: "oui".into(),
            value: mac.to_string(),
            suggests: "randomised (private) address: the vendor cannot be told from it".into(),
            weight: 0.0,
        }),
        MacVendor::Unknown => {}
    }

    let names = ev
        .dhcp_hostnames
        .iter()
        .map(|v| ("dhcp hostname", v.as_str()))
        .chain(
            ev.lease_hostnames
                .iter()
                .map(|v| ("dhcp lease", v.as_str())),
        )
        .chain(
            ev.dhcpv6_fqdns
                .iter()
                .map(|v| ("dhcpv6 fqdn", v.split('.').next().unwrap_or(v))),
        )
        .chain(ev.mdns_hosts.iter().map(|v| ("mdns host", v.as_str())))
        .chain(
            ev.mdns_instances
                .iter()
                .map(|v| ("mdns instance", v.as_str())),
        );
    // The same name from several sources counts once.
    let mut seen_names: Vec<String> = Vec::new();
    for (source, name) in names {
        let lower = name.to_ascii_lowercase();
        if seen_names.contains(&lower) {
            continue;
        }
        seen_names.push(lower);
        t.rule(source, name, &k.names.hostname);
    }
    for v in ev
        .dhcp_vendor_classes
        .iter()
        .chain(&ev.dhcpv6_vendor_classes)
    {
        t.rule("dhcp vendor class", v, &k.dhcp.vendor_class);
    }
    for fp in &ev.dhcp_fingerprints {
        let prl: Vec<u8> = fp.split(',').filter_map(|n| n.parse().ok()).collect();
        for r in k.dhcp.fingerprint.iter().filter(|r| r.matches(&prl)) {
            t.add(
                "dhcp fingerprint",
                fp,
                Suggestion {
                    kind: r.kind,
                    vendor: r.vendor.as_deref(),
                    model: None,
                    chip: false,
                    weight: r.weight,
                    reported: false,
                },
            );
        }
    }
    for s in &ev.mdns_services {
        t.rule("mdns service", s, &k.mdns.service);
    }
    for e in &ev.mdns_txt {
        for r in k
            .mdns
            .txt
            .iter()
            .filter(|r| r.key.eq_ignore_ascii_case(&e.key))
        {
            let value = format!("{}={}", e.key, e.value);
            if e.value.trim().is_empty() {
                continue;
            }
            match r.field {
                TxtField::Vendor => vendor_text(&mut t, "mdns txt", &value, &e.value, r.weight),
                TxtField::Model => {
                    model_text(&mut t, "mdns txt", &value, &e.value, &e.value, r.weight)
                }
            }
        }
    }
    for s in &ev.ssdp_types {
        t.rule("ssdp type", s, &k.ssdp.device_type);
    }
    for s in &ev.ssdp_servers {
        t.rule("ssdp server", s, &k.ssdp.server);
    }
    for ua in &ev.user_agents {
        t.rule("user agent", ua, &k.user_agents.user_agent);
    }
    if let Some(u) = &ev.upnp {
        if let Some(m) = &u.manufacturer {
            vendor_text(&mut t, "upnp manufacturer", m, m, 0.8);
        }
        if let Some(m) = &u.model_name {
            let full = match &u.model_number {
                Some(n) if !m.contains(n.as_str()) => format!("{m} {n}"),
                _ => m.clone(),
            };
            model_text(&mut t, "upnp model", &full, &full, m, 0.8);
        }
        if let Some(d) = &u.device_type {
            t.rule("upnp device type", d, &k.ssdp.device_type);
        }
        if let Some(f) = &u.friendly_name {
            t.rule("upnp name", f, &k.names.hostname);
        }
    }
    for d in &ev.domains {
        t.rule("contacted domain", d, &k.domains.domain);
    }
    conclude(t)
}

/// A vendor named in text (UPnP manufacturer, TXT usb_MFG ...).
fn vendor_text(t: &mut Tally, source: &str, shown: &str, vendor: &str, weight: f32) {
    let name = knowledge().vendor_name(vendor).unwrap_or(vendor.trim());
    t.add(
        source,
        shown,
        Suggestion {
            kind: None,
            vendor: Some(name),
            model: None,
            chip: false,
            weight,
            reported: false,
        },
    );
}

/// A model named in text: kept as the model; `name` (the model's name
/// without a number) is run through the model rules.
fn model_text(t: &mut Tally, source: &str, shown: &str, model: &str, name: &str, weight: f32) {
    t.add(
        source,
        shown,
        Suggestion {
            kind: None,
            vendor: None,
            model: Some(model.trim()),
            chip: false,
            weight,
            reported: true,
        },
    );
    for r in knowledge()
        .names
        .model
        .iter()
        .filter(|r| r.matches(name.trim()))
    {
        t.add(
            source,
            shown,
            Suggestion {
                kind: r.kind,
                vendor: r.vendor.as_deref(),
                model: r.model.as_deref(),
                chip: false,
                weight: r.weight,
                reported: false,
            },
        );
    }
}

fn conclude(mut t: Tally) -> Identity {
    let mut kinds: Vec<(Kind, f32)> = t.kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (kind, confidence) = match kinds.as_slice() {
        [] => (Kind::Unknown, 0.0),
        [(k, s)] => (*k, *s),
        // A strong rival for the top kind lowers the confidence.
        [(k, s), (_, r), ..] => (*k, (s - r * 0.5).max(0.05)),
    };
    // A chip maker is the vendor only when nothing else names one.
    let mut vendors: Vec<(String, f32, bool)> =
        t.vendors.into_iter().map(|(n, (s, c))| (n, s, c)).collect();
    vendors.sort_by(|a, b| a.2.cmp(&b.2).then(b.1.total_cmp(&a.1)).then(a.0.cmp(&b.0)));
    let vendor = vendors.first().map(|(n, _, chip)| {
        if *chip {
            format!("{n} (Wi-Fi module)")
        } else {
            n.clone()
        }
    });
    let model = t
        .models
        .iter()
        .fold(None::<&(String, f32, bool)>, |best, m| match best {
            Some(b) if (b.2, b.1) >= (m.2, m.1) => Some(b),
            _ => Some(m),
        })
        .map(|(m, _, _)| m.clone());
    t.signals.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    t.signals.truncate(32);
    Identity {
        kind,
        vendor,
        model,
        confidence: confidence.clamp(0.0, 1.0),
        evidence: t.signals,
    }
}

#[cfg(test)]
mod tests;
