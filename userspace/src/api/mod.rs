//! The local API: JSON over HTTP/1.1 on a unix socket (only root and the
//! rpcd plugin reach it), served with hyper. Handlers read the daemon's
//! published snapshot and the database; they never write.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/status` | the daemon, its ports and the kernel counters |
//! | GET | `/v1/devices` | every device with addresses, totals and online state |
//! | GET | `/v1/flows?device=MAC&since=20m&until=…` | traffic per remote end over a range, named and explained |
//! | GET | `/v1/parties?device=MAC&since=1h` | bytes by organisation and by category |
//! | GET | `/v1/series?device=MAC&since=20m` | bytes per window, split by organisation |
//! | GET | `/v1/catalogue?q=echo` | known products to label a device with |
//! | GET | `/v1/rules` | rules, their state now, next change, history |
//! | GET | `/v1/alerts` | new devices, first contacts with advertising/tracking |
//! | GET | `/v1/lists` | the owner's lists: last download, domains in force, last error |
//! | POST | `/v1/devices/label` `{mac, label}` | names a device |
//! | POST | `/v1/devices/confirm_label` `{mac}` | keeps a label despite its warnings |
//! | POST | `/v1/rules/block`, `/unblock` `{mac}`, `/pause` `{mac, until}` | blocks by hand |
//! | POST | `/v1/rules/set` `{device, schedule, away_mode, household, block_*}` | a device's rule |
//! | POST | `/v1/rules/delete` `{id}` | removes a rule |
//! | POST | `/v1/export` `{since, format, include_names, output}` | writes an anonymised export |

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use crate::daemon::{Shared, source_name};
use crate::dissect::Mac;
use crate::explain::{Category, Explanation};
use crate::inventory::ONLINE_SECS;
use crate::store::{Store, Tier};
use crate::time::{parse_duration, unix_secs};

/// A device as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub mac: Mac,
    /// The owner's name for it.
    pub label: Option<String>,
    /// What it is, how sure, and why.
    pub identity: Option<IdentityView>,
    /// The names it gave itself (DHCP hostname, mDNS, UPnP), as received.
    #[serde(default)]
    pub names: Vec<String>,
    /// The label tied to the product catalogue (the typed text is kept).
    #[serde(default)]
    pub label_entry: Option<crate::labels::Normalised>,
    /// Reasons to doubt the label, with the evidence (empty once the owner
    /// confirmed the label).
    #[serde(default)]
    pub label_warnings: Vec<crate::labels::Warning>,
    #[serde(default)]
    pub label_confirmed: bool,
    /// For unlabelled devices: the likeliest products, with why.
    #[serde(default)]
    pub suggestions: Vec<crate::labels::Suggestion>,
    pub ips: Vec<IpAddr>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub online: bool,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
}

/// A device's identification as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentityView {
    pub kind: crate::identify::Kind,
    pub kind_label: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub confidence: f32,
    pub evidence: Vec<crate::identify::Signal>,
}

impl From<&crate::identify::Identity> for IdentityView {
    fn from(i: &crate::identify::Identity) -> Self {
        IdentityView {
            kind: i.kind,
            kind_label: i.kind.label().to_string(),
            vendor: i.vendor.clone(),
            model: i.model.clone(),
            confidence: i.confidence,
            evidence: i.evidence.clone(),
        }
    }
}

/// Traffic between a device and one remote end over a range.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowView {
    pub device: Mac,
    pub device_ip: Option<IpAddr>,
    pub remote_ip: Option<IpAddr>,
    pub protocol: String,
    pub remote_port: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// Unix seconds of the first and last window with traffic.
    pub first: u64,
    pub last: u64,
    /// The remote end's name, and where it came from.
    pub name: Option<String>,
    pub name_source: Option<String>,
    /// Who runs it and why a device would talk to it, in plain words.
    pub explanation: Explanation,
}

/// Everything a device (or the network) exchanged with one organisation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartyView {
    /// The organisation, or the registrable domain / address when unknown.
    pub party: String,
    pub organisation: Option<String>,
    pub category: Category,
    pub category_label: String,
    pub description: String,
    pub expected: Option<bool>,
    /// Names seen for it (bounded).
    pub names: Vec<String>,
    pub devices: Vec<Mac>,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// Bytes by category.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CategoryView {
    pub category: Category,
    pub label: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartiesView {
    pub parties: Vec<PartyView>,
    pub categories: Vec<CategoryView>,
}

