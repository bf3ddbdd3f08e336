//! `cargo xtask fuzz`: every parser's fuzz target (cargo-fuzz, libFuzzer)
//! for a bounded time each. Installs cargo-fuzz when it is missing.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{setup, util};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 30)]
    pub seconds: u32,
    /// Only targets whose name contains this.
    pub filter: Option<String>,
}

/// The targets declared in fuzz/Cargo.toml.
fn targets() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(util::root().join("fuzz/Cargo.toml"))
        .context("reading fuzz/Cargo.toml")?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name") {
            let v = v.trim_start_matches([' ', '=']).trim().trim_matches('"');
            out.push(v.to_string());
        }
    }
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    setup::ensure()?;
    if !util::have("cargo-fuzz") {
        util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let dir = util::root().join("fuzz");
    let mut ran = Vec::new();
    for t in targets()? {
        if args.filter.as_deref().is_some_and(|f| !t.contains(f)) {
            continue;
        }
        std::fs::create_dir_all(dir.join("corpus").join(&t))?;
        util::run(
            Command::new("cargo")
                .args(["+nightly", "fuzz", "run", &t, "--"])
                .arg(format!("-max_total_time={}", args.seconds))
                .arg("-rss_limit_mb=1024")
                .current_dir(&dir)
                .env_remove("CARGO_TARGET_DIR"),
        )?;
        ran.push(t);
    }
    println!(
        "fuzzed {} targets for {} s each: {}",
        ran.len(),
        args.seconds,
        ran.join(", ")
    );
    Ok(())
}
