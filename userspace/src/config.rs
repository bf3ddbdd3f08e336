//! The daemon's settings: the `config iot-inspector 'main'` section of the
//! UCI file (`/etc/config/iot-inspector` on OpenWrt, any path elsewhere),
//! overridden by command-line flags.
//!
//! Invalid values are rejected with the section, option and value named; the
//! caller keeps running with the last good configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::explain::lists::{ListFormat, ListSpec, valid_list_name};
use crate::explain::{Category, list_updates::ListsConfig};
use crate::store::Retention;
use crate::time::parse_duration;
use crate::uci;

pub const DEFAULT_CONFIG: &str = "/etc/config/iot-inspector";
pub const DEFAULT_SOCKET: &str = "/var/run/iot-inspector.sock";
pub const DEFAULT_DATABASE: &str = "/tmp/iot-inspector/iot-inspector.redb";
pub const DEFAULT_SALT: &str = "/etc/iot-inspector.salt";
pub const DEFAULT_BPF_OBJECT: &str = "/usr/lib/iot-inspector/iot-inspector.bpf.o";
/// Where the last good copies of the owner's lists are kept: on flash, so
/// they apply at once after a reboot, before the WAN is up. They are only
/// rewritten when a list's content changed.
pub const DEFAULT_LISTS_DIR: &str = "/etc/iot-inspector/lists";
/// Shortest download interval accepted (short ones are for tests).
pub const MIN_LISTS_INTERVAL_SECS: u64 = 5;

/// Settings of the running daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Bridges (their member ports are followed) or plain interfaces.
    pub lan: Vec<String>,
    pub window_secs: u64,
    pub database: PathBuf,
    pub socket: PathBuf,
    pub bpf_object: PathBuf,
    pub pin_dir: PathBuf,
    pub flow_table_size: u32,
    /// Flows idle this long are removed from the kernel table.
    pub idle_secs: u64,
    pub retention: Retention,
    /// Standalone dashboard address (`None` = off).
    pub dashboard: Option<SocketAddr>,
    /// Token the dashboard requires on non-loopback addresses.
    pub token: Option<String>,
    pub log_level: String,
    /// The per-installation salt that anonymises exports (kept on flash:
    /// the same MAC must hash the same after a reboot).
    pub salt_file: PathBuf,
    /// Donation of the anonymised export (opt-in): the HTTPS endpoint,
    /// how often, and where the record of what was sent is kept.
    pub donate_url: Option<String>,
    pub donate_interval_secs: u64,
    pub donate_record: PathBuf,
    /// Tests only: rules read "now" (unix seconds) from this file instead of
    /// the system clock, so schedules can be stepped through.
    pub clock_file: Option<PathBuf>,
    /// The owner's lists (`config list` sections): off unless
    /// `option lists_enabled '1'` in the main section.
    pub lists_enabled: bool,
    pub lists_interval_secs: u64,
    pub lists_dir: PathBuf,
    pub lists: Vec<ListSpec>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lan: vec!["br-lan".into()],
            window_secs: 5,
            database: DEFAULT_DATABASE.into(),
            socket: DEFAULT_SOCKET.into(),
            bpf_object: DEFAULT_BPF_OBJECT.into(),
            pin_dir: crate::datapath::DEFAULT_PIN_DIR.into(),
            flow_table_size: iot_inspector_common::DEFAULT_FLOW_ENTRIES,
            idle_secs: 120,
            retention: Retention::default(),
            dashboard: None,
            token: None,
            log_level: "info".into(),
            clock_file: None,
            salt_file: DEFAULT_SALT.into(),
            donate_url: None,
            donate_interval_secs: 86400,
            donate_record: "/etc/iot-inspector.donations".into(),
            lists_enabled: false,
            lists_interval_secs: 86400,
            lists_dir: DEFAULT_LISTS_DIR.into(),
            lists: Vec::new(),
        }
    }
}

/// A bad option, named the way the owner wrote it.
fn bad(section: &str, option: &str, value: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("config section '{section}', option '{option}' = '{value}': {why}")
}

