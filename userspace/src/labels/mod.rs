//! Better labels: the owner's names for devices tied to a product
//! catalogue, suggestions for unlabelled devices, and warnings when a label
//! contradicts what the device does.
//!
//! The catalogue is data our team writes (`data/catalogue.toml`): canonical
//! vendor, product and kind with the aliases and misspellings people type.
//! Free text stays allowed: [`normalise`] keeps it as typed and ties it to
//! a catalogue entry when one fits, so "Amazon Alexa", "echo" and "amazon
//! eco" are one product in the data set instead of three.
//!
//! Matching works on normalised tokens (lower case, punctuation to spaces,
//! filler words such as "my" or "3rd gen" dropped). A catalogue name matches
//! when every one of its tokens is found in the text, exactly or within a
//! small edit distance (Damerau-Levenshtein from `strsim`, only for tokens
//! of four letters or more and never for tokens with digits, so "ps4" is
//! not "ps5"); words of the text left over lower the score a little, and a
//! left-over word naming another kind of device ("brother's laptop")
//! rules the entry out.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::identify::Kind;

mod check;
mod suggest;

pub use check::{PartySummary, Warning, check, parties_of};
pub use suggest::{Suggestion, suggest};

/// Texts longer than this are cut before matching (a label is a name, and
/// hostile input must not cost more than a name would).
pub const MAX_TEXT: usize = 200;
/// Tokens considered per text.
pub const MAX_TOKENS: usize = 16;
/// The score from which a text is taken to name a catalogue entry.
pub const MATCH_SCORE: f32 = 0.7;

/// One product of the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stable identifier (`amazon_echo_dot`).
    pub id: String,
    /// The canonical vendor (one of the catalogue's vendors).
    pub vendor: String,
    pub product: String,
    pub kind: Kind,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub misspellings: Vec<String>,
    /// Lower-case starts of words in a device's own names that point here.
    #[serde(default)]
    pub hints: Vec<String>,
    /// The vendor is a platform (Android), not a maker: labels are not
    /// checked against it.
    #[serde(default)]
    pub generic: bool,
}

impl Product {
    /// "Amazon Echo Dot", "Apple iPhone", "Raspberry Pi".
    pub fn display_name(&self) -> String {
        if self
            .product
            .to_lowercase()
            .starts_with(&self.vendor.to_lowercase())
        {
            self.product.clone()
        } else {
            format!("{} {}", self.vendor, self.product)
        }
    }
}

/// A vendor as people and devices write it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Parent or sister brands whose signals count as this vendor's.
    #[serde(default)]
    pub related: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarningsConfig {
    #[serde(default)]
    phone_os_organisations: Vec<String>,
    #[serde(default = "default_advertisers")]
    advertisers_for_warning: usize,
}

fn default_advertisers() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    warnings: WarningsConfig,
    kind_words: HashMap<Kind, Vec<String>>,
    vendor: Vec<Vendor>,
    product: Vec<Product>,
}

/// A name of a product, pre-tokenised.
#[derive(Clone, Debug)]
struct Name {
    product: usize,
    tokens: Vec<String>,
    joined: String,
}

/// The product catalogue, parsed and indexed once.
#[derive(Clone, Debug)]
pub struct Catalogue {
    products: Vec<Product>,
    vendors: Vec<Vendor>,
    /// Every name of every product (product, vendor + product, aliases,
    /// misspellings), tokenised.
    names: Vec<Name>,
    /// Token sequences naming a kind, longest first.
    kind_words: Vec<(Vec<String>, Kind)>,
    warnings: WarningsConfig,
}

const BUILTIN: &str = include_str!("../../data/catalogue.toml");

/// Why catalogue data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueError(pub String);

impl std::fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CatalogueError {}

/// Words that say nothing about which product something is.
const FILLER: &[&str] = &[
    "my",
    "our",
    "the",
    "a",
    "an",
    "s",
    "new",
    "old",
    "gen",
    "generation",
    "1st",
    "2nd",
    "3rd",
    "4th",
    "5th",
    "6th",
    "7th",
    "8th",
    "smart",
    "wifi",
    "wi",
    "fi",
    "device",
    "s's",
    "mine",
    "of",
];

/// A text as tokens: lower case, letters and digits only, filler dropped,
/// bounded in length and count.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let cut: String = text.chars().take(MAX_TEXT).collect();
    let mut out = Vec::new();
    for raw in cut
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        // Filler, and repeats ("echo echo echo" is one echo).
        if FILLER.contains(&raw) || out.iter().any(|t: &String| t.as_str() == raw) {
            continue;
        }
        if out.len() == MAX_TOKENS {
            break;
        }
        out.push(raw.chars().take(32).collect());
    }
    out
}

