//! The research data set: stored traffic windows and the devices'
//! identification and labels, anonymised, in a documented and versioned
//! schema (`docs/export-schema.md`), as MessagePack, JSON lines or CSV.
//!
//! What never leaves: device MACs (replaced by a keyed hash under a
//! per-installation salt, so two homes give unrelated ids for the same
//! device and no one without the salt can test a guessed MAC), LAN
//! addresses (device addresses are dropped; remote addresses only when
//! they are on the internet), and, unless the owner opts in with
//! `include_names`, the names people give things: DHCP host names, mDNS
//! instance names, UPnP friendly names, local host names and the labels as
//! typed (a label is then exported only as its catalogue entry).
//!
//! The export is a stream of records: one header, then one record per
//! device, then one per (window, device, remote end). Writing streams the
//! store an hour at a time, so memory stays flat however long the range.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::dissect::Mac;
use crate::explain::{Category, KnowledgeBase};
use crate::identify::{Identity, Kind, Signal};
use crate::store::{Store, Tier};

pub mod bench;
pub mod donate;

pub use donate::{DonateOptions, DonationRecord, Fetcher, donate, records, request_deletion};

/// The schema's name, in every header.
pub const SCHEMA_NAME: &str = "iot-inspector-export";
/// Bumped on any change a reader must know about; see
/// `docs/export-schema.md` for each version's changes.
pub const SCHEMA_VERSION: u32 = 1;

/// How the records are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Concatenated MessagePack maps, one per record.
    Msgpack,
    /// One JSON object per line.
    Jsonl,
    /// One row per record under a fixed header ([`CSV_COLUMNS`]).
    Csv,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Msgpack, Format::Jsonl, Format::Csv];

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Msgpack => "msgpack",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" => Ok(Format::Msgpack),
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => bail!("unknown export format `{s}` (msgpack, jsonl or csv)"),
        }
    }
}

/// What to export and how.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Unix seconds, inclusive.
    pub since: u64,
    /// Unix seconds, exclusive.
    pub until: u64,
    pub format: Format,
    /// The owner opted in to names (host names, instance names, labels as
    /// typed).
    pub include_names: bool,
    /// The installation's salt ([`salt`]).
    pub salt: [u8; 32],
    /// The stored resolution to export: [`Tier::Raw`] (the 5-second
    /// windows, kept for the raw retention only) unless asked otherwise.
    pub tier: Tier,
}

impl ExportOptions {
    /// 5-second windows in `[since, until)`, no names.
    pub fn new(since: u64, until: u64, format: Format, salt: [u8; 32]) -> Self {
        ExportOptions {
            since,
            until,
            format,
            include_names: false,
            salt,
            tier: Tier::Raw,
        }
    }
}

/// The first record: what this export is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`SCHEMA_NAME`].
    pub schema: String,
    pub schema_version: u32,
    /// The installation's id ([`installation_id`]): the same for every
    /// export of one router, unrelated across routers.
    pub installation: String,
    pub since: u64,
    pub until: u64,
    pub tier: Tier,
    /// Length of each window in seconds.
    pub window_secs: u64,
    pub include_names: bool,
    /// Unix seconds when the export was written.
    pub created: u64,
}

/// A device's label as exported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelEntry {
    /// The catalogue entry the label names, when one fits.
    pub product_id: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    /// The kind the label names (from its entry or its words).
    pub kind: Option<Kind>,
    /// The label as typed: only with `include_names`.
    pub typed: Option<String>,
}

/// One device: its identification and label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// The device's id ([`device_id`]).
    pub device: String,
    pub kind: Kind,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub confidence: f32,
    /// The identification's signals, less the ones carrying names unless
    /// `include_names`; the `oui` signal's value is the OUI (first three
    /// bytes) only, or `randomised`.
    pub evidence: Vec<Signal>,
    pub label: Option<LabelEntry>,
    /// Unix seconds (whole days are not rounded: the data set is about
    /// time patterns).
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
}

/// Traffic between one device and one remote end in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// Unix seconds of the window start.
    pub start: u64,
    pub device: String,
    /// The name the device used for the remote end (DNS, TLS/QUIC SNI,
    /// HTTP Host); local names only with `include_names`.
    pub remote_host: Option<String>,
    /// The organisation behind it (explain knowledge base), when known.
    pub remote_organisation: Option<String>,
    pub remote_category: Category,
    /// The remote address, only when it is on the internet.
    pub remote_ip: Option<String>,
    /// The remote end is on the home network (another device, the router).
    pub remote_lan: bool,
    /// IP protocol number (6 TCP, 17 UDP, 0 for the summed "other" row).
    pub proto: u8,
    pub remote_port: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// Flows (5-tuples) merged into this row.
    pub flows: u32,
}

