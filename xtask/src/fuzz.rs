//! `cargo xtask fuzz`.

use anyhow::Result;

#[derive(clap::Args, Default)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<()> {
    anyhow::bail!("`cargo xtask fuzz` is not written yet")
}
