//! Traffic in the simulated home and independent measures of it.
//!
//! The reference for "what was sent on the wire" is an nftables counter in
//! the device's own namespace: it counts every IP packet the device's stack
//! sends to (output hook) or receives from (input hook) a server, at the IP
//! layer, without going near the code under test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Device, Lab, Netns, sh};

/// Starts an iperf3 server in the wan namespace for one test (`-1`: it exits
/// after one client).
pub fn iperf_server(lab: &mut Lab, bind: &str, port: u16) -> Result<()> {
    let child = lab
        .wan
        .cmd("iperf3")
        .args(["-s", "-1", "-B", bind, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    lab.adopt(child);
    // Wait until it listens.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let out = lab.wan.run("ss", &["-Hltn", &format!("sport = :{port}")])?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("iperf3 server on {bind}:{port} did not start")
}

/// Runs an iperf3 client in a device namespace and waits for it.
pub fn iperf_client(dev: &Device, server: &str, port: u16, args: &[&str]) -> Result<()> {
    let mut c = dev.ns.cmd("iperf3");
    c.args([
        "-c",
        server,
        "-p",
        &port.to_string(),
        "--connect-timeout",
        "3000",
    ])
    .args(args);
    sh(&mut c).map(|_| ())
}

/// Starts an iperf3 client in the background.
pub fn iperf_client_spawn(dev: &Device, server: &str, port: u16, args: &[&str]) -> Result<Child> {
    Ok(dev
        .ns
        .cmd("iperf3")
        .args([
            "-c",
            server,
            "-p",
            &port.to_string(),
            "--connect-timeout",
            "3000",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// IP-layer byte and packet counters of one device's traffic with one
/// server port, kept by nftables on the *receiving* side of each direction:
/// the server's namespace for uploads, the device's for downloads. Counting
/// where packets arrive sees them as they crossed the wire (TCP hands the
/// sender's output hook 64 kB GSO super-packets that are only cut into
/// MTU-sized segments later).
pub struct Meter {
    up: (Netns, String),
    down: (Netns, String),
}

/// What a [`Meter`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes_up: u64,
    pub packets_up: u64,
    pub bytes_down: u64,
    pub packets_down: u64,
}

fn counter_table(ns: &Netns, table: &str, matcher: &str) -> Result<()> {
    ns.nft(&format!(
        "table inet {table} {{\n counter seen {{ }}\n chain c_in {{\n type filter hook input priority 0; policy accept;\n {matcher} counter name \"seen\"\n }}\n}}\n"
    ))
}

fn read_counter(ns: &Netns, table: &str) -> Result<(u64, u64)> {
    let out = ns.run("nft", &["-j", "list", "counters", "table", "inet", table])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for item in v["nftables"].as_array().context("nft -j output")? {
        if let Some(c) = item.get("counter") {
            return Ok((
                c["bytes"].as_u64().unwrap_or(0),
                c["packets"].as_u64().unwrap_or(0),
            ));
        }
    }
    bail!("no counter in table {table}")
}

impl Meter {
    pub fn install(lab: &Lab, dev: &Device, server: &str, port: u16) -> Result<Meter> {
        let v6 = server.contains(':');
        let dev_ip = if v6 {
            dev.ipv6.clone()
        } else {
            dev.ipv4.clone()
        };
        Self::install_from(lab, dev, &dev_ip, server, port)
    }

    /// The same behind the fw4-like firewall, which masquerades: the
    /// server sees the router's wan address.
    pub fn install_masqueraded(lab: &Lab, dev: &Device, server: &str, port: u16) -> Result<Meter> {
        let from = if server.contains(':') {
            "2001:db8:ff::1"
        } else {
            "198.51.100.1"
        };
        Self::install_from(lab, dev, from, server, port)
    }

    fn install_from(
        lab: &Lab,
        dev: &Device,
        dev_ip: &str,
        server: &str,
        port: u16,
    ) -> Result<Meter> {
        let v6 = server.contains(':');
        let fam = if v6 { "ip6" } else { "ip" };
        let table = format!("meter_{}_{port}", dev.name);
        counter_table(
            &lab.wan,
            &table,
            &format!(
                "{fam} saddr {dev_ip} {fam} daddr {server} meta l4proto {{ tcp, udp }} th dport {port}"
            ),
        )?;
        counter_table(
            &dev.ns,
            &table,
            &format!("{fam} saddr {server} meta l4proto {{ tcp, udp }} th sport {port}"),
        )?;
        Ok(Meter {
            up: (lab.wan.clone(), table.clone()),
            down: (dev.ns.clone(), table),
        })
    }

    pub fn read(&self) -> Result<Counts> {
        let (bytes_up, packets_up) = read_counter(&self.up.0, &self.up.1)?;
        let (bytes_down, packets_down) = read_counter(&self.down.0, &self.down.1)?;
        Ok(Counts {
            bytes_up,
            packets_up,
            bytes_down,
            packets_down,
        })
    }
}

/// Sums what the daemon counted for a device's traffic with one server port.
pub fn counted(flows: &serde_json::Value, server: &str, port: u16) -> Counts {
    let mut c = Counts::default();
    for f in flows.as_array().into_iter().flatten() {
        if f["remote_ip"].as_str() == Some(server) && f["remote_port"].as_u64() == Some(port as u64)
        {
            c.bytes_up += f["bytes_up"].as_u64().unwrap_or(0);
            c.bytes_down += f["bytes_down"].as_u64().unwrap_or(0);
            c.packets_up += f["packets_up"].as_u64().unwrap_or(0);
            c.packets_down += f["packets_down"].as_u64().unwrap_or(0);
        }
    }
    c
}

/// Relative difference of two byte counts.
pub fn rel_diff(a: u64, b: u64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a as f64 - b as f64).abs() / (a.max(b) as f64)
}

/// Pings from a device; returns whether it got answers.
pub fn ping(dev: &Device, target: &str, count: u32) -> bool {
    dev.ns
        .cmd("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Sends `count` UDP datagrams from a device to distinct (address, port)
/// pairs in 203.0.113.0/24 (a flood of distinct flows), at most `secs`.
pub fn udp_flood(dev: &Device, count: u32, secs: u32) -> Result<()> {
    let bin = crate::daemon_binary()
        .parent()
        .unwrap()
        .join("iot-lab-flood");
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(["ip", "netns", "exec", &dev.ns.name])
        .arg(&bin)
        .args(["--count", &count.to_string()])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("flood failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
