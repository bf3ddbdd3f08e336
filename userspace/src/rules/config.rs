//! Rules from UCI sections (`/etc/config/iot-inspector`), validated.
//!
//! ```text
//! config device 'cam'                  # a device by MAC, with a label
//!     option mac '02:00:5e:00:53:10'
//!     option label 'Hall camera'
//!     option household '0'              # '1': its presence counts for away-mode
//!
//! config rule 'cam_evenings'           # named or anonymous (@rule[N])
//!     option device 'cam'               # a device section name or a MAC
//!     option enabled '1'                # '0' keeps the rule but does nothing
//!     option block '1'                  # blocked at all times
//!     option pause_until '2026-11-26T07:00'   # local time, or unix seconds
//!     list schedule 'mon-fri 21:00-07:00'     # weekly blocked windows
//!     option away_mode '1'              # blocked while any household device is home
//!     list block_domain 'doubleclick.net'     # only these destinations...
//!     list block_organisation 'Scorecard Research'
//!     list block_category 'advertising'
//!     option persist '1'                # keep the block when the service stops
//!     option label 'No camera while we are home'
//!
//! config presence 'presence'
//!     option away_delay '600'           # seconds unseen before a device is away
//!     option probe_interval '30'        # seconds between ARP/NDP probes
//! ```
//!
//! A rule blocks the whole device unless it has `block_*` lists, in which case
//! it blocks only those destinations. Its conditions (`block`, `pause_until`,
//! `schedule`, `away_mode`) are alternatives: the block is in force while any
//! holds; a destination rule with no condition is always in force.
//!
//! Everything is checked before anything is used: the caller keeps the last
//! good [`RuleSet`] running when this returns errors, each naming the line,
//! section, option and value.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::schedule::Window;
use super::time::{Date, LocalZone, UnixTime};
use crate::dissect::Mac;
use crate::uci::{self, Section, Value};

/// Default seconds unseen before a household device counts as away.
pub const DEFAULT_AWAY_DELAY: u32 = 600;
/// Default seconds between presence probes.
pub const DEFAULT_PROBE_INTERVAL: u32 = 30;

/// A device named in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// The section name (`cam`), or `@device[N]` for an anonymous section.
    pub id: String,
    pub mac: Mac,
    pub label: Option<String>,
    /// Its presence counts for away-mode.
    pub household: bool,
}

/// When a pause ends: a local wall-clock time (resolved in the router's
/// zone when evaluated, so a TZ change moves it as a person expects) or an
/// absolute instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseUntil {
    Local { date: Date, minute_of_day: u32 },
    Unix(UnixTime),
}

impl PauseUntil {
    pub fn instant(&self, zone: &LocalZone) -> UnixTime {
        match *self {
            PauseUntil::Local {
                date,
                minute_of_day,
            } => zone.instant(date, minute_of_day),
            PauseUntil::Unix(t) => t,
        }
    }
}

/// Which destinations a destination rule blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationFilter {
    /// Domain suffixes: `doubleclick.net` also blocks `ad.doubleclick.net`.
    pub domains: Vec<String>,
    /// Organisation names, compared case-insensitively.
    pub organisations: Vec<String>,
    /// Category slugs (`advertising`, `tracking`, ...).
    pub categories: Vec<String>,
}

impl DestinationFilter {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.organisations.is_empty() && self.categories.is_empty()
    }

    /// Whether a destination the device resolved (its name, and what the
    /// explain layer says about it) falls under this filter.
    pub fn matches(
        &self,
        domain: &str,
        organisation: Option<&str>,
        category: Option<&str>,
    ) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            domain == *d
                || (domain.len() > d.len()
                    && domain.ends_with(d.as_str())
                    && domain.as_bytes()[domain.len() - d.len() - 1] == b'.')
        }) || organisation
            .is_some_and(|o| self.organisations.iter().any(|x| x.eq_ignore_ascii_case(o)))
            || category.is_some_and(|c| self.categories.iter().any(|x| x.eq_ignore_ascii_case(c)))
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The section name, or `@rule[N]` (UCI's name for the N-th anonymous rule).
    pub id: String,
    pub label: Option<String>,
    pub device: Mac,
    /// The device section the rule names, if it names one (not a bare MAC).
    pub device_id: Option<String>,
    pub enabled: bool,
    pub block: bool,
    pub pause_until: Option<PauseUntil>,
    pub schedule: Vec<Window>,
    pub away_mode: bool,
    /// `None`: the whole device is blocked.
    pub destinations: Option<DestinationFilter>,
    pub persist: bool,
}

