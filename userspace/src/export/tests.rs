use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::identify::{Evidence, identify};
use crate::store::{DeviceRecord, FlowRecord, Retention, WindowCommit};

const T0: u64 = 1_800_000_000;

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

fn rec(device: &str, remote: &str, port: u16, name: Option<&str>) -> FlowRecord {
    FlowRecord {
        device_ip: Some(device.parse().unwrap()),
        remote_ip: Some(remote.parse().unwrap()),
        proto: 6,
        remote_port: port,
        bytes_up: 1200,
        bytes_down: 34000,
        packets_up: 9,
        packets_down: 30,
        flows: 1,
        name: name.map(str::to_string),
        name_source: name.map(|_| "dns".to_string()),
    }
}

/// A Hue bridge (whose USN carries its MAC) and a phone named after its
/// owner, talking to the internet, to each other and to the router.
fn home() -> (
    tempfile::TempDir,
    Store,
    BTreeMap<Mac, Identity>,
    BTreeMap<Mac, String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    let hue = mac("00:17:88:a1:b2:c3");
    let phone = mac("da:a1:19:00:00:04");
    for i in 0..6 {
        let mut w = WindowCommit {
            start: T0 + i * 5,
            secs: 5,
            ..Default::default()
        };
        w.per_device.insert(
            hue,
            vec![
                rec("192.0.2.30", "203.0.113.21", 443, Some("diag.meethue.com")),
                rec("192.0.2.30", "192.0.2.1", 53, Some("router.lan")),
            ],
        );
        w.per_device.insert(
            phone,
            vec![
                rec(
                    "2001:db8:1::44",
                    "2001:db8:ee::10",
                    443,
                    Some("doubleclick.net"),
                ),
                rec("192.0.2.44", "192.0.2.30", 80, Some("Philips-hue.local")),
                rec("192.0.2.44", "198.51.100.7", 443, None),
                rec("192.0.2.44", "169.254.1.1", 80, None),
            ],
        );
        w.devices = vec![
            DeviceRecord {
                mac: hue,
                first_seen: T0,
                last_seen: T0 + 30,
                ips: vec!["192.0.2.30".parse().unwrap()],
                ..Default::default()
            },
            DeviceRecord {
                mac: phone,
                first_seen: T0,
                last_seen: T0 + 30,
                ips: vec![
                    "192.0.2.44".parse().unwrap(),
                    "2001:db8:1::44".parse().unwrap(),
                ],
                ..Default::default()
            },
        ];
        store.commit_window(&w, Retention::default()).unwrap();
    }
    let mut ids = BTreeMap::new();
    ids.insert(
        hue,
        identify(
            hue,
            &Evidence {
                ssdp_types: vec![
                    "uuid:2f402f80-da50-11e1-9b23-001788a1b2c3::upnp:rootdevice".into(),
                ],
                mdns_instances: vec!["Philips Hue - A1B2C3".into()],
                domains: vec!["diag.meethue.com".into()],
                ..Default::default()
            },
        ),
    );
    ids.insert(
        phone,
        identify(
            phone,
            &Evidence {
                dhcp_hostnames: vec!["Janes-iPhone".into()],
                ..Default::default()
            },
        ),
    );
    let mut labels = BTreeMap::new();
    labels.insert(hue, "Jane's hue brige".to_string());
    labels.insert(phone, "Jane Doe's phone".to_string());
    (dir, store, ids, labels)
}

fn export(format: Format, include_names: bool, salt: [u8; 32]) -> (Vec<u8>, ExportSummary) {
    let (_dir, store, ids, labels) = home();
    let mut opts = ExportOptions::new(T0, T0 + 3600, format, salt);
    opts.include_names = include_names;
    let mut out = Vec::new();
    let s = write(&store, &opts, &ids, &labels, &mut out).unwrap();
    (out, s)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let hay = String::from_utf8_lossy(hay).to_ascii_lowercase();
    hay.contains(&needle.to_ascii_lowercase())
}

#[test]
fn every_format_round_trips() {
    for format in Format::ALL {
        let (bytes, summary) = export(format, false, [1; 32]);
        assert_eq!(summary.bytes, bytes.len() as u64);
        let e = read(&bytes, format).unwrap();
        assert_eq!(e.header.schema_version, SCHEMA_VERSION);
        assert_eq!(e.header.installation, installation_id(&[1; 32]));
        assert_eq!(e.header.window_secs, 5);
        assert_eq!(e.devices.len(), 2);
        assert_eq!(e.windows.len() as u64, summary.rows);
        assert_eq!(summary.windows, 12);
        assert_eq!(summary.rows, 36);
        let total: u64 = e.windows.iter().map(|w| w.bytes_up + w.bytes_down).sum();
        assert_eq!(total, 36 * 35_200);
        // The same records whatever the format.
        let jsonl = read(&export(Format::Jsonl, false, [1; 32]).0, Format::Jsonl).unwrap();
        assert_eq!(e.devices, jsonl.devices, "{format:?}");
        assert_eq!(e.windows, jsonl.windows, "{format:?}");
    }
}