impl Settings {
    /// Reads the UCI file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let sections = uci::parse(&text).with_context(|| format!("in {}", path.display()))?;
        Settings::from_sections(&sections).with_context(|| format!("in {}", path.display()))
    }

    /// Builds settings from the `iot-inspector` section (named `main`, or the
    /// first of its type).
    pub fn from_sections(sections: &[uci::Section]) -> Result<Settings> {
        let mut s = Settings {
            lists: lists_of(sections)?,
            ..Settings::default()
        };
        let Some(main) = sections
            .iter()
            .find(|x| x.kind == "iot-inspector" && x.name.as_deref() == Some("main"))
            .or_else(|| sections.iter().find(|x| x.kind == "iot-inspector"))
        else {
            return Ok(s);
        };
        let name = main.name.clone().unwrap_or_else(|| "iot-inspector".into());
        let n = name.as_str();
        let lan = main.list("lan");
        if !lan.is_empty() {
            for l in &lan {
                if l.is_empty()
                    || l.len() > 15
                    || l.contains('/')
                    || l.contains(char::is_whitespace)
                {
                    return Err(bad(n, "lan", l, "not an interface name"));
                }
            }
            s.lan = lan.iter().map(|x| x.to_string()).collect();
        }
        if let Some(v) = main.get("window") {
            let secs = secs_of(n, "window", v)?;
            if !(1..=60).contains(&secs) {
                return Err(bad(n, "window", v, "must be between 1 and 60 seconds"));
            }
            s.window_secs = secs;
        }
        if let Some(v) = main.get("database") {
            s.database = abs_path(n, "database", v)?;
        }
        if let Some(v) = main.get("socket") {
            s.socket = abs_path(n, "socket", v)?;
        }
        if let Some(v) = main.get("bpf_object") {
            s.bpf_object = abs_path(n, "bpf_object", v)?;
        }
        if let Some(v) = main.get("salt_file") {
            s.salt_file = abs_path(n, "salt_file", v)?;
        }
        if let Some(v) = main.get("donate_url")
            && !v.is_empty()
        {
            if !v.starts_with("https://") {
                return Err(bad(n, "donate_url", v, "must be an https:// address"));
            }
            s.donate_url = Some(v.to_string());
        }
        if let Some(v) = main.get("donate_interval") {
            let secs = secs_of(n, "donate_interval", v)?;
            if secs < 3600 {
                return Err(bad(n, "donate_interval", v, "must be at least 1h"));
            }
            s.donate_interval_secs = secs;
        }
        if let Some(v) = main.get("donate_record") {
            s.donate_record = abs_path(n, "donate_record", v)?;
        }
        if let Some(v) = main.get("pin_dir") {
            s.pin_dir = abs_path(n, "pin_dir", v)?;
        }
        if let Some(v) = main.get("flow_table_size") {
            let size: u32 = v
                .parse()
                .map_err(|_| bad(n, "flow_table_size", v, "not a number"))?;
            if !(1024..=1 << 22).contains(&size) {
                return Err(bad(
                    n,
                    "flow_table_size",
                    v,
                    "must be between 1024 and 4194304",
                ));
            }
            s.flow_table_size = size;
        }
        if let Some(v) = main.get("idle_timeout") {
            s.idle_secs = secs_of(n, "idle_timeout", v)?.max(10);
        }
        for (opt, slot, min) in [
            ("retention_raw", &mut s.retention.raw_secs, 120),
            ("retention_minute", &mut s.retention.minute_secs, 3600),
            ("retention_hour", &mut s.retention.hour_secs, 86400),
        ] {
            if let Some(v) = main.get(opt) {
                let secs = secs_of(n, opt, v)?;
                if secs < min {
                    return Err(bad(n, opt, v, format!("must be at least {min} seconds")));
                }
                *slot = secs;
            }
        }
        if let Some(v) = main.get("dashboard") {
            s.dashboard = match v {
                "" | "0" | "off" => None,
                _ => Some(v.parse().map_err(|_| {
                    bad(
                        n,
                        "dashboard",
                        v,
                        "not an address:port (e.g. 127.0.0.1:8088)",
                    )
                })?),
            };
        }
        if let Some(v) = main.get("token") {
            s.token = (!v.is_empty()).then(|| v.to_string());
        }
        if let Some(v) = main.get("log_level") {
            if !matches!(v, "error" | "warn" | "info" | "debug" | "trace") {
                return Err(bad(
                    n,
                    "log_level",
                    v,
                    "use error, warn, info, debug or trace",
                ));
            }
            s.log_level = v.to_string();
        }
        if let Some(v) = main.get("lists_enabled") {
            s.lists_enabled = bool_of(n, "lists_enabled", v)?;
        }
        if let Some(v) = main.get("lists_interval") {
            let secs = secs_of(n, "lists_interval", v)?;
            if secs < MIN_LISTS_INTERVAL_SECS {
                return Err(bad(
                    n,
                    "lists_interval",
                    v,
                    format!("must be at least {MIN_LISTS_INTERVAL_SECS} seconds (e.g. 24h)"),
                ));
            }
            s.lists_interval_secs = secs;
        }
        if let Some(v) = main.get("lists_dir") {
            s.lists_dir = abs_path(n, "lists_dir", v)?;
        }
        s.validate()?;
        Ok(s)
    }

    /// What the list updates need to know.
    pub fn lists_config(&self) -> ListsConfig {
        ListsConfig {
            enabled: self.lists_enabled,
            interval: std::time::Duration::from_secs(self.lists_interval_secs),
            dir: self.lists_dir.clone(),
            lists: self.lists.clone(),
        }
    }

    /// Checks combinations of options.
    pub fn validate(&self) -> Result<()> {
        if let Some(addr) = self.dashboard
            && !addr.ip().is_loopback()
            && self.token.is_none()
        {
            bail!(
                "config option 'dashboard' = '{addr}' is not a loopback address, so option 'token' must be set"
            );
        }
        Ok(())
    }
}

