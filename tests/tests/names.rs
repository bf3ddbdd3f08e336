//! Naming the other end in the simulated home: DNS answers (also cached
//! before the flow), TLS SNI without any DNS, QUIC SNI, plain-HTTP Host, and two
//! devices that reach different names on the same address — each flow's
//! bytes must carry the right name, and the names are explained calmly.
//! Needs root; `cargo xtask test` builds everything first.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use iot_inspector_lab::{Device, DeviceSpec, Lab, now_unix, sh};
use serde_json::Value;

const PLUG: DeviceSpec = DeviceSpec {
    name: "plug",
    mac: "24:0a:c4:31:00:11",
    host: 11,
    vlan: None,
};
const TV: DeviceSpec = DeviceSpec {
    name: "tv",
    mac: "08:05:81:31:00:13",
    host: 13,
    vlan: None,
};
const SPEAKER: DeviceSpec = DeviceSpec {
    name: "speaker",
    mac: "00:0e:58:31:00:12",
    host: 12,
    vlan: None,
};

fn curl(dev: &Device, args: &[&str]) -> Result<()> {
    sh(dev
        .ns
        .cmd("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", "-k"])
        .args(args))?;
    Ok(())
}

fn dig(dev: &Device, name: &str) -> Result<()> {
    sh(dev
        .ns
        .cmd("dig")
        .args(["+short", "+tries=1", "+time=2", name]))?;
    Ok(())
}