#[test]
fn nothing_identifying_leaves_without_opt_in() {
    let (_d, store, ids, _l) = home();
    let macs: Vec<Mac> = store.devices().unwrap().iter().map(|d| d.mac).collect();
    for format in Format::ALL {
        let (bytes, s) = export(format, false, [2; 32]);
        for m in &macs {
            for spelling in mac_spellings(*m) {
                assert!(!contains(&bytes, &spelling), "{format:?}: {spelling}");
            }
        }
        for lan in [
            "192.0.2.30",
            "192.0.2.44",
            "192.0.2.1",
            "2001:db8:1::44",
            "169.254.1.1",
        ] {
            assert!(!contains(&bytes, lan), "{format:?}: {lan}");
        }
        for name in [
            "Janes-iPhone",
            "Jane",
            "Philips-hue.local",
            "router.lan",
            "A1B2C3",
        ] {
            assert!(!contains(&bytes, name), "{format:?}: {name}");
        }
        assert_eq!(s.signals_dropped, 1, "the phone's host name: {s:?}");
        assert_eq!(s.names_dropped, 12, "{s:?}");
        // Internet ends stay, with their organisation.
        assert!(contains(&bytes, "203.0.113.21"));
        assert!(contains(&bytes, "2001:db8:ee::10"));
        assert!(contains(&bytes, "diag.meethue.com"));
    }
    // The identification is there, minus the names.
    let e = read(&export(Format::Jsonl, false, [2; 32]).0, Format::Jsonl).unwrap();
    let hue = e
        .devices
        .iter()
        .find(|d| d.device == device_id(&[2; 32], mac("00:17:88:a1:b2:c3")))
        .unwrap();
    assert_eq!(hue.vendor, ids[&mac("00:17:88:a1:b2:c3")].vendor);
    assert!(
        hue.evidence
            .iter()
            .any(|s| s.source == "oui" && s.value == "00:17:88")
    );
    assert!(hue.evidence.iter().all(|s| s.source != "mdns instance"));
    // The label only as its catalogue entry.
    let label = hue.label.as_ref().unwrap();
    assert_eq!(label.product_id.as_deref(), Some("philips_hue_bridge"));
    assert_eq!(label.typed, None);
    let phone_label = e
        .devices
        .iter()
        .find(|d| d.device == device_id(&[2; 32], mac("da:a1:19:00:00:04")))
        .and_then(|d| d.label.clone())
        .unwrap();
    assert_eq!(phone_label.kind, Some(Kind::Phone));
    let lan_rows = e.windows.iter().filter(|w| w.remote_lan).count();
    assert_eq!(lan_rows, 18);
    assert!(
        e.windows
            .iter()
            .filter(|w| w.remote_lan)
            .all(|w| w.remote_ip.is_none())
    );
}

#[test]
fn names_only_with_opt_in_and_never_the_mac() {
    let (bytes, s) = export(Format::Jsonl, true, [3; 32]);
    assert_eq!(s.names_dropped, 0);
    assert!(contains(&bytes, "Janes-iPhone"));
    assert!(contains(&bytes, "Jane's hue brige"));
    assert!(contains(&bytes, "router.lan"));
    for spelling in mac_spellings(mac("00:17:88:a1:b2:c3")) {
        assert!(!contains(&bytes, &spelling), "{spelling}");
    }
    // LAN addresses stay out even then.
    assert!(!contains(&bytes, "192.0.2.30"));
}

#[test]
fn salts_give_unrelated_ids_and_are_kept() {
    let m = mac("00:17:88:a1:b2:c3");
    assert_ne!(device_id(&[1; 32], m), device_id(&[2; 32], m));
    assert_eq!(device_id(&[1; 32], m), device_id(&[1; 32], m));
    assert_ne!(
        device_id(&[1; 32], m),
        device_id(&[1; 32], mac("00:17:88:a1:b2:c4"))
    );
    assert_eq!(device_id(&[1; 32], m).len(), 32);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/salt");
    let a = salt(&p).unwrap();
    let b = salt(&p).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, [0; 32]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let other = salt(&dir.path().join("other")).unwrap();
    assert_ne!(a, other);
    std::fs::write(&p, "not hex").unwrap();
    assert!(salt(&p).is_err());
}

#[test]
fn readers_refuse_what_is_not_an_export() {
    assert!(read(b"", Format::Jsonl).is_err());
    assert!(read(b"{\"record\":\"window\"}\n", Format::Jsonl).is_err());
    let (bytes, _) = export(Format::Jsonl, false, [1; 32]);
    let newer = String::from_utf8(bytes).unwrap().replacen(
        "\"schema_version\":1",
        "\"schema_version\":99",
        1,
    );
    assert!(read(newer.as_bytes(), Format::Jsonl).is_err());
    let (mp, _) = export(Format::Msgpack, false, [1; 32]);
    assert!(read(&mp[..mp.len() - 3], Format::Msgpack).is_err());
    assert!(read(b"a,b\n1,2\n", Format::Csv).is_err());
}