/// Creates the socket, replacing a stale one, readable by root only.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>, store: Arc<Store>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let store = store.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared, &store).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// An API answer: status and JSON body. The unix-socket server and the
/// dashboard's HTTP server both turn requests into [`dispatch`] calls, so
/// there is one API whatever the transport.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Answer {
    Answer {
        status,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Answer {
    json(status, &serde_json::json!({ "error": msg.into() }))
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

async fn handle(req: Request<Incoming>, shared: &Shared, store: &Store) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let a = dispatch(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &body,
        shared,
        store,
    );
    Response::builder()
        .status(a.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(a.body)))
        .unwrap()
}

/// Answers one API request.
pub fn dispatch(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Shared,
    store: &Store,
) -> Answer {
    if method == Method::POST && path == "/v1/export" {
        return export(body, shared, store);
    }
    if method == Method::POST {
        return change(path, body, shared);
    }
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET to read and POST to change",
        );
    }
    let q = parse_query(query);
    match path {
        "/v1/status" => {
            let mut st = shared.status.read().unwrap().clone();
            st.lists = shared.lists.read().unwrap().clone();
            json(StatusCode::OK, &st)
        }
        "/v1/lists" => json(StatusCode::OK, &*shared.lists.read().unwrap()),
        "/v1/devices" => json(StatusCode::OK, &devices_with_labels(shared, store)),
        "/v1/catalogue" => {
            let q = q.get("q").map(String::as_str).unwrap_or("");
            json(StatusCode::OK, &crate::labels::search(q, 20))
        }
        "/v1/flows" => match flows(store, shared, &q) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        },
        "/v1/parties" => match flows(store, shared, &q) {
            Ok(v) => json(StatusCode::OK, &parties(&v)),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        },
        "/v1/series" => match series(store, shared, &q) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        },
        "/v1/rules" => json(StatusCode::OK, &*shared.rules.read().unwrap()),
        "/v1/alerts" => json(StatusCode::OK, &*shared.alerts.read().unwrap()),
        other => error(StatusCode::NOT_FOUND, format!("no such endpoint {other}")),
    }
}

#[derive(Deserialize)]
struct LabelRequest {
    mac: Mac,
    label: String,
}

#[derive(Deserialize)]
struct DeviceRequest {
    mac: Mac,
    until: Option<i64>,
}

#[derive(Deserialize)]
struct DeleteRequest {
    id: String,
}

#[derive(Deserialize)]
struct ExportRequest {
    /// `20m`, `1d`, or Unix seconds.
    since: Option<String>,
    format: Option<String>,
    #[serde(default)]
    include_names: bool,
    /// Where to write; a file under /tmp when not given.
    output: Option<std::path::PathBuf>,
}