/// Presence settings for away-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceConfig {
    pub away_delay: u32,
    pub probe_interval: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            away_delay: DEFAULT_AWAY_DELAY,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }
}

/// Everything the rules engine needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub devices: Vec<DeviceConfig>,
    pub rules: Vec<Rule>,
    pub presence: PresenceConfig,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    /// 1-based line of the section (or of the syntax error).
    pub line: usize,
    /// `rule 'cam_evenings'` or `@rule[2]`; empty for a syntax error.
    pub section: String,
    pub option: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if !self.section.is_empty() {
            write!(f, ", {}", self.section)?;
        }
        if let Some(o) = &self.option {
            write!(f, ", option {o}")?;
        }
        if let Some(v) = &self.value {
            write!(f, " = '{v}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found; nothing of the configuration may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against the section being read.
struct Checker<'a> {
    section: &'a Section,
    label: String,
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, option: &str, value: Option<&str>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line: self.section.line,
            section: self.label.clone(),
            option: (!option.is_empty()).then(|| option.to_owned()),
            value: value.map(str::to_owned),
            message: message.into(),
        });
    }

    /// A single value; a list where one value is expected is an error.
    fn single(&mut self, key: &str) -> Option<&str> {
        let section = self.section;
        match section.value(key)? {
            Value::Single(v) => Some(v),
            Value::List(items) => {
                let joined = items.join("', '");
                self.error(
                    key,
                    Some(&joined),
                    "expected one value ('option'), found a list",
                );
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(v) = self.single(key) else {
            return default;
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" | "enabled" => true,
            "0" | "no" | "off" | "false" | "disabled" => false,
            _ => {
                let v = v.to_owned();
                self.error(key, Some(&v), "expected a boolean: '1' or '0'");
                default
            }
        }
    }

    fn number(&mut self, key: &str, default: u32, range: std::ops::RangeInclusive<u32>) -> u32 {
        let Some(v) = self.single(key) else {
            return default;
        };
        match v.parse::<u32>() {
            Ok(n) if range.contains(&n) => n,
            _ => {
                let v = v.to_owned();
                self.error(
                    key,
                    Some(&v),
                    format!(
                        "expected whole seconds from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    fn only_known(&mut self, known: &[&str]) {
        let section = self.section;
        for (key, value) in &section.options {
            if !known.contains(&key.as_str()) {
                let v = match value {
                    Value::Single(v) => v.clone(),
                    Value::List(items) => items.join("', '"),
                };
                self.error(
                    key,
                    Some(&v),
                    format!("unknown option (known: {})", known.join(", ")),
                );
            }
        }
    }
}

fn section_label(s: &Section, anon_index: usize) -> (String, String) {
    match &s.name {
        Some(n) => (n.clone(), format!("{} '{n}'", s.kind)),
        None => {
            let id = format!("@{}[{anon_index}]", s.kind);
            (id.clone(), id)
        }
    }
}

impl RuleSet {
    /// Parses and validates a whole UCI file.
    pub fn parse(text: &str) -> Result<RuleSet, ConfigErrors> {
        let sections = uci::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                line: e.line,
                section: String::new(),
                option: None,
                value: None,
                message: e.message,
            }])
        })?;
        RuleSet::from_sections(&sections)
    }

    /// Validates `device`, `rule` and `presence` sections; other section
    /// types (the daemon's `iot-inspector` main section, ...) are ignored.
    pub fn from_sections(sections: &[Section]) -> Result<RuleSet, ConfigErrors> {
        let mut errors = Vec::new();
        let mut set = RuleSet::default();
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        let mut labels = Vec::with_capacity(sections.len());
        for s in sections {
            let n = counts.entry(s.kind.as_str()).or_insert(0);
            labels.push(section_label(s, *n));
            *n += 1;
        }

        // Devices first: rules refer to them.
        let mut macs = BTreeSet::new();
        for (s, (id, label)) in sections.iter().zip(&labels) {
            if s.kind != "device" {
                continue;
            }
            let mut c = Checker {
                section: s,
                label: label.clone(),
                errors: &mut errors,
            };
            let household = c.boolean("household", false);
            let label_text = c.single("label").map(str::to_owned);
            let Some(mac_text) = c.single("mac").map(str::to_owned) else {
                if s.value("mac").is_none() {
                    c.error("mac", None, "missing: every device needs its MAC address");
                }
                continue;
            };
            let mac = match mac_text.trim().parse::<Mac>() {
                Ok(m) if m.is_group() => {
                    c.error(
                        "mac",
                        Some(&mac_text),
                        "a multicast/broadcast address is not a device",
                    );
                    continue;
                }
                Ok(m) => m,
                Err(e) => {
                    c.error("mac", Some(&mac_text), e.to_string());
                    continue;
                }
            };
            if !macs.insert(mac) {
                c.error(
                    "mac",
                    Some(&mac_text),
                    "another device section has the same MAC",
                );
                continue;
            }
            set.devices.push(DeviceConfig {
                id: id.clone(),
                mac,
                label: label_text,
                household,
            });
        }

        let mut presence_seen = false;
        for (s, (id, label)) in sections.iter().zip(&labels) {
            let mut c = Checker {
                section: s,
                label: label.clone(),
                errors: &mut errors,
            };
            match s.kind.as_str() {
                "presence" => {
                    if presence_seen {
                        c.error("", None, "only one presence section is allowed");
                    }
                    presence_seen = true;
                    c.only_known(&["away_delay", "probe_interval"]);
                    set.presence = PresenceConfig {
                        away_delay: c.number("away_delay", DEFAULT_AWAY_DELAY, 30..=86_400),
                        probe_interval: c.number(
                            "probe_interval",
                            DEFAULT_PROBE_INTERVAL,
                            5..=3600,
                        ),
                    };
                }
                "rule" => {
                    if let Some(rule) = parse_rule(&mut c, id, &set.devices) {
                        set.rules.push(rule);
                    }
                }
                _ => {}
            }
        }

        if errors.is_empty() {
            Ok(set)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The household devices' MACs, for [`super::Presence`].
    pub fn household(&self) -> Vec<Mac> {
        self.devices
            .iter()
            .filter(|d| d.household)
            .map(|d| d.mac)
            .collect()
    }

    pub fn device(&self, mac: Mac) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.mac == mac)
    }
}

