//! Software flow offload (`nf_flow_table`), which this machine's kernel
//! lacks, in a qemu VM running Debian's kernel (see `iot_inspector_lab::vm`):
//! the real daemon and eBPF programs on an fw4-shaped router whose
//! flowtable takes established TCP off the forward path.
//!
//! - issue 2: an offloaded upload is still counted by the programs on the
//!   bridge's ports, within 1 % of what the receiver got;
//! - issue 5: `iot-inspector block` cuts an already offloaded transfer
//!   within 1 s (the daemon deletes the device's conntrack entries, which
//!   takes them out of the flowtable, and its own table drops the rest),
//!   and `unblock` lets new connections through.
//!
//! Both run on Debian's 6.1 (netlink cls_bpf) and 6.12 (TCX), which bracket
//! OpenWrt 24.10's 6.6; on 5.10, below OpenWrt 23.05's 5.15, the test
//! checks the daemon refuses with the kernel's reason. One test per kernel
//! (`vm::Kernel`). Needs root, qemu and the kernels `cargo xtask setup`
//! downloads; KVM when /dev/kvm works, else software emulation (slower).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use iot_inspector_lab::home::{counted, rel_diff};
use iot_inspector_lab::{bpf_object, daemon_binary, vm};

const SCRIPT: &str = include_str!("../support/offload_vm.sh");
/// The device's MAC (a real vendor prefix, as the lab's camera).
const MAC: &str = "2c:aa:8e:10:00:01";
const SERVER: &str = "203.0.113.10";

fn results(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(r: &HashMap<String, String>, key: &str) -> Result<u64> {
    r.get(key)
        .with_context(|| format!("the VM reported no {key}"))?
        .trim()
        .parse()
        .with_context(|| format!("{key}={:?}", r[key]))
}

/// Bytes of the first counter in `nft -j list counter …` output.
fn nft_counter_bytes(json: &str) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_str(json).context("nft -j output")?;
    for item in v["nftables"].as_array().context("nft -j output")? {
        if let Some(c) = item.get("counter") {
            return c["bytes"].as_u64().context("counter bytes");
        }
    }
    bail!("no counter in {json}")
}

/// Link-layer chatter the server's link counter also sees (gw's ARP and
/// IPv6 router solicitations, 42–90 bytes): growth below one full-size
/// frame is not the transfer.
const CHATTER: u64 = 1500;

/// From `ms bytes` samples of the server link's receive counter, taken
/// from the moment `block` was issued: when the transfer stopped (the
/// first sample after which the count grew by less than [`CHATTER`]), and
/// the last sample's time.
fn stop_time(samples: &str) -> Result<(u64, u64)> {
    let pts: Vec<(u64, u64)> = samples
        .lines()
        .filter_map(|l| {
            let (t, b) = l.split_once(' ')?;
            Some((t.parse().ok()?, b.trim().parse().ok()?))
        })
        .collect();
    let Some(&(last_t, last_b)) = pts.last() else {
        bail!("no samples after the block")
    };
    let settled = pts
        .iter()
        .rev()
        .take_while(|(_, b)| last_b.saturating_sub(*b) < CHATTER)
        .last()
        .map(|(t, _)| *t)
        .unwrap_or(last_t);
    Ok((settled, last_t))
}

// One test per kernel, so a failure names it. The kernels bracket what
// OpenWrt ships (see `vm::Kernel`): 6.1 attaches through netlink cls_bpf,
// 6.12 through TCX.

#[test]
fn offload_on_bookworm_6_1() -> Result<()> {
    offloaded_transfers_are_counted_and_cut_by_a_block(vm::Kernel::Bookworm)
}

#[test]
fn offload_on_bookworm_6_12() -> Result<()> {
    offloaded_transfers_are_counted_and_cut_by_a_block(vm::Kernel::Bookworm612)
}

