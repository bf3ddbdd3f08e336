//! Letting owners stop things: rules from UCI, evaluated against the router's
//! local time and the household's presence, enforced with nftables.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | `device`, `rule` and `presence` sections, validated |
//! | [`time`] | POSIX TZ local time and calendar arithmetic |
//! | [`schedule`] | weekly windows (`mon-fri 21:00-07:00`) |
//! | [`presence`] | who is home, for away-mode |
//! | [`nft`] | the `inet iot_inspector` table and conntrack cuts |
//! | [`probe`] | asking the kernel to ARP/NDP-probe a device |
//!
//! The flow in the daemon: `RuleSet::parse` on (re)load → every tick (and on
//! presence events) [`evaluate`] with the current instant → [`History::record`]
//! → [`nft::Enforcer::apply`] when anything changed. Nothing here reads the
//! clock: `now` is always a parameter.

pub mod config;
pub mod nft;
pub mod presence;
pub mod probe;
pub mod resume;
pub mod schedule;
pub mod time;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

pub use config::{
    ConfigError, ConfigErrors, DestinationFilter, DeviceConfig, PresenceConfig, Rule, RuleSet,
};
pub use presence::{Presence, SeenBy};
pub use time::{LocalZone, UnixTime, clock_is_set};

use crate::dissect::Mac;

/// Everything evaluation depends on besides the rules.
pub struct Context<'a> {
    pub now: UnixTime,
    pub zone: &'a LocalZone,
    pub presence: &'a Presence,
    /// Display names of devices (from the inventory), used in reasons when
    /// the configuration gives no label.
    pub names: &'a BTreeMap<Mac, String>,
    /// The states from the previous evaluation (or restored at start-up):
    /// kept while the clock is not set.
    pub last: &'a [RuleState],
}

/// A rule's state at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    pub rule: String,
    pub device: Mac,
    pub device_name: String,
    /// The rule's block is in force (the whole device, or its destinations).
    pub blocked: bool,
    /// `Some`: only these destinations are blocked.
    pub destinations: Option<DestinationFilter>,
    /// Why, in plain words: "schedule Mon–Fri 21:00–07:00",
    /// "away-mode: Anna's phone is home", "paused until 07:00".
    pub reason: String,
    /// When `blocked` next changes if nothing else happens (presence-based
    /// changes assume no device is seen again); `None` if never/unknown.
    pub next_change: Option<UnixTime>,
    pub persist: bool,
    /// The clock is not set yet (no NTP): the state is the last known one.
    pub clock_unset: bool,
}

/// One condition's value at an instant.
struct Cond {
    active: bool,
    reason: String,
    /// Instants after which this condition may change.
    changes: Vec<UnixTime>,
}

/// Most steps taken looking for the next change (each a condition boundary).
const NEXT_CHANGE_STEPS: usize = 64;

/// Evaluates every rule at `ctx.now`.
pub fn evaluate(rules: &RuleSet, ctx: &Context<'_>) -> Vec<RuleState> {
    let household = rules.household();
    rules
        .rules
        .iter()
        .map(|r| evaluate_rule(rules, r, &household, ctx))
        .collect()
}

fn device_name(rules: &RuleSet, mac: Mac, names: &BTreeMap<Mac, String>) -> String {
    let cfg = rules.device(mac);
    cfg.and_then(|d| d.label.clone())
        .or_else(|| names.get(&mac).cloned())
        .or_else(|| cfg.map(|d| d.id.clone()))
        .unwrap_or_else(|| mac.to_string())
}