const RULE_OPTIONS: &[&str] = &[
    "device",
    "label",
    "enabled",
    "block",
    "pause_until",
    "schedule",
    "away_mode",
    "block_domain",
    "block_organisation",
    "block_category",
    "persist",
];

fn parse_rule(c: &mut Checker<'_>, id: &str, devices: &[DeviceConfig]) -> Option<Rule> {
    let before = c.errors.len();
    c.only_known(RULE_OPTIONS);
    let section = c.section;

    let device = match c.single("device").map(str::to_owned) {
        None => {
            if section.value("device").is_none() {
                c.error(
                    "device",
                    None,
                    "missing: name a device section or a MAC address",
                );
            }
            None
        }
        Some(d) => {
            if let Some(dev) = devices.iter().find(|x| x.id == d) {
                Some((dev.mac, Some(dev.id.clone())))
            } else if d.contains(':') || d.contains('-') || d.len() == 12 {
                match d.parse::<Mac>() {
                    Ok(m) if !m.is_group() => {
                        Some((m, devices.iter().find(|x| x.mac == m).map(|x| x.id.clone())))
                    }
                    Ok(_) => {
                        c.error(
                            "device",
                            Some(&d),
                            "a multicast/broadcast address is not a device",
                        );
                        None
                    }
                    Err(e) => {
                        c.error("device", Some(&d), e.to_string());
                        None
                    }
                }
            } else {
                c.error("device", Some(&d), "no device section has this name");
                None
            }
        }
    };

    let label = c.single("label").map(str::to_owned);
    let enabled = c.boolean("enabled", true);
    let block = c.boolean("block", false);
    let away_mode = c.boolean("away_mode", false);
    let persist = c.boolean("persist", false);

    let pause_until = c.single("pause_until").map(str::to_owned).and_then(|v| {
        parse_pause(&v)
            .map_err(|m| c.error("pause_until", Some(&v), m))
            .ok()
    });

    let mut schedule = Vec::new();
    for w in section.list("schedule") {
        match Window::parse(w) {
            Ok(win) => schedule.push(win),
            Err(m) => c.error("schedule", Some(w), m),
        }
    }
    if section.value("schedule").is_some() && section.list("schedule").is_empty() {
        c.error("schedule", None, "empty schedule");
    }

    let mut filter = DestinationFilter::default();
    for d in section.list("block_domain") {
        match normalise_domain(d) {
            Ok(d) => filter.domains.push(d),
            Err(m) => c.error("block_domain", Some(d), m),
        }
    }
    for o in section.list("block_organisation") {
        let t = o.trim();
        if t.is_empty() || t.len() > 100 {
            c.error(
                "block_organisation",
                Some(o),
                "expected an organisation name (1-100 characters)",
            );
        } else {
            filter.organisations.push(t.to_owned());
        }
    }
    for k in section.list("block_category") {
        let t = k.trim().to_ascii_lowercase();
        let ok = !t.is_empty()
            && t.len() <= 40
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            filter.categories.push(t);
        } else {
            c.error(
                "block_category",
                Some(k),
                "expected a category name like 'advertising'",
            );
        }
    }

    // Contradictions and rules that cannot do anything.
    if block {
        for (key, set) in [
            ("pause_until", pause_until.is_some()),
            ("schedule", !schedule.is_empty()),
            ("away_mode", away_mode),
        ] {
            if set {
                let v = c
                    .single(key)
                    .map(str::to_owned)
                    .or_else(|| section.list(key).first().map(|s| s.to_string()));
                c.error(
                    key,
                    v.as_deref(),
                    "contradicts block '1' (which blocks at all times): remove one of them",
                );
            }
        }
    }
    let has_condition = block || pause_until.is_some() || !schedule.is_empty() || away_mode;
    if !has_condition && filter.is_empty() && c.errors.len() == before {
        c.error(
            "",
            None,
            "the rule blocks nothing: set block, pause_until, schedule, away_mode or a block_* list",
        );
    }
    if away_mode {
        match &device {
            Some((mac, _)) if devices.iter().any(|d| d.mac == *mac && d.household) => {
                c.error(
                    "away_mode",
                    Some("1"),
                    "the device is itself a household device: it would block itself whenever it is home",
                );
            }
            _ => {}
        }
        if !devices.iter().any(|d| d.household) {
            c.error(
                "away_mode",
                Some("1"),
                "no device has household '1', so nobody could ever be home",
            );
        }
    }

    let (device, device_id) = device?;
    if c.errors.len() != before {
        return None;
    }
    Some(Rule {
        id: id.to_owned(),
        label,
        device,
        device_id,
        enabled,
        block,
        pause_until,
        schedule,
        away_mode,
        destinations: (!filter.is_empty()).then_some(filter),
        persist,
    })
}

