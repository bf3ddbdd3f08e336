//! Identification in the simulated home: each device announces itself the
//! way its kind of product does (DHCP through the real udhcpc client, mDNS,
//! SSDP with a UPnP description the daemon fetches) and the daemon says
//! what it is, with the evidence. The same traffic, captured with tcpdump,
//! gives the same answers through `iot-inspector analyze`.
//! Needs root; `cargo xtask test` builds everything first.

use std::time::{Duration, Instant};

use anyhow::Result;
use iot_inspector_lab::{DeviceSpec, Lab};
use serde_json::Value;

/// (device, MAC, profile, DHCP hostname, vendor class, kind, vendor, model part)
type Home = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    Option<&'static str>,
);
const HOME: &[Home] = &[
    (
        "camera",
        "ec:71:db:31:00:10",
        "camera",
        "Reolink-E1-Pro",
        None,
        "camera",
        "Reolink",
        Some("E1"),
    ),
    (
        "plug",
        "24:0a:c4:31:00:11",
        "plug",
        "wemo-plug-1A2B",
        None,
        "plug",
        "Belkin",
        Some("Socket"),
    ),
    (
        "speaker",
        "00:0e:58:31:00:12",
        "speaker",
        "SonosZP",
        None,
        "speaker",
        "Sonos",
        Some("Era 100"),
    ),
    (
        "tv",
        "08:05:81:31:00:13",
        "tv",
        "Roku-Ultra",
        None,
        "tv",
        "Roku",
        Some("Ultra"),
    ),
    (
        "printer",
        "00:0f:20:31:00:14",
        "printer",
        "NPI310014",
        Some("Hewlett-Packard JetDirect"),
        "printer",
        "HP",
        Some("M404"),
    ),
    (
        "phone",
        "da:a1:19:31:00:15",
        "phone",
        "Janes-iPhone",
        None,
        "phone",
        "Apple",
        None,
    ),
    (
        "laptop",
        "00:03:93:31:00:16",
        "laptop",
        "Janes-MacBook-Pro",
        None,
        "computer",
        "Apple",
        Some("MacBookPro"),
    ),
];

const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

fn find<'a>(devices: &'a Value, mac: &str) -> Option<&'a Value> {
    devices.as_array()?.iter().find(|d| d["mac"] == mac)
}

/// Checks kind, vendor and evidence (and the model when `models`: a
/// capture cannot fetch UPnP descriptions, which carry some models).
fn check(devices: &Value, what: &str) -> Vec<String> {
    check_with(devices, what, true)
}

fn check_with(devices: &Value, what: &str, models: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, mac, _, _, _, kind, vendor, model) in HOME {
        let Some(d) = find(devices, mac) else {
            wrong.push(format!("{what}: {name} ({mac}) not listed"));
            continue;
        };
        let id = &d["identity"];
        let ok_kind = id["kind"] == *kind;
        let ok_vendor = id["vendor"].as_str().is_some_and(|v| v.contains(vendor));
        let ok_model =
            !models || model.is_none_or(|m| id["model"].as_str().is_some_and(|x| x.contains(m)));
        let has_evidence = id["evidence"].as_array().is_some_and(|e| e.len() >= 2);
        if !(ok_kind && ok_vendor && ok_model && has_evidence) {
            wrong.push(format!("{what}: {name} identified as {id}"));
        }
    }
    wrong
}