#[test]
fn macs_inside_texts_are_scrubbed() {
    let m = mac("00:17:88:a1:b2:c3");
    let all = [mac_spellings(m)];
    assert_eq!(
        scrub(
            "uuid:2f402f80-da50-11e1-9b23-001788A1B2C3::upnp:rootdevice",
            &all
        ),
        "uuid:2f402f80-da50-11e1-9b23-<mac>::upnp:rootdevice"
    );
    assert_eq!(scrub("AA 00-17-88-A1-B2-C3", &all), "aa <mac>");
    assert_eq!(scrub("0017.88a1.b2c3", &all), "<mac>");
    assert_eq!(scrub("Hue Bridge", &all), "Hue Bridge");
}

#[test]
fn public_addresses() {
    for (ip, public) in [
        ("203.0.113.5", true),
        ("2001:db8:ee::10", true),
        ("10.1.2.3", false),
        ("172.16.0.1", false),
        ("192.168.1.1", false),
        ("169.254.1.1", false),
        ("100.64.0.1", false),
        ("fd00::1", false),
        ("fe80::1", false),
        ("::ffff:192.168.1.1", false),
        ("239.255.255.250", false),
    ] {
        assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
    }
}

// -------------------------------------------------------------- donation

/// Requests a test server saw: (method, path, body).
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1 recording (method, path, body) and
/// answering `status`; stops after `max` requests or when dropped.
struct TestServer {
    port: u16,
    seen: Seen,
}

impl TestServer {
    fn start(status: u16, max: usize) -> TestServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().take(max) {
                let Ok(mut c) = conn else { continue };
                c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len.min(64 << 20)];
                let _ = r.read_exact(&mut body);
                s2.lock().unwrap().push((method, path, body));
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        TestServer { port, seen }
    }
}

fn curl_opts() -> DonateOptions {
    DonateOptions {
        ca_file: None,
        timeout: Duration::from_secs(10),
        fetcher: Some(Fetcher::Curl),
    }
}

#[test]
fn donation_uploads_records_and_deletes() {
    let server = TestServer::start(200, 2);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("donations.jsonl");
    let (bytes, _) = export(Format::Msgpack, false, [4; 32]);
    let id = installation_id(&[4; 32]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let r = donate(&url, &id, &bytes, &record, &curl_opts()).unwrap();
    assert_eq!(r.outcome, "ok");
    assert_eq!(r.bytes, bytes.len() as u64);
    let d = request_deletion(&url, &id, &record, &curl_opts()).unwrap();
    assert_eq!(d.action, "delete");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "POST");
    assert_eq!(seen[0].1, format!("/v1/donations/{id}"));
    assert_eq!(seen[0].2, bytes, "the server got the export byte for byte");
    assert_eq!(seen[1].1, format!("/v1/donations/{id}/delete"));
    let rs = records(&record).unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].sha256, {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&bytes))
    });
    // No body file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn failed_donations_are_recorded_and_reported() {
    let server = TestServer::start(500, 1);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("donations.jsonl");
    let url = format!("http://127.0.0.1:{}", server.port);
    let err = donate(&url, "abcd", b"x", &record, &curl_opts()).unwrap_err();
    assert!(format!("{err:#}").contains("500"), "{err:#}");
    let rs = records(&record).unwrap();
    assert_eq!(rs.len(), 1);
    assert!(rs[0].outcome.starts_with("failed"), "{:?}", rs[0]);
    // Not https, not loopback: refused before anything runs.
    assert!(donate("http://203.0.113.9", "abcd", b"x", &record, &curl_opts()).is_err());
    assert!(donate("https://x.example/?q", "abcd", b"x", &record, &curl_opts()).is_err());
    assert!(donate(&url, "../etc", b"x", &record, &curl_opts()).is_err());
    assert_eq!(records(&record).unwrap().len(), 1);
}

#[test]
fn the_record_file_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    let r = DonationRecord {
        time: 1,
        action: "upload".into(),
        url: "https://x".into(),
        installation: "ab".into(),
        bytes: 1,
        sha256: "00".into(),
        outcome: "ok".into(),
    };
    for i in 0..donate::MAX_RECORDS + 5 {
        let mut r = r.clone();
        r.time = i as u64;
        donate::append(&p, &r).unwrap();
    }
    let rs = records(&p).unwrap();
    assert_eq!(rs.len(), donate::MAX_RECORDS);
    assert_eq!(rs[0].time, 5);
}

/// Kills the child we started when the test ends, however it ends.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn donation_over_https_with_a_self_signed_certificate() {
    let have = |p: &str| {
        Command::new(p)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !have("openssl") || !have("socat") {
        eprintln!("openssl or socat missing: https case not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let server = TestServer::start(201, 1);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // socat terminates TLS and hands the plain request to the test server.
    let _tls = Reap(
        Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{}", server.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "socat did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = dir.path().join("donations.jsonl");
    let mut opts = curl_opts();
    // Without trusting the certificate the upload fails...
    let url = format!("https://127.0.0.1:{port}");
    assert!(donate(&url, "abcd", b"payload", &record, &opts).is_err());
    // ...and with it, it goes through.
    opts.ca_file = Some(cert.clone());
    let r = donate(&url, "abcd", b"payload", &record, &opts).unwrap();
    assert_eq!(r.outcome, "ok");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2, b"payload");
}
