//! The data path in the simulated home: the real eBPF programs on the real
//! bridge ports, real iperf3 traffic, counts checked against nftables
//! counters kept in each device's own namespace.
//!
//! Needs root (namespaces, bpffs, eBPF); `cargo xtask test` builds the daemon
//! and the eBPF object first.

use std::time::Duration;

use anyhow::Result;
use iot_inspector_lab::home::{self, Counts, Meter, counted, rel_diff};
use iot_inspector_lab::{DeviceSpec, Lab, SERVER_V4, SERVER_V6, now_unix};

const CAM: DeviceSpec = iot_inspector_lab::CAMERA;
const TV: DeviceSpec = DeviceSpec {
    name: "tv",
    mac: "b0:a7:37:10:00:02",
    host: 11,
    vlan: None,
};

/// Flows the daemon stored for a device since `since` (unix s).
fn flows_of(d: &iot_inspector_lab::Daemon, mac: &str, since: u64) -> Result<serde_json::Value> {
    d.get(&format!("/v1/flows?device={mac}&since={since}"))
}

/// Checks the daemon's count of one device↔server exchange against the
/// device's own nftables counters, both directions, within 1 %.
fn assert_counts_match(what: &str, reference: Counts, got: Counts) {
    assert!(
        reference.bytes_up > 0,
        "{what}: nothing was sent ({reference:?})"
    );
    let up = rel_diff(reference.bytes_up, got.bytes_up);
    let down = rel_diff(reference.bytes_down, got.bytes_down);
    assert!(
        up <= 0.01 && down <= 0.01,
        "{what}: counted {got:?}, the device's stack saw {reference:?} (up off by {:.3} %, down by {:.3} %)",
        up * 100.0,
        down * 100.0
    );
}

/// Runs one iperf3 exchange and compares counts.
fn exchange(
    lab: &mut Lab,
    daemon: &iot_inspector_lab::Daemon,
    device: &str,
    server: &str,
    port: u16,
    args: &[&str],
) -> Result<()> {
    let dev = lab.device(device).clone();
    let meter = Meter::install(lab, &dev, server, port)?;
    let since = now_unix().saturating_sub(1);
    home::iperf_server(lab, server, port)?;
    home::iperf_client(&dev, server, port, args)?;
    let done = now_unix();
    // Let the last packets land in a stored window.
    daemon.wait_window_after(done + 1, Duration::from_secs(15))?;
    let reference = meter.read()?;
    let got = counted(&flows_of(daemon, &dev.mac, since)?, server, port);
    assert_counts_match(
        &format!("{device} {args:?} to {server}:{port}"),
        reference,
        got,
    );
    Ok(())
}

#[test]
fn counts_match_the_wire_for_tcp_udp_ipv4_ipv6_both_directions() -> Result<()> {
    let mut lab = Lab::new(&[CAM, TV])?;
    let daemon = lab.start_daemon(&[])?;
    let mut port = 5201;
    for (server, fam) in [(SERVER_V4, "-4"), (SERVER_V6, "-6")] {
        for (proto_args, what) in [(vec![], "tcp"), (vec!["-u", "-b", "20M"], "udp")] {
            for reverse in [false, true] {
                let mut args: Vec<&str> = vec![fam, "-t", "2"];
                args.extend(proto_args.iter().copied());
                if reverse {
                    args.push("-R");
                }
                let _ = what;
                exchange(&mut lab, &daemon, "cam", server, port, &args)?;
                port += 1;
            }
        }
    }
    // The other device was idle; nothing of the camera's was put on it.
    let tv = lab.device("tv").mac.clone();
    let flows = flows_of(&daemon, &tv, 0)?;
    assert!(
        counted(&flows, SERVER_V4, 5201).bytes_up == 0,
        "tv got the camera's bytes: {flows}"
    );
    // The devices are listed with their addresses.
    let devices = daemon.get("/v1/devices")?;
    let cam = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mac"] == lab.device("cam").mac.as_str())
        .expect("camera listed");
    let ips: Vec<&str> = cam["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        ips.contains(&"192.0.2.10") && ips.contains(&"2001:db8:1::a"),
        "{ips:?}"
    );
    daemon.stop()?;
    Ok(())
}