/// The owner's lists: one `config list` section each, as
///
/// ```text
/// config list 'tv_ads'
///     option url 'https://lists.example/tv-ads.txt'
///     option format 'hosts'             # hosts, domains or json
///     option category 'advertising'     # hosts and domains lists only
///     option enabled '1'                # 0 keeps it configured but unused
/// ```
///
/// The list's name is `option name`, else the section's name (UCI section
/// names are already letters, digits and `_`); it names the list in the
/// explanations and its saved copy. Disabled sections are skipped but still
/// checked, so a typo is reported when it is written, not when enabled.
fn lists_of(sections: &[uci::Section]) -> Result<Vec<ListSpec>> {
    let mut out: Vec<ListSpec> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, sec) in sections.iter().filter(|x| x.kind == "list").enumerate() {
        // How `uci show` names an anonymous section.
        let label = sec.name.clone().unwrap_or_else(|| format!("@list[{i}]"));
        let n = label.as_str();
        let name = match (sec.get("name"), &sec.name) {
            (Some(v), _) => {
                if !valid_list_name(v) {
                    return Err(bad(
                        n,
                        "name",
                        v,
                        "use letters, digits, - and _ (at most 64)",
                    ));
                }
                v.to_string()
            }
            (None, Some(section_name)) if valid_list_name(section_name) => section_name.clone(),
            _ => return Err(bad(n, "name", "", "a list needs a name (option name)")),
        };
        let url = sec.get("url").unwrap_or("");
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() > 2048
            || url.contains(|c: char| c.is_whitespace() || c.is_control())
            || url
                .parse::<hyper::Uri>()
                .map(|u| u.host().is_none())
                .unwrap_or(true)
        {
            return Err(bad(n, "url", url, "must be an http:// or https:// address"));
        }
        let format_v = sec.get("format").unwrap_or("");
        let format = match format_v {
            "hosts" => ListFormat::Hosts,
            "domains" => ListFormat::Domains,
            "json" => ListFormat::Json,
            _ => return Err(bad(n, "format", format_v, "use hosts, domains or json")),
        };
        let category = match sec.get("category") {
            None | Some("") => Category::Other,
            Some(v) => {
                serde_json::from_value(serde_json::Value::String(v.to_string())).map_err(|_| {
                    let names: Vec<String> = Category::ALL
                        .iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect();
                    bad(n, "category", v, format!("use one of {}", names.join(", ")))
                })?
            }
        };
        let enabled = match sec.get("enabled") {
            Some(v) => bool_of(n, "enabled", v)?,
            None => true,
        };
        if names.contains(&name) {
            return Err(bad(n, "name", &name, "another list has this name"));
        }
        names.push(name.clone());
        if enabled {
            out.push(ListSpec {
                name,
                url: url.to_string(),
                format,
                category,
            });
        }
    }
    Ok(out)
}

/// UCI booleans, as libuci's users read them.
fn bool_of(section: &str, option: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "on" | "true" | "yes" | "enabled" => Ok(true),
        "0" | "off" | "false" | "no" | "disabled" => Ok(false),
        _ => Err(bad(section, option, v, "use 1 or 0")),
    }
}

fn secs_of(section: &str, option: &str, v: &str) -> Result<u64> {
    parse_duration(v)
        .map(|d| d.as_secs())
        .map_err(|e| bad(section, option, v, e))
}

