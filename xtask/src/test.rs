//! `cargo xtask test`.

use anyhow::Result;

#[derive(clap::Args, Default)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<()> {
    anyhow::bail!("`cargo xtask test` is not written yet")
}