/// One record of the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Device(DeviceEntry),
    Window(WindowRow),
}

/// An export read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub header: Header,
    pub devices: Vec<DeviceEntry>,
    pub windows: Vec<WindowRow>,
}

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub devices: usize,
    /// Stored (window, device) entries read.
    pub windows: u64,
    /// Window rows written.
    pub rows: u64,
    pub bytes: u64,
    /// Remote addresses left out (LAN side, private, link-local, ULA...).
    pub remote_ips_dropped: u64,
    /// Remote names left out (local names) without `include_names`.
    pub names_dropped: u64,
    /// Identification signals left out (they carry names).
    pub signals_dropped: u64,
}

/// Signal sources whose values are names people chose (or that devices
/// derive from their owner's name: "Jane's iPhone").
pub const NAME_SOURCES: &[&str] = &[
    "dhcp hostname",
    "dhcp lease",
    "dhcpv6 fqdn",
    "mdns host",
    "mdns instance",
    "upnp name",
];

/// The CSV header. Header and device rows carry their record as JSON in
/// `detail` (nested lists do not fit columns); window rows fill the rest.
pub const CSV_COLUMNS: [&str; 16] = [
    "record",
    "device",
    "start",
    "remote_host",
    "remote_organisation",
    "remote_category",
    "remote_ip",
    "remote_lan",
    "proto",
    "remote_port",
    "bytes_up",
    "bytes_down",
    "packets_up",
    "packets_down",
    "flows",
    "detail",
];

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn keyed_hash(salt: &[u8; 32], parts: &[&[u8]]) -> String {
    use hmac::{KeyInit, Mac as _};
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(salt).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    let out = m.finalize().into_bytes();
    // 128 bits: collisions among a home's devices are out of reach, and a
    // shorter id keeps the windows small.
    hex(&out[..16])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A device's id in exports: HMAC-SHA256 of its MAC under the salt,
/// truncated to 128 bits, hex.
pub fn device_id(salt: &[u8; 32], mac: Mac) -> String {
    keyed_hash(salt, &[b"device\0", &mac.0])
}

/// The installation's id in exports and donations.
pub fn installation_id(salt: &[u8; 32]) -> String {
    keyed_hash(salt, &[b"installation\0"])
}

/// The installation's salt: 32 random bytes (from /dev/urandom) created
/// the first time and kept in `path` (hex, mode 0600). Created atomically:
/// two callers racing end up with the same salt.
pub fn salt(path: &Path) -> Result<[u8; 32]> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return parse_salt(&text).with_context(|| format!("reading the salt {}", path.display()));
    }
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".salt-{}.tmp", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        writeln!(f, "{}", hex(&bytes))?;
        f.sync_all()?;
    }
    // A hard link fails if the salt appeared meanwhile: then theirs wins.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse_salt(&std::fs::read_to_string(path)?)
        }
        Err(e) => Err(e).with_context(|| format!("creating the salt {}", path.display())),
    }
}

fn parse_salt(text: &str) -> Result<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the salt file must hold 64 hex digits");
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// The usual spellings of a MAC, lower case: `aa:bb:..`, `aa-bb-..`,
/// `aabb..`, `aabb.ccdd.eeff`.
pub fn mac_spellings(mac: Mac) -> [String; 4] {
    let h: Vec<String> = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    [
        h.join(":"),
        h.join("-"),
        h.concat(),
        format!("{}{}.{}{}.{}{}", h[0], h[1], h[2], h[3], h[4], h[5]),
    ]
}

/// `text` with any spelling of the given MACs replaced by `<mac>` (UPnP
/// UUIDs and USNs often end in the device's MAC).
fn scrub(text: &str, macs: &[[String; 4]]) -> String {
    let lower = text.to_ascii_lowercase();
    if !macs.iter().flatten().any(|s| lower.contains(s.as_str())) {
        return text.to_string();
    }
    let mut out = lower;
    for s in macs.iter().flatten() {
        out = out.replace(s.as_str(), "<mac>");
    }
    out
}