/// `2026-11-26T07:00` (or with a space) in local time, or unix seconds.
fn parse_pause(v: &str) -> Result<PauseUntil, String> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<i64>()
            .ok()
            .filter(|t| *t < 32_503_680_000)
            .map(PauseUntil::Unix)
            .ok_or_else(|| "unix time out of range".into());
    }
    let bad = || "expected a local time like 2026-11-26T07:00 or unix seconds".to_string();
    let (date, time) = v.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d) = match (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) {
        (Ok(y), Ok(m), Ok(d)) => (y, m, d),
        _ => return Err(bad()),
    };
    let date = Date::from_ymd(y, m, d).ok_or_else(|| format!("{date} is not a calendar date"))?;
    let time = time
        .strip_suffix(":00")
        .filter(|t| t.len() == 5)
        .unwrap_or(time);
    let (h, mi) = time.split_once(':').ok_or_else(bad)?;
    let (h, mi) = match (h.parse::<u32>(), mi.parse::<u32>()) {
        (Ok(h), Ok(mi)) if h.to_string().len() <= 2 && mi.to_string().len() <= 2 => (h, mi),
        _ => return Err(bad()),
    };
    if h > 23 {
        return Err(format!("hour {h} is not 00-23"));
    }
    if mi > 59 {
        return Err(format!("minute {mi} is not 00-59"));
    }
    Ok(PauseUntil::Local {
        date,
        minute_of_day: h * 60 + mi,
    })
}

