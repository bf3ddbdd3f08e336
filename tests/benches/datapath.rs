//! `cargo xtask bench` (data path part): each figure against a baseline
//! measured in the same run.
//!
//! 1. The TC programs' cost per packet against an empty TC program on the
//!    same packets (BPF_PROG_TEST_RUN, 1,000,000 repeats each).
//! 2. iperf3 throughput through gw with the programs attached against
//!    without (rounds of back-to-back runs, the median of the rounds'
//!    ratios): with GRO on gw's ports, as a router's NIC drivers have it,
//!    and with offloads off everywhere (every MTU frame through both hooks;
//!    an empty TC program on the same hooks shows what the hooks alone cost
//!    there).
//! 3. The daemon's CPU and peak RSS while 50,000 flows stay active.
//!
//! Prints a table and writes `target/bench/datapath.json`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use iot_inspector::datapath::{Datapath, LoadOptions};
use iot_inspector_common::programs;
use iot_inspector_lab::{CAMERA, Lab, SERVER_V4, bpf_object, home};
use serde_json::json;

const REPEAT: u32 = 1_000_000;

fn main() -> Result<()> {
    let mut results = serde_json::Map::new();
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if want("ebpf") {
        results.insert("ebpf".into(), ebpf_cost()?);
    }
    if want("throughput") {
        results.insert("throughput".into(), throughput()?);
    }
    // Only on request (`cargo xtask bench hooks`): where the cost of an
    // empty program on the ports' hooks comes from.
    if filter.as_deref() == Some("hooks") {
        results.insert("hooks".into(), hook_cost()?);
    }
    if want("daemon") {
        let mut runs = serde_json::Map::new();
        // The build that ships (router profile: opt-level z, LTO, stripped),
        // when `cargo xtask bench` built one for this machine, then the
        // release build the other parts use.
        if let Some(router) = std::env::var_os("IOT_INSPECTOR_ROUTER_BIN") {
            runs.insert(
                "router_build".into(),
                daemon_at_active_flows(50_000, "router build (as shipped)", Some(router.into()))?,
            );
        }
        runs.insert(
            "release_build".into(),
            daemon_at_active_flows(50_000, "release build", None)?,
        );
        results.insert("daemon".into(), runs.into());
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("datapath.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    println!("\nwritten to target/bench/datapath.json");
    Ok(())
}

fn frame(kind: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let dev = [0x24, 0x0a, 0xc4, 0, 0, 1];
    let gw = [2, 0, 0x5e, 0, 0x53, 1];
    match kind {
        "tcp4 1400 B" => PacketBuilder::ethernet2(dev, gw)
            .ipv4([192, 0, 2, 10], [203, 0, 113, 10], 64)
            .tcp(40000, 8883, 1, 64000)
            .ack(1)
            .write(&mut v, &[0u8; 1400])
            .unwrap(),
        "udp6 100 B" => PacketBuilder::ethernet2(dev, gw)
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                [0x20, 1, 0xd, 0xb8, 0, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                64,
            )
            .udp(40000, 9999)
            .write(&mut v, &[0u8; 100])
            .unwrap(),
        _ => PacketBuilder::ethernet2(dev, gw)
            .ipv4([192, 0, 2, 10], [203, 0, 113, 10], 64)
            .tcp(40000, 443, 1, 64000)
            .ack(1)
            .write(&mut v, &[0u8; 40])
            .unwrap(),
    }
    v
}

fn ebpf_cost() -> Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let mut dp = Datapath::load(&LoadOptions {
        object: bpf_object(),
        pin_dir: dir.path().join("pins"),
        flow_entries: 65536,
    })?;
    let mut rows = Vec::new();
    println!(
        "\neBPF cost per packet (BPF_PROG_TEST_RUN, {REPEAT} repeats, average of the kernel's timing):"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>10} {:>14}",
        "packet", "empty prog", "lan_ingress", "added", "1 map lookup"
    );
    for kind in ["tcp4 1400 B", "udp6 100 B", "tcp4 ack 443"] {
        let data = frame(kind);
        let mut ns = |name: &str| -> Result<f64> {
            let prog: &mut SchedClassifier = dp
                .ebpf_mut()
                .program_mut(name)
                .context("program")?
                .try_into()?;
            // The baseline is never attached; load it on first use.
            if prog.fd().is_err() {
                prog.load()?;
            }
            // Median of three runs.
            let mut v: Vec<f64> = (0..3)
                .map(|_| {
                    prog.test_run(TestRunOptions {
                        data_in: Some(&data),
                        repeat: REPEAT,
                        ..Default::default()
                    })
                    .map(|r| r.duration.as_nanos() as f64)
                })
                .collect::<Result<_, _>>()?;
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            Ok(v[1])
        };
        let base = ns(programs::BASELINE)?;
        let ours = ns(programs::INGRESS)?;
        // The floor: what one flow-map lookup alone adds on this machine.
        let lookup = ns(programs::LOOKUP_ONLY)? - base;
        println!(
            "{kind:<14} {base:>10.1}ns {ours:>10.1}ns {:>8.1}ns {lookup:>12.1}ns",
            ours - base
        );
        rows.push(json!({"packet": kind, "baseline_ns": base, "program_ns": ours, "added_ns": ours - base, "lookup_only_added_ns": lookup}));
    }
    let _ = dp.unpin_maps();
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir.path())
        .status();
    Ok(json!(rows))
}

