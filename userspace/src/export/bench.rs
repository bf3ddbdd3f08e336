//! Export throughput and size, measured against merely reading the same
//! windows from the store (`userspace/benches/export.rs` prints it; `cargo
//! xtask bench` runs that).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::{ExportOptions, Format, write};
use crate::dissect::Mac;
use crate::identify::{Evidence, Identity, identify};
use crate::store::{DeviceRecord, FlowRecord, Retention, Store, Tier, WindowCommit};

/// A synthesised store with its devices' identities and labels.
pub type Synthetic = (Store, BTreeMap<Mac, Identity>, BTreeMap<Mac, String>);

/// One synthetic device: how busy it is and whom it talks to.
struct Profile {
    mac: &'static str,
    hostname: &'static str,
    /// Percent of windows with traffic.
    active: u64,
    remotes: &'static [(&'static str, [u8; 4], u16)],
}

const PROFILES: &[Profile] = &[
    Profile {
        mac: "14:91:82:00:00:01",
        hostname: "wemo-plug-1A2B",
        active: 20,
        remotes: &[
            ("api.xbcs.net", [203, 0, 113, 21], 443),
            ("pool.ntp.org", [203, 0, 113, 123], 123),
        ],
    },
    Profile {
        mac: "2c:aa:8e:00:00:02",
        hostname: "WYZE_CAKP2JFUS",
        active: 100,
        remotes: &[
            ("api.wyzecam.com", [203, 0, 113, 30], 443),
            ("kvs.us-west-2.amazonaws.com", [203, 0, 113, 31], 443),
            ("pool.ntp.org", [203, 0, 113, 123], 123),
        ],
    },
    Profile {
        mac: "b0:a7:37:00:00:03",
        hostname: "Roku-Ultra",
        active: 60,
        remotes: &[
            ("api.roku.com", [203, 0, 113, 40], 443),
            ("scribe.logs.roku.com", [203, 0, 113, 41], 443),
            ("doubleclick.net", [203, 0, 113, 42], 443),
            ("www.netflix.com", [203, 0, 113, 43], 443),
            ("nflxvideo.net", [203, 0, 113, 44], 443),
            ("google-analytics.com", [203, 0, 113, 45], 443),
            ("time.google.com", [203, 0, 113, 46], 123),
            ("router.lan", [192, 0, 2, 1], 53),
        ],
    },
    Profile {
        mac: "da:a1:19:00:00:04",
        hostname: "Janes-Phone",
        active: 40,
        remotes: &[
            ("play.googleapis.com", [203, 0, 113, 50], 443),
            ("mtalk.google.com", [203, 0, 113, 51], 5228),
            ("graph.facebook.com", [203, 0, 113, 52], 443),
            ("connectivitycheck.gstatic.com", [203, 0, 113, 53], 80),
            ("app-measurement.com", [203, 0, 113, 54], 443),
        ],
    },
];

/// A small deterministic generator (no rand dependency for a benchmark).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Fills a store at `path` with `hours` of 5-second windows for
/// `devices` devices (cycling through the profiles) starting at `t0`.
/// Returns the devices' identities and labels.
pub fn synthesise(path: &Path, devices: usize, t0: u64, hours: u64) -> Result<Synthetic> {
    let store = Store::open(path)?;
    let retention = Retention {
        raw_secs: hours * 3600 + 3600,
        minute_secs: hours * 3600 + 7200,
        hour_secs: hours * 3600 + 86400,
    };
    let mut identities = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut macs = Vec::new();
    for i in 0..devices {
        let p = &PROFILES[i % PROFILES.len()];
        let mut mac: Mac = p.mac.parse()?;
        mac.0[5] = i as u8 + 1;
        mac.0[4] = (i >> 8) as u8;
        let ev = Evidence {
            dhcp_hostnames: vec![p.hostname.into()],
            domains: p.remotes.iter().map(|r| r.0.to_string()).collect(),
            ..Default::default()
        };
        identities.insert(mac, identify(mac, &ev));
        labels.insert(mac, format!("{} {i}", p.hostname));
        macs.push((mac, p, i as u8));
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for w in 0..hours * 720 {
        let start = t0 + w * 5;
        let mut commit = WindowCommit {
            start,
            secs: 5,
            ..Default::default()
        };
        for (mac, p, i) in &macs {
            if next(&mut rng) % 100 >= p.active {
                continue;
            }
            let device_ip: IpAddr = [192, 0, 2, 100 + i].into();
            let mut records: Vec<FlowRecord> = Vec::new();
            for (name, ip, port) in p.remotes {
                if next(&mut rng).is_multiple_of(3) {
                    continue;
                }
                let up = 100 + next(&mut rng) % 4000;
                let down = 100 + next(&mut rng) % 40_000;
                records.push(FlowRecord {
                    device_ip: Some(device_ip),
                    remote_ip: Some(IpAddr::from(*ip)),
                    proto: if *port == 123 || *port == 53 { 17 } else { 6 },
                    remote_port: *port,
                    bytes_up: up,
                    bytes_down: down,
                    packets_up: up / 500 + 1,
                    packets_down: down / 1200 + 1,
                    flows: 1,
                    name: Some(name.to_string()),
                    name_source: Some("dns".into()),
                });
            }
            if !records.is_empty() {
                commit.per_device.insert(*mac, records);
            }
        }
        commit.devices = macs
            .iter()
            .map(|(mac, _, i)| DeviceRecord {
                mac: *mac,
                first_seen: t0,
                last_seen: start + 5,
                ips: vec![[192, 0, 2, 100 + i].into()],
                ..Default::default()
            })
            .collect();
        store.commit_window(&commit, retention)?;
    }
    Ok((store, identities, labels))
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct BenchLine {
    /// `read` (the baseline) or a format.
    pub what: String,
    pub windows: u64,
    pub secs: f64,
    pub bytes: u64,
}

impl BenchLine {
    pub fn windows_per_sec(&self) -> f64 {
        self.windows as f64 / self.secs.max(1e-9)
    }
}

/// Reads the range, then exports it in each format; `devices` and `hours`
/// scale the per-device-day size.
pub fn measure(
    store: &Store,
    identities: &BTreeMap<Mac, Identity>,
    labels: &BTreeMap<Mac, String>,
    since: u64,
    until: u64,
) -> Result<Vec<BenchLine>> {
    let mut out = Vec::new();
    let t = Instant::now();
    let mut windows = 0u64;
    let mut a = since;
    while a < until {
        let b = (a + 3600).min(until);
        windows += store.windows(Tier::Raw, a, b, None)?.len() as u64;
        a = b;
    }
    out.push(BenchLine {
        what: "read only".into(),
        windows,
        secs: t.elapsed().as_secs_f64(),
        bytes: 0,
    });
    for format in Format::ALL {
        let opts = ExportOptions::new(since, until, format, [7u8; 32]);
        let mut sink = Vec::new();
        let t = Instant::now();
        let s = write(store, &opts, identities, labels, &mut sink)?;
        out.push(BenchLine {
            what: format!("export {}", format.extension()),
            windows: s.windows,
            secs: t.elapsed().as_secs_f64(),
            bytes: s.bytes,
        });
    }
    Ok(out)
}
