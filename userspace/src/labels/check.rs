//! Warnings on labels that contradict what a device does or says: a
//! "smart fan" that talks to Android services and many advertisers, a
//! "Philips Hue" whose every signal says TP-Link. Each warning names the
//! evidence so the owner can confirm the label or fix it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Catalogue, Normalised, kinds_compatible};
use crate::explain::Category;
use crate::identify::{Identity, Kind};
use crate::store::FlowRecord;

/// Whom a device talks to, summed per organisation and category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartySummary {
    pub organisation: Option<String>,
    pub category: Category,
    pub bytes: u64,
}

/// One reason to doubt a label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// `traffic_contradicts_kind`, `identity_contradicts_kind`,
    /// `vendor_not_seen`.
    pub code: String,
    /// One or two plain sentences.
    pub text: String,
    /// The signals and parties behind it.
    pub evidence: Vec<String>,
}

/// Kinds of single-purpose devices: they talk to their maker's cloud, a
/// clock and a few services, not to app stores and ad networks.
const SINGLE_PURPOSE: &[Kind] = &[
    Kind::Camera,
    Kind::Doorbell,
    Kind::Lock,
    Kind::GarageDoor,
    Kind::Plug,
    Kind::Light,
    Kind::Sensor,
    Kind::Thermostat,
    Kind::Hub,
    Kind::Appliance,
    Kind::Health,
    Kind::Printer,
];

/// Identification this sure of a kind outweighs a label.
const SURE: f32 = 0.6;

/// Sums flow records into parties, explained by the knowledge base in
/// force (names first, else the address).
pub fn parties_of<'a>(records: impl IntoIterator<Item = &'a FlowRecord>) -> Vec<PartySummary> {
    let kb = crate::explain::current();
    let mut sums: BTreeMap<(Option<String>, Category), u64> = BTreeMap::new();
    let mut cache: BTreeMap<String, (Option<String>, Category)> = BTreeMap::new();
    for r in records {
        let key = match (&r.name, r.remote_ip) {
            (Some(n), _) => n.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => continue,
        };
        let (org, cat) = cache
            .entry(key)
            .or_insert_with(|| {
                let e = match (&r.name, r.remote_ip) {
                    (Some(n), _) => kb.explain(n, &[], None),
                    (None, Some(ip)) => kb.explain_address(ip),
                    (None, None) => unreachable!("skipped above"),
                };
                (e.organisation, e.category)
            })
            .clone();
        *sums.entry((org, cat)).or_default() += r.bytes();
    }
    sums.into_iter()
        .map(|((organisation, category), bytes)| PartySummary {
            organisation,
            category,
            bytes,
        })
        .collect()
}

/// The warnings a label raises against a device's identification and the
/// parties it talks to; none for a label that fits.
pub fn check(label: &Normalised, identity: &Identity, parties: &[PartySummary]) -> Vec<Warning> {
    Catalogue::builtin().check(label, identity, parties)
}

