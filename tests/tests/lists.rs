//! The owner's lists in the simulated home: a list server in wan (busybox
//! httpd), a JSON list and a hosts list configured in UCI. Shows that names
//! the built-in knowledge base does not know are explained by the lists
//! once downloaded; that a missing, invalid or oversized list keeps the
//! last good copy and reports why; and that after a restart the saved copy
//! is in force before any download, while the list server hangs and the
//! daemon runs on regardless.
//! Needs root; `cargo xtask test` builds everything first.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use iot_inspector_lab::{Daemon, Device, DeviceSpec, Lab, now_unix, sh};
use serde_json::Value;

const TV: DeviceSpec = DeviceSpec {
    name: "tv",
    mac: "08:05:81:33:00:13",
    host: 13,
    vlan: None,
};

/// Names the built-in knowledge base does not know.
const GADGET_NAME: &str = "metrics.gadgetco.example";
const GADGET_IP: &str = "203.0.113.40";
const ADS_NAME: &str = "ads.tvmaker.example";
const ADS_IP: &str = "203.0.113.60";
/// The list server (in wan).
const LISTS_AT: &str = "203.0.113.30:8080";

const GADGETS_JSON: &str = r#"{"organisations":[{"name":"Gadget Co","category":"vendor_cloud",
  "description":"Gadget Co's cloud, which its TVs report to.",
  "domains":["gadgetco.example","gadgetco-cdn.example"]}]}"#;
const TV_ADS_HOSTS: &str =
    "# TV ad servers\n0.0.0.0 ads.tvmaker.example\n0.0.0.0 beacons.tvmaker.example\n";

/// A child process killed when the test ends, however it ends.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(dev: &Device, url: &str) -> Result<()> {
    sh(dev
        .ns
        .cmd("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", url]))?;
    Ok(())
}

/// The state of list `name` in `/v1/lists`.
fn list(daemon: &Daemon, name: &str) -> Result<Value> {
    let v = daemon.get("/v1/lists")?;
    for l in v["lists"].as_array().into_iter().flatten() {
        if l["name"] == name {
            return Ok(l.clone());
        }
    }
    bail!("no list {name} in {v}")
}