#[test]
fn every_device_is_identified_with_evidence_live_and_from_a_capture() -> Result<()> {
    let specs: Vec<DeviceSpec> = HOME
        .iter()
        .enumerate()
        .map(|(i, (name, mac, ..))| DeviceSpec {
            name,
            mac,
            host: 20 + i as u8,
            vlan: None,
        })
        .chain(std::iter::once(DeviceSpec {
            name: "hostile",
            mac: "02:00:5e:31:00:17",
            host: 40,
            vlan: None,
        }))
        .collect();
    let mut lab = Lab::new(&specs)?;
    let pcap = lab.dir.join("home.pcap");
    lab.capture(&pcap)?;
    lab.start_dhcp_server()?;
    std::fs::write(
        lab.dir.join("config"),
        format!(
            "config iot-inspector 'main'\n\tlist lan 'br-lan'\n\toption salt_file '{}'\n",
            lab.dir.join("salt").display()
        ),
    )?;
    let daemon = lab.start_daemon(&[])?;
    for (name, _, profile, hostname, vendor, ..) in HOME {
        let dev = lab.device(name).clone();
        lab.dhcp_client(&dev, hostname, *vendor)?;
        lab.announce(&dev, profile, 20)?;
    }
    let hostile = lab.device("hostile").clone();
    lab.dhcp_client(&hostile, HOSTILE_NAME, Some("\u{1b}[31mred"))?;
    lab.announce(&hostile, "hostile", 20)?;

    let until = Instant::now() + Duration::from_secs(40);
    let mut last = Vec::new();
    while Instant::now() < until {
        let devices = daemon.get("/v1/devices")?;
        last = check(&devices, "daemon");
        if last.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(last.is_empty(), "{last:#?}");

    // The hostile device: its chosen texts are kept as inert data; the
    // daemon is alive and counted what it rejected.
    let devices = daemon.get("/v1/devices")?;
    let h = find(&devices, &hostile.mac).expect("hostile device listed");
    let text = h.to_string();
    assert!(
        text.contains("<img src=x onerror=alert(1)>"),
        "the name is not kept literally: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a control character got through: {text}"
    );
    let status = daemon.get("/v1/status")?;
    let d = &status["dissect"];
    let rejected: u64 = [
        "identify_truncated",
        "mdns_malformed",
        "ssdp_malformed",
        "dhcp_malformed",
    ]
    .iter()
    .map(|k| d[k].as_u64().unwrap_or(0))
    .sum();
    assert!(rejected > 0, "nothing counted as rejected: {status}");

    // Labels: a deliberately wrong one raises a warning naming the
    // evidence; a right one does not; an unlabelled device gets suggestions.
    let plug = lab.device("plug").mac.clone();
    let speaker = lab.device("speaker").mac.clone();
    daemon.post(
        "/v1/devices/label",
        &serde_json::json!({"mac": plug, "label": "Philips Hue bridge"}),
    )?;
    daemon.post(
        "/v1/devices/label",
        &serde_json::json!({"mac": speaker, "label": "sonos one"}),
    )?;
    let until = Instant::now() + Duration::from_secs(5);
    let devices = loop {
        let d = daemon.get("/v1/devices")?;
        if find(&d, &plug).is_some_and(|p| p["label"].is_string()) || Instant::now() > until {
            break d;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = find(&devices, &plug).unwrap();
    let warnings = p["label_warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        !warnings.is_empty(),
        "no warning for a Belkin plug labelled Philips Hue: {p}"
    );
    let w = serde_json::Value::Array(warnings).to_string();
    assert!(
        w.contains("Belkin") || w.contains("wemo"),
        "the warning does not name the evidence: {w}"
    );
    // The owner keeps the label anyway: the warning is not shown again.
    daemon.post(
        "/v1/devices/confirm_label",
        &serde_json::json!({"mac": plug}),
    )?;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let d = daemon.get("/v1/devices")?;
        let p = find(&d, &plug).unwrap();
        if p["label_confirmed"] == true {
            assert!(
                p["label_warnings"].as_array().is_none_or(|w| w.is_empty()),
                "{p}"
            );
            break;
        }
        assert!(Instant::now() < until, "the confirmation did not take: {p}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let sp = find(&devices, &speaker).unwrap();
    assert_eq!(sp["label_entry"]["entry"]["vendor"], "Sonos", "{sp}");
    assert!(
        sp["label_warnings"].as_array().is_none_or(|w| w.is_empty()),
        "a right label warned: {sp}"
    );
    let tv = find(&devices, &lab.device("tv").mac).unwrap();
    assert!(
        tv["suggestions"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["product"]["vendor"] == "Roku")),
        "no Roku suggestion: {tv}"
    );
    // The research export, anonymised: no MAC, no LAN address, no DHCP
    // hostname in its bytes.
    let out = lab.dir.join("export.jsonl");
    let v = daemon.post(
        "/v1/export",
        &serde_json::json!({"since": "10m", "format": "jsonl", "output": out}),
    );
    let v = v?;
    assert!(v["summary"]["devices"].as_u64().unwrap_or(0) >= 7, "{v}");
    let bytes = std::fs::read(&out)?;
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    for (name, mac, _, hostname, ..) in HOME {
        assert!(
            !text.contains(&mac.to_lowercase()),
            "{name}'s MAC is in the export"
        );
        assert!(
            !text.contains(&mac.replace(':', "").to_lowercase()),
            "{name}'s MAC is in the export"
        );
        assert!(
            !text.contains(&hostname.to_lowercase()),
            "{name}'s hostname is in the export"
        );
    }
    assert!(!text.contains("192.0.2."), "a LAN address is in the export");
    assert!(!text.contains("janes"), "a person's name is in the export");

    // The same frames from a capture, through `analyze`.
    daemon.stop()?;
    lab.stop_children();
    let out = std::process::Command::new(iot_inspector_lab::daemon_binary())
        .args(["analyze", "--json"])
        .arg(&pcap)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_slice(&out.stdout)?;
    let wrong = check_with(&a["devices"], "analyze", false);
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(
        a["router"].as_str().map(str::len),
        Some(17),
        "router not found: {}",
        a["router"]
    );
    // The person-readable form prints too.
    let out = std::process::Command::new(iot_inspector_lab::daemon_binary())
        .arg("analyze")
        .arg(&pcap)
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Belkin") && text.contains("Sonos"), "{text}");
    Ok(())
}
