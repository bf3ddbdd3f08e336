//! Export throughput (windows per second) against merely reading the same
//! windows from the store, and the export size per device-day, for a
//! synthetic day of 5-second windows of a few devices (a plug, a camera, a
//! TV, a phone).
//!
//! `cargo bench -p iot-inspector --bench export` (or `cargo xtask bench`).
//! `EXPORT_BENCH_HOURS` (default 24) and `EXPORT_BENCH_DEVICES` (default 4)
//! scale it.

use iot_inspector::export::bench::{measure, synthesise};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let hours = env("EXPORT_BENCH_HOURS", 24).max(1);
    let devices = env("EXPORT_BENCH_DEVICES", 4).max(1) as usize;
    // tmpfs when there is one: the store lives on tmpfs on the router too.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let t0 = 1_800_000_000 / 3600 * 3600;
    let started = std::time::Instant::now();
    let (store, identities, labels) =
        synthesise(&base.path().join("bench.redb"), devices, t0, hours)?;
    println!(
        "export: {devices} devices, {hours} h of 5-second windows (synthesised in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let lines = measure(&store, &identities, &labels, t0, t0 + hours * 3600)?;
    let base_rate = lines[0].windows_per_sec();
    println!(
        "  {:<16} {:>10} {:>9} {:>14} {:>10} {:>16}",
        "", "windows", "seconds", "windows/s", "vs read", "MB/device-day"
    );
    for l in &lines {
        let per_device_day = l.bytes as f64 / devices as f64 * (24.0 / hours as f64) / 1e6;
        println!(
            "  {:<16} {:>10} {:>9.3} {:>14.0} {:>9.2}x {:>16}",
            l.what,
            l.windows,
            l.secs,
            l.windows_per_sec(),
            l.windows_per_sec() / base_rate,
            if l.bytes > 0 {
                format!("{per_device_day:.2}")
            } else {
                "-".into()
            }
        );
    }
    Ok(())
}