/// Polls list `name` until `ok` holds.
fn wait_list(
    daemon: &Daemon,
    name: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let until = Instant::now() + within;
    loop {
        let l = list(daemon, name)?;
        if ok(&l) {
            return Ok(l);
        }
        if Instant::now() > until {
            bail!("list {name} never got there: {l}\n{}", daemon.log_text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The explanation of the TV's flow to `ip`.
fn explanation(daemon: &Daemon, since: u64, ip: &str) -> Result<Value> {
    let flows = daemon.get(&format!("/v1/flows?device={}&since={since}", TV.mac))?;
    for f in flows.as_array().into_iter().flatten() {
        if f["remote_ip"] == ip && f["remote_port"] == 80 {
            return Ok(f["explanation"].clone());
        }
    }
    bail!("no flow to {ip} in {flows}")
}

fn write(dir: &Path, file: &str, body: &[u8]) -> Result<()> {
    // Write then rename: the server never sends half a file.
    let tmp = dir.join(format!(".{file}"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, dir.join(file))?;
    Ok(())
}

#[test]
fn lists_explain_unknown_names_keep_the_last_good_copy_and_never_block() -> Result<()> {
    let mut lab = Lab::new(&[TV])?;
    lab.start_dns(&[(GADGET_NAME, GADGET_IP), (ADS_NAME, ADS_IP)])?;
    lab.serve_web(GADGET_IP)?;
    lab.serve_web(ADS_IP)?;
    let tv = lab.device("tv").clone();
    lab.use_wan_dns(&tv)?;
    let www = lab.dir.join("lists-www");
    std::fs::create_dir_all(&www)?;
    let _server = Server(
        lab.wan
            .cmd("busybox")
            .args(["httpd", "-f", "-p", LISTS_AT, "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::fs::write(
        lab.dir.join("config"),
        format!(
            "config iot-inspector 'main'
	list lan 'br-lan'
	option lists_enabled '1'
	option lists_interval '5s'
	option lists_dir '{}'
config list 'gadgets'
	option url 'http://{LISTS_AT}/gadgets.json'
	option format 'json'
config list 'tv_ads'
	option url 'http://{LISTS_AT}/tv-ads.hosts'
	option format 'hosts'
	option category 'advertising'
",
            lab.dir.join("lists").display()
        ),
    )?;

    // 1. The lists are not there yet (404): nothing in force, the error shown.
    let daemon = lab.start_daemon(&[])?;
    let since = now_unix().saturating_sub(1);
    curl(&tv, &format!("http://{GADGET_NAME}/big.bin"))?;
    curl(&tv, &format!("http://{ADS_NAME}/big.bin"))?;
    daemon.wait_window_after(now_unix() + 1, Duration::from_secs(15))?;
    for name in ["gadgets", "tv_ads"] {
        let l = wait_list(&daemon, name, Duration::from_secs(20), |l| {
            l["last_error"].as_str().is_some_and(|e| e.contains("404"))
        })?;
        assert_eq!(l["domains"], 0, "{l}");
    }
    let e = explanation(&daemon, since, GADGET_IP)?;
    assert!(e["organisation"].is_null(), "built-in base knows it? {e}");
    let e = explanation(&daemon, since, ADS_IP)?;
    assert_ne!(e["category"], "advertising", "{e}");

    // 2. The lists appear: the names are explained by them.
    write(&www, "gadgets.json", GADGETS_JSON.as_bytes())?;
    write(&www, "tv-ads.hosts", TV_ADS_HOSTS.as_bytes())?;
    let gadgets = wait_list(&daemon, "gadgets", Duration::from_secs(20), |l| {
        l["copy"] == "download"
    })?;
    assert_eq!(gadgets["domains"], 2, "{gadgets}");
    assert!(gadgets["last_error"].is_null(), "{gadgets}");
    let ads = wait_list(&daemon, "tv_ads", Duration::from_secs(20), |l| {
        l["copy"] == "download"
    })?;
    assert_eq!(ads["domains"], 2, "{ads}");
    let e = explanation(&daemon, since, GADGET_IP)?;
    assert_eq!(e["organisation"], "Gadget Co", "{e}");
    assert_eq!(e["category"], "vendor_cloud", "{e}");
    assert!(
        e["source"].as_str().unwrap().starts_with("list:gadgets"),
        "{e}"
    );
    let e = explanation(&daemon, since, ADS_IP)?;
    assert_eq!(e["category"], "advertising", "{e}");
    assert!(
        e["source"].as_str().unwrap().starts_with("list:tv_ads"),
        "{e}"
    );
    let status = daemon.cli(&["status"])?;
    assert!(
        status.contains(
            "gadgets (json, http://203.0.113.30:8080/gadgets.json): 2 domains, downloaded"
        ),
        "{status}"
    );
    let st = daemon.get("/v1/status")?;
    assert_eq!(
        st["lists"]["lists"].as_array().map(Vec::len),
        Some(2),
        "{st}"
    );

    // 3. A captive-portal page instead of the JSON list, and a hosts list
    // over the size limit: both refused, the last good copies stay.
    let success = gadgets["last_success"].as_u64().unwrap();
    write(
        &www,
        "gadgets.json",
        b"<html>\n<body>Please log in</body>\n</html>\n",
    )?;
    let mut big = String::from(TV_ADS_HOSTS);
    while big.len() <= 4 * 1024 * 1024 {
        big.push_str("0.0.0.0 more-ads.tvmaker.example\n");
    }
    write(&www, "tv-ads.hosts", big.as_bytes())?;
    let g = wait_list(&daemon, "gadgets", Duration::from_secs(20), |l| {
        l["last_error"].as_str().is_some_and(|e| e.contains("JSON"))
    })?;
    assert_eq!(g["domains"], 2, "{g}");
    assert_eq!(g["last_success"].as_u64(), Some(success), "{g}");
    let a = wait_list(&daemon, "tv_ads", Duration::from_secs(20), |l| {
        l["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than"))
    })?;
    assert_eq!(a["domains"], 2, "{a}");
    assert_eq!(
        explanation(&daemon, since, GADGET_IP)?["organisation"],
        "Gadget Co"
    );
    assert_eq!(
        explanation(&daemon, since, ADS_IP)?["category"],
        "advertising"
    );
    let status = daemon.cli(&["status"])?;
    assert!(status.contains("last attempt failed"), "{status}");
    daemon.stop()?;

    // 4. Restart while the list server hangs (its packets dropped): the
    // daemon comes up, the saved copies are in force before any download
    // finished, and windows keep being stored while the download hangs.
    lab.wan.nft(
        "table inet hang {
            chain input {
                type filter hook input priority 0; policy accept;
                tcp dport 8080 drop
            }
        }",
    )?;
    let started = Instant::now();
    let daemon = lab.start_daemon(&[])?;
    assert!(started.elapsed() < Duration::from_secs(10));
    for (name, ip) in [("gadgets", GADGET_IP), ("tv_ads", ADS_IP)] {
        let l = wait_list(&daemon, name, Duration::from_secs(5), |l| {
            l["copy"] == "saved_copy"
        })?;
        assert_eq!(l["domains"], 2, "{l}");
        assert!(l["last_attempt"].is_null(), "{l}");
        let e = explanation(&daemon, since, ip)?;
        assert!(
            e["source"]
                .as_str()
                .unwrap()
                .starts_with(&format!("list:{name}")),
            "{e}"
        );
    }
    assert_eq!(
        explanation(&daemon, since, GADGET_IP)?["organisation"],
        "Gadget Co"
    );
    // The first download is due 5 s after start and now hangs; the window
    // loop and the API carry on.
    std::thread::sleep(Duration::from_secs(7));
    daemon.wait_window_after(now_unix(), Duration::from_secs(5))?;
    let l = list(&daemon, "gadgets")?;
    assert!(l["last_attempt"].is_null(), "{l}");
    assert_eq!(l["domains"], 2, "{l}");
    Ok(())
}