fn kb(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

impl Catalogue {
    /// See [`check`].
    pub fn check(
        &self,
        label: &Normalised,
        identity: &Identity,
        parties: &[PartySummary],
    ) -> Vec<Warning> {
        let mut out = Vec::new();
        let shown = match &label.entry {
            Some(p) if p.display_name().to_lowercase() != label.typed.trim().to_lowercase() => {
                format!("“{}” ({})", label.typed.trim(), p.display_name())
            }
            _ => format!("“{}”", label.typed.trim()),
        };
        if let Some(kind) = label.kind {
            if let Some(w) = self.traffic_contradicts(&shown, kind, parties) {
                out.push(w);
            }
            if identity.kind != Kind::Unknown
                && identity.confidence >= SURE
                && !kinds_compatible(kind, identity.kind)
            {
                let evidence: Vec<String> = identity
                    .evidence
                    .iter()
                    .filter(|s| s.suggests.contains(identity.kind.label()))
                    .take(4)
                    .map(|s| format!("{} `{}` suggests {}", s.source, s.value, s.suggests))
                    .collect();
                out.push(Warning {
                    code: "identity_contradicts_kind".into(),
                    text: format!(
                        "Labelled {shown}, a {}, but its identification says {} ({:.0} % sure).",
                        kind.label(),
                        identity.kind.label(),
                        identity.confidence * 100.0
                    ),
                    evidence,
                });
            }
        }
        let generic = label.entry.as_ref().is_some_and(|p| p.generic);
        if let Some(vendor) = label.vendor.as_deref().and_then(|v| self.vendor(v))
            && !generic
            && let Some(w) = self.vendor_not_seen(&shown, vendor, identity, parties)
        {
            out.push(w);
        }
        out
    }

    fn traffic_contradicts(
        &self,
        shown: &str,
        kind: Kind,
        parties: &[PartySummary],
    ) -> Option<Warning> {
        if !SINGLE_PURPOSE.contains(&kind) {
            return None;
        }
        let mut advertisers: BTreeMap<&str, u64> = BTreeMap::new();
        let mut phone_os: BTreeMap<&str, u64> = BTreeMap::new();
        for p in parties {
            let Some(org) = p.organisation.as_deref() else {
                continue;
            };
            if matches!(
                p.category,
                Category::Advertising | Category::TrackingAnalytics
            ) {
                *advertisers.entry(org).or_default() += p.bytes;
            }
            if self
                .warnings
                .phone_os_organisations
                .iter()
                .any(|o| o.eq_ignore_ascii_case(org))
            {
                *phone_os.entry(org).or_default() += p.bytes;
            }
        }
        let many_ads = advertisers.len() >= self.warnings.advertisers_for_warning;
        if !many_ads && phone_os.is_empty() {
            return None;
        }
        let mut what = Vec::new();
        if !phone_os.is_empty() {
            let names: Vec<&str> = phone_os.keys().copied().collect();
            what.push(format!("phone and tablet services ({})", names.join(", ")));
        }
        if many_ads {
            what.push(format!(
                "{} advertising or tracking companies",
                advertisers.len()
            ));
        }
        let evidence = phone_os
            .iter()
            .map(|(o, b)| format!("phone/tablet service: {o}, {}", kb(*b)))
            .chain(
                advertisers
                    .iter()
                    .filter(|_| many_ads)
                    .map(|(o, b)| format!("advertising/tracking: {o}, {}", kb(*b))),
            )
            .collect();
        Some(Warning {
            code: "traffic_contradicts_kind".into(),
            text: format!(
                "Labelled {shown}, a {}, but it talks to {}: that is what phones, tablets, computers and TVs do. Is the label right?",
                kind.label(),
                what.join(" and ")
            ),
            evidence,
        })
    }

    fn vendor_not_seen(
        &self,
        shown: &str,
        vendor: &super::Vendor,
        identity: &Identity,
        parties: &[PartySummary],
    ) -> Option<Warning> {
        let seen = identity
            .vendor
            .as_deref()
            .is_some_and(|v| self.mentions_vendor(vendor, v))
            || identity.evidence.iter().any(|s| {
                self.mentions_vendor(vendor, &s.suggests) || self.mentions_vendor(vendor, &s.value)
            })
            || parties.iter().any(|p| {
                p.organisation
                    .as_deref()
                    .is_some_and(|o| self.mentions_vendor(vendor, o))
            });
        if seen {
            return None;
        }
        let clouds: Vec<&PartySummary> = parties
            .iter()
            .filter(|p| p.category == Category::VendorCloud && p.organisation.is_some())
            .collect();
        if clouds.is_empty() {
            return None;
        }
        let cloud_names: Vec<&str> = clouds
            .iter()
            .filter_map(|p| p.organisation.as_deref())
            .collect();
        let identified = identity
            .vendor
            .as_deref()
            .map(|v| format!("its identification says {v} and "))
            .unwrap_or_default();
        let mut evidence: Vec<String> = Vec::new();
        if let Some(v) = &identity.vendor {
            evidence.extend(
                identity
                    .evidence
                    .iter()
                    .filter(|s| s.suggests.contains(v.as_str()))
                    .take(3)
                    .map(|s| format!("{} `{}` suggests {}", s.source, s.value, s.suggests)),
            );
        }
        evidence.extend(clouds.iter().map(|p| {
            format!(
                "vendor cloud: {}, {}",
                p.organisation.as_deref().unwrap_or(""),
                kb(p.bytes)
            )
        }));
        Some(Warning {
            code: "vendor_not_seen".into(),
            text: format!(
                "Labelled {shown}, but {} appears in none of its signals; {identified}it talks to the cloud of {}.",
                vendor.name,
                cloud_names.join(", ")
            ),
            evidence,
        })
    }
}
