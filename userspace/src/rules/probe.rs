//! Asking whether a device is there: an ARP request (IPv4) or a neighbour
//! solicitation (IPv6) from the router, for away-mode presence.
//!
//! We let the kernel do it: `ip neigh replace IP lladdr MAC dev DEV nud probe`
//! puts the neighbour entry into PROBE, and the kernel's own state machine
//! sends unicast ARP/NS probes to the known MAC (`ucast_solicit`, 3 by
//! default, `retrans_time` apart) and moves the entry to REACHABLE when the
//! device answers or FAILED when it does not. We then read the state back.
//! Why this and not our own packets: no raw AF_PACKET/ICMPv6 sockets, no
//! packet building, no capabilities beyond CAP_NET_ADMIN which the daemon
//! has for nftables anyway; the answer also refreshes the kernel's
//! neighbour cache, and it works the same for IPv4 and IPv6. `arping` and
//! `ndisc6` would do it too, but are extra packages on OpenWrt; `ip` (full
//! iproute2, `ip-full`) is needed for the JSON output used here.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dissect::Mac;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The device answered (the entry became REACHABLE).
    Answered,
    /// No answer within the kernel's probes (the entry became FAILED) or
    /// within `timeout`.
    NoAnswer,
}

/// Probes `ip` (expected at `mac`) on `dev`, waiting at most `timeout`
/// (the kernel gives up after about 3 s with default settings).
/// `netns`: run inside that network namespace (tests), `None` on the router.
pub fn probe(
    netns: Option<&str>,
    dev: &str,
    ip: IpAddr,
    mac: Mac,
    timeout: Duration,
) -> std::io::Result<ProbeResult> {
    let ip_s = ip.to_string();
    let mac_s = mac.to_string();
    run(
        netns,
        &[
            "neigh", "replace", &ip_s, "lladdr", &mac_s, "dev", dev, "nud", "probe",
        ],
    )?;
    let deadline = Instant::now() + timeout;
    loop {
        let out = run(netns, &["-j", "neigh", "show", &ip_s, "dev", dev])?;
        match neighbour_state(&out) {
            Some(s) if s.iter().any(|s| s == "REACHABLE") => return Ok(ProbeResult::Answered),
            Some(s) if s.iter().any(|s| s == "FAILED" || s == "INCOMPLETE") => {
                return Ok(ProbeResult::NoAnswer);
            }
            None => return Ok(ProbeResult::NoAnswer),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Ok(ProbeResult::NoAnswer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The NUD states of the first entry in `ip -j neigh show` output.
fn neighbour_state(json: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let entry = v.as_array()?.first()?;
    Some(
        entry
            .get("state")?
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
    )
}

fn run(netns: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_neighbour_states() {
        let j = r#"[{"dst":"192.0.2.2","lladdr":"02:00:5e:00:53:10","state":["REACHABLE"]}]"#;
        assert_eq!(neighbour_state(j), Some(vec!["REACHABLE".to_string()]));
        assert_eq!(
            neighbour_state(r#"[{"dst":"192.0.2.2","state":["FAILED"]}]"#),
            Some(vec!["FAILED".into()])
        );
        assert_eq!(neighbour_state("[]"), None);
        assert_eq!(neighbour_state("not json"), None);
    }
}