/// Writes an anonymised export (see docs/export-schema.md) to a file.
fn export(body: &[u8], shared: &Shared, store: &Store) -> Answer {
    let r: ExportRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let run = || -> Result<serde_json::Value> {
        let now = unix_secs();
        let since = instant(r.since.as_ref(), now.saturating_sub(86400), now)?;
        let format: crate::export::Format = r.format.as_deref().unwrap_or("jsonl").parse()?;
        let salt = crate::export::salt(&shared.salt_file)?;
        let mut opts = crate::export::ExportOptions::new(since, now + 1, format, salt);
        opts.include_names = r.include_names;
        // The finest resolution that still holds the whole range.
        opts.tier = Tier::for_range(now.saturating_sub(since));
        let output = r.output.clone().unwrap_or_else(|| {
            std::path::PathBuf::from(format!(
                "/tmp/iot-inspector-export-{now}.{}",
                format.extension()
            ))
        });
        let ids = shared.identities.read().unwrap().clone();
        let labels = shared.labels.read().unwrap().clone();
        let tmp = output.with_extension("part");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let summary = crate::export::write(store, &opts, &ids, &labels, &mut f)?;
        use std::io::Write;
        f.flush()?;
        drop(f);
        std::fs::rename(&tmp, &output)?;
        Ok(serde_json::json!({ "output": output, "summary": summary }))
    };
    match run() {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

/// Requests that change the configuration: each edits the UCI file (so
/// LuCI and `uci` see the same thing), then wakes the daemon to apply it.
fn change(path: &str, body: &[u8], shared: &Shared) -> Answer {
    use crate::control::edit;
    let Some(config) = shared.config_path.as_deref() else {
        return error(
            StatusCode::CONFLICT,
            "the daemon runs without a configuration file",
        );
    };
    fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Answer> {
        serde_json::from_slice(body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
    }
    let _guard = shared.config_lock.lock().unwrap();
    let result: Result<serde_json::Value, Answer> = (|| {
        let done = match path {
            "/v1/devices/label" => {
                let r: LabelRequest = parse(body)?;
                edit::set_label(config, r.mac, &r.label).map(|_| serde_json::json!({"ok": true}))
            }
            "/v1/devices/confirm_label" => {
                let r: DeviceRequest = parse(body)?;
                edit::confirm_label(config, r.mac).map(|_| serde_json::json!({"ok": true}))
            }
            "/v1/rules/block" => {
                let r: DeviceRequest = parse(body)?;
                edit::block(config, r.mac, None).map(|_| serde_json::json!({"ok": true}))
            }
            "/v1/rules/pause" => {
                let r: DeviceRequest = parse(body)?;
                let Some(until) = r.until else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "a pause needs `until` (unix seconds)",
                    ));
                };
                edit::block(config, r.mac, Some(until)).map(|_| serde_json::json!({"ok": true}))
            }
            "/v1/rules/unblock" => {
                let r: DeviceRequest = parse(body)?;
                edit::unblock(config, r.mac)
                    .map(|removed| serde_json::json!({"ok": true, "removed": removed}))
            }
            "/v1/rules/set" => {
                let r: crate::control::edit::RuleRequest = parse(body)?;
                edit::set_rule(config, &r).map(|id| serde_json::json!({"ok": true, "id": id}))
            }
            "/v1/rules/delete" => {
                let r: DeleteRequest = parse(body)?;
                edit::delete_rule(config, &r.id).map(|_| serde_json::json!({"ok": true}))
            }
            other => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no such endpoint {other}"),
                ));
            }
        };
        done.map_err(|e| error(StatusCode::BAD_REQUEST, format!("{e:#}")))
    })();
    match result {
        Ok(v) => {
            shared.reload.notify_one();
            json(StatusCode::OK, &v)
        }
        Err(a) => a,
    }
}

/// Devices with their labels checked against the catalogue and the
/// evidence, and suggestions for those without one.
fn devices_with_labels(shared: &Shared, store: &Store) -> Vec<DeviceView> {
    let mut devs = devices(shared);
    let ids = shared.identities.read().unwrap();
    let now = unix_secs();
    for d in &mut devs {
        let Some(identity) = ids.get(&d.mac) else {
            continue;
        };
        match &d.label {
            Some(label) => {
                let n = crate::labels::normalise(label);
                // Whom it talked to over the last day, from the minute rollups.
                let windows = store
                    .windows_covering(
                        Tier::Minute,
                        now.saturating_sub(86400),
                        now + 1,
                        Some(d.mac),
                    )
                    .unwrap_or_default();
                let parties =
                    crate::labels::parties_of(windows.iter().flat_map(|w| w.records.iter()));
                if !d.label_confirmed {
                    d.label_warnings = crate::labels::check(&n, identity, &parties);
                }
                d.label_entry = Some(n);
            }
            None => d.suggestions = crate::labels::suggest(identity, 3),
        }
    }
    devs
}

fn devices(shared: &Shared) -> Vec<DeviceView> {
    let now = unix_secs();
    let labels = shared.labels.read().unwrap();
    let ids = shared.identities.read().unwrap();
    let self_names = shared.self_names.read().unwrap();
    let confirmed = shared.labels_confirmed.read().unwrap();
    shared
        .devices
        .read()
        .unwrap()
        .iter()
        .map(|d| DeviceView {
            mac: d.mac,
            label: labels.get(&d.mac).cloned(),
            identity: ids.get(&d.mac).map(IdentityView::from),
            names: self_names.get(&d.mac).cloned().unwrap_or_default(),
            label_entry: None,
            label_warnings: Vec::new(),
            label_confirmed: confirmed.contains(&d.mac),
            suggestions: Vec::new(),
            ips: d.ips.iter().rev().copied().collect(),
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            online: now.saturating_sub(d.last_seen) <= ONLINE_SECS,
            bytes_up: d.bytes_up,
            bytes_down: d.bytes_down,
            packets_up: d.packets_up,
            packets_down: d.packets_down,
        })
        .collect()
}

