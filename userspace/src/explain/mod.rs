//! Who is at the other end, and why a device talks to them, in plain words.
//!
//! A name is explained from, in order:
//!
//! 1. the knowledge base our team writes as reviewable TOML in
//!    `userspace/data/explain/` (organisations with their domains, a
//!    category, a one-line description and the device vendors they are
//!    expected for), matched on the longest listed suffix of the name, so a
//!    specific host (`time.google.com`) can say something different from its
//!    domain (`google.com`);
//! 2. the CNAME chain the device's DNS answer went through: a name served
//!    by a known cloud or CDN is "a service hosted on ...";
//! 3. the registrable domain from the public suffix list, so that at least
//!    the owner-level domain is shown.
//!
//! The public suffix list comes from the `psl` crate: it compiles the list
//! into code (no list file to ship or update at run time, no dependencies
//! beyond its types crate). It is not small: about 750 KB of a stripped
//! size-optimised LTO build (measured; it compresses well in the package).
//! `publicsuffix` would need the ~230 KB list as a file on flash plus its
//! parser and `idna`; hand-matching a few suffixes would get `co.uk`-style
//! domains wrong. If flash gets tight, this is the dependency to revisit.
//!
//! Text here is calm on purpose: it says what a service is for, not what it
//! could do.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

pub mod list_updates;
pub mod lists;
mod providers;

/// What a remote service is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    VendorCloud,
    Advertising,
    TrackingAnalytics,
    TimeService,
    Dns,
    CdnHosting,
    ConnectivityCheck,
    StreamingMedia,
    SoftwareUpdates,
    Social,
    Payments,
    MapsLocation,
    VoiceAssistant,
    Messaging,
    Security,
    Other,
}

impl Category {
    pub const ALL: [Category; 16] = [
        Category::VendorCloud,
        Category::Advertising,
        Category::TrackingAnalytics,
        Category::TimeService,
        Category::Dns,
        Category::CdnHosting,
        Category::ConnectivityCheck,
        Category::StreamingMedia,
        Category::SoftwareUpdates,
        Category::Social,
        Category::Payments,
        Category::MapsLocation,
        Category::VoiceAssistant,
        Category::Messaging,
        Category::Security,
        Category::Other,
    ];

    /// A short label for people.
    pub fn label(self) -> &'static str {
        match self {
            Category::VendorCloud => "device maker's cloud",
            Category::Advertising => "advertising",
            Category::TrackingAnalytics => "tracking and analytics",
            Category::TimeService => "time service",
            Category::Dns => "name lookup (DNS)",
            Category::CdnHosting => "content delivery and hosting",
            Category::ConnectivityCheck => "internet connection check",
            Category::StreamingMedia => "streaming and media",
            Category::SoftwareUpdates => "software updates",
            Category::Social => "social network",
            Category::Payments => "payments",
            Category::MapsLocation => "maps and location",
            Category::VoiceAssistant => "voice assistant",
            Category::Messaging => "messaging and notifications",
            Category::Security => "security",
            Category::Other => "other",
        }
    }

    /// Categories every device may use whatever its maker: a clock, name
    /// lookups, a check that the internet works.
    pub fn expected_for_any_device(self) -> bool {
        matches!(
            self,
            Category::TimeService | Category::Dns | Category::ConnectivityCheck
        )
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The explanation of one remote name or address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The name (or address) explained, as given.
    pub domain: String,
    /// Its registrable domain (public suffix list), when it has one.
    pub registrable: Option<String>,
    /// The organisation behind it, when known.
    pub organisation: Option<String>,
    pub category: Category,
    /// One plain sentence.
    pub description: String,
    /// Whether it is expected for the device's vendor: `None` when no
    /// vendor was given or nothing says either way.
    pub expected: Option<bool>,
    /// Where the explanation came from: `builtin:<organisation id>`,
    /// `list:<list name>`, `cname:<name>`, `address-ranges`,
    /// `public-suffix-list` or `none`.
    pub source: String,
}

/// One organisation of the knowledge base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Stable identifier (`belkin_wemo`).
    pub id: String,
    pub name: String,
    pub category: Category,
    /// One line, plain words.
    pub description: String,
    /// Domains and host names (suffix-matched).
    pub domains: Vec<String>,
    /// Device vendors it is expected for (matched loosely, lower case).
    #[serde(default)]
    pub vendors: Vec<String>,
    /// A cloud or CDN whose own domains host other companies' services
    /// (`amazonaws.com`): a name under them is "a service hosted on ...".
    #[serde(default)]
    pub hosting: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganisationsFile {
    organisation: Vec<Organisation>,
}

