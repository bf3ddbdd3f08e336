//! Optional lists the owner adds by URL, merged over the built-in knowledge
//! base. Off by default: nothing is fetched unless the owner lists a URL.
//!
//! Formats:
//! - `hosts`: hosts-file lines, `0.0.0.0 ads.example.com [more names]`
//!   (`127.0.0.1`, `::` and `::1` too); `#` starts a comment.
//! - `domains`: one domain per line; `#` starts a comment.
//! - `json`: names organisations and categories:
//!   ```json
//!   { "organisations": [
//!       { "name": "Example Ads", "category": "advertising",
//!         "description": "Shows ads in TV apps.",
//!         "domains": ["ads.example.com", "adserver.example.net"] } ] }
//!   ```
//!   `category` is one of the [`Category`] names in snake case
//!   (`vendor_cloud`, `advertising`, `tracking_analytics`, ...);
//!   `description` is optional.
//!
//! Hosts and domain lists carry no organisation: their names are explained
//! as "listed in <list>" with the category the owner gave the list.
//! Built-in knowledge wins for a domain it lists itself; a list adds names
//! the built-in base does not know, and more specific names under them.
//!
//! Lists are bounded ([`MAX_LIST_BYTES`], [`MAX_LINES`]) and refused whole
//! when more than a tenth of their lines are not what the format says
//! (an HTML error page, a wrong format). The last good copy of each list is
//! kept on disk (written to a temporary file, then renamed, so a crash
//! never leaves half a list) and used when a download fails.
//!
//! Downloads never block start-up: [`load_cached`] reads only the disk, and
//! [`update`] is meant to run in its own task. `http://` URLs use hyper's
//! client (already in the daemon); `https://` URLs are handed to the
//! router's own fetcher (`uclient-fetch` on OpenWrt, `curl` elsewhere), so
//! the daemon carries no TLS stack of its own.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Category, KnowledgeBase, Organisation, normalise, valid_domain};

/// Largest list accepted.
pub const MAX_LIST_BYTES: usize = 4 * 1024 * 1024;
/// Most lines (and domains) a list may hold.
pub const MAX_LINES: usize = 200_000;
/// How long one download may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFormat {
    Hosts,
    Domains,
    Json,
}

/// A list the owner configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSpec {
    /// Short name, letters, digits, `-` and `_` (also its file name).
    pub name: String,
    pub url: String,
    pub format: ListFormat,
    /// The category of a hosts or domain list's names.
    pub category: Category,
}

/// A validated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedList {
    pub name: String,
    pub organisations: Vec<Organisation>,
}