/// Parses `since`/`until` as a duration back from now (`20m`) or Unix seconds.
fn instant(v: Option<&String>, default: u64, now: u64) -> Result<u64> {
    let Some(v) = v else { return Ok(default) };
    if let Ok(n) = v.parse::<u64>()
        && n > 1_000_000_000
    {
        return Ok(n);
    }
    let d = parse_duration(v).map_err(anyhow::Error::msg)?;
    Ok(now.saturating_sub(d.as_secs()))
}

pub fn protocol_name(p: u8) -> String {
    use iot_inspector_common::proto;
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        proto::ARP => "arp".into(),
        proto::OTHER_L2 => "other-l2".into(),
        proto::IPV6_UNPARSED => "ipv6-ext".into(),
        0 => "other".into(),
        n => format!("ip-{n}"),
    }
}

fn flows(store: &Store, shared: &Shared, q: &HashMap<String, String>) -> Result<Vec<FlowView>> {
    let now = unix_secs();
    let device = match q.get("device") {
        Some(m) if !m.is_empty() => Some(m.parse::<Mac>()?),
        _ => None,
    };
    let since = instant(q.get("since"), now.saturating_sub(1200), now)?;
    let until = instant(q.get("until"), now + 1, now)?;
    let tier = Tier::for_range(now.saturating_sub(since));
    // (device, device address, remote address, protocol, remote port)
    type Key = (Mac, Option<IpAddr>, Option<IpAddr>, u8, u16);
    let mut out: HashMap<Key, FlowView> = HashMap::new();
    for w in store.windows_covering(tier, since, until, device)? {
        for r in &w.records {
            let v = out
                .entry((w.mac, r.device_ip, r.remote_ip, r.proto, r.remote_port))
                .or_insert_with(|| FlowView {
                    device: w.mac,
                    device_ip: r.device_ip,
                    remote_ip: r.remote_ip,
                    protocol: protocol_name(r.proto),
                    remote_port: r.remote_port,
                    bytes_up: 0,
                    bytes_down: 0,
                    packets_up: 0,
                    packets_down: 0,
                    first: w.start,
                    last: w.start,
                    name: None,
                    name_source: None,
                    explanation: unexplained(),
                });
            if v.name.is_none() && r.name.is_some() {
                v.name = r.name.clone();
                v.name_source = r.name_source.clone();
            }
            v.bytes_up += r.bytes_up;
            v.bytes_down += r.bytes_down;
            v.packets_up += r.packets_up;
            v.packets_down += r.packets_down;
            v.first = v.first.min(w.start);
            v.last = v.last.max(w.start);
        }
    }
    let mut v: Vec<FlowView> = out.into_values().collect();
    let kb = crate::explain::current();
    let names = shared.names.read().unwrap();
    let now_ns = crate::time::unix_ns();
    for f in &mut v {
        if f.name.is_none() {
            // A name learned after the window was stored still applies.
            if let Some(b) = f
                .remote_ip
                .and_then(|ip| names.lookup(f.device, ip, now_ns))
            {
                f.name = Some(b.name.clone());
                f.name_source = Some(source_name(&b.source).to_string());
            }
        }
        f.explanation = match (&f.name, f.remote_ip) {
            (Some(n), _) => kb.explain(n, &[], None),
            (None, Some(ip)) => kb.explain_address(ip),
            (None, None) => unexplained(),
        };
    }
    v.sort_by_key(|f| std::cmp::Reverse(f.bytes_up + f.bytes_down));
    Ok(v)
}

/// Traffic over time: one point per stored window, split by party.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesView {
    /// Seconds per point (5, 60 or 3600 by the range asked for).
    pub step: u64,
    pub points: Vec<SeriesPoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub start: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Bytes (both ways) by party (organisation, else domain or address).
    pub by_party: BTreeMap<String, u64>,
}

