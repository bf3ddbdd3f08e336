use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const WEMO: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:Belkin:device-1-0">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <device>
    <deviceType>urn:Belkin:device:controllee:1</deviceType>
    <friendlyName>Kitchen &amp; Kettle</friendlyName>
    <manufacturer>Belkin International Inc.</manufacturer>
    <modelName>Socket</modelName>
    <modelNumber>1.0</modelNumber>
    <deviceList><device><friendlyName>embedded</friendlyName></device></deviceList>
  </device>
</root>"#;

const BOMB: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<root><device><friendlyName>&lol9;</friendlyName><manufacturer>&lol9;Acme</manufacturer></device></root>"#;

#[test]
fn parses_the_root_device() {
    let d = parse_description(WEMO.as_bytes()).unwrap();
    assert_eq!(d.friendly_name.as_deref(), Some("Kitchen & Kettle"));
    assert_eq!(d.manufacturer.as_deref(), Some("Belkin International Inc."));
    assert_eq!(d.model_name.as_deref(), Some("Socket"));
    assert_eq!(d.model_number.as_deref(), Some("1.0"));
    assert_eq!(
        d.device_type.as_deref(),
        Some("urn:Belkin:device:controllee:1")
    );
}

#[test]
fn billion_laughs_is_not_expanded() {
    let start = Instant::now();
    let d = parse_description(BOMB.as_bytes()).unwrap();
    assert_eq!(d.friendly_name, None);
    assert_eq!(d.manufacturer.as_deref(), Some("Acme"));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn hostile_text_is_inert_and_bounded() {
    let xml = format!(
        "<root><device><friendlyName>&lt;img src=x onerror=alert(1)&gt;&#27;[2J</friendlyName><modelName>{}</modelName></device></root>",
        "M".repeat(5000)
    );
    let d = parse_description(xml.as_bytes()).unwrap();
    assert_eq!(
        d.friendly_name.as_deref(),
        Some("<img src=x onerror=alert(1)>\u{FFFD}[2J")
    );
    assert_eq!(d.model_name.unwrap().len(), MAX_TEXT);
    assert!(parse_description(b"<root><device><a></b></device>").is_err());
}

#[test]
fn locations() {
    let (a, p) = parse_location("http://192.0.2.30:49152/setup.xml").unwrap();
    assert_eq!(
        (a.to_string().as_str(), p.as_str()),
        ("192.0.2.30:49152", "/setup.xml")
    );
    let (a, p) = parse_location("HTTP://[2001:db8::30]/").unwrap();
    assert_eq!(
        (a.to_string().as_str(), p.as_str()),
        ("[2001:db8::30]:80", "/")
    );
    let (_, p) = parse_location("http://192.0.2.30:8060").unwrap();
    assert_eq!(p, "/");
    for bad in [
        "https://192.0.2.30/x",
        "http://camera.local/x",
        "http://user@192.0.2.30/x",
        "http://192.0.2.30:99999/x",
        "http://192.0.2.30/a b",
        "ftp://192.0.2.30/",
        "",
    ] {
        assert_eq!(parse_location(bad), Err(UpnpError::BadLocation), "{bad}");
    }
}

/// Serves one connection with `respond`, on 127.0.0.1.
async fn serve<F, Fut>(respond: F) -> u16
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).await;
        respond(s).await;
    });
    port
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[tokio::test]
async fn fetches_from_the_announcing_device() {
    let port = serve(|mut s| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            WEMO.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(WEMO.as_bytes()).await.unwrap();
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/setup.xml");
    let d = fetch_description(&url, localhost()).await.unwrap();
    assert_eq!(d.model_name.as_deref(), Some("Socket"));
    // Another announcer may not point us at this host.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        fetch_description(&url, other).await,
        Err(UpnpError::NotFromDevice)
    );
}

#[tokio::test]
async fn refuses_ten_megabytes() {
    // Declared up front.
    let port = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n")
            .await;
        let _ = s.write_all(&vec![b'x'; 1 << 20]).await;
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        fetch_description(&url, localhost()).await,
        Err(UpnpError::TooLarge)
    );
    // Undeclared (read until close): cut at the cap.
    let port = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        fetch_description(&url, localhost()).await,
        Err(UpnpError::TooLarge)
    );
}

#[tokio::test]
async fn gives_up_on_a_trickle() {
    let port = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n<root>")
            .await;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b"x").await.is_err() {
                break;
            }
        }
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let start = Instant::now();
    assert_eq!(
        fetch_description(&url, localhost()).await,
        Err(UpnpError::Timeout)
    );
    let took = start.elapsed();
    assert!(
        took >= TOTAL_TIMEOUT && took < TOTAL_TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test]
async fn http_errors_are_reported() {
    let port = serve(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        fetch_description(&url, localhost()).await,
        Err(UpnpError::Status(404))
    );
}
