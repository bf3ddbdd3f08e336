//! The identification knowledge: reviewable TOML under `data/identify/`,
//! embedded at build time and parsed once on first use.

use std::sync::OnceLock;

use serde::Deserialize;

use super::Kind;

/// How a rule's `match` is compared with a value (always ignoring ASCII case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    #[default]
    Equals,
    Prefix,
    Suffix,
    Contains,
    /// Equal, or a suffix after a dot: `xbcs.net` matches `api.xbcs.net`.
    Domain,
}

/// One piece of knowledge: values matching `match` suggest a kind, a
/// vendor and/or a model, with a weight in 0..1.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub how: How,
    pub kind: Option<Kind>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub weight: f32,
    /// Why the rule is true (for reviewers).
    pub note: Option<String>,
}

impl Rule {
    pub fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        let p = self.pattern.as_bytes();
        let eq = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        match self.how {
            How::Equals => eq(v, p),
            How::Prefix => v.len() >= p.len() && eq(&v[..p.len()], p),
            How::Suffix => v.len() >= p.len() && eq(&v[v.len() - p.len()..], p),
            How::Contains => p.is_empty() || v.windows(p.len()).any(|w| eq(w, p)),
            How::Domain => {
                let v = v.strip_suffix(b".").unwrap_or(v);
                eq(v, p)
                    || (v.len() > p.len()
                        && eq(&v[v.len() - p.len()..], p)
                        && v[v.len() - p.len() - 1] == b'.')
            }
        }
    }
}

/// A TXT key whose value names the vendor or the model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxtRule {
    pub key: String,
    pub field: TxtField,
    pub weight: f32,
    pub note: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxtField {
    Vendor,
    Model,
}

/// A DHCP parameter request list (option 55) shape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintRule {
    /// The list starts with these options, in this order.
    #[serde(default)]
    pub starts_with: Vec<u8>,
    /// The list contains all of these options.
    #[serde(default)]
    pub contains: Vec<u8>,
    pub kind: Option<Kind>,
    pub vendor: Option<String>,
    pub weight: f32,
    pub note: String,
}