/// How alike two tokens are (0 = different, 1 = equal).
fn token_similarity(a: &str, b: &str) -> f32 {
    if a == b {
        return 1.0;
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    // Short words and words with digits (model numbers) only match exactly:
    // "hue"/"hub" and "ps4"/"ps5" are different things.
    if la.min(lb) < 4
        || a.chars().any(|c| c.is_ascii_digit())
        || b.chars().any(|c| c.is_ascii_digit())
    {
        return 0.0;
    }
    let allowed = if la.max(lb) >= 8 { 2 } else { 1 };
    let d = strsim::damerau_levenshtein(a, b);
    if d <= allowed {
        1.0 - 0.12 * d as f32
    } else {
        0.0
    }
}

/// Kinds that a label may reasonably mix (a bridge for lights, a
/// doorbell with a camera, a smart display that is a speaker...).
pub(crate) fn kinds_compatible(a: Kind, b: Kind) -> bool {
    use Kind::*;
    a == b
        || [
            (Hub, Light),
            (Camera, Doorbell),
            (Speaker, Hub),
            (Tv, Speaker),
            (Phone, Tablet),
            (Plug, Light),
            (Tablet, Computer),
            (Tv, GameConsole),
        ]
        .iter()
        .any(|&(x, y)| (a == x && b == y) || (a == y && b == x))
}

/// A label as typed and what it was tied to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalised {
    /// The text exactly as typed.
    pub typed: String,
    /// The catalogue entry it names, when one fits.
    pub entry: Option<Product>,
    /// 0..1: how well the text fits the entry (0 without one).
    pub score: f32,
    /// The kind the text names: the entry's, else a kind word in the text
    /// ("smart fan" → appliance).
    pub kind: Option<Kind>,
    /// The canonical vendor the text names: the entry's, else a vendor
    /// alias in the text.
    pub vendor: Option<String>,
}

