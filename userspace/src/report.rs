//! Tables for people: what `iot-inspector devices` and `flows` print.

use std::fmt::Write;

use crate::api::{DeviceView, FlowView};

/// `1234567` → `1.2 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Lays rows out in columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Replaces control characters so a device's chosen name cannot drive the
/// terminal (escape sequences in a DHCP hostname).
pub fn inert(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A device's name for people: the owner's label, else what it was
/// identified as.
pub fn device_name(d: &DeviceView) -> String {
    if let Some(l) = &d.label {
        return inert(l);
    }
    match &d.identity {
        Some(i) if i.vendor.is_none() && i.model.is_none() && !d.names.is_empty() => {
            inert(&d.names[0])
        }
        Some(i) => {
            let mut parts = Vec::new();
            if let Some(v) = &i.vendor {
                parts.push(v.clone());
            }
            if let Some(m) = &i.model {
                parts.push(m.clone());
            }
            if parts.is_empty() {
                parts.push(i.kind_label.clone());
            }
            inert(&parts.join(" "))
        }
        None => "(unknown)".into(),
    }
}

pub fn devices(devs: &[DeviceView]) -> String {
    let rows: Vec<Vec<String>> = devs
        .iter()
        .map(|d| {
            let (kind, conf) = match &d.identity {
                Some(i) => (
                    i.kind_label.clone(),
                    format!("{:.0} %", i.confidence * 100.0),
                ),
                None => ("unknown".into(), "-".into()),
            };
            vec![
                d.mac.to_string(),
                device_name(d),
                kind,
                conf,
                d.ips.first().map(|i| i.to_string()).unwrap_or_default(),
                if d.online { "online" } else { "offline" }.to_string(),
                bytes(d.bytes_up),
                bytes(d.bytes_down),
            ]
        })
        .collect();
    table(
        &[
            "DEVICE", "NAME", "KIND", "SURE", "ADDRESS", "STATE", "SENT", "RECEIVED",
        ],
        &rows,
    )
}

pub fn flows(flows: &[FlowView]) -> String {
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let remote = f
                .remote_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "(other)".into());
            let who = match &f.explanation.organisation {
                Some(o) => format!("{} ({})", o, f.explanation.category.label()),
                None => f.explanation.category.label().to_string(),
            };
            vec![
                f.device.to_string(),
                inert(f.name.as_deref().unwrap_or(&remote)),
                format!("{}/{}", f.protocol, f.remote_port),
                inert(&who),
                bytes(f.bytes_up),
                bytes(f.bytes_down),
            ]
        })
        .collect();
    table(
        &["DEVICE", "REMOTE", "PROTO/PORT", "WHO", "SENT", "RECEIVED"],
        &rows,
    )
}

/// The rules' state now and next change (from `/v1/rules`).
pub fn rules(v: &serde_json::Value) -> String {
    let mut out = String::new();
    if v["clock_unset"] == true {
        out.push_str("The router's clock is not set yet: rules keep their last known state.\n");
    }
    if let Some(e) = v["config_error"].as_str() {
        out.push_str(&format!(
            "The configuration has an error (the last good rules run): {}\n",
            inert(e)
        ));
    }
    let rows: Vec<Vec<String>> = v["states"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let next = s["next_change"]
                .as_i64()
                .map(|t| {
                    let secs = t - crate::time::unix_secs() as i64;
                    if secs <= 0 {
                        "now".to_string()
                    } else if secs < 3600 {
                        format!("in {} min", (secs + 59) / 60)
                    } else {
                        format!("in {:.1} h", secs as f64 / 3600.0)
                    }
                })
                .unwrap_or_else(|| "-".into());
            vec![
                inert(s["rule"].as_str().unwrap_or("")),
                inert(s["device_name"].as_str().unwrap_or("")),
                if s["blocked"] == true {
                    "blocked"
                } else {
                    "allowed"
                }
                .to_string(),
                inert(s["reason"].as_str().unwrap_or("")),
                next,
            ]
        })
        .collect();
    out.push_str(&table(
        &["RULE", "DEVICE", "STATE", "WHY", "NEXT CHANGE"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tables() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(inert("a\u{1b}[31mb"), "a\u{fffd}[31mb");
    }
}
