//! The rpcd exec plugin: how LuCI reaches the daemon over ubus.
//!
//! rpcd runs `/usr/libexec/rpcd/iot-inspector` (a two-line script that
//! execs `iot-inspector rpcd "$@"`) as
//! - `list`: we print every method with its argument signature (rpcd turns
//!   the example values' JSON types into its blobmsg policy);
//! - `call METHOD`: rpcd writes the arguments as JSON on stdin, we forward
//!   them to the daemon's unix-socket API and print its answer. ubus wants
//!   an object at the top level, so arrays come back as `{"result": [...]}`,
//!   and failures as `{"error": "..."}` (exit status 0, so LuCI can show the
//!   message instead of a bare "unknown error").
//!
//! Who may call what is decided by rpcd's ACLs
//! (`luci-app/root/usr/share/rpcd/acl.d/luci-app-iot-inspector.json`): the
//! methods that only read are in the `read` section, the ones that change
//! the configuration (and `export`) in `write`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;

/// One method: its HTTP request on the local API and its arguments.
struct Call {
    name: &'static str,
    /// GET methods only read; everything else changes state.
    post: bool,
    path: &'static str,
    /// Argument names with an example value of the right JSON type.
    args: &'static [(&'static str, Example)],
}

#[derive(Clone, Copy)]
enum Example {
    Str,
    Int,
    Bool,
    List,
}

impl Example {
    fn value(self) -> Value {
        match self {
            Example::Str => json!("str"),
            Example::Int => json!(0),
            Example::Bool => json!(false),
            Example::List => json!([]),
        }
    }
}

use Example::*;

const CALLS: &[Call] = &[
    Call {
        name: "status",
        post: false,
        path: "/v1/status",
        args: &[],
    },
    Call {
        name: "devices",
        post: false,
        path: "/v1/devices",
        args: &[],
    },
    Call {
        name: "flows",
        post: false,
        path: "/v1/flows",
        args: &[("device", Str), ("since", Str), ("until", Str)],
    },
    Call {
        name: "parties",
        post: false,
        path: "/v1/parties",
        args: &[("device", Str), ("since", Str)],
    },
    Call {
        name: "series",
        post: false,
        path: "/v1/series",
        args: &[("device", Str), ("since", Str)],
    },
    Call {
        name: "alerts",
        post: false,
        path: "/v1/alerts",
        args: &[],
    },
    Call {
        name: "rules",
        post: false,
        path: "/v1/rules",
        args: &[],
    },
    Call {
        name: "catalogue",
        post: false,
        path: "/v1/catalogue",
        args: &[("q", Str)],
    },
    Call {
        name: "label",
        post: true,
        path: "/v1/devices/label",
        args: &[("mac", Str), ("label", Str)],
    },
    Call {
        name: "confirm_label",
        post: true,
        path: "/v1/devices/confirm_label",
        args: &[("mac", Str)],
    },
    Call {
        name: "block",
        post: true,
        path: "/v1/rules/block",
        args: &[("mac", Str)],
    },
    Call {
        name: "unblock",
        post: true,
        path: "/v1/rules/unblock",
        args: &[("mac", Str)],
    },
    Call {
        name: "pause",
        post: true,
        path: "/v1/rules/pause",
        args: &[("mac", Str), ("until", Int)],
    },
    Call {
        name: "set_rule",
        post: true,
        path: "/v1/rules/set",
        args: &[
            ("device", Str),
            ("schedule", List),
            ("away_mode", Bool),
            ("household", List),
            ("block_category", List),
            ("block_organisation", List),
            ("block_domain", List),
        ],
    },
    Call {
        name: "delete_rule",
        post: true,
        path: "/v1/rules/delete",
        args: &[("id", Str)],
    },
    // Export hands out the household's traffic history: behind the write ACL.
    Call {
        name: "export",
        post: true,
        path: "/v1/export",
        args: &[("since", Str)],
    },
];

/// Every method with its argument signature, as `list` prints them.
pub fn methods() -> Vec<(&'static str, Value)> {
    CALLS
        .iter()
        .map(|c| {
            let sig: serde_json::Map<String, Value> = c
                .args
                .iter()
                .map(|(k, e)| (k.to_string(), e.value()))
                .collect();
            (c.name, Value::Object(sig))
        })
        .collect()
}

/// Whether a method only reads (and so belongs in the read ACL).
pub fn is_read_only(method: &str) -> Option<bool> {
    CALLS.iter().find(|c| c.name == method).map(|c| !c.post)
}