/// 5.10 is older than any kernel OpenWrt ships (23.05 has 5.15), and the
/// programs and daemon use what came after it:
/// - `bpf_ktime_get_coarse_ns` (helper 160, 5.11): the verifier refuses
///   the programs with "invalid func unknown#160";
/// - `BPF_MAP_LOOKUP_BATCH` on a per-CPU array, the flow cache (5.13):
///   with the helper swapped by hand for `bpf_ktime_get_ns`, the programs
///   load and attach over netlink, and the daemon then stops at its first
///   read of the cache with ENOTSUPP (524).
///
/// So this checks what 5.10 can show: that the daemon refuses to run,
/// saying the kernel is too old and giving the verifier's reason, instead
/// of running without counting. Should the programs ever load here, it
/// fails and says to make this the full check.
#[test]
fn offload_on_bullseye_5_10_is_refused_with_the_reason() -> Result<()> {
    let kernel = vm::Kernel::Bullseye;
    if vm::Image::find(kernel).is_err()
        && let Ok(why) = std::fs::read_to_string(kernel.unavailable_note())
    {
        // Setup could not download it (bullseye is leaving the mirror).
        eprintln!("SKIPPED: no {} kernel: {why}", kernel.name());
        return Ok(());
    }
    let (image, out) = run_offload_script(kernel)?;
    let r = results(out.file("results"));
    let daemon_log = out.file("daemon.log");
    assert_eq!(
        r.get("kernel").map(String::as_str),
        Some(image.version.as_str()),
        "the VM ran another kernel"
    );
    if r.contains_key("daemon_ready_ms") {
        bail!(
            "the daemon now runs on {}: make this kernel's test the full check \
             (offloaded_transfers_are_counted_and_cut_by_a_block)\nresults:\n{}",
            image.version,
            out.file("results")
        );
    }
    assert_eq!(
        r.get("error").map(String::as_str),
        Some("the daemon exited"),
        "the script failed before the daemon could: {}\nlog:\n{}",
        out.file("results"),
        vm::tail(out.file("script.log"), 3000)
    );
    assert_ne!(
        number(&r, "daemon_exit")?,
        0,
        "the daemon exited with success"
    );
    assert!(
        daemon_log.contains("is older than 5.15, the oldest kernel iot-inspector runs on")
            && daemon_log.contains("the kernel refused program")
            && daemon_log.contains("invalid func unknown#160"),
        "the daemon did not say the kernel is too old and lacks bpf_ktime_get_coarse_ns:\n{}",
        vm::tail(daemon_log, 3000)
    );
    Ok(())
}

/// Boots `kernel` and runs the script there with the built daemon and
/// eBPF object.
fn run_offload_script(kernel: vm::Kernel) -> Result<(vm::Image, vm::Outcome)> {
    let image = vm::Image::find(kernel)?;
    let (bin, obj) = (daemon_binary(), bpf_object());
    if !bin.exists() || !obj.exists() {
        bail!(
            "build first: {} and {} are needed (`cargo xtask build`)",
            bin.display(),
            obj.display()
        );
    }
    let script = format!(
        "BIN='{}'\nBPF='{}'\nMAC='{MAC}'\n{SCRIPT}",
        bin.display(),
        obj.display()
    );
    // KVM needs well under a minute; software emulation about one.
    let out = vm::run_script(&image, &script, Duration::from_secs(480))?;
    eprintln!(
        "vm: {} ({}), {:?}, booted in {:.1} s, ran {:.1} s in all\n{}",
        kernel.name(),
        image.version,
        out.accel,
        out.boot.as_secs_f64(),
        out.total.as_secs_f64(),
        out.file("results")
    );
    Ok((image, out))
}