fn abs_path(section: &str, option: &str, v: &str) -> Result<PathBuf> {
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(bad(section, option, v, "must be an absolute path"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings> {
        Settings::from_sections(&uci::parse(text).unwrap())
    }

    #[test]
    fn defaults_and_overrides() {
        let s = settings("").unwrap();
        assert_eq!(s, Settings::default());
        let s = settings(
            "config iot-inspector 'main'\n\tlist lan 'br-lan'\n\tlist lan 'wlan1'\n\toption window '10'\n\toption retention_raw '2h'\n",
        )
        .unwrap();
        assert_eq!(s.lan, vec!["br-lan", "wlan1"]);
        assert_eq!(s.window_secs, 10);
        assert_eq!(s.retention.raw_secs, 7200);
    }

    #[test]
    fn errors_name_section_option_and_value() {
        let e = settings("config iot-inspector 'main'\n\toption window '25:00'\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'main'") && e.contains("'window'") && e.contains("25:00"),
            "{e}"
        );
        let e = settings("config iot-inspector 'main'\n\toption flow_table_size 'lots'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("flow_table_size") && e.contains("lots"), "{e}");
        let e = settings("config iot-inspector 'main'\n\toption dashboard '0.0.0.0:8088'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("token"), "{e}");
        assert!(
            settings("config iot-inspector 'main'\n\toption database 'relative.redb'\n").is_err()
        );
    }

    const LISTS: &str = "config iot-inspector 'main'
	option lists_enabled '1'
	option lists_interval '12h'
	option lists_dir '/tmp/lists'
config list 'tv_ads'
	option url 'https://lists.example/tv-ads.txt'
	option format 'hosts'
	option category 'advertising'
config list
	option name 'gadget-co'
	option url 'http://198.51.100.7:8080/gadgets.json'
	option format 'json'
config list 'old'
	option enabled '0'
	option url 'http://198.51.100.7/old.txt'
	option format 'domains'
";

    #[test]
    fn lists_are_read_from_their_sections() {
        let s = settings("").unwrap();
        assert!(!s.lists_enabled, "lists are off by default");
        assert!(s.lists.is_empty());
        let s = settings(LISTS).unwrap();
        assert!(s.lists_enabled);
        assert_eq!(s.lists_interval_secs, 12 * 3600);
        assert_eq!(s.lists_dir, PathBuf::from("/tmp/lists"));
        assert_eq!(
            s.lists,
            vec![
                ListSpec {
                    name: "tv_ads".into(),
                    url: "https://lists.example/tv-ads.txt".into(),
                    format: ListFormat::Hosts,
                    category: Category::Advertising,
                },
                ListSpec {
                    name: "gadget-co".into(),
                    url: "http://198.51.100.7:8080/gadgets.json".into(),
                    format: ListFormat::Json,
                    category: Category::Other,
                },
            ]
        );
        let c = s.lists_config();
        assert_eq!(c.interval.as_secs(), 12 * 3600);
        assert_eq!(c.lists.len(), 2);
    }

    #[test]
    fn bad_list_options_name_section_option_and_value() {
        let cases = [
            (
                "option lists_interval '12h'",
                "lists_interval '2s'",
                "'main'",
                "2s",
            ),
            (
                "option lists_enabled '1'",
                "lists_enabled 'maybe'",
                "'main'",
                "maybe",
            ),
            ("option format 'hosts'", "format 'csv'", "'tv_ads'", "csv"),
            (
                "option category 'advertising'",
                "category 'spying'",
                "'tv_ads'",
                "spying",
            ),
            (
                "option url 'https://lists.example/tv-ads.txt'",
                "url 'ftp://lists.example/x'",
                "'tv_ads'",
                "ftp://",
            ),
            (
                "option name 'gadget-co'",
                "name '../etc'",
                "'@list[1]'",
                "../etc",
            ),
            (
                "option name 'gadget-co'",
                "name 'tv_ads'",
                "'@list[1]'",
                "another list",
            ),
        ];
        for (good, bad_opt, section, value) in cases {
            let (key, _) = bad_opt.split_once(' ').unwrap();
            let text = LISTS.replacen(good, &format!("option {bad_opt}"), 1);
            assert_ne!(text, LISTS, "{good}");
            let e = settings(&text).unwrap_err().to_string();
            assert!(
                e.contains(section) && e.contains(&format!("'{key}'")) && e.contains(value),
                "{bad_opt}: {e}"
            );
        }
        // A list without a URL, or without a name at all.
        let e = settings("config list 'x'\n\toption format 'hosts'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'") && e.contains("'url'"), "{e}");
        let e = settings(
            "config list\n\toption url 'http://198.51.100.7/a'\n\toption format 'domains'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("@list[0]") && e.contains("'name'"), "{e}");
    }
}