impl ParsedList {
    pub fn domain_count(&self) -> usize {
        self.organisations.iter().map(|o| o.domains.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError(pub String);

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ListError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ListError> {
    Err(ListError(msg.into()))
}

/// A list name: letters, digits, `-` and `_`, at most 64 (it names files).
pub fn valid_list_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses and validates a downloaded list.
pub fn parse(spec: &ListSpec, bytes: &[u8]) -> Result<ParsedList, ListError> {
    if !valid_list_name(&spec.name) {
        return err(format!(
            "list name `{}`: use letters, digits, - and _",
            spec.name
        ));
    }
    if bytes.len() > MAX_LIST_BYTES {
        return err(format!(
            "list `{}` is {} bytes, more than the {MAX_LIST_BYTES} allowed",
            spec.name,
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ListError(format!("list `{}` is not UTF-8 text", spec.name)))?;
    let organisations = match spec.format {
        ListFormat::Hosts | ListFormat::Domains => {
            let domains = parse_lines(spec, text)?;
            vec![Organisation {
                id: format!("list_{}", spec.name),
                name: format!("Listed in “{}”", spec.name),
                category: spec.category,
                description: format!(
                    "Listed in your list “{}” as {}; the company behind it is not known.",
                    spec.name,
                    spec.category.label()
                ),
                domains,
                vendors: vec![],
                hosting: false,
            }]
        }
        ListFormat::Json => parse_json(spec, text)?,
    };
    Ok(ParsedList {
        name: spec.name.clone(),
        organisations,
    })
}

fn parse_lines(spec: &ListSpec, text: &str) -> Result<Vec<String>, ListError> {
    let mut domains = Vec::new();
    let mut lines = 0usize;
    let mut bad = 0usize;
    for line in text.lines() {
        lines += 1;
        if lines > MAX_LINES {
            return err(format!(
                "list `{}` has more than {MAX_LINES} lines",
                spec.name
            ));
        }
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            lines -= 1;
            continue;
        }
        let mut words = line.split_whitespace();
        let names: Vec<&str> = match spec.format {
            ListFormat::Hosts => {
                let addr = words.next().unwrap_or("");
                if !matches!(addr, "0.0.0.0" | "127.0.0.1" | "::" | "::1") {
                    bad += 1;
                    continue;
                }
                words.collect()
            }
            _ => {
                let n: Vec<&str> = words.collect();
                if n.len() != 1 {
                    bad += 1;
                    continue;
                }
                n
            }
        };
        for n in names {
            let d = normalise(n);
            if matches!(
                d.as_str(),
                "localhost" | "localhost.localdomain" | "local" | "broadcasthost" | "0.0.0.0"
            ) {
                continue;
            }
            if valid_domain(&d) && d.contains('.') {
                domains.push(d);
            } else {
                bad += 1;
            }
        }
    }
    if lines == 0 || domains.is_empty() {
        return err(format!("list `{}` names no domain", spec.name));
    }
    if bad * 10 > lines {
        return err(format!(
            "list `{}`: {bad} of {lines} lines are not in {:?} format; refused",
            spec.name, spec.format
        ));
    }
    domains.sort_unstable();
    domains.dedup();
    Ok(domains)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonList {
    organisations: Vec<JsonOrganisation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonOrganisation {
    name: String,
    category: Category,
    #[serde(default)]
    description: Option<String>,
    domains: Vec<String>,
}

fn parse_json(spec: &ListSpec, text: &str) -> Result<Vec<Organisation>, ListError> {
    let list: JsonList = serde_json::from_str(text).map_err(|e| {
        ListError(format!(
            "list `{}`: not the JSON list format: {e}",
            spec.name
        ))
    })?;
    let total: usize = list.organisations.iter().map(|o| o.domains.len()).sum();
    if total == 0 {
        return err(format!("list `{}` names no domain", spec.name));
    }
    if total > MAX_LINES {
        return err(format!(
            "list `{}` has more than {MAX_LINES} domains",
            spec.name
        ));
    }
    let mut out = Vec::new();
    for (i, o) in list.organisations.into_iter().enumerate() {
        let name = o.name.trim().chars().take(100).collect::<String>();
        if name.is_empty() {
            return err(format!(
                "list `{}`: organisation {} has no name",
                spec.name,
                i + 1
            ));
        }
        let mut domains = Vec::new();
        for d in &o.domains {
            let d = normalise(d);
            if !valid_domain(&d) || !d.contains('.') {
                return err(format!("list `{}`: `{d}` is not a domain", spec.name));
            }
            domains.push(d);
        }
        let description = o
            .description
            .map(|d| d.trim().chars().take(300).collect::<String>())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{name}: {} (from your list “{}”).",
                    o.category.label(),
                    spec.name
                )
            });
        out.push(Organisation {
            id: format!("list_{}_{}", spec.name, i + 1),
            name,
            category: o.category,
            description,
            domains,
            vendors: vec![],
            hosting: false,
        });
    }
    Ok(out)
}

impl KnowledgeBase {
    /// This knowledge base with `lists` laid over it (see the module doc:
    /// domains this base lists itself stay as they are; among lists, later
    /// ones win).
    pub fn with_lists<'a>(&self, lists: impl IntoIterator<Item = &'a ParsedList>) -> KnowledgeBase {
        let mut kb = self.clone();
        for list in lists {
            for org in &list.organisations {
                let mut org = org.clone();
                org.domains.retain(|d| {
                    kb.by_domain
                        .get(d)
                        .is_none_or(|&i| kb.origins[i] != "builtin")
                });
                if org.domains.is_empty() {
                    continue;
                }
                // Already validated by `parse`; an error here only means a
                // malformed organisation, which is skipped.
                let _ = kb.add(org, format!("list:{}", list.name), true);
            }
        }
        kb
    }
}

fn cache_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.list"))
}

/// Keeps `bytes` as the last good copy of list `name`: written to a
/// temporary file in the same directory, then renamed over the old copy.
pub fn save_last_good(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.list.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, cache_path(dir, name))
}

fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.meta"))
}