fn evaluate_rule(rules: &RuleSet, r: &Rule, household: &[Mac], ctx: &Context<'_>) -> RuleState {
    let mut state = RuleState {
        rule: r.id.clone(),
        device: r.device,
        device_name: device_name(rules, r.device, ctx.names),
        blocked: false,
        destinations: r.destinations.clone(),
        reason: String::new(),
        next_change: None,
        persist: r.persist,
        clock_unset: false,
    };
    if !r.enabled {
        state.reason = "rule disabled".into();
        return state;
    }
    let clock_set = clock_is_set(ctx.now);
    if !clock_set && (r.pause_until.is_some() || !r.schedule.is_empty()) {
        // Without a real date a schedule would be a guess: keep what was
        // last in force (the daemon restores it at start-up).
        if let Some(last) = ctx
            .last
            .iter()
            .find(|s| s.rule == r.id && s.device == r.device)
        {
            let mut kept = last.clone();
            kept.clock_unset = true;
            kept.next_change = None;
            if !kept.reason.starts_with("clock not set") {
                kept.reason = format!(
                    "clock not set yet (waiting for NTP), keeping: {}",
                    last.reason
                );
            }
            return kept;
        }
    }
    state.clock_unset = !clock_set;

    let conds = |t: UnixTime| conditions(rules, r, household, ctx, t, clock_set);
    let now_conds = conds(ctx.now);
    state.blocked = now_conds.iter().any(|c| c.active);
    let shown: Vec<&str> = now_conds
        .iter()
        .filter(|c| c.active == state.blocked)
        .map(|c| c.reason.as_str())
        .collect();
    state.reason = if shown.is_empty() {
        "not blocked".into()
    } else {
        shown.join("; ")
    };
    if state.clock_unset {
        state.reason = format!(
            "{} (clock not set yet: schedules and pauses wait for NTP)",
            state.reason
        );
    }

    // Walk condition boundaries until the combined state flips.
    let mut t = ctx.now;
    let mut current = now_conds;
    for _ in 0..NEXT_CHANGE_STEPS {
        let Some(next) = current
            .iter()
            .flat_map(|c| c.changes.iter().copied())
            .filter(|x| *x > t)
            .min()
        else {
            break;
        };
        current = conds(next);
        if current.iter().any(|c| c.active) != state.blocked {
            state.next_change = Some(next);
            break;
        }
        t = next;
    }
    state
}

fn conditions(
    rules: &RuleSet,
    r: &Rule,
    household: &[Mac],
    ctx: &Context<'_>,
    t: UnixTime,
    clock_set: bool,
) -> Vec<Cond> {
    let mut out = Vec::new();
    if r.block {
        out.push(Cond {
            active: true,
            reason: "blocked".into(),
            changes: vec![],
        });
    }
    if clock_set && let Some(p) = r.pause_until {
        let until = p.instant(ctx.zone);
        let active = t < until;
        out.push(Cond {
            active,
            reason: if active {
                format!("paused until {}", ctx.zone.format_near(until, ctx.now))
            } else {
                format!("pause ended {}", ctx.zone.format(until))
            },
            changes: vec![until],
        });
    }
    if clock_set && !r.schedule.is_empty() {
        let s = schedule::evaluate(&r.schedule, ctx.zone, t);
        let text = |w: &schedule::Window| w.to_string();
        out.push(Cond {
            active: s.inside.is_some(),
            reason: match s.inside {
                Some(i) => format!("schedule {}", text(&r.schedule[i])),
                None => format!(
                    "outside schedule {}",
                    r.schedule.iter().map(text).collect::<Vec<_>>().join(", ")
                ),
            },
            changes: s.next_change.into_iter().collect(),
        });
    }
    if r.away_mode {
        let home = ctx.presence.home(household, t);
        let reason = match home.as_slice() {
            [] => "away-mode: everyone is away".to_string(),
            [one] => format!("away-mode: {} is home", device_name(rules, *one, ctx.names)),
            [one, rest @ ..] => format!(
                "away-mode: {} and {} more are home",
                device_name(rules, *one, ctx.names),
                rest.len()
            ),
        };
        out.push(Cond {
            active: !home.is_empty(),
            reason,
            changes: ctx.presence.changes_after(household, t),
        });
    }
    let has_condition = r.block || r.pause_until.is_some() || !r.schedule.is_empty() || r.away_mode;
    if !has_condition {
        // A destination rule with no condition: always in force.
        out.push(Cond {
            active: true,
            reason: "always".into(),
            changes: vec![],
        });
    } else if out.is_empty() {
        // Only clock-based conditions, and no clock.
        out.push(Cond {
            active: false,
            reason: "not blocked".into(),
            changes: vec![],
        });
    }
    out
}

/// One change of a rule's state, for the API's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub at: UnixTime,
    pub rule: String,
    pub device: Mac,
    pub device_name: String,
    pub blocked: bool,
    pub reason: String,
}

