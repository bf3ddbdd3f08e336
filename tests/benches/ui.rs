//! `cargo xtask bench` (dashboard part): the page load time of the Overview,
//! Devices and Device views in a real headless Chromium, against the ≤ 1 s
//! budget and against loading a static file from the same server.
//!
//! The simulated home runs the daemon with its dashboard on 127.0.0.1:8095
//! inside `gw`; chromedriver (port 9630) and Chromium run there too, driven
//! from a thread that joined the namespace (as `tests/tests/browser.rs`).
//! A load is timed in the page: `performance.now()` (milliseconds since the
//! navigation started) when the view's data is rendered — its chart drawn,
//! its rows or parties listed — read by a script polling every frame. The
//! baseline is measured the same way on `/static/style.css`.
//!
//! Prints a table and writes `target/bench/ui.json`. Needs root,
//! `/usr/bin/chromium`, `chromedriver`, and the daemon binary and eBPF
//! object (`IOT_INSPECTOR_BIN`, `IOT_INSPECTOR_BPF`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use iot_inspector_lab::home;
use iot_inspector_lab::{DeviceSpec, Lab, SERVER_V4, SERVER2_V4, now_unix};
use serde_json::{Value, json};

const DASHBOARD: &str = "127.0.0.1:8095";
const DRIVER_PORT: u16 = 9630;
/// Loads timed per view (after one cold load, reported apart).
const LOADS: usize = 7;
const BUDGET_MS: f64 = 1000.0;

const DEVICES: [DeviceSpec; 3] = [
    DeviceSpec {
        name: "cam",
        mac: "2c:aa:8e:10:00:01",
        host: 10,
        vlan: None,
    },
    DeviceSpec {
        name: "tv",
        mac: "b0:a7:37:10:00:04",
        host: 13,
        vlan: None,
    },
    DeviceSpec {
        name: "plug",
        mac: "58:ef:68:10:00:03",
        host: 12,
        vlan: None,
    },
];

#[path = "../support/browser.rs"]
mod support;
use support::{Browser, in_netns};

/// One view's loads: name, cold load, timed loads, median load-event end (ms).
type Measured = (String, f64, Vec<f64>, f64);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Named traffic for the views to show: DNS answers from wan's dnsmasq,
/// then short transfers to the named servers.
fn make_traffic(lab: &mut Lab) -> Result<()> {
    support::named_traffic(lab, 5401)?;
    let plug = lab.device("plug").clone();
    home::ping(&plug, SERVER_V4, 3);
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("ui bench: skipped (needs root for the simulated home)");
        return Ok(());
    }
    let mut lab = Lab::new(&DEVICES)?;
    lab.start_dns(&[
        ("api.xbcs.net", SERVER_V4),
        ("www.google-analytics.com", SERVER2_V4),
        ("api.netflix.com", SERVER_V4),
    ])?;
    std::fs::write(
        lab.dir.join("config"),
        format!(
            "config iot-inspector 'main'\n\tlist lan 'br-lan'\n\toption dashboard '{DASHBOARD}'\n"
        ),
    )?;
    let daemon = lab.start_daemon(&[])?;
    make_traffic(&mut lab)?;
    daemon.wait_window_after(now_unix() + 1, Duration::from_secs(15))?;
    let cam = lab.device("cam").mac.clone();
    let devices = daemon.get("/v1/devices")?;
    let n_devices = devices.as_array().map_or(0, |d| d.len());
    if n_devices < DEVICES.len() {
        bail!("the daemon lists {n_devices} devices: {devices}");
    }

    let base = format!("http://{DASHBOARD}");
    // Each view and what "its data is rendered" means in the page.
    let views: Vec<(&str, String, String)> = vec![
        (
            "static file (baseline)",
            format!("{base}/static/style.css"),
            "document.readyState === 'complete' && document.body".to_string(),
        ),
        (
            "Overview",
            format!("{base}/#/overview"),
            "document.querySelector('#overview-chart figure') \
             && document.querySelector('.iot-overview .iot-bars .bar-label') \
             && /device/.test(document.querySelector('#overview-status').textContent)"
                .to_string(),
        ),
        (
            "Devices",
            format!("{base}/#/devices"),
            format!(
                "document.querySelectorAll('.device-row').length >= {} \
                 && document.querySelector(\".device-row[data-mac='{cam}'] .recent-bytes\")",
                DEVICES.len()
            ),
        ),
        (
            "Device",
            format!("{base}/#/device/{cam}"),
            "document.querySelector('#device-chart figure') \
             && document.querySelector('.parties .party') \
             && document.querySelector('h2.device-title').textContent !== 'Device'"
                .to_string(),
        ),
    ];

    let gw = lab.gw.clone();
    let profile = lab.dir.join("chromium-profile-bench");
    let log = daemon.log.clone();
    let measured = in_netns(&gw.clone(), async || -> Result<Vec<Measured>> {
        // The dashboard listens once the daemon's tasks run.
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(DASHBOARD).is_err() {
            if Instant::now() > until {
                bail!(
                    "nothing listens on {DASHBOARD} in gw (is {} a daemon built with the dashboard?); its log:\n{}",
                    iot_inspector_lab::daemon_binary().display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let b = Browser::start(&gw, DRIVER_PORT, profile).await?;
        let result = async {
            let mut rows = Vec::new();
            for (name, url, ready) in &views {
                // The first load of each view (cold caches, first API reads).
                let (cold, _) = b.timed_load(url, ready).await?;
                let mut times = Vec::new();
                let mut load_events = Vec::new();
                for _ in 0..LOADS {
                    let (t, le) = b.timed_load(url, ready).await?;
                    times.push(t);
                    load_events.push(le);
                }
                rows.push((name.to_string(), cold, times, median(load_events)));
            }
            Ok::<_, anyhow::Error>(rows)
        }
        .await;
        b.close().await;
        result
    })?;
    drop(daemon);

    let base_ms = median(measured[0].2.clone());
    println!(
        "\nPage load in headless Chromium ({} devices in the simulated home; navigation start → the view's data rendered; median of {LOADS} loads after a cold one)",
        DEVICES.len()
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>12} {:>10}  budget",
        "", "median ms", "worst ms", "cold ms", "load event", "added ms"
    );
    let mut json_rows = Vec::new();
    for (name, cold, times, load_event) in &measured {
        let m = median(times.clone());
        let worst = times.iter().cloned().fold(0.0, f64::max);
        let is_base = name.contains("baseline");
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>10}  {}",
            name,
            m,
            worst,
            cold,
            load_event,
            if is_base {
                "-".to_string()
            } else {
                format!("{:.1}", m - base_ms)
            },
            if is_base {
                ""
            } else if m <= BUDGET_MS {
                "≤ 1 s: within"
            } else {
                "≤ 1 s: OVER"
            }
        );
        json_rows.push(json!({
            "view": name,
            "median_ms": m,
            "worst_ms": worst,
            "cold_ms": cold,
            "median_load_event_ms": load_event,
            "loads_ms": times,
            "added_over_baseline_ms": m - base_ms,
            "within_budget": is_base || m <= BUDGET_MS,
        }));
    }
    let results: Value = json!({
        "budget_ms": BUDGET_MS,
        "devices": DEVICES.len(),
        "views": json_rows,
    });
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("ui.json"), serde_json::to_vec_pretty(&results)?)?;
    println!("\nwritten to target/bench/ui.json");
    Ok(())
}