fn normalise_domain(d: &str) -> Result<String, String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let d = d.strip_prefix("*.").unwrap_or(&d).to_owned();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(d)
    } else {
        Err("expected a domain name like doubleclick.net".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
config iot-inspector 'main'
	option enabled '1'

config device 'cam'
	option mac '02:00:5e:00:53:10'
	option label 'Hall camera'

config device 'phone_anna'
	option mac '02:00:5e:00:53:21'
	option label 'Anna''s phone'
	option household '1'

config rule 'cam_home'
	option device 'cam'
	option away_mode '1'
	option persist '1'

config rule
	option device '02:00:5e:00:53:30'
	list schedule 'mon-fri 21:00-07:00'
	option pause_until '2026-11-26T07:00'

config rule
	option device 'cam'
	list block_domain '*.DoubleClick.net.'
	list block_organisation 'Scorecard Research'
	list block_category 'advertising'

config presence 'presence'
	option away_delay '300'
	option probe_interval '20'
"#;

    #[test]
    fn parses_a_good_configuration() {
        let rs = RuleSet::parse(GOOD).unwrap();
        assert_eq!(rs.devices.len(), 2);
        assert_eq!(
            rs.household(),
            vec!["02:00:5e:00:53:21".parse::<Mac>().unwrap()]
        );
        assert_eq!(rs.rules.len(), 3);
        let r = &rs.rules[0];
        assert_eq!(r.id, "cam_home");
        assert_eq!(r.device_id.as_deref(), Some("cam"));
        assert!(r.away_mode && r.persist && r.enabled && !r.block);
        let r = &rs.rules[1];
        assert_eq!(
            r.id, "@rule[1]",
            "UCI counts named sections of the type too"
        );
        assert_eq!(r.device_id, None);
        assert_eq!(r.schedule.len(), 1);
        assert_eq!(
            r.pause_until,
            Some(PauseUntil::Local {
                date: Date::from_ymd(2026, 11, 26).unwrap(),
                minute_of_day: 7 * 60
            })
        );
        let f = rs.rules[2].destinations.as_ref().unwrap();
        assert_eq!(f.domains, vec!["doubleclick.net"]);
        assert!(f.matches("ad.doubleclick.net.", None, None));
        assert!(f.matches("doubleclick.net", None, None));
        assert!(!f.matches("notdoubleclick.net", None, None));
        assert!(f.matches("sb.scorecardresearch.com", Some("scorecard research"), None));
        assert!(f.matches("x.example", None, Some("Advertising")));
        assert!(!f.matches("x.example", Some("Example Org"), Some("cdn")));
        assert_eq!(
            rs.presence,
            PresenceConfig {
                away_delay: 300,
                probe_interval: 20
            }
        );
    }

    /// Each bad case must name the section, the option and the value.
    #[test]
    fn invalid_configuration_names_section_option_and_value() {
        let dev = "config device 'cam'\n\toption mac '02:00:5e:00:53:10'\n";
        let phone =
            "config device 'ph'\n\toption mac '02:00:5e:00:53:21'\n\toption household '1'\n";
        // (config, section, option, value, message part)
        type Case = (
            String,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "config device 'cam'\n\toption mac '02:00:5e:00:53'\n".into(),
                "device 'cam'",
                Some("mac"),
                Some("02:00:5e:00:53"),
                "not a MAC",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\tlist schedule 'mon-fri 25:00-07:00'\n"
                ),
                "rule 'r'",
                Some("schedule"),
                Some("mon-fri 25:00-07:00"),
                "hour 25",
            ),
            (
                format!(
                    "{dev}config rule\n\toption device 'cam'\n\tlist schedule ', 21:00-07:00'\n"
                ),
                "@rule[0]",
                Some("schedule"),
                Some(", 21:00-07:00"),
                "empty day set",
            ),
            (
                format!("{dev}config rule 'r'\n\toption device 'kitchen'\n\toption block '1'\n"),
                "rule 'r'",
                Some("device"),
                Some("kitchen"),
                "no device section",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\toption block '1'\n\tlist schedule 'daily 21:00-07:00'\n"
                ),
                "rule 'r'",
                Some("schedule"),
                Some("daily 21:00-07:00"),
                "contradicts block",
            ),
            (
                format!("{dev}config rule 'r'\n\toption device 'cam'\n\toption block 'maybe'\n"),
                "rule 'r'",
                Some("block"),
                Some("maybe"),
                "boolean",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\toption pause_until '2026-11-26T25:00'\n"
                ),
                "rule 'r'",
                Some("pause_until"),
                Some("2026-11-26T25:00"),
                "hour 25",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\toption pause_until '2026-02-30T07:00'\n"
                ),
                "rule 'r'",
                Some("pause_until"),
                Some("2026-02-30T07:00"),
                "not a calendar date",
            ),
            (
                format!("{dev}config rule 'r'\n\toption device 'cam'\n\toption away_mode '1'\n"),
                "rule 'r'",
                Some("away_mode"),
                Some("1"),
                "no device has household",
            ),
            (
                format!("{phone}config rule 'r'\n\toption device 'ph'\n\toption away_mode '1'\n"),
                "rule 'r'",
                Some("away_mode"),
                Some("1"),
                "itself a household device",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\toption shedule 'daily 21:00-07:00'\n"
                ),
                "rule 'r'",
                Some("shedule"),
                Some("daily 21:00-07:00"),
                "unknown option",
            ),
            (
                format!(
                    "{dev}config rule 'r'\n\toption device 'cam'\n\tlist block_domain 'not a domain'\n"
                ),
                "rule 'r'",
                Some("block_domain"),
                Some("not a domain"),
                "domain name",
            ),
            (
                format!("{dev}config device 'cam2'\n\toption mac '02-00-5E-00-53-10'\n"),
                "device 'cam2'",
                Some("mac"),
                Some("02-00-5E-00-53-10"),
                "same MAC",
            ),
            (
                "config presence 'presence'\n\toption away_delay '5'\n".into(),
                "presence 'presence'",
                Some("away_delay"),
                Some("5"),
                "whole seconds",
            ),
            (
                format!("{dev}config rule 'r'\n\toption device 'cam'\n"),
                "rule 'r'",
                None,
                None,
                "blocks nothing",
            ),
        ];
        for (text, section, option, value, needle) in cases {
            let errs = RuleSet::parse(&text).expect_err(&text);
            let e = errs
                .0
                .iter()
                .find(|e| e.message.contains(needle))
                .unwrap_or_else(|| panic!("{text}: no error containing {needle:?} in {errs}"));
            assert_eq!(e.section, section, "{e}");
            assert_eq!(e.option.as_deref(), option, "{e}");
            assert_eq!(e.value.as_deref(), value, "{e}");
            assert!(e.line >= 1);
            let shown = e.to_string();
            assert!(shown.contains(section), "{shown}");
            if let Some(v) = value {
                assert!(shown.contains(v), "{shown}");
            }
        }
    }

    #[test]
    fn syntax_errors_come_through_with_the_line() {
        let e = RuleSet::parse("config rule\n\toption device 'cam\n").unwrap_err();
        assert_eq!(e.0[0].line, 2);
        assert!(e.to_string().contains("unterminated"));
    }

    #[test]
    fn pause_until_accepts_unix_and_local_forms() {
        assert_eq!(
            parse_pause("1800000000"),
            Ok(PauseUntil::Unix(1_800_000_000))
        );
        assert!(matches!(
            parse_pause("2026-11-26 07:00"),
            Ok(PauseUntil::Local { .. })
        ));
        assert!(matches!(
            parse_pause("2026-11-26T07:00:00"),
            Ok(PauseUntil::Local { .. })
        ));
        for bad in [
            "",
            "tomorrow",
            "2026-11-26",
            "26.11.2026 07:00",
            "2026-11-26T7",
            "99999999999999999999",
        ] {
            assert!(parse_pause(bad).is_err(), "{bad}");
        }
    }
}
