//! Who is home, for away-mode: pure bookkeeping of when each household device
//! was last seen (its traffic, or its answer to an ARP/NDP probe from the
//! router — a sleeping phone sends nothing but still answers), plus manual
//! "I'm away" / "I'm home" overrides that expire.
//!
//! A device is home while it was seen within `away_delay`; the delay keeps a
//! phone whose Wi-Fi naps for a minute from flapping the camera on and off.
//! The household is away only when every household device is away.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time::UnixTime;
use crate::dissect::Mac;

/// Most devices tracked; presence is for a household's phones, and the
/// daemon may feed every device's traffic, so the map must not grow unbounded.
pub const MAX_TRACKED: usize = 4096;

/// How a device was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenBy {
    Traffic,
    ProbeAnswer,
}

/// A manual override: "I'm home" (`home: true`) or "I'm away" until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub home: bool,
    pub until: UnixTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    last_seen: Option<(UnixTime, SeenBy)>,
    manual: Option<Override>,
}

/// Presence of devices over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    away_delay: i64,
    devices: BTreeMap<Mac, Entry>,
    /// "We are all away / all home" for the whole household.
    household_override: Option<Override>,
}

/// Whether one device counts as home at an instant, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePresence {
    pub home: bool,
    /// Set by hand (an override in force) rather than observed.
    pub manual: bool,
    /// When this changes if nothing new is seen: the end of the away delay
    /// or of the override.
    pub until: Option<UnixTime>,
    pub last_seen: Option<(UnixTime, SeenBy)>,
}

impl Presence {
    pub fn new(away_delay_secs: u32) -> Self {
        Presence {
            away_delay: i64::from(away_delay_secs),
            devices: BTreeMap::new(),
            household_override: None,
        }
    }

    pub fn away_delay(&self) -> i64 {
        self.away_delay
    }

    /// Changes the away delay (config reload) keeping what was seen.
    pub fn set_away_delay(&mut self, secs: u32) {
        self.away_delay = i64::from(secs);
    }

    /// Records that `mac` was seen at `at` (later sightings only move forward).
    pub fn seen(&mut self, mac: Mac, at: UnixTime, how: SeenBy) {
        if !self.devices.contains_key(&mac) && self.devices.len() >= MAX_TRACKED {
            self.evict_oldest();
        }
        let e = self.devices.entry(mac).or_default();
        if e.last_seen.is_none_or(|(t, _)| at >= t) {
            e.last_seen = Some((at, how));
        }
    }

    /// Sets "I'm home"/"I'm away" for one device (`Some(mac)`) or the whole
    /// household (`None`) until `until`.
    pub fn set_override(&mut self, mac: Option<Mac>, home: bool, until: UnixTime) {
        let o = Some(Override { home, until });
        match mac {
            None => self.household_override = o,
            Some(mac) => {
                if !self.devices.contains_key(&mac) && self.devices.len() >= MAX_TRACKED {
                    self.evict_oldest();
                }
                self.devices.entry(mac).or_default().manual = o;
            }
        }
    }

    pub fn clear_override(&mut self, mac: Option<Mac>) {
        match mac {
            None => self.household_override = None,
            Some(mac) => {
                if let Some(e) = self.devices.get_mut(&mac) {
                    e.manual = None;
                }
            }
        }
    }

    /// The last sighting of `mac`.
    pub fn last_seen(&self, mac: Mac) -> Option<(UnixTime, SeenBy)> {
        self.devices.get(&mac).and_then(|e| e.last_seen)
    }

    /// Whether `mac` counts as home at `now`. A device's own override beats
    /// the household's, which beats what was observed.
    pub fn device(&self, mac: Mac, now: UnixTime) -> DevicePresence {
        let entry = self.devices.get(&mac);
        let last_seen = entry.and_then(|e| e.last_seen);
        let manual = entry
            .and_then(|e| e.manual)
            .filter(|o| o.until > now)
            .or(self.household_override.filter(|o| o.until > now));
        if let Some(o) = manual {
            return DevicePresence {
                home: o.home,
                manual: true,
                until: Some(o.until),
                last_seen,
            };
        }
        match last_seen {
            // A sighting "in the future" (the clock stepped back) counts as now.
            Some((t, _)) if now - t < self.away_delay => DevicePresence {
                home: true,
                manual: false,
                until: Some(t.min(now) + self.away_delay),
                last_seen,
            },
            _ => DevicePresence {
                home: false,
                manual: false,
                until: None,
                last_seen,
            },
        }
    }

    /// The household devices home at `now`, in the order given; empty means
    /// the household is away.
    pub fn home(&self, household: &[Mac], now: UnixTime) -> Vec<Mac> {
        household
            .iter()
            .copied()
            .filter(|m| self.device(*m, now).home)
            .collect()
    }

