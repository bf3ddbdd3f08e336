//! Builds the eBPF object (nightly, bpfel-unknown-none, -Z build-std) and the
//! daemon, and says where they are.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::{setup, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Build the daemon with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// What a build produced.
pub struct Built {
    pub bpf_object: PathBuf,
    pub daemon: PathBuf,
}

/// Where the eBPF object is copied after a build; tests and the demo load it
/// from here (the daemon's `--bpf-object`, or `IOT_INSPECTOR_BPF`).
pub fn bpf_object_path() -> PathBuf {
    util::root().join("target/bpf/iot-inspector.bpf.o")
}

pub fn run(args: &Args) -> Result<Built> {
    setup::ensure()?;
    let bpf_object = build_ebpf()?;
    let daemon = build_daemon(args.release)?;
    eprintln!(
        "built:\n  eBPF object {}\n  daemon      {}",
        bpf_object.display(),
        daemon.display()
    );
    Ok(Built { bpf_object, daemon })
}

pub fn build_ebpf() -> Result<PathBuf> {
    let dir = util::root().join("ebpf/programs");
    let path = format!(
        "{}:{}",
        setup::bpf_linker_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    util::run(
        Command::new("cargo")
            .args(["+nightly", "build", "--release"])
            .current_dir(&dir)
            .env("PATH", path)
            // The outer cargo's variables would point the inner build at the
            // host toolchain.
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    let built = dir.join("target/bpfel-unknown-none/release/iot-inspector");
    let out = bpf_object_path();
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::copy(&built, &out)?;
    Ok(out)
}

pub fn build_daemon(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--package",
        "iot-inspector",
        "--package",
        "iot-inspector-lab",
    ])
    .current_dir(util::root());
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("iot-inspector"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target"))
}