impl Catalogue {
    /// The catalogue built into the binary, parsed once.
    pub fn builtin() -> &'static Catalogue {
        static CAT: OnceLock<Catalogue> = OnceLock::new();
        CAT.get_or_init(|| {
            // The file is ours and tested; failing here is a build defect.
            Catalogue::from_toml(BUILTIN).expect("data/catalogue.toml is valid")
        })
    }

    /// Parses and checks a catalogue: unique ids, known vendors, every
    /// product with at least one name.
    pub fn from_toml(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile =
            toml::from_str(text).map_err(|e| CatalogueError(format!("catalogue: {e}")))?;
        let mut kind_words: Vec<(Vec<String>, Kind)> = file
            .kind_words
            .iter()
            .flat_map(|(k, words)| words.iter().map(move |w| (tokens(w), *k)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        kind_words.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let mut names = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, p) in file.product.iter().enumerate() {
            if p.id.is_empty() || p.product.trim().is_empty() {
                return Err(CatalogueError(format!(
                    "product `{}`: id and product are required",
                    p.id
                )));
            }
            if !ids.insert(p.id.clone()) {
                return Err(CatalogueError(format!("product `{}` listed twice", p.id)));
            }
            if !file.vendor.iter().any(|v| v.name == p.vendor) {
                return Err(CatalogueError(format!(
                    "product `{}`: vendor `{}` is not in the vendor list",
                    p.id, p.vendor
                )));
            }
            if p.kind == Kind::Unknown {
                return Err(CatalogueError(format!("product `{}`: kind unknown", p.id)));
            }
            let all = [p.product.clone(), format!("{} {}", p.vendor, p.product)]
                .into_iter()
                .enumerate()
                // The product's own name alone only names it when it is
                // distinctive: "Printer", "Smart Plug" or "One" are not.
                .filter(|(j, n)| {
                    *j == 1 || {
                        let t = tokens(n);
                        t.concat().chars().count() >= 4
                            && !t.iter().any(|w| {
                                kind_words.iter().any(|(k, _)| k == std::slice::from_ref(w))
                            })
                    }
                })
                .map(|(_, n)| n)
                .chain(p.aliases.iter().cloned())
                .chain(p.misspellings.iter().cloned());
            for n in all {
                let tokens = tokens(&n);
                if tokens.is_empty() {
                    continue;
                }
                let joined = tokens.concat();
                names.push(Name {
                    product: i,
                    tokens,
                    joined,
                });
            }
        }
        Ok(Catalogue {
            products: file.product,
            vendors: file.vendor,
            names,
            kind_words,
            warnings: file.warnings,
        })
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn vendors(&self) -> &[Vendor] {
        &self.vendors
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    pub fn vendor(&self, name: &str) -> Option<&Vendor> {
        self.vendors.iter().find(|v| v.name == name)
    }

    /// Scores every product against a text: the best of its names.
    fn scores(&self, text: &str) -> Vec<(usize, f32)> {
        let q = tokens(text);
        if q.is_empty() {
            return Vec::new();
        }
        let joined = q.concat();
        let mut best: HashMap<usize, f32> = HashMap::new();
        for name in &self.names {
            let s = self.score_name(&q, &joined, name);
            if s > 0.0 {
                let e = best.entry(name.product).or_default();
                *e = e.max(s);
            }
        }
        let mut v: Vec<(usize, f32)> = best.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    fn score_name(&self, q: &[String], joined: &str, name: &Name) -> f32 {
        if joined == name.joined {
            return 1.0;
        }
        let mut used = vec![false; q.len()];
        let mut total = 0.0;
        for n in &name.tokens {
            let mut best = (0.0f32, None);
            for (i, t) in q.iter().enumerate() {
                if used[i] {
                    continue;
                }
                let s = token_similarity(n, t);
                if s > best.0 {
                    best = (s, Some(i));
                }
            }
            match best {
                (s, Some(i)) => {
                    used[i] = true;
                    total += s;
                }
                _ => {
                    // Fall back to the whole text against the whole name
                    // ("philipshue", "eco dot" typed without spaces).
                    return whole_similarity(joined, &name.joined);
                }
            }
        }
        let coverage = total / name.tokens.len() as f32;
        let product_kind = self.products[name.product].kind;
        let mut extra = 0;
        for (i, t) in q.iter().enumerate() {
            if used[i] {
                continue;
            }
            // A left-over word naming another kind of device rules it out.
            if let Some(k) = self.kind_of_tokens(std::slice::from_ref(t))
                && !kinds_compatible(k, product_kind)
            {
                return 0.0;
            }
            extra += 1;
        }
        coverage * 0.92f32.powi(extra)
    }

    /// The kind a text's words name, if any: the last kind word wins
    /// ("light switch" is a switch).
    fn kind_of_tokens(&self, q: &[String]) -> Option<Kind> {
        let mut found: Option<(usize, Kind)> = None;
        for (words, kind) in &self.kind_words {
            for start in 0..q.len() {
                if q[start..].starts_with(words) {
                    let end = start + words.len();
                    if found.is_none_or(|(e, _)| end > e) {
                        found = Some((end, *kind));
                    }
                }
            }
        }
        found.map(|(_, k)| k)
    }

    /// The canonical vendor a text names (whole-word alias), if any.
    pub fn vendor_in(&self, text: &str) -> Option<&Vendor> {
        let q = tokens(text);
        self.vendors
            .iter()
            .find(|v| vendor_words(v).iter().any(|a| contains_words(&q, a)))
    }

    /// Whether `text` (an identified vendor, an organisation's name, a
    /// signal) mentions vendor `v`, its aliases or related brands.
    pub fn mentions_vendor(&self, v: &Vendor, text: &str) -> bool {
        let q = tokens(text);
        let joined = q.concat();
        vendor_words(v)
            .iter()
            .chain(
                v.related
                    .iter()
                    .map(|r| tokens(r))
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .any(|a| contains_words(&q, a) || (a.len() > 1 && joined.contains(&a.concat())))
    }

    /// Products best matching `q`, best first; at most `limit`.
    pub fn search(&self, q: &str, limit: usize) -> Vec<Product> {
        self.scores(q)
            .into_iter()
            .filter(|&(_, s)| s >= MATCH_SCORE * 0.8)
            .take(limit)
            .map(|(i, _)| self.products[i].clone())
            .collect()
    }

    /// Ties a typed label to a catalogue entry when one fits.
    pub fn normalise(&self, typed: &str) -> Normalised {
        let best = self
            .scores(typed)
            .into_iter()
            .next()
            .filter(|&(_, s)| s >= MATCH_SCORE);
        let entry = best.map(|(i, _)| self.products[i].clone());
        let kind = entry
            .as_ref()
            .map(|p| p.kind)
            .or_else(|| self.kind_of_tokens(&tokens(typed)));
        let vendor = entry
            .as_ref()
            .map(|p| p.vendor.clone())
            .or_else(|| self.vendor_in(typed).map(|v| v.name.clone()));
        Normalised {
            typed: typed.to_string(),
            score: best.map(|(_, s)| s).unwrap_or(0.0),
            entry,
            kind,
            vendor,
        }
    }
}

fn vendor_words(v: &Vendor) -> Vec<Vec<String>> {
    std::iter::once(&v.name)
        .chain(&v.aliases)
        .map(|a| tokens(a))
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `words` occur in `q` in order, next to each other.
fn contains_words(q: &[String], words: &[String]) -> bool {
    !words.is_empty() && q.windows(words.len()).any(|w| w == words)
}

/// Whole-text similarity for texts typed without spaces or with a typo
/// across a space; only for texts long enough for it to mean something.
fn whole_similarity(a: &str, b: &str) -> f32 {
    if a.chars().count() < 6 || b.chars().count() < 6 {
        return 0.0;
    }
    let s = strsim::normalized_damerau_levenshtein(a, b) as f32;
    if s >= 0.85 { s } else { 0.0 }
}

/// [`Catalogue::normalise`] on the built-in catalogue.
pub fn normalise(typed: &str) -> Normalised {
    Catalogue::builtin().normalise(typed)
}

/// [`Catalogue::search`] on the built-in catalogue.
pub fn search(q: &str, limit: usize) -> Vec<Product> {
    Catalogue::builtin().search(q, limit)
}

#[cfg(test)]
mod tests;