/// The most recent state changes, oldest first, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    capacity: usize,
    changes: VecDeque<Change>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            changes: VecDeque::new(),
        }
    }

    /// Records every rule whose `blocked` differs from `previous` (or that is
    /// new and blocked); returns how many changes were recorded.
    pub fn record(&mut self, previous: &[RuleState], current: &[RuleState], at: UnixTime) -> usize {
        let mut n = 0;
        for s in current {
            let before = previous
                .iter()
                .find(|p| p.rule == s.rule && p.device == s.device);
            let changed = match before {
                Some(p) => p.blocked != s.blocked,
                None => s.blocked,
            };
            if changed {
                self.push(Change {
                    at,
                    rule: s.rule.clone(),
                    device: s.device,
                    device_name: s.device_name.clone(),
                    blocked: s.blocked,
                    reason: s.reason.clone(),
                });
                n += 1;
            }
        }
        for p in previous {
            if p.blocked
                && !current
                    .iter()
                    .any(|s| s.rule == p.rule && s.device == p.device)
            {
                self.push(Change {
                    at,
                    rule: p.rule.clone(),
                    device: p.device,
                    device_name: p.device_name.clone(),
                    blocked: false,
                    reason: "rule removed from the configuration".into(),
                });
                n += 1;
            }
        }
        n
    }

    fn push(&mut self, c: Change) {
        while self.changes.len() >= self.capacity {
            self.changes.pop_front();
        }
        self.changes.push_back(c);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::time::Date;
    use super::*;

    const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    fn zone() -> LocalZone {
        LocalZone::from_posix(CET).unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> UnixTime {
        zone().instant(Date::from_ymd(y, mo, d).unwrap(), h * 60 + mi)
    }

    const CONFIG: &str = r#"
config device 'cam'
	option mac '02:00:5e:00:53:10'
	option label 'Hall camera'
config device 'phone_anna'
	option mac '02:00:5e:00:53:21'
	option label 'phone-anna'
	option household '1'
config device 'tv'
	option mac '02:00:5e:00:53:30'
config rule 'cam_away'
	option device 'cam'
	option away_mode '1'
config rule 'tv_night'
	option device 'tv'
	list schedule 'mon-fri 21:00-07:00'
config rule 'tv_pause'
	option device 'tv'
	option pause_until '2026-07-01T19:00'
config rule 'tv_ads'
	option device 'tv'
	list block_category 'advertising'
	option persist '1'
config presence
	option away_delay '600'
"#;

    fn eval(rs: &RuleSet, now: UnixTime, p: &Presence, last: &[RuleState]) -> Vec<RuleState> {
        let z = zone();
        let names = BTreeMap::new();
        evaluate(
            rs,
            &Context {
                now,
                zone: &z,
                presence: p,
                names: &names,
                last,
            },
        )
    }

    fn get<'a>(s: &'a [RuleState], id: &str) -> &'a RuleState {
        s.iter().find(|s| s.rule == id).unwrap()
    }

    #[test]
    fn schedule_pause_and_destination_rules() {
        let rs = RuleSet::parse(CONFIG).unwrap();
        let p = Presence::new(600);
        // Wednesday 2026-07-01 18:00: paused until 19:00, outside the night window.
        let s = eval(&rs, at(2026, 7, 1, 18, 0), &p, &[]);
        let pause = get(&s, "tv_pause");
        assert!(pause.blocked);
        assert_eq!(pause.reason, "paused until 19:00");
        assert_eq!(pause.next_change, Some(at(2026, 7, 1, 19, 0)));
        let night = get(&s, "tv_night");
        assert!(!night.blocked);
        assert_eq!(night.reason, "outside schedule Mon–Fri 21:00–07:00");
        assert_eq!(night.next_change, Some(at(2026, 7, 1, 21, 0)));
        let ads = get(&s, "tv_ads");
        assert!(ads.blocked && ads.persist);
        assert_eq!(ads.reason, "always");
        assert_eq!(ads.next_change, None);
        assert_eq!(
            ads.destinations.as_ref().unwrap().categories,
            vec!["advertising"]
        );
        // 22:00: in the window until Thursday 07:00; the pause is over.
        let s = eval(&rs, at(2026, 7, 1, 22, 0), &p, &[]);
        let night = get(&s, "tv_night");
        assert!(night.blocked);
        assert_eq!(night.reason, "schedule Mon–Fri 21:00–07:00");
        assert_eq!(night.next_change, Some(at(2026, 7, 2, 7, 0)));
        assert!(!get(&s, "tv_pause").blocked);
        assert_eq!(get(&s, "tv_pause").device_name, "tv");
    }

    #[test]
    fn schedule_across_the_dst_nights() {
        let rs = RuleSet::parse(CONFIG).unwrap();
        let p = Presence::new(600);
        // Friday 2026-03-27 21:00 CET → Saturday 07:00 CET: 10 h (no change that night).
        let s = eval(&rs, at(2026, 3, 27, 23, 0), &p, &[]);
        let n = get(&s, "tv_night");
        assert_eq!(n.next_change.unwrap() - at(2026, 3, 27, 21, 0), 10 * 3600);
        // Sunday 2026-10-25: not a window day; Monday 21:00 is the next start,
        // 24 h + 1 h later than a naive UTC computation would say.
        let s = eval(&rs, at(2026, 10, 25, 12, 0), &p, &[]);
        let n = get(&s, "tv_night");
        assert!(!n.blocked);
        assert_eq!(zone().format(n.next_change.unwrap()), "2026-10-26 21:00");
    }

    #[test]
    fn away_mode_follows_presence() {
        let rs = RuleSet::parse(CONFIG).unwrap();
        let anna: Mac = "02:00:5e:00:53:21".parse().unwrap();
        let t0 = at(2026, 7, 1, 12, 0);
        let mut p = Presence::new(rs.presence.away_delay);
        // Nobody seen: the camera runs.
        let s = eval(&rs, t0, &p, &[]);
        assert!(!get(&s, "cam_away").blocked);
        assert_eq!(get(&s, "cam_away").reason, "away-mode: everyone is away");
        // Anna's phone is seen: the camera is blocked until 10 min after.
        p.seen(anna, t0, SeenBy::Traffic);
        let s = eval(&rs, t0 + 5, &p, &[]);
        let cam = get(&s, "cam_away");
        assert!(cam.blocked);
        assert_eq!(cam.reason, "away-mode: phone-anna is home");
        assert_eq!(cam.device_name, "Hall camera");
        assert_eq!(cam.next_change, Some(t0 + 600));
        // Her phone only answers probes: still home.
        p.seen(anna, t0 + 550, SeenBy::ProbeAnswer);
        assert!(get(&eval(&rs, t0 + 700, &p, &[]), "cam_away").blocked);
        // Silent and not answering: after the away delay the camera runs.
        assert!(!get(&eval(&rs, t0 + 1150, &p, &[]), "cam_away").blocked);
        // "I'm home" by hand for an hour.
        p.set_override(Some(anna), true, t0 + 5000);
        let s = eval(&rs, t0 + 1200, &p, &[]);
        assert!(get(&s, "cam_away").blocked);
        assert_eq!(get(&s, "cam_away").next_change, Some(t0 + 5000));
    }

    #[test]
    fn clock_unset_keeps_the_last_state() {
        let rs = RuleSet::parse(CONFIG).unwrap();
        let p = Presence::new(600);
        let before = eval(&rs, at(2026, 7, 1, 22, 0), &p, &[]);
        assert!(get(&before, "tv_night").blocked);
        // Reboot: the clock says 1970 until NTP answers.
        let s = eval(&rs, 120, &p, &before);
        let n = get(&s, "tv_night");
        assert!(n.blocked && n.clock_unset);
        assert!(n.reason.starts_with("clock not set"), "{}", n.reason);
        assert_eq!(n.next_change, None);
        // No last state: schedules are not guessed; clock-free rules still apply.
        let s = eval(&rs, 120, &p, &[]);
        assert!(!get(&s, "tv_night").blocked);
        assert!(get(&s, "tv_night").clock_unset);
        assert!(get(&s, "tv_ads").blocked);
    }

    #[test]
    fn history_records_changes_and_is_bounded() {
        let rs = RuleSet::parse(CONFIG).unwrap();
        let p = Presence::new(600);
        let mut h = History::new(3);
        let a = eval(&rs, at(2026, 7, 1, 18, 0), &p, &[]);
        assert_eq!(h.record(&[], &a, 1), 2); // tv_pause and tv_ads start blocked
        let b = eval(&rs, at(2026, 7, 1, 22, 0), &p, &a);
        assert_eq!(h.record(&a, &b, 2), 2); // pause ended, night began
        assert_eq!(h.len(), 3);
        let last: Vec<_> = h.iter().map(|c| (c.rule.as_str(), c.blocked)).collect();
        assert_eq!(
            last,
            vec![("tv_ads", true), ("tv_night", true), ("tv_pause", false)]
        );
        assert_eq!(h.record(&b, &b, 3), 0);
        let json = serde_json::to_string(&h).unwrap();
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
