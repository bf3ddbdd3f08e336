//! "Can I stop it?": runs the owner's rules. Evaluates them every second
//! against the clock, the household's presence and the names devices
//! resolved, records every change with its reason, and keeps the nftables
//! table (`inet iot_inspector`) in step — one transaction per change.
//!
//! The rule language, its evaluation, presence and the nftables work live
//! in [`crate::rules`]; this module wires them to the daemon's live state.

pub mod edit;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dissect::{Mac, Observation};
use crate::rules::nft::{DestinationSets, DeviceAddresses, Enforcer};
use crate::rules::probe::{ProbeResult, probe};
use crate::rules::{
    Change, Context, History, LocalZone, Presence, RuleSet, RuleState, SeenBy, UnixTime,
    clock_is_set, evaluate,
};

/// Changes kept in the history.
const HISTORY: usize = 500;
/// Destination entries kept (each a device → address a rule blocks).
const MAX_DESTINATIONS: usize = 20_000;

/// What the API shows about rules.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RulesView {
    pub clock_unset: bool,
    /// The configuration could not be used; the last good rules run.
    pub config_error: Option<String>,
    pub timezone: String,
    pub states: Vec<RuleState>,
    pub history: Vec<Change>,
    pub rules: Vec<serde_json::Value>,
    pub household: Vec<HouseholdView>,
    /// Last nftables error, if the last change could not be applied.
    pub enforce_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HouseholdView {
    pub device: Mac,
    pub home: bool,
    pub last_seen: Option<UnixTime>,
}

/// A finished ARP/NDP probe.
pub struct ProbeDone {
    pub mac: Mac,
    pub at: UnixTime,
    pub answered: bool,
}

pub struct Control {
    rules: RuleSet,
    zone: LocalZone,
    presence: Presence,
    history: History,
    last: Vec<RuleState>,
    enforcer: Enforcer,
    dests: DestinationSets,
    dests_dirty: bool,
    addrs: DeviceAddresses,
    applied_once: bool,
    config_error: Option<String>,
    enforce_error: Option<String>,
    /// Household devices with a probe in flight.
    probing: HashMap<Mac, UnixTime>,
    lan_if: String,
    tz_path: PathBuf,
    /// Blocks lifted by the last applies, not yet taken by the daemon.
    released: Vec<(IpAddr, Option<IpAddr>)>,
}

impl Control {
    /// `lan_if`: where probes are sent from (the LAN bridge).
    pub fn new(lan_if: String, restored: Vec<RuleState>) -> Control {
        let tz_path = PathBuf::from("/etc/TZ");
        Control {
            rules: RuleSet::default(),
            zone: load_zone(&tz_path),
            presence: Presence::new(crate::rules::config::DEFAULT_AWAY_DELAY),
            history: History::new(HISTORY),
            last: restored,
            enforcer: Enforcer::new(None),
            dests: DestinationSets::default(),
            dests_dirty: false,
            addrs: DeviceAddresses::new(),
            applied_once: false,
            config_error: None,
            enforce_error: None,
            probing: HashMap::new(),
            lan_if,
            tz_path,
            released: Vec::new(),
        }
    }

    /// Takes new rules from the configuration text; on error the running
    /// rules stay and the error is shown.
    pub fn reload(&mut self, sections: &[crate::uci::Section]) {
        self.zone = load_zone(&self.tz_path);
        match RuleSet::from_sections(sections) {
            Ok(r) => {
                self.presence.set_away_delay(r.presence.away_delay);
                self.rules = r;
                self.config_error = None;
                // Destination entries belong to rules; rebuild from scratch.
                self.dests = DestinationSets::default();
                self.dests_dirty = true;
            }
            Err(e) => {
                log::error!("keeping the running rules: {e}");
                self.config_error = Some(e.to_string());
            }
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Traffic or an announcement from a device: it is home.
    pub fn seen(&mut self, mac: Mac, at: UnixTime) {
        self.presence.seen(mac, at, SeenBy::Traffic);
    }

    pub fn probe_done(&mut self, p: ProbeDone) {
        self.probing.remove(&p.mac);
        if p.answered {
            self.presence.seen(p.mac, p.at, SeenBy::ProbeAnswer);
        }
    }

    /// Manual "I'm away / I'm home" for the whole household (`mac: None`)
    /// or one device, until `until`.
    pub fn set_presence_override(&mut self, mac: Option<Mac>, home: bool, until: UnixTime) {
        self.presence.set_override(mac, home, until);
    }

    /// A DNS answer a device received: addresses of names its destination
    /// rules block join the device's block sets, for the answer's TTL.
    pub fn observe(&mut self, obs: &Observation) {
        let Observation::DnsAnswer {
            mac,
            question,
            cnames,
            addresses,
            ..
        } = obs
        else {
            return;
        };
        // The owner's lists count too: an advertising list widens a
        // rule that blocks advertising.
        let kb = crate::explain::current();
        for rule in self.rules.rules.iter().filter(|r| r.device == *mac) {
            let Some(filter) = &rule.destinations else {
                continue;
            };
            let matched = std::iter::once(question).chain(cnames.iter()).any(|name| {
                let e = kb.explain(name, &[], None);
                let cat = serde_json::to_value(e.category)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from));
                filter.matches(name, e.organisation.as_deref(), cat.as_deref())
                    || filter.matches(name, None, Some(e.category.label()))
            });
            if !matched {
                continue;
            }
            for a in addresses {
                if self.dests.entries.len() >= MAX_DESTINATIONS {
                    self.dests.entries.remove(0);
                }
                if !self
                    .dests
                    .entries
                    .iter()
                    .any(|e| e.rule == rule.id && e.device == *mac && e.remote == a.ip)
                {
                    self.dests.add(&rule.id, *mac, a.ip, a.ttl_s);
                    self.dests_dirty = true;
                }
            }
        }
    }

