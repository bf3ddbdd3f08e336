//! `cargo xtask test`: every test, on the real kernel.
//!
//! 1. Builds the eBPF object and the daemon (running setup first if needed).
//! 2. Unit tests of every crate, in parallel.
//! 3. Integration tests one at a time: the programs under
//!    BPF_PROG_TEST_RUN, the simulated home (namespaces, iperf3, nftables,
//!    conntrack), packaging, and the browser.

use std::process::Command;

use anyhow::Result;

use crate::{build, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only tests whose name contains this.
    pub filter: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let built = build::run(&build::Args::default())?;
    let env = [
        ("IOT_INSPECTOR_BPF", built.bpf_object.clone()),
        ("IOT_INSPECTOR_BIN", built.daemon.clone()),
    ];
    let filter: Vec<String> = args.filter.iter().cloned().collect();
    let mut unit = Command::new("cargo");
    unit.args([
        "test",
        "--workspace",
        "--lib",
        "--bins",
        "--no-fail-fast",
        "--",
    ])
    .args(&filter)
    .current_dir(util::root());
    unit.envs(env.clone());
    let unit_result = util::run(&mut unit);
    // Integration tests share the machine's network namespaces, bpffs and
    // CPU: one at a time.
    let mut integration = Command::new("cargo");
    integration
        .args(["test", "--workspace", "--test", "*", "--no-fail-fast", "--"])
        .args(&filter)
        .arg("--test-threads=1")
        .current_dir(util::root());
    integration.envs(env);
    let integration_result = util::run(&mut integration);
    unit_result?;
    integration_result
}
