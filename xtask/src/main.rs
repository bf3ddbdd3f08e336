//! `cargo xtask …`: setup, builds, the simulated-home demo, tests, benchmarks,
//! fuzzing and packaging. Every command runs `setup` first when something it
//! needs is missing.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod build;
mod cross;
mod demo;
mod fuzz;
mod package;
mod setup;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "iot-inspector's development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build and the tests need (Debian packages,
    /// nightly rust-src, bpf-linker). Safe to run twice.
    Setup,
    /// Build the eBPF object and the daemon.
    Build(build::Args),
    /// Start the simulated home with traffic, the daemon and its dashboard.
    Demo(demo::Args),
    /// Run every test: unit, eBPF (BPF_PROG_TEST_RUN), simulated home, browser.
    Test(test::Args),
    /// Measure the figures the README quotes.
    Bench(bench::Args),
    /// Run each fuzz target for a bounded time.
    Fuzz(fuzz::Args),
    /// Cross-build and package .ipk files for OpenWrt.
    Package(package::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Build(a) => build::run(&a).map(|_| ()),
        Command::Demo(a) => demo::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Fuzz(a) => fuzz::run(&a),
        Command::Package(a) => package::run(&a),
    }
}