#[test]
fn flows_carry_the_names_their_devices_used() -> Result<()> {
    let mut lab = Lab::new(&[PLUG, TV, SPEAKER])?;
    lab.start_dns(&[
        ("api.xbcs.net", "203.0.113.30"),
        ("ad.doubleclick.net", "203.0.113.40"),
        ("api.roku.com", "203.0.113.40"),
    ])?;
    for ip in [
        "203.0.113.30",
        "203.0.113.40",
        "203.0.113.50",
        "203.0.113.60",
    ] {
        lab.serve_web(ip)?;
    }
    for d in ["plug", "tv", "speaker"] {
        let dev = lab.device(d).clone();
        lab.use_wan_dns(&dev)?;
    }
    let daemon = lab.start_daemon(&[])?;
    let since = now_unix().saturating_sub(1);
    let (plug, tv, speaker) = (
        lab.device("plug").clone(),
        lab.device("tv").clone(),
        lab.device("speaker").clone(),
    );
    // DNS, cached before the flow: the plug resolves, waits, then talks to
    // the address (plain HTTP to the bare address: no other name on the wire).
    dig(&plug, "api.xbcs.net")?;
    std::thread::sleep(Duration::from_secs(3));
    curl(&plug, &["http://203.0.113.30/big.bin"])?;
    // HTTPS named by DNS through the resolver (the name goes in SNI too).
    curl(&plug, &["https://api.xbcs.net/big.bin"])?;
    // Two devices, one address, two names.
    dig(&tv, "ad.doubleclick.net")?;
    dig(&speaker, "api.roku.com")?;
    curl(&tv, &["http://203.0.113.40/big.bin"])?;
    curl(&speaker, &["http://203.0.113.40/big.bin"])?;
    // SNI only, no DNS at all.
    curl(
        &speaker,
        &[
            "--resolve",
            "api.sonos.com:443:203.0.113.50",
            "https://api.sonos.com/big.bin",
        ],
    )?;
    // QUIC (a real client: quinn), no DNS: the Initial's SNI names it.
    let quic = iot_inspector_lab::daemon_binary()
        .parent()
        .unwrap()
        .join("iot-lab-quic");
    let _ = tv
        .ns
        .cmd(quic.to_str().unwrap())
        .args(["203.0.113.70:443", "www.youtube.com", "2"])
        .output()?;
    // Plain HTTP Host only, no DNS.
    curl(
        &tv,
        &[
            "--resolve",
            "b.scorecardresearch.com:80:203.0.113.60",
            "http://b.scorecardresearch.com/big.bin",
        ],
    )?;
    daemon.wait_window_after(now_unix() + 1, Duration::from_secs(15))?;

    // (device, remote address, remote port) → the name it must carry.
    let expected: HashMap<(&str, &str, u64), &str> = HashMap::from([
        ((plug.mac.as_str(), "203.0.113.30", 80), "api.xbcs.net"),
        ((plug.mac.as_str(), "203.0.113.30", 443), "api.xbcs.net"),
        ((tv.mac.as_str(), "203.0.113.40", 80), "ad.doubleclick.net"),
        ((speaker.mac.as_str(), "203.0.113.40", 80), "api.roku.com"),
        ((speaker.mac.as_str(), "203.0.113.50", 443), "api.sonos.com"),
        (
            (tv.mac.as_str(), "203.0.113.60", 80),
            "b.scorecardresearch.com",
        ),
        ((tv.mac.as_str(), "203.0.113.70", 443), "www.youtube.com"),
    ]);
    let flows: Value = daemon.get(&format!("/v1/flows?since={since}"))?;
    let mut total = 0u64;
    let mut right = 0u64;
    let mut seen = HashMap::new();
    for f in flows.as_array().unwrap() {
        let key = (
            f["device"].as_str().unwrap_or(""),
            f["remote_ip"].as_str().unwrap_or(""),
            f["remote_port"].as_u64().unwrap_or(0),
        );
        let Some(want) = expected.get(&key) else {
            continue;
        };
        let bytes = f["bytes_up"].as_u64().unwrap() + f["bytes_down"].as_u64().unwrap();
        total += bytes;
        if f["name"].as_str() == Some(*want) {
            right += bytes;
        }
        seen.insert(key, f.clone());
    }
    for (k, want) in &expected {
        let f = seen
            .get(k)
            .unwrap_or_else(|| panic!("no flow {k:?} in {flows}"));
        assert_eq!(f["name"].as_str(), Some(*want), "{k:?}: {f}");
    }
    assert!(total > 1_000_000, "too little traffic measured: {total}");
    let share = right as f64 / total as f64;
    assert!(
        share >= 0.99,
        "only {:.2} % of the bytes carry the right name",
        share * 100.0
    );

    // Where each name came from.
    let src = |k: (&str, &str, u64)| seen[&k]["name_source"].as_str().unwrap_or("").to_string();
    assert_eq!(src((tv.mac.as_str(), "203.0.113.40", 80)), "dns");
    assert_eq!(src((speaker.mac.as_str(), "203.0.113.50", 443)), "tls_sni");
    assert_eq!(src((tv.mac.as_str(), "203.0.113.60", 80)), "http_host");
    assert_eq!(src((tv.mac.as_str(), "203.0.113.70", 443)), "quic_sni");

    // Explained calmly.
    let exp = |k: (&str, &str, u64)| seen[&k]["explanation"].clone();
    let wemo = exp((plug.mac.as_str(), "203.0.113.30", 443));
    assert!(
        wemo["organisation"]
            .as_str()
            .unwrap_or("")
            .contains("Belkin"),
        "{wemo}"
    );
    assert_eq!(wemo["category"], "vendor_cloud");
    assert_eq!(
        exp((tv.mac.as_str(), "203.0.113.40", 80))["category"],
        "advertising"
    );
    assert_eq!(
        exp((tv.mac.as_str(), "203.0.113.60", 80))["category"],
        "tracking_analytics"
    );
    // Bytes by organisation and category.
    let parties = daemon.get(&format!("/v1/parties?device={}&since={since}", tv.mac))?;
    let cats: Vec<&str> = parties["categories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["category"].as_str())
        .collect();
    assert!(
        cats.contains(&"advertising") && cats.contains(&"tracking_analytics"),
        "{parties}"
    );
    // The TV's first contact with advertising raised an alert.
    let alerts = daemon.get("/v1/alerts")?;
    assert!(alerts.to_string().contains(&tv.mac), "{alerts}");
    daemon.stop()?;
    Ok(())
}
