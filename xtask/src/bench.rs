//! `cargo xtask bench`: the figures the README quotes, each measured against
//! a baseline in the same run.
//!
//! - data path (`tests/benches/datapath.rs`): eBPF cost per packet against an
//!   empty program, iperf3 throughput with the programs against without, the
//!   daemon's CPU and peak RSS at 50,000 active flows;
//! - pipeline (`userspace/benches/pipeline.rs`): dissect throughput against
//!   copying the bytes, name lookups against a plain map and the name
//!   tables' memory at 10,000 names, rule change → nftables in force with 1
//!   and 200 devices, the device view's data with 7 days × 50 devices;
//! - export (`userspace/benches/export.rs`): windows per second against
//!   reading them, and the size per device-day;
//! - ui (`tests/benches/ui.rs`): page load in headless Chromium against a
//!   static file from the same server;
//! - packages: each .ipk's size against the 2.5 MB goal for aarch64, and the
//!   daemon's RSS after start on an idle network.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::{build, package, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only benchmarks whose name contains this (ebpf, throughput, daemon, packages).
    pub filter: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let built = build::run(&build::Args { release: true })?;
    let want = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    // `hooks` (where an empty program's cost comes from) runs only when named.
    if ["ebpf", "throughput", "daemon"].iter().any(|n| want(n))
        || args.filter.as_deref() == Some("hooks")
    {
        let mut cmd = Command::new("cargo");
        if want("daemon") {
            // The daemon is also measured as it ships: the router profile
            // (opt-level z, LTO, stripped), built for this machine.
            util::run(
                Command::new("cargo")
                    .args(["build", "--profile", "router", "-p", "iot-inspector"])
                    .current_dir(util::root()),
            )?;
            cmd.env(
                "IOT_INSPECTOR_ROUTER_BIN",
                build::target_dir().join("router/iot-inspector"),
            );
        }
        cmd.args([
            "bench",
            "-p",
            "iot-inspector-lab",
            "--bench",
            "datapath",
            "--",
        ])
        .args(args.filter.iter())
        .env("IOT_INSPECTOR_BIN", &built.daemon)
        .env("IOT_INSPECTOR_BPF", &built.bpf_object)
        .current_dir(util::root());
        util::run(&mut cmd)?;
    }
    for (bench, package, names) in [
        (
            "pipeline",
            "iot-inspector",
            &["pipeline", "dissect", "names", "rules", "device_view"][..],
        ),
        ("export", "iot-inspector", &["export"][..]),
        ("ui", "iot-inspector-lab", &["ui"][..]),
    ] {
        if !names.iter().any(|n| want(n)) {
            continue;
        }
        let mut cmd = Command::new("cargo");
        cmd.args(["bench", "-p", package, "--bench", bench])
            .env("IOT_INSPECTOR_BIN", &built.daemon)
            .env("IOT_INSPECTOR_BPF", &built.bpf_object)
            .current_dir(util::root());
        // The pipeline bench takes its own part names as a filter.
        if let Some(f) = args.filter.as_deref()
            && bench == "pipeline"
            && f != "pipeline"
        {
            cmd.args(["--", f]);
        }
        util::run(&mut cmd)?;
    }
    if want("packages") {
        package::run(&package::Args {
            targets: vec![
                "aarch64-unknown-linux-musl".into(),
                "x86_64-unknown-linux-musl".into(),
            ],
        })?;
        println!("\npackage sizes:");
        for (name, size) in package::sizes()? {
            let goal = if name.contains("aarch64") {
                format!(
                    " (goal ≤ {:.1} MB: {})",
                    package::AARCH64_SIZE_GOAL as f64 / 1e6,
                    if size <= package::AARCH64_SIZE_GOAL {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            } else {
                String::new()
            };
            println!("  {name:<60} {:>8.2} MB{goal}", size as f64 / 1e6);
        }
    }
    if want("idle") || want("packages") {
        // The shipped build (static musl, router profile) where it was
        // just packaged, else the host build.
        let shipped = build::target_dir().join("x86_64-unknown-linux-musl/router/iot-inspector");
        let daemon = if shipped.exists() {
            shipped
        } else {
            built.daemon.clone()
        };
        idle_rss(&daemon, &built.bpf_object)?;
    }
    Ok(())
}

/// The daemon's resident memory 10 s after start on an idle network (one
/// quiet device), against the same measure of a process that only sleeps.
fn idle_rss(daemon: &std::path::Path, bpf_object: &std::path::Path) -> Result<()> {
    use iot_inspector_lab::{CAMERA, Lab};
    println!("\nidle RSS of {}", daemon.display());
    // SAFETY: set before threads that read the environment start.
    unsafe {
        std::env::set_var("IOT_INSPECTOR_BIN", daemon);
        std::env::set_var("IOT_INSPECTOR_BPF", bpf_object);
    }
    let mut lab = Lab::new(&[CAMERA])?;
    lab.write_config("\toption window '5'\n")?;
    let daemon = lab.start_daemon(&["--window", "5"])?;
    std::thread::sleep(Duration::from_secs(10));
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    };
    let daemon_kib = rss(daemon.pid() as u32);
    let mut sleeper = Command::new("sleep").arg("5").spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let base_kib = rss(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    daemon.stop()?;
    println!(
        "\nidle daemon RSS after 10 s: {:.1} MB (goal ≤ 10 MB: {}); a sleeping process: {:.1} MB",
        daemon_kib as f64 / 1024.0,
        if daemon_kib <= 10 * 1024 {
            "met"
        } else {
            "NOT met"
        },
        base_kib as f64 / 1024.0
    );
    let out = util::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("idle.json"),
        format!("{{\"daemon_rss_kib\": {daemon_kib}, \"sleep_rss_kib\": {base_kib}}}\n"),
    )?;
    Ok(())
}