/// The home network's prefixes (/24 and /64) from its devices' addresses:
/// a remote end inside them is on the LAN side, whatever its range (the
/// simulated home uses documentation addresses, real homes private ones).
#[derive(Default)]
struct LanPrefixes(BTreeSet<(u8, [u8; 8])>);

impl LanPrefixes {
    fn key(ip: IpAddr) -> (u8, [u8; 8]) {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                (4, [o[0], o[1], o[2], 0, 0, 0, 0, 0])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let mut k = [0u8; 8];
                k.copy_from_slice(&o[..8]);
                (6, k)
            }
        }
    }

    fn add(&mut self, ip: IpAddr) {
        if !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() {
            self.0.insert(Self::key(ip));
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&Self::key(ip))
    }
}

/// Whether an address may be on the internet: not private, link-local,
/// loopback, ULA, shared (CGNAT), multicast or broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn window_secs(tier: Tier) -> u64 {
    match tier {
        Tier::Raw => 5,
        Tier::Minute => 60,
        Tier::Hour => 3600,
    }
}

/// Counts what passes through.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<'a, W: Write> {
    Jsonl(Counting<'a, W>),
    Msgpack(Counting<'a, W>),
    Csv(Box<csv::Writer<Counting<'a, W>>>),
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

impl<'a, W: Write> Sink<'a, W> {
    fn new(format: Format, out: &'a mut W) -> Result<Self> {
        let c = Counting {
            inner: out,
            bytes: 0,
        };
        Ok(match format {
            Format::Jsonl => Sink::Jsonl(c),
            Format::Msgpack => Sink::Msgpack(c),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(c);
                w.write_record(CSV_COLUMNS)?;
                Sink::Csv(Box::new(w))
            }
        })
    }

    fn put(&mut self, r: &Record) -> Result<()> {
        match self {
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            // Named maps, so the stream describes itself like the JSON.
            Sink::Msgpack(w) => rmp_serde::encode::write_named(w, r)?,
            Sink::Csv(w) => {
                let row: [String; 16] = match r {
                    Record::Header(h) => {
                        let mut row: [String; 16] = Default::default();
                        row[0] = "header".into();
                        row[15] = serde_json::to_string(h)?;
                        row
                    }
                    Record::Device(d) => {
                        let mut row: [String; 16] = Default::default();
                        row[0] = "device".into();
                        row[1] = d.device.clone();
                        row[15] = serde_json::to_string(d)?;
                        row
                    }
                    Record::Window(w) => [
                        "window".into(),
                        w.device.clone(),
                        w.start.to_string(),
                        opt(&w.remote_host),
                        opt(&w.remote_organisation),
                        category_name(w.remote_category),
                        opt(&w.remote_ip),
                        w.remote_lan.to_string(),
                        w.proto.to_string(),
                        w.remote_port.to_string(),
                        w.bytes_up.to_string(),
                        w.bytes_down.to_string(),
                        w.packets_up.to_string(),
                        w.packets_down.to_string(),
                        w.flows.to_string(),
                        String::new(),
                    ],
                };
                w.write_record(&row)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<u64> {
        Ok(match self {
            Sink::Jsonl(mut w) | Sink::Msgpack(mut w) => {
                w.flush()?;
                w.bytes
            }
            Sink::Csv(w) => {
                let mut c = w.into_inner().map_err(|e| anyhow!("{}", e.error()))?;
                c.flush()?;
                c.bytes
            }
        })
    }
}

fn category_name(c: Category) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The exported form of a device's identification.
fn device_entry(
    mac: Mac,
    opts: &ExportOptions,
    identity: Option<&Identity>,
    label: Option<&String>,
    seen: Option<(u64, u64)>,
    all_macs: &[[String; 4]],
    summary: &mut ExportSummary,
) -> DeviceEntry {
    let mut evidence = Vec::new();
    if let Some(id) = identity {
        for s in &id.evidence {
            if !opts.include_names && NAME_SOURCES.contains(&s.source.as_str()) {
                summary.signals_dropped += 1;
                continue;
            }
            let value = if s.source == "oui" {
                // Never the MAC itself, names or not: its vendor part only.
                if mac.is_local() {
                    "randomised".to_string()
                } else {
                    mac_spellings(mac)[0][..8].to_string()
                }
            } else {
                scrub(&s.value, all_macs)
            };
            evidence.push(Signal {
                source: s.source.clone(),
                value,
                suggests: scrub(&s.suggests, all_macs),
                weight: s.weight,
            });
        }
    }
    let label = label.map(|typed| {
        let n = crate::labels::normalise(typed);
        LabelEntry {
            product_id: n.entry.as_ref().map(|p| p.id.clone()),
            vendor: n.vendor.clone(),
            product: n.entry.as_ref().map(|p| p.product.clone()),
            kind: n.kind,
            typed: opts.include_names.then(|| scrub(typed, all_macs)),
        }
    });
    DeviceEntry {
        device: device_id(&opts.salt, mac),
        kind: identity.map(|i| i.kind).unwrap_or(Kind::Unknown),
        vendor: identity.and_then(|i| i.vendor.as_deref().map(|v| scrub(v, all_macs))),
        model: identity.and_then(|i| i.model.as_deref().map(|v| scrub(v, all_macs))),
        confidence: identity.map(|i| i.confidence).unwrap_or(0.0),
        evidence,
        label,
        first_seen: seen.map(|s| s.0),
        last_seen: seen.map(|s| s.1),
    }
}

/// Writes the export of `store`'s windows in `[opts.since, opts.until)`
/// with the devices' identification and labels.
pub fn write<W: Write>(
    store: &Store,
    opts: &ExportOptions,
    identities: &BTreeMap<Mac, Identity>,
    labels: &BTreeMap<Mac, String>,
    out: &mut W,
) -> Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    let records = store.devices()?;
    let mut lan = LanPrefixes::default();
    let mut seen: BTreeMap<Mac, (u64, u64)> = BTreeMap::new();
    for d in &records {
        for ip in &d.ips {
            lan.add(*ip);
        }
        seen.insert(d.mac, (d.first_seen, d.last_seen));
    }
    let macs: BTreeSet<Mac> = seen
        .keys()
        .chain(identities.keys())
        .chain(labels.keys())
        .copied()
        .collect();
    let all_macs: Vec<[String; 4]> = macs.iter().map(|m| mac_spellings(*m)).collect();
    let mut sink = Sink::new(opts.format, out)?;
    sink.put(&Record::Header(Header {
        schema: SCHEMA_NAME.into(),
        schema_version: SCHEMA_VERSION,
        installation: installation_id(&opts.salt),
        since: opts.since,
        until: opts.until,
        tier: opts.tier,
        window_secs: window_secs(opts.tier),
        include_names: opts.include_names,
        created: crate::time::unix_secs(),
    }))?;
    for mac in &macs {
        let d = device_entry(
            *mac,
            opts,
            identities.get(mac),
            labels.get(mac),
            seen.get(mac).copied(),
            &all_macs,
            &mut summary,
        );
        sink.put(&Record::Device(d))?;
        summary.devices += 1;
    }
    // The built-in base only, not the owner's lists: exported and donated
    // data must mean the same from every router, and a list's name is the
    // owner's own words.
    let kb = KnowledgeBase::builtin();
    let mut explained: HashMap<String, (Option<String>, Category, bool)> = HashMap::new();
    let mut ids: HashMap<Mac, String> = HashMap::new();
    let mut t = opts.since;
    while t < opts.until {
        // An hour of windows at a time: memory stays flat.
        let end = t.saturating_add(3600).min(opts.until);
        for w in store.windows(opts.tier, t, end, None)? {
            summary.windows += 1;
            let device = ids
                .entry(w.mac)
                .or_insert_with(|| device_id(&opts.salt, w.mac))
                .clone();
            for r in &w.records {
                if let Some(ip) = r.device_ip {
                    lan.add(ip);
                }
            }
            for r in &w.records {
                let remote_lan = r
                    .remote_ip
                    .is_some_and(|ip| lan.contains(ip) || !is_public(ip));
                let remote_ip = match r.remote_ip {
                    Some(ip) if !remote_lan => Some(ip.to_string()),
                    Some(_) => {
                        summary.remote_ips_dropped += 1;
                        None
                    }
                    None => None,
                };
                if explained.len() > 50_000 {
                    explained.clear();
                }
                let (organisation, category, local) = match &r.name {
                    Some(n) => explained
                        .entry(n.clone())
                        .or_insert_with(|| {
                            let e = kb.explain(n, &[], None);
                            (e.organisation, e.category, e.source == "local-name")
                        })
                        .clone(),
                    None => match r.remote_ip {
                        Some(ip) if !remote_lan => {
                            let e = kb.explain_address(ip);
                            (e.organisation, e.category, false)
                        }
                        _ => (None, Category::Other, remote_lan),
                    },
                };
                let remote_host = match &r.name {
                    Some(n) if (local || remote_lan) && !opts.include_names => {
                        summary.names_dropped += 1;
                        None
                    }
                    Some(n) => Some(scrub(&crate::explain::normalise(n), &all_macs)),
                    None => None,
                };
                sink.put(&Record::Window(WindowRow {
                    start: w.start,
                    device: device.clone(),
                    remote_host,
                    remote_organisation: organisation,
                    remote_category: category,
                    remote_ip,
                    remote_lan,
                    proto: r.proto,
                    remote_port: r.remote_port,
                    bytes_up: r.bytes_up,
                    bytes_down: r.bytes_down,
                    packets_up: r.packets_up,
                    packets_down: r.packets_down,
                    flows: r.flows,
                }))?;
                summary.rows += 1;
            }
        }
        t = end;
    }
    summary.bytes = sink.finish()?;
    Ok(summary)
}

fn collect(records: impl IntoIterator<Item = Result<Record>>) -> Result<Export> {
    let mut it = records.into_iter();
    let header = match it.next() {
        Some(Ok(Record::Header(h))) => h,
        Some(Ok(_)) => bail!("the export does not start with its header"),
        Some(Err(e)) => return Err(e),
        None => bail!("the export is empty"),
    };
    if header.schema != SCHEMA_NAME {
        bail!("not an {SCHEMA_NAME} file (schema `{}`)", header.schema);
    }
    if header.schema_version > SCHEMA_VERSION {
        bail!(
            "schema version {} is newer than this reader's ({SCHEMA_VERSION})",
            header.schema_version
        );
    }
    let mut devices = Vec::new();
    let mut windows = Vec::new();
    for r in it {
        match r? {
            Record::Header(_) => bail!("a second header"),
            Record::Device(d) => devices.push(d),
            Record::Window(w) => windows.push(w),
        }
    }
    Ok(Export {
        header,
        devices,
        windows,
    })
}

fn cell<T: FromStr>(row: &csv::StringRecord, i: usize) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let s = row.get(i).unwrap_or("");
    s.parse()
        .map_err(|e| anyhow!("column {}: `{s}`: {e}", CSV_COLUMNS[i]))
}

fn cell_opt(row: &csv::StringRecord, i: usize) -> Option<String> {
    row.get(i).filter(|s| !s.is_empty()).map(str::to_string)
}

fn csv_record(row: &csv::StringRecord) -> Result<Record> {
    Ok(match row.get(0).unwrap_or("") {
        "header" => Record::Header(serde_json::from_str(row.get(15).unwrap_or(""))?),
        "device" => Record::Device(serde_json::from_str(row.get(15).unwrap_or(""))?),
        "window" => Record::Window(WindowRow {
            device: cell(row, 1)?,
            start: cell(row, 2)?,
            remote_host: cell_opt(row, 3),
            remote_organisation: cell_opt(row, 4),
            remote_category: serde_json::from_value(serde_json::Value::String(
                row.get(5).unwrap_or("").to_string(),
            ))?,
            remote_ip: cell_opt(row, 6),
            remote_lan: cell(row, 7)?,
            proto: cell(row, 8)?,
            remote_port: cell(row, 9)?,
            bytes_up: cell(row, 10)?,
            bytes_down: cell(row, 11)?,
            packets_up: cell(row, 12)?,
            packets_down: cell(row, 13)?,
            flows: cell(row, 14)?,
        }),
        other => bail!("unknown record `{other}`"),
    })
}

/// Reads an export back (checking its schema name and version).
pub fn read(bytes: &[u8], format: Format) -> Result<Export> {
    match format {
        Format::Jsonl => collect(
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(|l| serde_json::from_slice::<Record>(l).map_err(Into::into)),
        ),
        Format::Msgpack => {
            let mut rest = bytes;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let r: Record = rmp_serde::from_read(&mut rest)
                    .with_context(|| format!("record {}", out.len() + 1))?;
                out.push(Ok(r));
            }
            collect(out)
        }
        Format::Csv => {
            let mut rd = csv::Reader::from_reader(bytes);
            let head = rd.headers()?.clone();
            if head.iter().ne(CSV_COLUMNS) {
                bail!("unexpected CSV columns: {head:?}");
            }
            let rows: Vec<Result<Record>> = rd
                .records()
                .map(|r| r.map_err(anyhow::Error::from).and_then(|r| csv_record(&r)))
                .collect();
            collect(rows)
        }
    }
}

#[cfg(test)]
mod tests;