fn series(store: &Store, shared: &Shared, q: &HashMap<String, String>) -> Result<SeriesView> {
    let now = unix_secs();
    let device = match q.get("device") {
        Some(m) if !m.is_empty() => Some(m.parse::<Mac>()?),
        _ => None,
    };
    let since = instant(q.get("since"), now.saturating_sub(1200), now)?;
    let tier = Tier::for_range(now.saturating_sub(since));
    let step = match tier {
        Tier::Raw => shared.status.read().unwrap().window_secs.max(1),
        Tier::Minute => 60,
        Tier::Hour => 3600,
    };
    let kb = crate::explain::current();
    let names = shared.names.read().unwrap();
    let now_ns = crate::time::unix_ns();
    let mut points: BTreeMap<u64, SeriesPoint> = BTreeMap::new();
    for w in store.windows_covering(tier, since, now + 1, device)? {
        // Finer windows of the recent part fall into the tier's buckets.
        let bucket = w.start / step * step;
        let p = points.entry(bucket).or_insert_with(|| SeriesPoint {
            start: bucket,
            bytes_up: 0,
            bytes_down: 0,
            by_party: BTreeMap::new(),
        });
        for r in &w.records {
            p.bytes_up += r.bytes_up;
            p.bytes_down += r.bytes_down;
            let name = r.name.clone().or_else(|| {
                r.remote_ip
                    .and_then(|ip| names.lookup(w.mac, ip, now_ns))
                    .map(|b| b.name.clone())
            });
            let e = match (&name, r.remote_ip) {
                (Some(n), _) => kb.explain(n, &[], None),
                (None, Some(ip)) => kb.explain_address(ip),
                (None, None) => unexplained(),
            };
            let party = e
                .organisation
                .or(e.registrable)
                .or(name)
                .or_else(|| r.remote_ip.map(|i| i.to_string()))
                .unwrap_or_else(|| "other".into());
            *p.by_party.entry(party).or_default() += r.bytes();
        }
    }
    Ok(SeriesView {
        step,
        points: points.into_values().collect(),
    })
}

fn unexplained() -> Explanation {
    Explanation {
        domain: String::new(),
        registrable: None,
        organisation: None,
        category: Category::Other,
        description: "Traffic too small or too varied to list one by one.".into(),
        expected: None,
        source: "none".into(),
    }
}

/// Groups flows by the organisation behind them (or the registrable domain,
/// or the address), and sums bytes by category.
pub fn parties(flows: &[FlowView]) -> PartiesView {
    let mut by_party: HashMap<String, PartyView> = HashMap::new();
    let mut by_cat: HashMap<Category, (u64, u64)> = HashMap::new();
    for f in flows {
        let e = &f.explanation;
        let key = e
            .organisation
            .clone()
            .or_else(|| e.registrable.clone())
            .or_else(|| f.name.clone())
            .or_else(|| f.remote_ip.map(|i| i.to_string()))
            .unwrap_or_else(|| "other".into());
        let p = by_party.entry(key.clone()).or_insert_with(|| PartyView {
            party: key,
            organisation: e.organisation.clone(),
            category: e.category,
            category_label: e.category.label().to_string(),
            description: e.description.clone(),
            expected: e.expected,
            names: Vec::new(),
            devices: Vec::new(),
            bytes_up: 0,
            bytes_down: 0,
        });
        p.bytes_up += f.bytes_up;
        p.bytes_down += f.bytes_down;
        if let Some(n) = &f.name
            && !p.names.contains(n)
            && p.names.len() < 20
        {
            p.names.push(n.clone());
        }
        if !p.devices.contains(&f.device) {
            p.devices.push(f.device);
        }
        let c = by_cat.entry(e.category).or_default();
        c.0 += f.bytes_up;
        c.1 += f.bytes_down;
    }
    let mut parties: Vec<PartyView> = by_party.into_values().collect();
    parties.sort_by_key(|f| std::cmp::Reverse(f.bytes_up + f.bytes_down));
    let mut categories: Vec<CategoryView> = by_cat
        .into_iter()
        .map(|(c, (u, d))| CategoryView {
            category: c,
            label: c.label().to_string(),
            bytes_up: u,
            bytes_down: d,
        })
        .collect();
    categories.sort_by_key(|f| std::cmp::Reverse(f.bytes_up + f.bytes_down));
    PartiesView {
        parties,
        categories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("02%3A00"), "02:00");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
