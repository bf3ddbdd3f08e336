//! `cargo xtask demo`.

use anyhow::Result;

#[derive(clap::Args, Default)]
pub struct Args {}

pub fn run(_args: &Args) -> Result<()> {
    anyhow::bail!("`cargo xtask demo` is not written yet")
}