fn iperf_mbps(lab: &mut Lab, port: u16) -> Result<f64> {
    home::iperf_server(lab, SERVER_V4, port)?;
    let out = lab
        .device("cam")
        .ns
        .cmd("iperf3")
        .args(["-c", SERVER_V4, "-p", &port.to_string(), "-t", "6", "-J"])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Rounds of each throughput comparison. On a shared 2-core VM single
/// 6-second runs vary by ±5–10 % with the host's load; each round runs its
/// variants back to back and is compared within itself, so slow drift
/// cancels, and the median of the rounds' ratios is reported with their
/// range.
const THROUGHPUT_ROUNDS: usize = 7;

/// Each round's `with / without`, and their median and range.
struct Ratios(Vec<f64>);

impl Ratios {
    fn of(with: &[f64], without: &[f64]) -> Ratios {
        Ratios(with.iter().zip(without).map(|(w, wo)| w / wo).collect())
    }

    fn median(&self) -> f64 {
        median(self.0.clone())
    }

    fn range(&self) -> (f64, f64) {
        let lo = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    fn line(&self) -> String {
        let (lo, hi) = self.range();
        format!("ratio {:.3} (rounds {lo:.3}–{hi:.3})", self.median())
    }

    fn json(&self) -> serde_json::Value {
        let (lo, hi) = self.range();
        json!({"median": self.median(), "min": lo, "max": hi, "rounds": self.0})
    }
}

fn mbps_line(v: &[f64]) -> String {
    let rounded: Vec<u32> = v.iter().map(|x| x.round() as u32).collect();
    format!(
        "{:>6.0} Mbit/s (median; rounds {rounded:?})",
        median(v.to_vec())
    )
}

fn throughput() -> Result<serde_json::Value> {
    let mut lab = Lab::new(&[CAMERA])?;
    let mut port = 7000;
    // With GRO on gw's ports, as a router's NIC drivers have it: the bridge
    // (and the programs) see coalesced TCP segments, not every MTU-sized
    // frame. The device still sends MTU-sized frames.
    let ports = bridge_ports(&lab)?;
    for port_name in &ports {
        lab.gw.run("ethtool", &["-K", port_name, "gro", "on"])?;
    }
    let (mut gro_with, mut gro_without) = (Vec::new(), Vec::new());
    for _ in 0..THROUGHPUT_ROUNDS {
        gro_without.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        // The default 5-second window, as on a router.
        let daemon = lab.start_daemon(&["--window", "5"])?;
        gro_with.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        daemon.stop()?;
    }
    for port_name in &ports {
        lab.gw.run("ethtool", &["-K", port_name, "gro", "off"])?;
    }
    // Offloads off everywhere (the lab's default): every MTU frame runs
    // both hooks.
    let (mut with, mut without, mut paused, mut empty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..THROUGHPUT_ROUNDS {
        without.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        // The floor: an empty TC program on the same hooks.
        let held = attach_empty(&lab, &[TcAttachType::Ingress, TcAttachType::Egress])?;
        empty.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        drop(held);
        let daemon = lab.start_daemon(&["--window", "5"])?;
        with.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        // The programs stay attached (TCX links are pinned) while the
        // daemon is stopped with SIGSTOP: the data path's cost alone,
        // without the daemon's own CPU use competing on a small machine.
        unsafe { libc::kill(daemon.pid(), libc::SIGSTOP) };
        paused.push(iperf_mbps(&mut lab, port)?);
        port += 1;
        unsafe { libc::kill(daemon.pid(), libc::SIGCONT) };
        daemon.stop()?;
    }
    let gro = Ratios::of(&gro_with, &gro_without);
    let (programs, stopped, hooks, over_empty) = (
        Ratios::of(&with, &without),
        Ratios::of(&paused, &without),
        Ratios::of(&empty, &without),
        Ratios::of(&with, &empty),
    );
    println!(
        "\niperf3 TCP through gw, {THROUGHPUT_ROUNDS} rounds of 6 s, each round's variants back to back:"
    );
    println!("  GRO on gw's ports, as a router's NIC drivers have it (the target's case):");
    println!("    without the programs  {}", mbps_line(&gro_without));
    println!("    with the programs     {}", mbps_line(&gro_with));
    println!("    {}", gro.line());
    println!("  offloads off on both ends, every MTU frame through both hooks (the worst case):");
    println!("    without the programs  {}", mbps_line(&without));
    println!("    with the programs     {}", mbps_line(&with));
    println!("    {}", programs.line());
    println!(
        "    an empty TC program on the same hooks: {}",
        hooks.line()
    );
    println!(
        "    the programs against the empty program: {}",
        over_empty.line()
    );
    println!("    programs attached, daemon stopped: {}", stopped.line());
    Ok(json!({
        "rounds": THROUGHPUT_ROUNDS,
        "gro": {"without_mbps": gro_without, "with_mbps": gro_with, "ratio": gro.json()},
        "offloads_off": {
            "without_mbps": without, "with_mbps": with, "ratio": programs.json(),
            "empty_program_mbps": empty, "empty_program_ratio": hooks.json(),
            "programs_vs_empty_ratio": over_empty.json(),
            "daemon_stopped_mbps": paused, "daemon_stopped_ratio": stopped.json(),
        },
    }))
}

/// Throughput with the empty program on the ports' ingress hook only, on
/// their egress hook only, and on both, against none: rounds of the four
/// back to back, compared within each round as in [`throughput`].
fn hook_cost() -> Result<serde_json::Value> {
    let mut lab = Lab::new(&[CAMERA])?;
    let variants: [(&str, &[TcAttachType]); 4] = [
        ("none", &[]),
        ("ingress", &[TcAttachType::Ingress]),
        ("egress", &[TcAttachType::Egress]),
        ("both", &[TcAttachType::Ingress, TcAttachType::Egress]),
    ];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut port = 7500;
    for _ in 0..THROUGHPUT_ROUNDS {
        for (i, (_, hooks)) in variants.iter().enumerate() {
            let held = attach_empty(&lab, hooks)?;
            runs[i].push(iperf_mbps(&mut lab, port)?);
            port += 1;
            drop(held);
        }
    }
    println!(
        "\niperf3 TCP through gw with an empty program on the ports' hooks, {THROUGHPUT_ROUNDS} rounds of 6 s:"
    );
    let mut out = serde_json::Map::new();
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratio = Ratios::of(&runs[i], &runs[0]);
        println!("  {name:<8} {}  {}", mbps_line(&runs[i]), ratio.line());
        out.insert(
            (*name).into(),
            json!({"mbps": runs[i], "ratio": ratio.json()}),
        );
    }
    Ok(out.into())
}

/// Attaches the empty program to the given hooks of every port of gw's br-lan
/// (TCX links held by this process, detached when the result is dropped).
fn attach_empty(lab: &Lab, hooks: &[TcAttachType]) -> Result<(Datapath, tempfile::TempDir)> {
    let ports = bridge_ports(lab)?;
    let dir = tempfile::tempdir()?;
    let mut dp = Datapath::load(&LoadOptions {
        object: bpf_object(),
        pin_dir: dir.path().join("pins"),
        flow_entries: 1024,
    })?;
    let prog: &mut SchedClassifier = dp
        .ebpf_mut()
        .program_mut(programs::BASELINE)
        .context("program")?
        .try_into()?;
    prog.load()?;
    // Attach from inside gw's network namespace (this thread only), then
    // come back.
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    let gw = std::fs::File::open(format!("/var/run/netns/{}", lab.gw.name))?;
    let enter = |f: &std::fs::File| {
        use std::os::fd::AsRawFd;
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(())
    };
    enter(&gw)?;
    let attached = ports.iter().try_for_each(|port| {
        for &kind in hooks {
            prog.attach_with_options(port, kind, TcAttachOptions::TcxOrder(LinkOrder::default()))?;
        }
        anyhow::Ok(())
    });
    enter(&home)?;
    attached?;
    let _ = dp.unpin_maps();
    Ok((dp, dir))
}

/// The ports of gw's br-lan.
fn bridge_ports(lab: &Lab) -> Result<Vec<String>> {
    let out = lab
        .gw
        .run("ip", &["-j", "link", "show", "master", "br-lan"])?;
    let links: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    Ok(links
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect())
}

/// utime+stime of a process in clock ticks, and its peak RSS in KiB.
fn proc_usage(pid: i32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks, hwm))
}