/// What is known about a last good copy: where it came from and when it
/// was last fetched (kept next to the copy as `<name>.meta`, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyMeta {
    pub url: String,
    /// Unix seconds of the last download that gave this content.
    pub fetched: u64,
}

/// Records where list `name`'s last good copy came from and when.
pub fn save_meta(dir: &Path, name: &str, meta: &CopyMeta) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.meta.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(meta).unwrap_or_default())?;
    std::fs::rename(&tmp, meta_path(dir, name))
}

/// The meta record of list `name`'s copy, if there is a readable one.
pub fn read_meta(dir: &Path, name: &str) -> Option<CopyMeta> {
    let bytes = std::fs::read(meta_path(dir, name)).ok()?;
    if bytes.len() > 64 * 1024 {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// The last good copy of one list, its bytes and meta record, if there is
/// one that still validates and came from the list's current URL (a copy
/// from an address the owner has since changed is not this list any more).
pub fn load_cached_one(
    spec: &ListSpec,
    dir: &Path,
) -> Option<(ParsedList, Vec<u8>, Option<CopyMeta>)> {
    if !valid_list_name(&spec.name) {
        return None;
    }
    let meta = read_meta(dir, &spec.name);
    if meta.as_ref().is_some_and(|m| m.url != spec.url) {
        return None;
    }
    let path = cache_path(dir, &spec.name);
    if std::fs::metadata(&path).ok()?.len() > MAX_LIST_BYTES as u64 {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let list = parse(spec, &bytes).ok()?;
    Some((list, bytes, meta))
}

/// The configured lists from their last good copies on disk (no network):
/// for start-up. Lists with no copy, or whose copy no longer validates, are
/// left out.
pub fn load_cached(specs: &[ListSpec], dir: &Path) -> Vec<ParsedList> {
    specs
        .iter()
        .filter_map(|s| load_cached_one(s, dir).map(|(list, _, _)| list))
        .collect()
}

/// What one list's update did.
#[derive(Debug)]
pub struct UpdateOutcome {
    pub name: String,
    /// `Ok(domains)` when a fresh copy was fetched, validated and saved.
    pub result: Result<usize, ListError>,
}

/// Downloads every list, validates it and keeps it as the last good copy;
/// returns the lists to use (fresh where the download worked, the last good
/// copy where it did not) and what happened to each.
pub async fn update(specs: &[ListSpec], dir: &Path) -> (Vec<ParsedList>, Vec<UpdateOutcome>) {
    let mut lists = Vec::new();
    let mut outcomes = Vec::new();
    for spec in specs {
        let fresh = match fetch(&spec.url).await {
            Ok(bytes) => parse(spec, &bytes).and_then(|list| {
                let meta = CopyMeta {
                    url: spec.url.clone(),
                    fetched: crate::time::unix_secs(),
                };
                save_last_good(dir, &spec.name, &bytes)
                    .and_then(|()| save_meta(dir, &spec.name, &meta))
                    .map_err(|e| ListError(format!("saving list `{}`: {e}", spec.name)))?;
                Ok(list)
            }),
            Err(e) => Err(e),
        };
        match fresh {
            Ok(list) => {
                outcomes.push(UpdateOutcome {
                    name: spec.name.clone(),
                    result: Ok(list.domain_count()),
                });
                lists.push(list);
            }
            Err(e) => {
                outcomes.push(UpdateOutcome {
                    name: spec.name.clone(),
                    result: Err(e),
                });
                lists.extend(load_cached(std::slice::from_ref(spec), dir));
            }
        }
    }
    (lists, outcomes)
}

/// Downloads `url` (at most [`MAX_LIST_BYTES`], within [`FETCH_TIMEOUT`]).
pub async fn fetch(url: &str) -> Result<Vec<u8>, ListError> {
    if url.starts_with("http://") {
        tokio::time::timeout(FETCH_TIMEOUT, fetch_http(url))
            .await
            .map_err(|_| ListError(format!("{url}: timed out")))?
    } else if url.starts_with("https://") {
        fetch_with_system_tool(url).await
    } else {
        err(format!(
            "{url}: only http:// and https:// URLs are supported"
        ))
    }
}

async fn fetch_http(url: &str) -> Result<Vec<u8>, ListError> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let uri: hyper::Uri = url.parse().map_err(|e| ListError(format!("{url}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| ListError(format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ListError(format!("{url}: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ListError(format!("{url}: {e}")))?;
    tokio::spawn(conn);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "iot-inspector")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ListError(format!("{url}: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ListError(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return err(format!("{url}: HTTP {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ListError(format!("{url}: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > MAX_LIST_BYTES {
                return err(format!("{url}: larger than {MAX_LIST_BYTES} bytes"));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// HTTPS through the system's fetcher, so that the daemon links no TLS
/// library: `uclient-fetch` on OpenWrt (with its own TLS package), `curl`
/// elsewhere.
async fn fetch_with_system_tool(url: &str) -> Result<Vec<u8>, ListError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    let timeout = FETCH_TIMEOUT.as_secs().to_string();
    let mut cmd = if Path::new("/bin/uclient-fetch").exists() {
        let mut c = Command::new("uclient-fetch");
        c.args(["-q", "-T", &timeout, "-O", "-", url]);
        c
    } else {
        let mut c = Command::new("curl");
        c.args(["-fsS", "--max-time", &timeout, "--max-filesize"])
            .arg(MAX_LIST_BYTES.to_string())
            .arg(url);
        c
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ListError(format!("{url}: could not run the system fetcher: {e}")))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return err(format!("{url}: the system fetcher has no output"));
    };
    // The fetcher's own timeout is per network operation (a server that
    // trickles bytes never trips it), and it has no size limit: both are
    // enforced here, and the fetcher is killed when either is reached.
    let child = Arc::new(Mutex::new(child));
    let reader = {
        let child = child.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let read = (&mut stdout)
                .take(MAX_LIST_BYTES as u64 + 1)
                .read_to_end(&mut out);
            if out.len() > MAX_LIST_BYTES {
                let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
            }
            // Waits without holding the lock, so a timeout can still kill.
            let status = loop {
                match child.lock().unwrap_or_else(|e| e.into_inner()).try_wait() {
                    Ok(Some(st)) => break Ok(st),
                    Ok(None) => {}
                    Err(e) => break Err(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut msg = String::new();
            let _ = stderr.take(4096).read_to_string(&mut msg);
            (read.map(|_| out), status, msg)
        })
    };
    let (out, status, msg) = match tokio::time::timeout(FETCH_TIMEOUT, reader).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return err(format!("fetch task: {e}")),
        Err(_) => {
            // Closing its output ends the reader too.
            let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
            return err(format!("{url}: timed out"));
        }
    };
    let out = out.map_err(|e| ListError(format!("{url}: {e}")))?;
    if out.len() > MAX_LIST_BYTES {
        return err(format!("{url}: larger than {MAX_LIST_BYTES} bytes"));
    }
    if !status.is_ok_and(|s| s.success()) {
        return err(format!("{url}: fetch failed: {}", msg.trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec(name: &str, url: &str, format: ListFormat) -> ListSpec {
        ListSpec {
            name: name.into(),
            url: url.into(),
            format,
            category: Category::Advertising,
        }
    }

    #[test]
    fn hosts_domains_and_json_parse_and_overlay() {
        let hosts = b"# ad servers\n0.0.0.0 localhost\n0.0.0.0 ads.tv-maker.example  track.tv-maker.example\n127.0.0.1 doubleclick.net\n\n";
        let h = parse(&spec("tv-ads", "", ListFormat::Hosts), hosts).unwrap();
        assert_eq!(
            h.organisations[0].domains,
            vec![
                "ads.tv-maker.example",
                "doubleclick.net",
                "track.tv-maker.example"
            ]
        );
        let json = br#"{"organisations":[{"name":"Gadget Co","category":"vendor_cloud","description":"Gadget Co's cloud.","domains":["gadget.example"]}]}"#;
        let j = parse(&spec("gadgets", "", ListFormat::Json), json).unwrap();
        let kb = KnowledgeBase::builtin().with_lists(&[h, j]);
        let e = kb.explain("x.ads.tv-maker.example", &[], None);
        assert_eq!(e.category, Category::Advertising);
        assert_eq!(e.source, "list:tv-ads:list_tv-ads");
        let e = kb.explain("api.gadget.example", &[], None);
        assert_eq!(e.organisation.as_deref(), Some("Gadget Co"));
        // Built-in knowledge stays for what it lists itself.
        assert_eq!(
            kb.explain("doubleclick.net", &[], None).source,
            "builtin:google_ads"
        );
        // The built-in base itself is untouched.
        assert_eq!(
            KnowledgeBase::builtin()
                .explain("api.gadget.example", &[], None)
                .organisation,
            None
        );
    }

    #[test]
    fn garbage_is_refused_with_a_clear_error() {
        let html = b"<html>\n<body>Not found</body>\n</html>\n";
        let e = parse(&spec("x", "", ListFormat::Hosts), html).unwrap_err();
        assert!(
            e.0.contains("names no domain") || e.0.contains("refused"),
            "{e}"
        );
        let mostly_bad = b"0.0.0.0 ok.example\nthis is not a hosts line\nneither is this\n";
        let e = parse(&spec("x", "", ListFormat::Hosts), mostly_bad).unwrap_err();
        assert!(e.0.contains("2 of 3 lines"), "{e}");
        assert!(parse(&spec("x", "", ListFormat::Domains), &[0xff, 0xfe]).is_err());
        let big = vec![b'a'; MAX_LIST_BYTES + 1];
        assert!(
            parse(&spec("x", "", ListFormat::Domains), &big)
                .unwrap_err()
                .0
                .contains("bytes")
        );
        assert!(parse(&spec("../etc", "", ListFormat::Domains), b"a.example").is_err());
        let bad_json =
            br#"{"organisations":[{"name":"X","category":"spying","domains":["a.example"]}]}"#;
        assert!(parse(&spec("x", "", ListFormat::Json), bad_json).is_err());
    }

    /// Serves what `reply` holds (status line, body) to each connection
    /// on 127.0.0.1.
    async fn serve(reply: Arc<Mutex<(&'static str, &'static [u8])>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let (status, body) = *reply.lock().unwrap();
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            }
        });
        format!("http://{addr}/lists/ads.txt")
    }

    /// The system fetcher (curl here, which speaks plain HTTP too) gives
    /// the body, and an error for an error status or an oversized body.
    #[tokio::test]
    async fn system_fetcher_is_bounded() {
        if std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("no curl: skipped");
            return;
        }
        let reply = Arc::new(Mutex::new(("200 OK", &b"ads.one.example\n"[..])));
        let url = serve(reply.clone()).await;
        assert_eq!(
            fetch_with_system_tool(&url).await.unwrap(),
            b"ads.one.example\n"
        );
        *reply.lock().unwrap() = ("404 Not Found", b"nope");
        assert!(fetch_with_system_tool(&url).await.is_err());
        let big: &'static [u8] = Box::leak(vec![b'a'; MAX_LIST_BYTES + 10].into_boxed_slice());
        *reply.lock().unwrap() = ("200 OK", big);
        assert!(fetch_with_system_tool(&url).await.is_err());
    }

    #[tokio::test]
    async fn update_fetches_saves_and_falls_back_to_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let reply = Arc::new(Mutex::new((
            "200 OK",
            &b"ads.one.example\nads.two.example\n"[..],
        )));
        let url = serve(reply.clone()).await;
        let s = spec("ads", &url, ListFormat::Domains);
        let (lists, outcomes) = update(std::slice::from_ref(&s), dir.path()).await;
        assert_eq!(outcomes[0].result, Ok(2));
        assert_eq!(lists[0].domain_count(), 2);
        assert_eq!(load_cached(std::slice::from_ref(&s), dir.path()), lists);
        assert_eq!(read_meta(dir.path(), "ads").unwrap().url, url);

        // The server now returns an error page: the last good copy is used.
        *reply.lock().unwrap() = ("500 Internal Server Error", b"oops");
        let (lists2, outcomes2) = update(std::slice::from_ref(&s), dir.path()).await;
        assert!(outcomes2[0].result.as_ref().unwrap_err().0.contains("500"));
        assert_eq!(lists2, lists);

        // Garbage served with 200 is refused and does not replace the copy.
        *reply.lock().unwrap() = ("200 OK", b"<html>\n<p>login</p>\n</html>\n");
        let (lists3, outcomes3) = update(std::slice::from_ref(&s), dir.path()).await;
        assert!(outcomes3[0].result.is_err());
        assert_eq!(lists3, lists);

        // The owner moved the list to another address: the old copy is not
        // this list any more.
        let moved = ListSpec {
            url: format!("{url}.moved"),
            ..s
        };
        assert!(load_cached(std::slice::from_ref(&moved), dir.path()).is_empty());
    }
}