    /// Household devices that have been quiet for a probe interval and
    /// have an address: probe them (the caller runs the probes off the
    /// daemon task).
    pub fn due_probes(
        &mut self,
        now: UnixTime,
        ips: &BTreeMap<Mac, Vec<IpAddr>>,
    ) -> Vec<(Mac, IpAddr, String)> {
        let interval = self.rules.presence.probe_interval as i64;
        let mut out = Vec::new();
        for mac in self.rules.household() {
            if self.probing.contains_key(&mac) {
                continue;
            }
            let quiet = match self.presence.last_seen(mac) {
                Some((t, _)) => now - t >= interval,
                None => true,
            };
            if !quiet {
                continue;
            }
            if let Some(ip) = ips.get(&mac).and_then(|v| v.last()) {
                self.probing.insert(mac, now);
                out.push((mac, *ip, self.lan_if.clone()));
            }
        }
        out
    }

    /// Evaluates the rules at `now` and brings nftables in step when
    /// anything changed. `addrs`: every device's known addresses.
    pub fn tick(
        &mut self,
        now: UnixTime,
        addrs: DeviceAddresses,
        names: &BTreeMap<Mac, String>,
    ) -> Vec<Change> {
        let ctx = Context {
            now,
            zone: &self.zone,
            presence: &self.presence,
            names,
            last: &self.last,
        };
        let states = evaluate(&self.rules, &ctx);
        let before = self.history.len();
        self.history.record(&self.last, &states, now);
        let recorded = self.history.len() != before;
        // Only addresses of devices under a rule matter to nftables.
        let ruled: Vec<Mac> = states.iter().map(|s| s.device).collect();
        let addrs: DeviceAddresses = addrs
            .into_iter()
            .filter(|(m, _)| ruled.contains(m))
            .collect();
        let changed =
            !self.applied_once || states != self.last || addrs != self.addrs || self.dests_dirty;
        if changed {
            match self.enforcer.apply(&states, &addrs, &self.dests) {
                Ok(r) => {
                    self.released.extend(r.released);
                    self.enforce_error = None;
                    self.applied_once = true;
                    self.dests_dirty = false;
                    log::debug!("nftables updated in {} µs", r.commit_micros);
                }
                Err(e) => {
                    log::error!("could not update nftables: {e:#}");
                    self.enforce_error = Some(format!("{e:#}"));
                }
            }
        }
        self.addrs = addrs;
        self.last = states;
        if recorded {
            let new: Vec<Change> = self.history.iter().skip(before).cloned().collect();
            for c in &new {
                log::info!(
                    "rule {} on {}: {} ({})",
                    c.rule,
                    c.device_name,
                    if c.blocked { "blocked" } else { "allowed" },
                    c.reason
                );
            }
            new
        } else {
            Vec::new()
        }
    }

    /// (device address, remote when a destination block) unblocked since
    /// the last call.
    pub fn take_released(&mut self) -> Vec<(IpAddr, Option<IpAddr>)> {
        std::mem::take(&mut self.released)
    }

    /// The states to remember across a restart.
    pub fn states(&self) -> &[RuleState] {
        &self.last
    }

    pub fn view(&self, now: UnixTime) -> RulesView {
        RulesView {
            clock_unset: !clock_is_set(now),
            config_error: self.config_error.clone(),
            timezone: self.zone.posix().to_string(),
            states: self.last.clone(),
            history: self.history.iter().cloned().collect(),
            rules: self
                .rules
                .rules
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            household: self
                .rules
                .household()
                .into_iter()
                .map(|m| HouseholdView {
                    device: m,
                    home: !self.presence.home(&[m], now).is_empty(),
                    last_seen: self.presence.last_seen(m).map(|(t, _)| t),
                })
                .collect(),
            enforce_error: self.enforce_error.clone(),
        }
    }

    /// Clean stop: keeps only blocks that must persist.
    pub fn shutdown(&mut self) {
        if let Err(e) = self.enforcer.shutdown(&self.last, &self.addrs, &self.dests) {
            log::error!("cleaning up nftables: {e:#}");
        }
    }
}

/// Runs one probe (blocking: up to a few seconds).
pub fn run_probe(mac: Mac, ip: IpAddr, lan_if: &str) -> ProbeDone {
    let answered = matches!(
        probe(None, lan_if, ip, mac, Duration::from_secs(4)),
        Ok(ProbeResult::Answered)
    );
    ProbeDone {
        mac,
        at: crate::time::unix_secs() as UnixTime,
        answered,
    }
}

/// The router's zone from `/etc/TZ` (a POSIX TZ string, as OpenWrt keeps
/// it), else `$TZ`, else UTC.
fn load_zone(path: &std::path::Path) -> LocalZone {
    if let Ok(z) = LocalZone::from_file(path) {
        return z;
    }
    if let Ok(tz) = std::env::var("TZ")
        && let Ok(z) = LocalZone::from_posix(&tz)
    {
        return z;
    }
    LocalZone::utc()
}
