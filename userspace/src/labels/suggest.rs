//! Label suggestions for a device from its identification: the catalogue
//! entries its vendor, kind, model and own names point to, each with the
//! evidence that led there.

use serde::{Deserialize, Serialize};

use super::{Catalogue, MATCH_SCORE, Product, kinds_compatible};
use crate::identify::{Identity, Kind};

/// One candidate label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub product: Product,
    /// 0..1, for ranking.
    pub score: f32,
    /// The evidence that led here, in plain words.
    pub because: Vec<String>,
}

/// Signal sources whose values are the device's own names or model texts,
/// worth matching against the catalogue's names and hints.
const NAME_SOURCES: &[&str] = &[
    "dhcp hostname",
    "dhcp lease",
    "dhcpv6 fqdn",
    "mdns host",
    "mdns instance",
    "mdns txt",
    "upnp model",
    "upnp name",
    "user agent",
    "ssdp server",
];

/// Whether `hint` starts a word of `value` (lower case): "hp" in
/// "HP-Envy-7640" but not in "iphone".
fn hint_in(value: &str, hint: &str) -> bool {
    let v = value.to_lowercase();
    v.match_indices(hint).any(|(i, _)| {
        i == 0
            || !v[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric())
    })
}

fn or(acc: &mut f32, w: f32) {
    *acc = 1.0 - (1.0 - *acc) * (1.0 - w.clamp(0.0, 0.99));
}

/// Up to `limit` catalogue entries for a device, best first. Only entries
/// with evidence beyond the kind are offered (every camera is not a Wyze
/// Cam), except platform entries (an Android phone) where the kind is all
/// there is to go on.
pub fn suggest(identity: &Identity, limit: usize) -> Vec<Suggestion> {
    Catalogue::builtin().suggest(identity, limit)
}

impl Catalogue {
    /// See [`suggest`].
    pub fn suggest(&self, identity: &Identity, limit: usize) -> Vec<Suggestion> {
        // What the device's own names and model say, matched once each.
        let mut named: Vec<(usize, f32, String)> = Vec::new();
        let mut texts: Vec<(String, String)> = Vec::new();
        if let Some(m) = &identity.model {
            texts.push(("model".into(), m.clone()));
        }
        for s in identity
            .evidence
            .iter()
            .filter(|s| NAME_SOURCES.contains(&s.source.as_str()))
        {
            if !texts.iter().any(|(_, v)| v == &s.value) {
                texts.push((s.source.clone(), s.value.clone()));
            }
        }
        for (source, value) in &texts {
            if let Some(&(i, score)) = self.scores(value).first()
                && score >= MATCH_SCORE
            {
                named.push((i, score, format!("{source} `{value}` names it")));
            }
        }
        let mut out = Vec::new();
        for (i, p) in self.products.iter().enumerate() {
            let mut score = 0.0f32;
            let mut because = Vec::new();
            let mut beyond_kind = false;
            let vendor = self.vendor(&p.vendor);
            if let (Some(v), Some(iv)) = (vendor, &identity.vendor)
                && !p.generic
                && self.mentions_vendor(v, iv)
            {
                or(&mut score, 0.45);
                because.push(format!("identified vendor: {iv}"));
                beyond_kind = true;
            }
            for (_, s, why) in named.iter().filter(|(j, _, _)| *j == i) {
                or(&mut score, 0.6 * s);
                because.push(why.clone());
                beyond_kind = true;
            }
            for (source, value) in &texts {
                if let Some(h) = p.hints.iter().find(|h| hint_in(value, h)) {
                    or(&mut score, 0.35);
                    because.push(format!("{source} `{value}` contains `{h}`"));
                    beyond_kind = true;
                }
            }
            let known_kind = identity.kind != Kind::Unknown;
            if known_kind && identity.kind == p.kind {
                or(&mut score, 0.35 * identity.confidence.max(0.3));
                because.push(format!(
                    "identified as {} ({:.0} % sure)",
                    p.kind.label(),
                    identity.confidence * 100.0
                ));
                beyond_kind |= p.generic;
            } else if known_kind
                && identity.confidence >= 0.5
                && !kinds_compatible(identity.kind, p.kind)
            {
                score *= 0.4;
            }
            if beyond_kind && score > 0.15 {
                out.push(Suggestion {
                    product: p.clone(),
                    score,
                    because,
                });
            }
        }
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.product.id.cmp(&b.product.id))
        });
        out.truncate(limit);
        out
    }
}