#[test]
fn a_port_added_while_running_and_a_vlan_tagged_port_are_counted() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    let daemon = lab.start_daemon(&[])?;
    // Plugged in while the daemon runs: attached within 2 s.
    let plug = lab.add_device(&DeviceSpec {
        name: "plug",
        mac: "24:0a:c4:10:00:03",
        host: 12,
        vlan: None,
    })?;
    let vlan = lab.add_device(&DeviceSpec {
        name: "vlan",
        mac: "3c:71:bf:10:00:04",
        host: 13,
        vlan: Some(100),
    })?;
    let until = std::time::Instant::now() + Duration::from_secs(2) + Duration::from_millis(500);
    loop {
        let st = daemon.get("/v1/status")?;
        let ports: Vec<String> = st["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        if ports.contains(&plug.port) && ports.contains(&vlan.port) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "new ports not attached within 2 s: {ports:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    exchange(
        &mut lab,
        &daemon,
        "plug",
        SERVER_V4,
        5301,
        &["-4", "-t", "2"],
    )?;
    exchange(
        &mut lab,
        &daemon,
        "vlan",
        SERVER_V4,
        5302,
        &["-4", "-t", "2", "-R"],
    )?;
    exchange(
        &mut lab,
        &daemon,
        "vlan",
        SERVER_V6,
        5303,
        &["-6", "-t", "2", "-u", "-b", "10M"],
    )?;
    let st = daemon.get("/v1/status")?;
    assert!(
        st["kernel"]["vlan_tagged"].as_u64().unwrap_or(0) > 1000,
        "the tagged port's frames were not seen as tagged: {st}"
    );
    daemon.stop()?;
    Ok(())
}

#[test]
fn sigkill_mid_transfer_keeps_traffic_flowing_and_counts_once() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    let daemon = lab.start_daemon(&[])?;
    let dev = lab.device("cam").clone();
    let port = 5401;
    let meter = Meter::install(&lab, &dev, SERVER_V4, port)?;
    let since = now_unix().saturating_sub(1);
    home::iperf_server(&mut lab, SERVER_V4, port)?;
    let client = home::iperf_client_spawn(&dev, SERVER_V4, port, &["-4", "-t", "6", "-b", "50M"])?;
    std::thread::sleep(Duration::from_secs(2));
    daemon.kill();
    std::thread::sleep(Duration::from_secs(2));
    // Restart while the transfer still runs.
    let daemon = lab.start_daemon(&[])?;
    let out = client.wait_with_output()?;
    assert!(
        out.status.success(),
        "the transfer was interrupted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = now_unix();
    daemon.wait_window_after(done + 1, Duration::from_secs(15))?;
    let st = daemon.get("/v1/status")?;
    assert_eq!(
        st["resumed"], true,
        "the restart did not pick up the pinned maps"
    );
    let reference = meter.read()?;
    let got = counted(&flows_of(&daemon, &dev.mac, since)?, SERVER_V4, port);
    // The programs counted on while the daemon was down, so nothing is lost
    // and the cursors keep anything from being counted twice.
    assert_counts_match("transfer across a SIGKILL", reference, got);
    daemon.stop()?;
    Ok(())
}

#[test]
fn a_flood_of_distinct_flows_stays_bounded_and_spares_other_devices() -> Result<()> {
    let mut lab = Lab::new(&[CAM, TV])?;
    lab.write_config("\toption flow_table_size '16384'\n")?;
    let daemon = lab.start_daemon(&[])?;
    let tv = lab.device("tv").clone();
    let cam = lab.device("cam").clone();
    let port = 5501;
    let meter = Meter::install(&lab, &tv, SERVER_V4, port)?;
    let since = now_unix().saturating_sub(1);
    home::iperf_server(&mut lab, SERVER_V4, port)?;
    let client = home::iperf_client_spawn(&tv, SERVER_V4, port, &["-4", "-t", "5", "-b", "20M"])?;
    home::udp_flood(&cam, 200_000, 60)?;
    let out = client.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = now_unix();
    daemon.wait_window_after(done + 1, Duration::from_secs(15))?;
    let st = daemon.get("/v1/status")?;
    // The table is bounded and the pressure shows.
    assert!(st["flows_live"].as_u64().unwrap() <= 16384, "{st}");
    assert!(
        st["kernel"]["flows_created"].as_u64().unwrap() >= 150_000,
        "the flood did not reach the kernel: {st}"
    );
    assert!(
        st["flows_evicted"].as_u64().unwrap() > 0
            || st["flow_table_use_pct"].as_f64().unwrap() > 90.0,
        "no map pressure reported: {st}"
    );
    // The daemon's memory stays bounded.
    assert!(
        st["rss_kib"].as_u64().unwrap() < 64 * 1024,
        "daemon RSS {st}"
    );
    let reference = meter.read()?;
    let got = counted(&flows_of(&daemon, &tv.mac, since)?, SERVER_V4, port);
    assert_counts_match("the TV during the flood", reference, got);
    daemon.stop()?;
    Ok(())
}

#[test]
fn a_clean_stop_detaches_and_unpins_everything() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    let daemon = lab.start_daemon(&[])?;
    assert!(home::ping(lab.device("cam"), SERVER_V4, 2));
    let status = daemon.stop()?;
    assert!(status.success(), "exit status {status}");
    let pins: Vec<_> = walk(&lab.pin_dir());
    assert!(pins.is_empty(), "left pinned: {pins:?}");
    let filters = lab.gw.run("bpftool", &["net", "show"])?;
    let text = String::from_utf8_lossy(&filters.stdout);
    assert!(
        !text.contains("lan_ingress") && !text.contains("lan_egress"),
        "{text}"
    );
    // Traffic still flows without the daemon.
    assert!(home::ping(lab.device("cam"), SERVER_V4, 2));
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
