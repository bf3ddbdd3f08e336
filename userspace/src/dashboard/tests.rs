//! The dashboard's access rules, checked with real HTTP requests on
//! 127.0.0.1 against the real server and API.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::*;

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db.redb")).unwrap());
    let shared = Arc::new(Shared::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let policy = Policy::new(addr, token.map(String::from)).unwrap();
    tokio::spawn(serve_listener(listener, policy, shared, store));
    Server { addr, _dir: dir }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let lan: SocketAddr = "192.0.2.1:8088".parse().unwrap();
    let lo: SocketAddr = "127.0.0.1:8088".parse().unwrap();
    assert!(Policy::new(lan, None).is_err());
    assert!(Policy::new(lan, Some(String::new())).is_err());
    assert!(Policy::new(lan, Some("s3cret".into())).is_ok());
    assert!(Policy::new(lo, None).is_ok());
    // serve() itself refuses, whoever calls it.
    let e = rt()
        .block_on(serve(
            lan,
            None,
            Arc::new(Shared::default()),
            Arc::new(Store::open(&tempfile::tempdir().unwrap().path().join("d")).unwrap()),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
}

#[test]
fn with_a_token_every_request_needs_it() {
    rt().block_on(async {
        let s = start(Some("s3cret")).await;
        for path in [
            "/",
            "/static/render.js",
            "/api/v1/status",
            "/api/v1/devices",
        ] {
            let r = send(s.addr, "GET", path, &[], "").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(!r.body.contains("\"version\""), "{path} leaked: {}", r.body);
        }
        let wrong = send(
            s.addr,
            "GET",
            "/api/v1/status",
            &[("authorization", "Bearer s3cre")],
            "",
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let wrong = send(s.addr, "GET", "/?token=nope", &[], "").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        // The token in the address is only taken by the entry page.
        let r = send(s.addr, "GET", "/api/v1/status?token=s3cret", &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let r = send(
            s.addr,
            "GET",
            "/api/v1/status",
            &[("authorization", "Bearer s3cret")],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v.get("version").is_some(), "{v}");

        // /?token= sets an HttpOnly, SameSite=Strict cookie and drops the
        // token from the address.
        let r = send(s.addr, "GET", "/?token=s3cret", &[], "").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.headers["location"], "/");
        let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.starts_with("token=s3cret;")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let r = send(
            s.addr,
            "GET",
            "/api/v1/devices",
            &[("cookie", "theme=dark; token=s3cret")],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "[]");
        let r = send(s.addr, "GET", "/", &[("cookie", "token=s3cret")], "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.contains("render.js"));
    });
}

#[test]
fn pages_carry_a_strict_csp_and_share_the_luci_rendering_code() {
    rt().block_on(async {
        let s = start(None).await;
        let r = send(s.addr, "GET", "/", &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        let js = send(s.addr, "GET", "/static/render.js", &[], "").await;
        assert_eq!(js.status, StatusCode::OK);
        assert!(
            js.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let on_disk = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../luci-app/htdocs/luci-static/resources/iot-inspector/render.js"
        ))
        .unwrap();
        assert_eq!(js.body, on_disk);
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(
                !js.body.contains(sink),
                "render.js must build the DOM with createElement/textContent, not {sink}"
            );
        }
        let r = send(s.addr, "GET", "/static/../../etc/passwd", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = send(s.addr, "GET", "/api/v1/nothing", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.body.contains("error"));
    });
}

#[test]
fn without_a_token_the_host_must_be_an_address() {
    rt().block_on(async {
        let s = start(None).await;
        for host in [
            "127.0.0.1:8088",
            "localhost:8088",
            "[::1]:8088",
            "localhost",
        ] {
            let r = send(s.addr, "GET", "/api/v1/status", &[("host", host)], "").await;
            assert_eq!(r.status, StatusCode::OK, "{host}");
        }
        // A page that rebinds its name to 127.0.0.1 sends its own name.
        for host in [
            "evil.example:8088",
            "evil.example",
            "127.0.0.1.evil.example",
        ] {
            let r = send(s.addr, "GET", "/api/v1/status", &[("host", host)], "").await;
            assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
    });
}

#[test]
fn cross_site_and_non_json_changes_are_refused() {
    rt().block_on(async {
        let s = start(Some("s3cret")).await;
        let origin = format!("http://{}", s.addr);
        let auth = ("cookie", "token=s3cret");
        let json = ("content-type", "application/json");
        let body = r#"{"mac":"02:00:5e:00:53:01","label":"x"}"#;
        let cases: Vec<(Vec<(&str, &str)>, StatusCode)> = vec![
            (
                vec![
                    auth,
                    json,
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://evil.example"),
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                vec![
                    auth,
                    json,
                    ("sec-fetch-site", "same-site"),
                    ("origin", origin.as_str()),
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                vec![auth, json, ("origin", "http://evil.example")],
                StatusCode::FORBIDDEN,
            ),
            (vec![auth, json, ("origin", "null")], StatusCode::FORBIDDEN),
            (vec![auth, json], StatusCode::FORBIDDEN),
            (
                vec![
                    auth,
                    ("content-type", "text/plain"),
                    ("sec-fetch-site", "same-origin"),
                    ("origin", origin.as_str()),
                ],
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                vec![
                    auth,
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("sec-fetch-site", "same-origin"),
                    ("origin", origin.as_str()),
                ],
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                vec![
                    json,
                    ("sec-fetch-site", "same-origin"),
                    ("origin", origin.as_str()),
                ],
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (headers, want) in cases {
            let r = send(s.addr, "POST", "/api/v1/devices/label", &headers, body).await;
            assert_eq!(r.status, want, "{headers:?}: {}", r.body);
        }
        // Same origin, JSON, token: it reaches the API (which answers in JSON).
        for headers in [
            vec![
                auth,
                json,
                ("sec-fetch-site", "same-origin"),
                ("origin", origin.as_str()),
            ],
            vec![
                ("authorization", "Bearer s3cret"),
                json,
                ("origin", origin.as_str()),
            ],
        ] {
            let r = send(s.addr, "POST", "/api/v1/devices/label", &headers, body).await;
            assert!(
                ![
                    StatusCode::UNAUTHORIZED,
                    StatusCode::FORBIDDEN,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                ]
                .contains(&r.status),
                "{headers:?}: {} {}",
                r.status,
                r.body
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&r.body).is_ok(),
                "{}",
                r.body
            );
        }
        // Oversized bodies are cut off.
        let big = "x".repeat(MAX_BODY + 10);
        let r = send(
            s.addr,
            "POST",
            "/api/v1/devices/label",
            &[
                auth,
                json,
                ("sec-fetch-site", "same-origin"),
                ("origin", origin.as_str()),
            ],
            &big,
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    });
}

#[test]
fn helpers_are_total() {
    assert_eq!(percent_decode("a%3Db%"), "a=b%");
    assert_eq!(percent_decode("%zz+x"), "%zz x");
    assert_eq!(
        query_param("a=1&token=t%20x", "token").as_deref(),
        Some("t x")
    );
    assert_eq!(query_param("tokens=1", "token"), None);
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