/// Boots `kernel`, runs the script there and checks what it measured.
fn offloaded_transfers_are_counted_and_cut_by_a_block(kernel: vm::Kernel) -> Result<()> {
    let (image, out) = run_offload_script(kernel)?;
    let log = out.file("script.log");
    let daemon_log = out.file("daemon.log");
    let r = results(out.file("results"));
    if out.status != Some(0) || !r.contains_key("done") {
        bail!(
            "the script in the VM failed ({:?}): {}\nlog:\n{}\ndaemon log:\n{}\nconsole:\n{}",
            out.status,
            r.get("error").map(String::as_str).unwrap_or("?"),
            vm::tail(log, 4000),
            vm::tail(daemon_log, 3000),
            vm::tail(&out.console, 2000)
        );
    }
    assert_eq!(
        r.get("kernel").map(String::as_str),
        Some(image.version.as_str()),
        "the VM ran another kernel"
    );

    // The programs passed the verifier and are on the port the way this
    // kernel attaches them: ingress and egress each.
    let (filters, links) = (number(&r, "cls_bpf_filters")?, number(&r, "tcx_links")?);
    let expected = if kernel.has_tcx() { (0, 2) } else { (2, 0) };
    assert_eq!(
        (filters, links),
        expected,
        "(cls_bpf filters, TCX links) on p0 under {}\ntc:\n{}\nlinks:\n{}",
        image.version,
        out.file("tc_filters_p0.txt"),
        out.file("tcx_links.txt")
    );

    // (a) The upload was offloaded: conntrack marks it, and the forward
    // chain saw only its first packets.
    let ct = out.file("conntrack_a.txt");
    assert!(
        ct.contains("[OFFLOAD]"),
        "the transfer was not offloaded: {ct}"
    );
    let server_up = number(&r, "server_up_bytes")?;
    let device_down = number(&r, "device_down_bytes")?;
    let forwarded = nft_counter_bytes(out.file("fwd_a.json"))?;
    assert!(
        server_up > 5_000_000,
        "too little went through to compare: {server_up} bytes"
    );
    assert!(
        (forwarded as f64) < 0.02 * server_up as f64,
        "{forwarded} of {server_up} bytes took the forward path: not offloaded"
    );
    // … and the daemon still counted every byte of it.
    let flows: serde_json::Value =
        serde_json::from_str(out.file("flows_a.json")).with_context(|| {
            format!(
                "flows --json: {:?}\nlog:\n{}\ndaemon log:\n{}",
                out.file("flows_a.json"),
                vm::tail(log, 3000),
                vm::tail(daemon_log, 3000)
            )
        })?;
    let got = counted(&flows, SERVER, 5201);
    eprintln!(
        "offloaded upload: server got {server_up} B, daemon counted {} B up; device got {device_down} B, daemon counted {} B down; forward chain saw {forwarded} B",
        got.bytes_up, got.bytes_down
    );
    assert!(
        rel_diff(got.bytes_up, server_up) <= 0.01,
        "up: daemon counted {} B, the server received {server_up} B\nflows: {flows}",
        got.bytes_up
    );
    assert!(
        rel_diff(got.bytes_down, device_down) <= 0.01,
        "down: daemon counted {} B, the device received {device_down} B\nflows: {flows}",
        got.bytes_down
    );

    // (b) The block cut the offloaded transfer within 1 s.
    let before = out.file("conntrack_b_before.txt");
    assert!(
        before.contains("[OFFLOAD]"),
        "the second transfer was not offloaded before the block: {before}"
    );
    assert_eq!(
        number(&r, "block_status")?,
        0,
        "block failed: {}",
        out.file("block.txt")
    );
    let (stopped_ms, watched_ms) = stop_time(out.file("samples_b.txt"))?;
    eprintln!(
        "block: the server's count stopped {stopped_ms} ms after `block` (command took {} ms), watched {watched_ms} ms",
        number(&r, "block_cmd_ms")?
    );
    assert!(watched_ms >= 4000, "watched only {watched_ms} ms");
    // The 1 s promise holds on real hardware (KVM). Under software
    // emulation the CLI, the daemon, nft and conntrack all run 10–50 times
    // slower and the samples are a second apart, so only a looser bound
    // can be checked there.
    let limit_ms = match out.accel {
        vm::Accel::Kvm => 1000,
        vm::Accel::Tcg => 3000,
    };
    assert!(
        stopped_ms <= limit_ms,
        "bytes still reached the server {stopped_ms} ms after the block (limit {limit_ms} ms under {:?})\nsamples:\n{}\nconntrack before:\n{}\nconntrack after:\n{}\nthe project's table:\n{}\ndaemon log:\n{}",
        out.accel,
        out.file("samples_b.txt"),
        out.file("conntrack_b_before.txt"),
        out.file("conntrack_b_after.txt"),
        out.file("iot_inspector_table.txt"),
        vm::tail(daemon_log, 3000)
    );
    assert_eq!(
        number(&r, "offloaded_after_block")?,
        0,
        "offloaded entries remain: {}",
        out.file("conntrack_b_after.txt")
    );
    assert!(
        out.file("iot_inspector_table.txt").contains(MAC),
        "the block is not in the project's table: {}",
        out.file("iot_inspector_table.txt")
    );

    // … and the unblock let a new connection through.
    assert_eq!(number(&r, "unblock_status")?, 0);
    assert_eq!(
        number(&r, "unblock_transfer_ok")?,
        1,
        "no transfer after the unblock: {}",
        out.file("iperf_c.txt")
    );
    assert!(number(&r, "server_after_unblock_bytes")? > 100_000);
    Ok(())
}

#[test]
fn stop_time_finds_the_last_change() -> Result<()> {
    assert_eq!(
        stop_time("0 10000\n100 20000\n250 30000\n400 30000\n4100 30000\n")?,
        (250, 4100)
    );
    assert_eq!(stop_time("0 5\n4000 5\n")?, (0, 4000));
    // A 70-byte router solicitation after the stop is not the transfer.
    assert_eq!(
        stop_time("0 10\n500 90000\n900 90000\n3000 90070\n")?,
        (500, 3000)
    );
    assert!(stop_time("").is_err());
    Ok(())
}