fn daemon_at_active_flows(
    flows: u32,
    label: &str,
    binary: Option<PathBuf>,
) -> Result<serde_json::Value> {
    // The lab starts whatever IOT_INSPECTOR_BIN names (this process is
    // single-threaded here).
    let previous = std::env::var_os("IOT_INSPECTOR_BIN");
    if let Some(b) = &binary {
        unsafe { std::env::set_var("IOT_INSPECTOR_BIN", b) };
    }
    let result = daemon_run(flows, label);
    if binary.is_some() {
        match previous {
            Some(p) => unsafe { std::env::set_var("IOT_INSPECTOR_BIN", p) },
            None => unsafe { std::env::remove_var("IOT_INSPECTOR_BIN") },
        }
    }
    result
}

fn daemon_run(flows: u32, label: &str) -> Result<serde_json::Value> {
    let mut lab = Lab::new(&[CAMERA])?;
    lab.write_config("\toption flow_table_size '65536'\n\toption window '5'\n")?;
    // The default 5-second window, as on a router.
    let daemon = lab.start_daemon(&["--window", "5"])?;
    // Start-up has its own peak: aya's loader parses the kernel's BTF
    // (/sys/kernel/btf/vmlinux, several MB here; OpenWrt kernels have
    // none) even when told not to use it. Note it, then reset the peak
    // (clear_refs 5, Linux ≥ 4.0) so the figure below is the peak while
    // counting the flows.
    std::thread::sleep(Duration::from_secs(2));
    let (_, startup_hwm) = proc_usage(daemon.pid())?;
    std::fs::write(format!("/proc/{}/clear_refs", daemon.pid()), "5")?;
    let secs = 60u64;
    // Built with this bench (target/release), whichever daemon runs.
    let flood_bin = std::env::current_exe()?
        .parent()
        .and_then(|deps| deps.parent())
        .context("bench binary location")?
        .join("iot-lab-flood");
    let mut flood = lab
        .device("cam")
        .ns
        .cmd(flood_bin.to_str().unwrap())
        .args([
            "--count",
            &flows.to_string(),
            "--rounds",
            &(secs + 15).to_string(),
            "--interval-ms",
            "1000",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    // Let the table fill and the first windows pass, then measure.
    std::thread::sleep(Duration::from_secs(15));
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, _) = proc_usage(daemon.pid())?;
    let start = Instant::now();
    let mut live_max = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(5));
        if let Ok(st) = daemon.get("/v1/status") {
            live_max = live_max.max(st["flows_live"].as_u64().unwrap_or(0));
        }
    }
    let (t1, hwm) = proc_usage(daemon.pid())?;
    // What the resident memory is made of at the end (file = the program's
    // own pages and libraries, anon = heap).
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (anon, file) = (field("RssAnon:"), field("RssFile:"));
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (t1 - t0) as f64 / tick / elapsed * 100.0;
    let _ = flood.kill();
    let _ = flood.wait();
    daemon.stop()?;
    println!(
        "\n{label}: daemon with {flows} active flows ({live_max} in the kernel table at most), over {elapsed:.0} s:"
    );
    anyhow::ensure!(
        live_max as u32 >= flows * 9 / 10,
        "the flood did not fill the flow table ({live_max} flows)"
    );
    println!(
        "  CPU {cpu:.2} % of one core, peak RSS {:.1} MB (start-up peak before any flow: {:.1} MB)",
        hwm as f64 / 1024.0,
        startup_hwm as f64 / 1024.0
    );
    println!(
        "  resident at the end: {:.1} MB heap, {:.1} MB program and libraries",
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    Ok(
        json!({"flows": flows, "flows_live_max": live_max, "cpu_percent": cpu, "peak_rss_kib": hwm, "startup_peak_rss_kib": startup_hwm, "rss_anon_kib_end": anon, "rss_file_kib_end": file}),
    )
}
