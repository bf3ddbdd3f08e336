//! `cargo xtask bench`: the figures the README quotes, each measured against
//! a baseline in the same run.
//!
//! - data path (`tests/benches/datapath.rs`): eBPF cost per packet against an
//!   empty program, iperf3 throughput with the programs against without, the
//!   daemon's CPU and peak RSS at 50,000 active flows;
//! - packages: each .ipk's size against the 2.5 MB goal for aarch64.

use std::process::Command;

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
    if ["ebpf", "throughput", "daemon"].iter().any(|n| want(n)) {
        let mut cmd = Command::new("cargo");
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
    if want("packages") {
        package::run(&package::Args {
            targets: vec!["aarch64-unknown-linux-musl".into()],
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
    Ok(())
}