    /// Instants after `now` at which some household device's presence
    /// changes if nothing new is seen (away delays and overrides running out).
    pub fn changes_after(&self, household: &[Mac], now: UnixTime) -> Vec<UnixTime> {
        let mut out: Vec<UnixTime> = household
            .iter()
            .filter_map(|m| self.device(*m, now).until)
            .filter(|t| *t > now)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .devices
            .iter()
            .filter(|(_, e)| e.manual.is_none())
            .min_by_key(|(_, e)| e.last_seen.map(|(t, _)| t))
            .map(|(m, _)| *m);
        if let Some(m) = oldest {
            self.devices.remove(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANNA: Mac = Mac([0x02, 0, 0x5e, 0, 0x53, 0x21]);
    const BEN: Mac = Mac([0x02, 0, 0x5e, 0, 0x53, 0x22]);
    const T0: UnixTime = 1_800_000_000;

    #[test]
    fn home_while_seen_within_the_away_delay() {
        let mut p = Presence::new(600);
        assert!(!p.device(ANNA, T0).home, "never seen is away");
        p.seen(ANNA, T0, SeenBy::Traffic);
        let d = p.device(ANNA, T0 + 599);
        assert!(d.home);
        assert_eq!(d.until, Some(T0 + 600));
        assert!(!p.device(ANNA, T0 + 600).home);
        // A probe answer keeps a sleeping phone home.
        p.seen(ANNA, T0 + 590, SeenBy::ProbeAnswer);
        assert!(p.device(ANNA, T0 + 1000).home);
        assert_eq!(p.last_seen(ANNA), Some((T0 + 590, SeenBy::ProbeAnswer)));
        // An older sighting arriving late does not move time backwards.
        p.seen(ANNA, T0, SeenBy::Traffic);
        assert_eq!(p.last_seen(ANNA).unwrap().0, T0 + 590);
    }

    #[test]
    fn household_is_away_only_when_everyone_is_away() {
        let mut p = Presence::new(600);
        let hh = [ANNA, BEN];
        p.seen(ANNA, T0, SeenBy::Traffic);
        p.seen(BEN, T0 + 300, SeenBy::Traffic);
        assert_eq!(p.home(&hh, T0 + 310), vec![ANNA, BEN]);
        assert_eq!(p.changes_after(&hh, T0 + 310), vec![T0 + 600, T0 + 900]);
        // A sighting "in the future" (clock stepped back) counts as now.
        assert_eq!(p.changes_after(&hh, T0 + 10), vec![T0 + 600, T0 + 610]);
        assert_eq!(p.home(&hh, T0 + 700), vec![BEN]);
        assert!(p.home(&hh, T0 + 900).is_empty());
        assert!(p.changes_after(&hh, T0 + 900).is_empty());
    }

    #[test]
    fn overrides_win_and_expire() {
        let mut p = Presence::new(600);
        let hh = [ANNA, BEN];
        p.seen(ANNA, T0, SeenBy::Traffic);
        // Anna says she is away for an hour, although her tablet-phone is online.
        p.set_override(Some(ANNA), false, T0 + 3600);
        assert!(p.home(&hh, T0 + 1).is_empty());
        assert!(p.device(ANNA, T0 + 1).manual);
        // Household "we're home" for 10 minutes; Anna's own override still wins.
        p.set_override(None, true, T0 + 600);
        assert_eq!(p.home(&hh, T0 + 1), vec![BEN]);
        assert_eq!(p.home(&hh, T0 + 600), Vec::<Mac>::new());
        // After Anna's override ends, observation decides again.
        p.seen(ANNA, T0 + 3500, SeenBy::Traffic);
        assert_eq!(p.home(&hh, T0 + 3600), vec![ANNA]);
        p.set_override(Some(ANNA), false, T0 + 9000);
        p.clear_override(Some(ANNA));
        assert_eq!(p.home(&hh, T0 + 3600), vec![ANNA]);
    }

    #[test]
    fn tracking_is_bounded() {
        let mut p = Presence::new(60);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let b = i.to_be_bytes();
            p.seen(
                Mac([2, 0, b[0], b[1], b[2], b[3]]),
                T0 + i64::from(i),
                SeenBy::Traffic,
            );
        }
        assert_eq!(p.devices.len(), MAX_TRACKED);
        // The oldest were evicted, the newest kept.
        assert!(p.last_seen(Mac([2, 0, 0, 0, 0, 0])).is_none());
        let b = (MAX_TRACKED as u32 + 9).to_be_bytes();
        assert!(p.last_seen(Mac([2, 0, b[0], b[1], b[2], b[3]])).is_some());
    }
}
