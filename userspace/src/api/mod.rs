//! The local API: JSON over HTTP/1.1 on a unix socket (only root and the
//! rpcd plugin reach it), served with hyper. Handlers read the daemon's
//! published snapshot and the database; they never write.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/status` | the daemon, its ports and the kernel counters |
//! | GET | `/v1/devices` | every device with addresses, totals and online state |
//! | GET | `/v1/flows?device=MAC&since=20m&until=…` | traffic per remote end over a range |

pub mod client;

use std::collections::HashMap;
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

use crate::daemon::Shared;
use crate::dissect::Mac;
use crate::inventory::ONLINE_SECS;
use crate::store::{Store, Tier};
use crate::time::{parse_duration, unix_secs};

/// A device as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub mac: Mac,
    pub ips: Vec<IpAddr>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub online: bool,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
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
}

/// Creates the socket, replacing a stale one, readable by root only.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
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
                async move { Ok::<_, Infallible>(handle(req, &shared, &store)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg.into() }))
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v)))
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

fn handle(req: Request<Incoming>, shared: &Shared, store: &Store) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
    }
    let q = query(&req);
    match req.uri().path() {
        "/v1/status" => json(StatusCode::OK, &*shared.status.read().unwrap()),
        "/v1/devices" => json(StatusCode::OK, &devices(shared)),
        "/v1/flows" => match flows(store, &q) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        },
        other => error(StatusCode::NOT_FOUND, format!("no such endpoint {other}")),
    }
}

fn devices(shared: &Shared) -> Vec<DeviceView> {
    let now = unix_secs();
    shared
        .devices
        .read()
        .unwrap()
        .iter()
        .map(|d| DeviceView {
            mac: d.mac,
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
    if let Ok(n) = v.parse::<u64>() {
        if n > 1_000_000_000 {
            return Ok(n);
        }
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

fn flows(store: &Store, q: &HashMap<String, String>) -> Result<Vec<FlowView>> {
    let now = unix_secs();
    let device = match q.get("device") {
        Some(m) if !m.is_empty() => Some(m.parse::<Mac>()?),
        _ => None,
    };
    let since = instant(q.get("since"), now.saturating_sub(1200), now)?;
    let until = instant(q.get("until"), now + 1, now)?;
    let tier = Tier::for_range(now.saturating_sub(since));
    let mut out: HashMap<(Mac, Option<IpAddr>, Option<IpAddr>, u8, u16), FlowView> =
        HashMap::new();
    for w in store.windows(tier, since, until, device)? {
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
                });
            v.bytes_up += r.bytes_up;
            v.bytes_down += r.bytes_down;
            v.packets_up += r.packets_up;
            v.packets_down += r.packets_down;
            v.first = v.first.min(w.start);
            v.last = v.last.max(w.start);
        }
    }
    let mut v: Vec<FlowView> = out.into_values().collect();
    v.sort_by(|a, b| (b.bytes_up + b.bytes_down).cmp(&(a.bytes_up + a.bytes_down)));
    Ok(v)
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
