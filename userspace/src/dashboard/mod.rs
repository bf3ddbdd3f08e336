//! The standalone dashboard: a small HTTP server in the daemon for Linux
//! gateways without LuCI (and the demo). It serves one page and the same
//! rendering code as the LuCI app (`luci-app/htdocs/.../iot-inspector/`,
//! embedded at build time so the package and the daemon cannot drift), and
//! answers `/api/v1/...` through [`crate::api::dispatch`], the one API.
//!
//! Security, because this listens on TCP where the unix socket did not:
//! - Loopback by default. Any other address needs a token (config
//!   validation refuses to start without one, and so does [`serve`]); when a
//!   token is configured every request must carry it, as
//!   `Authorization: Bearer TOKEN` or the `token` cookie that `/?token=TOKEN`
//!   sets (HttpOnly, SameSite=Strict).
//! - Requests that change state (anything but GET/HEAD) are refused unless
//!   the browser says they come from this origin (`Sec-Fetch-Site:
//!   same-origin`, or, from clients that do not send it, an `Origin` equal to
//!   this server's) and carry `Content-Type: application/json`, which a
//!   cross-site form cannot send without a CORS preflight we never grant.
//! - Without a token, the `Host` must be an address or `localhost`, so a
//!   page that rebinds its own DNS name to 127.0.0.1 cannot read the API.
//! - Every answer carries a strict CSP (`default-src 'self'`, no inline
//!   script or style), `nosniff`, no framing and no referrer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::Answer;
use crate::daemon::Shared;
use crate::store::Store;

/// The page and its scripts. render.js and style.css are the LuCI app's own
/// files: one rendering code for both UIs.
const INDEX_HTML: &str = include_str!("dashboard.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const RENDER_JS: &str =
    include_str!("../../../luci-app/htdocs/luci-static/resources/iot-inspector/render.js");
const STYLE_CSS: &str =
    include_str!("../../../luci-app/htdocs/luci-static/resources/iot-inspector/style.css");

/// Largest request body accepted (labels and rules are small).
const MAX_BODY: usize = 64 * 1024;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Who may use the dashboard.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Required on every request when set.
    token: Option<String>,
}

impl Policy {
    /// Refuses a non-loopback address without a token (the same rule as the
    /// configuration's validation, kept here too so no caller can skip it).
    pub fn new(addr: SocketAddr, token: Option<String>) -> Result<Policy> {
        let token = token.filter(|t| !t.is_empty());
        if !addr.ip().is_loopback() && token.is_none() {
            bail!("the dashboard on {addr} is not on a loopback address, so a token is required");
        }
        Ok(Policy { token })
    }
}

/// Serves the dashboard on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    token: Option<String>,
    shared: Arc<Shared>,
    store: Arc<Store>,
) -> Result<()> {
    let policy = Policy::new(addr, token)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("dashboard: listening on {addr}"))?;
    log::info!(
        "dashboard on http://{addr}/{}",
        if policy.token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    serve_listener(listener, policy, shared, store).await
}

/// Serves on a bound listener (tests bind port 0 and read it back).
pub async fn serve_listener(
    listener: TcpListener,
    policy: Policy,
    shared: Arc<Shared>,
    store: Arc<Store>,
) -> Result<()> {
    let policy = Arc::new(policy);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of fds and the like: wait instead of spinning.
                log::warn!("dashboard: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let (policy, shared, store) = (policy.clone(), shared.clone(), store.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (policy, shared, store) = (policy.clone(), shared.clone(), store.clone());
                async move { Ok::<_, Infallible>(handle(req, &policy, &shared, &store).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    policy: &Policy,
    shared: &Shared,
    store: &Store,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if let Some(refusal) = check(&parts.method, &parts.uri, &parts.headers, policy) {
        return refusal;
    }
    // `/?token=…` (already checked): keep it in a cookie and drop it from
    // the address bar, history and any later Referer.
    if query_param(parts.uri.query().unwrap_or(""), "token").is_some() {
        let mut r = plain(StatusCode::SEE_OTHER, "");
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        if let Some(t) = &policy.token
            && let Ok(v) = HeaderValue::from_str(&format!(
                "token={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
            ))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let path = parts.uri.path();
    if let Some(api_path) = path.strip_prefix("/api/") {
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let api_path = format!("/{api_path}");
        let a = call_api(
            &parts.method,
            &api_path,
            parts.uri.query().unwrap_or(""),
            &body,
            shared,
            store,
        );
        let mut r = Response::new(Full::new(Bytes::from(a.body)));
        *r.status_mut() = a.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return secure(r);
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET here");
    }
    let (content, kind) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/static/render.js" => (RENDER_JS, "text/javascript; charset=utf-8"),
        "/static/dashboard.js" => (DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "/static/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(content.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(r)
}

/// The one place the dashboard calls the API.
fn call_api(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    shared: &Shared,
    store: &Store,
) -> Answer {
    crate::api::dispatch(method, path, query, body, shared, store)
}

/// Why a request is refused, if it is: the token, the Host, and for
/// state-changing requests the origin and the content type.
fn check(
    method: &Method,
    uri: &hyper::Uri,
    headers: &HeaderMap,
    policy: &Policy,
) -> Option<Response<Full<Bytes>>> {
    if let Some(token) = &policy.token {
        let offered = bearer(headers)
            .or_else(|| cookie(headers, "token"))
            .or_else(|| {
                // Only the entry page takes it from the address.
                (method == Method::GET && uri.path() == "/")
                    .then(|| query_param(uri.query().unwrap_or(""), "token"))
                    .flatten()
            });
        if !offered.is_some_and(|o| constant_time_eq(o.as_bytes(), token.as_bytes())) {
            return Some(plain(
                StatusCode::UNAUTHORIZED,
                "This dashboard needs its token: open /?token=… (option 'token' in /etc/config/iot-inspector).",
            ));
        }
    } else if !host_is_literal(headers) {
        return Some(plain(
            StatusCode::MISDIRECTED_REQUEST,
            "use the dashboard by its address (e.g. http://127.0.0.1:8088/)",
        ));
    }
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    if !same_origin(headers) {
        return Some(plain(
            StatusCode::FORBIDDEN,
            "cross-site requests may not change anything",
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "changes are sent as application/json",
        ));
    }
    None
}

/// Whether a state-changing request comes from a page of this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|site| site != "same-origin") {
        return false;
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
        // No Origin: only accepted when the browser vouched with
        // Sec-Fetch-Site (checked above); plain clients send Origin.
        (None, _) => get("sec-fetch-site") == Some("same-origin"),
        (Some(_), None) => false,
    }
}

/// `Host` is an IP literal (v4, `[v6]`) or `localhost`, with or without a port.
fn host_is_literal(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, t) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| t.trim().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// One query parameter, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(r)
}

fn secure(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests;