/// Runs the exec-plugin protocol: `list`, or `call METHOD` with JSON on stdin.
pub fn run(args: &[String], socket: &Path) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("list") => {
            let all: serde_json::Map<String, Value> = methods()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            println!("{}", Value::Object(all));
            Ok(())
        }
        Some("call") => {
            let Some(method) = args.get(1) else {
                bail!("usage: iot-inspector rpcd call METHOD (arguments as JSON on stdin)");
            };
            let mut input = Vec::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_end(&mut input)
                .context("reading the arguments")?;
            let out = match call(method, &input, socket) {
                Ok(v) => v,
                Err(e) => json!({ "error": format!("{e:#}") }),
            };
            println!("{out}");
            Ok(())
        }
        _ => bail!("usage: iot-inspector rpcd list | call METHOD"),
    }
}

/// Forwards one call to the daemon and shapes the answer for ubus.
pub fn call(method: &str, input: &[u8], socket: &Path) -> Result<Value> {
    let (http, path, body) = request_for(method, input)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = rt.block_on(request(socket, &http, &path, body))?;
    let v: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&answer).into_owned() }));
    if !status.is_success() {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .map(String::from)
            .unwrap_or_else(|| status.to_string());
        bail!("{msg}");
    }
    Ok(match v {
        Value::Object(_) => v,
        other => json!({ "result": other }),
    })
}

/// The HTTP request a method call becomes: GETs carry their declared
/// arguments in the query, POSTs the JSON object as the body.
fn request_for(method: &str, input: &[u8]) -> Result<(Method, String, Option<Vec<u8>>)> {
    let Some(c) = CALLS.iter().find(|c| c.name == method) else {
        bail!("no method {method}");
    };
    let args: Value = if input.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(input).context("the arguments are not JSON")?
    };
    let Value::Object(args) = args else {
        bail!("the arguments must be a JSON object");
    };
    if c.post {
        return Ok((
            Method::POST,
            c.path.to_string(),
            Some(serde_json::to_vec(&Value::Object(args))?),
        ));
    }
    let mut path = c.path.to_string();
    let mut sep = '?';
    for (name, _) in c.args {
        let v = match args.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.is_empty() => continue,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        path.push(sep);
        path.push_str(name);
        path.push('=');
        path.push_str(&percent_encode(&v));
        sep = '&';
    }
    Ok((Method::GET, path, None))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request on the daemon's unix socket (GET or POST with a JSON body).