/// The organisations and their domains, indexed by domain.
#[derive(Clone, Debug, Default)]
pub struct KnowledgeBase {
    organisations: Vec<Organisation>,
    /// Where each organisation came from (`builtin` or `list:<name>`).
    origins: Vec<String>,
    by_domain: HashMap<String, usize>,
}

/// Why knowledge-base data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbError(pub String);

impl fmt::Display for KbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KbError {}

const BUILTIN_TOML: &str = include_str!("../../data/explain/organisations.toml");

/// Lower case, no trailing dot, no surrounding space.
pub fn normalise(name: &str) -> String {
    let n = name.trim().trim_end_matches('.');
    n.to_ascii_lowercase()
}

/// A vendor name reduced to lower-case letters and digits.
fn vendor_key(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A domain the knowledge base may hold: LDH labels (and `_`), a dot
/// between non-empty labels, at most 253 characters.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// The built-in knowledge base, parsed once, shared so that [`current`]
/// can hand it out without a copy.
fn builtin_shared() -> &'static Arc<KnowledgeBase> {
    static KB: OnceLock<Arc<KnowledgeBase>> = OnceLock::new();
    KB.get_or_init(|| {
        // The file is ours and tested; failing here is a build defect.
        Arc::new(
            KnowledgeBase::from_toml(BUILTIN_TOML)
                .expect("data/explain/organisations.toml is valid"),
        )
    })
}

/// The knowledge base with the owner's lists laid over it, set by the
/// daemon's list updates; `None` while no list is in force.
static CURRENT: RwLock<Option<Arc<KnowledgeBase>>> = RwLock::new(None);

/// The knowledge base in force: the built-in one, with the owner's lists
/// over it once the daemon has loaded any (see [`lists`]). What the daemon
/// and the API explain with; cheap (a lock and a reference count).
pub fn current() -> Arc<KnowledgeBase> {
    let overlay = CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone();
    overlay.unwrap_or_else(|| builtin_shared().clone())
}

/// Puts `kb` in force (`None`: the built-in base alone).
pub fn set_current(kb: Option<Arc<KnowledgeBase>>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = kb;
}