impl FingerprintRule {
    pub fn matches(&self, prl: &[u8]) -> bool {
        (!self.starts_with.is_empty() || !self.contains.is_empty())
            && prl.starts_with(&self.starts_with)
            && self.contains.iter().all(|o| prl.contains(o))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorAlias {
    pub name: String,
    /// Case-insensitive substrings of vendor texts that mean this vendor.
    pub aliases: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuiVendor {
    pub name: String,
    #[serde(default)]
    pub chip: bool,
    pub kind: Option<Kind>,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdnsRules {
    pub service: Vec<Rule>,
    pub txt: Vec<TxtRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsdpRules {
    /// NT/ST/USN of SSDP and deviceType of the UPnP description.
    pub device_type: Vec<Rule>,
    /// The SERVER header.
    pub server: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentRules {
    pub user_agent: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRules {
    /// DHCP/DHCPv6/lease host names and mDNS host and instance names.
    pub hostname: Vec<Rule>,
    /// Model strings from any source (TXT, UPnP modelName).
    pub model: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpRules {
    pub vendor_class: Vec<Rule>,
    pub fingerprint: Vec<FingerprintRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRules {
    pub domain: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorRules {
    pub vendor: Vec<VendorAlias>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuiRules {
    pub vendor: Vec<OuiVendor>,
}

/// All knowledge files, parsed.
#[derive(Debug)]
pub struct Knowledge {
    pub mdns: MdnsRules,
    pub ssdp: SsdpRules,
    pub user_agents: UserAgentRules,
    pub names: NameRules,
    pub dhcp: DhcpRules,
    pub domains: DomainRules,
    pub vendors: VendorRules,
    pub oui: OuiRules,
}

pub const MDNS: &str = include_str!("../../data/identify/mdns.toml");
pub const SSDP: &str = include_str!("../../data/identify/ssdp.toml");
pub const USER_AGENTS: &str = include_str!("../../data/identify/user_agents.toml");
pub const NAMES: &str = include_str!("../../data/identify/names.toml");
pub const DHCP: &str = include_str!("../../data/identify/dhcp.toml");
pub const DOMAINS: &str = include_str!("../../data/identify/domains.toml");
pub const VENDORS: &str = include_str!("../../data/identify/vendors.toml");
pub const OUI: &str = include_str!("../../data/identify/oui.toml");

fn parse<T: for<'de> Deserialize<'de> + Default>(name: &str, text: &str) -> T {
    match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // The files are embedded and tested; this only fires on a bad
            // edit that skipped `cargo test`. Identify without them rather
            // than crash the daemon.
            log::error!("data/identify/{name}: {e}");
            T::default()
        }
    }
}

/// The knowledge, parsed on first use.
pub fn knowledge() -> &'static Knowledge {
    static K: OnceLock<Knowledge> = OnceLock::new();
    K.get_or_init(|| Knowledge {
        mdns: parse("mdns.toml", MDNS),
        ssdp: parse("ssdp.toml", SSDP),
        user_agents: parse("user_agents.toml", USER_AGENTS),
        names: parse("names.toml", NAMES),
        dhcp: parse("dhcp.toml", DHCP),
        domains: parse("domains.toml", DOMAINS),
        vendors: parse("vendors.toml", VENDORS),
        oui: parse("oui.toml", OUI),
    })
}

impl Knowledge {
    /// The brand people know for a vendor text (`Belkin International
    /// Inc.` → `Belkin`), or None when no alias matches.
    pub fn vendor_name(&self, text: &str) -> Option<&str> {
        self.vendors
            .vendor
            .iter()
            .find(|v| v.aliases.iter().any(|a| contains_word(text, a)))
            .map(|v| v.name.as_str())
    }
}

/// `needle` occurs in `hay` (ignoring ASCII case) between non-alphanumeric
/// characters or the ends: "hp" matches "HP Inc." but not "Shpirt".
fn contains_word(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return false;
    }
    (0..=h.len() - n.len()).any(|i| {
        h[i..i + n.len()].eq_ignore_ascii_case(n)
            && (i == 0 || !h[i - 1].is_ascii_alphanumeric())
            && h.get(i + n.len())
                .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file parses strictly (a typo in a key fails here, not on a router).
    #[test]
    fn every_knowledge_file_parses() {
        toml::from_str::<MdnsRules>(MDNS).unwrap();
        toml::from_str::<SsdpRules>(SSDP).unwrap();
        toml::from_str::<UserAgentRules>(USER_AGENTS).unwrap();
        toml::from_str::<NameRules>(NAMES).unwrap();
        toml::from_str::<DhcpRules>(DHCP).unwrap();
        toml::from_str::<DomainRules>(DOMAINS).unwrap();
        toml::from_str::<VendorRules>(VENDORS).unwrap();
        toml::from_str::<OuiRules>(OUI).unwrap();
    }

    #[test]
    fn weights_are_probabilities_and_rules_say_something() {
        let k = knowledge();
        let rules = k
            .mdns
            .service
            .iter()
            .chain(&k.ssdp.device_type)
            .chain(&k.ssdp.server)
            .chain(&k.user_agents.user_agent)
            .chain(&k.names.hostname)
            .chain(&k.names.model)
            .chain(&k.dhcp.vendor_class)
            .chain(&k.domains.domain);
        let mut n = 0;
        for r in rules {
            n += 1;
            assert!(r.weight > 0.0 && r.weight < 1.0, "{r:?}");
            assert!(!r.pattern.is_empty(), "{r:?}");
            assert!(
                r.kind.is_some() || r.vendor.is_some() || r.model.is_some(),
                "{r:?}"
            );
            assert_ne!(r.kind, Some(Kind::Unknown), "{r:?}");
        }
        assert!(n > 100, "only {n} rules");
        for r in &k.dhcp.fingerprint {
            assert!(r.weight > 0.0 && r.weight < 1.0);
        }
    }

    #[test]
    fn match_modes() {
        let rule = |p: &str, how| Rule {
            pattern: p.into(),
            how,
            kind: None,
            vendor: None,
            model: None,
            weight: 0.5,
            note: None,
        };
        assert!(rule("_ipp._tcp", How::Equals).matches("_IPP._tcp"));
        assert!(!rule("_ipp._tcp", How::Equals).matches("_ipps._tcp"));
        assert!(rule("esp_", How::Prefix).matches("ESP_1A2B3C"));
        assert!(!rule("esp_", How::Prefix).matches("es"));
        assert!(rule("-iphone", How::Suffix).matches("Janes-iPhone"));
        assert!(rule("roku", How::Contains).matches("Roku/DVP-12.5"));
        let d = rule("xbcs.net", How::Domain);
        assert!(d.matches("api.xbcs.net") && d.matches("xbcs.net.") && d.matches("XBCS.NET"));
        assert!(!d.matches("evilxbcs.net") && !d.matches("xbcs.net.example"));
    }

    #[test]
    fn vendor_aliases_normalise() {
        let k = knowledge();
        assert_eq!(k.vendor_name("Belkin International Inc."), Some("Belkin"));
        assert_eq!(k.vendor_name("SEIKO EPSON"), Some("Epson"));
        assert_eq!(k.vendor_name("Sonos, Inc."), Some("Sonos"));
        assert_eq!(k.vendor_name("Acme Widgets"), None);
        assert_eq!(k.vendor_name("HP"), Some("HP"));
        assert_eq!(k.vendor_name("Shpirt Labs"), None);
    }
}