pub async fn request(
    socket: &Path,
    method: &Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes)> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the daemon at {} (is iot-inspector running?)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "localhost");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn luci_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../luci-app")
    }

    fn js_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                js_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "js") {
                out.push(p);
            }
        }
    }

    /// The `method: '…'` of every `rpc.declare({...})` in a JS source.
    fn declared(src: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (at, _) in src.match_indices("rpc.declare(") {
            let end = src[at..].find("})").map_or(src.len(), |e| at + e);
            let decl = &src[at..end];
            let field = |name: &str| {
                let i = decl.find(&format!("{name}:"))? + name.len() + 1;
                let rest = decl[i..].trim_start();
                let q = rest.chars().next()?;
                let rest = &rest[1..];
                Some(rest[..rest.find(q)?].to_string())
            };
            out.push((
                field("object").unwrap_or_default(),
                field("method").expect("rpc.declare without method"),
            ));
        }
        out
    }

    #[test]
    fn every_view_call_and_acl_method_is_announced() {
        let announced: BTreeSet<&str> = methods().iter().map(|(n, _)| *n).collect();
        let mut files = Vec::new();
        js_files(&luci_dir().join("htdocs"), &mut files);
        let mut used = BTreeSet::new();
        for f in &files {
            for (object, method) in declared(&std::fs::read_to_string(f).unwrap()) {
                assert_eq!(
                    object,
                    "iot-inspector",
                    "{}: rpc.declare on object {object}",
                    f.display()
                );
                assert!(
                    announced.contains(method.as_str()),
                    "{}: {method} is not a method of the plugin",
                    f.display()
                );
                used.insert(method);
            }
        }
        // The views reach every method the plugin has except export (the
        // command line's and the export helper's).
        for m in &announced {
            assert!(used.contains(*m) || *m == "export", "no view declares {m}");
        }

        let acl: Value = serde_json::from_str(
            &std::fs::read_to_string(
                luci_dir().join("root/usr/share/rpcd/acl.d/luci-app-iot-inspector.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let group = &acl["luci-app-iot-inspector"];
        let list = |section: &str| -> BTreeSet<String> {
            group[section]["ubus"]["iot-inspector"]
                .as_array()
                .unwrap_or_else(|| panic!("no {section}.ubus.iot-inspector in the ACL"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let (read, write) = (list("read"), list("write"));
        for m in read.iter().chain(&write) {
            assert!(
                announced.contains(m.as_str()),
                "ACL names {m}, which the plugin does not have"
            );
        }
        for m in &read {
            assert_eq!(
                is_read_only(m),
                Some(true),
                "{m} changes state but is in the read ACL"
            );
        }
        for m in &announced {
            let ro = is_read_only(m).unwrap();
            assert!(read.contains(*m) || write.contains(*m), "{m} is in no ACL");
            if !ro {
                assert!(
                    write.contains(*m) && !read.contains(*m),
                    "{m} changes state: write ACL only"
                );
            }
        }
        assert!(write.contains("export") && !read.contains("export"));
        // Writing the configuration goes through the write ACL only.
        assert_eq!(group["read"]["uci"], json!(["iot-inspector"]));
        assert_eq!(group["write"]["uci"], json!(["iot-inspector"]));
    }

    #[test]
    fn the_dashboard_maps_methods_like_the_plugin() {
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/dashboard.js"),
        )
        .unwrap();
        let mut seen = 0;
        for line in src.lines() {
            let line = line.trim();
            let Some((name, rest)) = line.split_once(": ['") else {
                continue;
            };
            let mut parts = rest.split('\'');
            let http = parts.next().unwrap();
            let path = parts.nth(1).unwrap();
            let c = CALLS
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("dashboard.js has {name}"));
            assert_eq!((http == "POST", path), (c.post, c.path), "{name}");
            seen += 1;
        }
        assert_eq!(
            seen,
            CALLS.len() - 1,
            "dashboard.js maps every method but export"
        );
    }

    #[test]
    fn calls_become_requests() {
        let (m, p, b) = request_for(
            "flows",
            br#"{"device":"02:00:5e:00:53:01","since":"20m","junk":"x"}"#,
        )
        .unwrap();
        assert_eq!(m, Method::GET);
        assert_eq!(p, "/v1/flows?device=02%3A00%3A5e%3A00%3A53%3A01&since=20m");
        assert!(b.is_none());
        let (m, p, _) = request_for("devices", b"").unwrap();
        assert_eq!((m, p.as_str()), (Method::GET, "/v1/devices"));
        let (_, p, _) = request_for("catalogue", br#"{"q":"a&b=c <x>"}"#).unwrap();
        assert_eq!(p, "/v1/catalogue?q=a%26b%3Dc%20%3Cx%3E");
        let (m, p, b) = request_for(
            "label",
            br#"{"mac":"02:00:5e:00:53:01","label":"<img src=x>"}"#,
        )
        .unwrap();
        assert_eq!((m, p.as_str()), (Method::POST, "/v1/devices/label"));
        let body: Value = serde_json::from_slice(&b.unwrap()).unwrap();
        assert_eq!(body["label"], "<img src=x>");
        assert!(request_for("nope", b"{}").is_err());
        assert!(request_for("label", b"[1]").is_err());
        assert!(request_for("label", b"{").is_err());
    }

    #[test]
    fn answers_are_objects_and_errors_are_reported() {
        // A real daemon-shaped server on a unix socket.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            for _ in 0..3 {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if l == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let (status, answer) = if first.starts_with("GET /v1/devices ") {
                    ("200 OK", r#"[{"mac":"02:00:5e:00:53:01"}]"#.to_string())
                } else if first.starts_with("POST /v1/devices/label ") {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["label"], "kitchen");
                    (
                        "400 Bad Request",
                        r#"{"error":"no such device"}"#.to_string(),
                    )
                } else {
                    ("200 OK", r#"{"version":"x"}"#.to_string())
                };
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
        });
        let v = call("devices", b"{}", &sock).unwrap();
        assert_eq!(v, json!({"result": [{"mac": "02:00:5e:00:53:01"}]}));
        let e = call(
            "label",
            br#"{"mac":"02:00:5e:00:53:01","label":"kitchen"}"#,
            &sock,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "no such device");
        assert_eq!(call("status", b"", &sock).unwrap(), json!({"version": "x"}));
        server.join().unwrap();
        let e = call("status", b"", &dir.path().join("absent.sock")).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot reach the daemon"),
            "{e:#}"
        );
    }
}