impl KnowledgeBase {
    /// The knowledge base built into the binary, parsed once.
    pub fn builtin() -> &'static KnowledgeBase {
        builtin_shared()
    }

    /// Parses and checks an organisations file: every field present, every
    /// domain valid and listed once.
    pub fn from_toml(text: &str) -> Result<KnowledgeBase, KbError> {
        let file: OrganisationsFile =
            toml::from_str(text).map_err(|e| KbError(format!("organisations: {e}")))?;
        let mut kb = KnowledgeBase::default();
        for org in file.organisation {
            kb.add(org, "builtin".into(), false)?;
        }
        Ok(kb)
    }

    /// Adds an organisation. With `replace`, its domains take over from
    /// earlier entries (an overlay); without, a domain listed twice is an
    /// error.
    pub(crate) fn add(
        &mut self,
        mut org: Organisation,
        origin: String,
        replace: bool,
    ) -> Result<(), KbError> {
        if org.id.is_empty() || org.name.trim().is_empty() || org.description.trim().is_empty() {
            return Err(KbError(format!(
                "organisation `{}`: id, name and description are required",
                org.id
            )));
        }
        if org.domains.is_empty() {
            return Err(KbError(format!(
                "organisation `{}` lists no domain",
                org.id
            )));
        }
        for d in &mut org.domains {
            *d = normalise(d);
            if !valid_domain(d) {
                return Err(KbError(format!(
                    "organisation `{}`: bad domain `{d}`",
                    org.id
                )));
            }
        }
        org.vendors = org.vendors.iter().map(|v| vendor_key(v)).collect();
        let index = self.organisations.len();
        for d in &org.domains {
            if let Some(&other) = self.by_domain.get(d)
                && !replace
            {
                return Err(KbError(format!(
                    "domain `{d}` listed by both `{}` and `{}`",
                    self.organisations[other].id, org.id
                )));
            }
            self.by_domain.insert(d.clone(), index);
        }
        self.organisations.push(org);
        self.origins.push(origin);
        Ok(())
    }

    pub fn organisations(&self) -> &[Organisation] {
        &self.organisations
    }

    /// Domains indexed.
    pub fn domain_count(&self) -> usize {
        self.by_domain.len()
    }

    /// The organisation listing the longest suffix of `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<&Organisation> {
        self.lookup_index(&normalise(name))
            .map(|i| &self.organisations[i])
    }

    fn lookup_index(&self, name: &str) -> Option<usize> {
        let mut rest = name;
        loop {
            if let Some(&i) = self.by_domain.get(rest) {
                return Some(i);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Explains a name the device used. `cname_chain`: the CNAMEs its DNS
    /// answer went through (in order). `device_vendor`: the device's maker
    /// as identified (e.g. "Belkin International"), for `expected`.
    pub fn explain(
        &self,
        name: &str,
        cname_chain: &[String],
        device_vendor: Option<&str>,
    ) -> Explanation {
        let domain = normalise(name);
        let registrable = psl::domain_str(&domain).map(str::to_string);
        if let Some(i) = self.lookup_index(&domain) {
            let org = &self.organisations[i];
            let (organisation, description) = if org.hosting {
                (
                    Some(org.name.clone()),
                    format!(
                        "A service hosted on {}. {} Which company runs this service is not known.",
                        org.name, org.description
                    ),
                )
            } else {
                (Some(org.name.clone()), org.description.clone())
            };
            return Explanation {
                domain,
                registrable,
                organisation,
                category: org.category,
                description,
                expected: expected(org, device_vendor),
                source: format!("{}:{}", self.origins[i], org.id),
            };
        }
        // Through a CNAME into a known cloud or CDN: say where it is hosted.
        for cname in cname_chain.iter().rev() {
            if let Some(i) = self.lookup_index(&normalise(cname)) {
                let org = &self.organisations[i];
                let what = match &registrable {
                    Some(r) => format!("A service of {r}"),
                    None => "An unknown service".to_string(),
                };
                return Explanation {
                    domain,
                    registrable,
                    organisation: None,
                    category: if org.hosting {
                        Category::CdnHosting
                    } else {
                        org.category
                    },
                    description: format!(
                        "{what}, hosted on {} (its name points there). Not in our list of known services.",
                        org.name
                    ),
                    expected: None,
                    source: format!("cname:{}", normalise(cname)),
                };
            }
        }
        if is_local_name(&domain) {
            return Explanation {
                domain,
                registrable: None,
                organisation: None,
                category: Category::Other,
                description: "A device or service on your own network.".into(),
                expected: None,
                source: "local-name".into(),
            };
        }
        let (description, source) = match &registrable {
            Some(r) => (
                format!("A service under the domain {r}. Not in our list of known services."),
                "public-suffix-list",
            ),
            None => (
                "A name not in our list of known services.".to_string(),
                "none",
            ),
        };
        Explanation {
            domain,
            registrable,
            organisation: None,
            category: Category::Other,
            description,
            expected: None,
            source: source.into(),
        }
    }

    /// Explains an address for which no name was seen: a well-known
    /// provider's range if it is in our small table, else says so.
    pub fn explain_address(&self, ip: IpAddr) -> Explanation {
        if let Some(p) = providers::lookup(ip) {
            return Explanation {
                domain: ip.to_string(),
                registrable: None,
                organisation: Some(p.organisation.to_string()),
                category: p.category,
                description: p.description.to_string(),
                expected: if p.category.expected_for_any_device() {
                    Some(true)
                } else {
                    None
                },
                source: "address-ranges".into(),
            };
        }
        let local = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        Explanation {
            domain: ip.to_string(),
            registrable: None,
            organisation: None,
            category: Category::Other,
            description: if local {
                "An address on your own network.".into()
            } else {
                "An address with no name seen: the device reached it without looking up a name we saw.".into()
            },
            expected: None,
            source: "none".into(),
        }
    }
}

fn is_local_name(d: &str) -> bool {
    d == "localhost"
        || [
            ".local",
            ".lan",
            ".home.arpa",
            ".in-addr.arpa",
            ".ip6.arpa",
            ".internal",
        ]
        .iter()
        .any(|s| d.ends_with(s))
        || !d.contains('.')
}

fn expected(org: &Organisation, device_vendor: Option<&str>) -> Option<bool> {
    let vendor = vendor_key(device_vendor?);
    if vendor.is_empty() {
        return None;
    }
    if org.category.expected_for_any_device()
        || org
            .vendors
            .iter()
            .any(|v| !v.is_empty() && (vendor.contains(v.as_str()) || v.contains(vendor.as_str())))
    {
        return Some(true);
    }
    // A vendor cloud or voice assistant tied to other makers is unexpected;
    // for anything else (CDNs, streaming, ads...) nothing says either way.
    if !org.vendors.is_empty()
        && matches!(
            org.category,
            Category::VendorCloud | Category::VoiceAssistant
        )
    {
        return Some(false);
    }
    None
}

#[cfg(test)]
mod tests;
