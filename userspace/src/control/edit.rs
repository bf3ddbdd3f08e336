//! Changes to the owner's configuration made from the UI, the command line
//! or the API: labels, blocks, pauses, schedules, away-mode, destination
//! blocks. Every change reads the UCI file, edits its sections, checks the
//! result the way the daemon will load it, and replaces the file atomically —
//! so a bad request changes nothing and LuCI sees the same file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::config::Settings;
use crate::dissect::Mac;
use crate::rules::RuleSet;
use crate::uci::{self, Section};

/// The longest label kept (bytes).
const MAX_LABEL: usize = 128;

/// A rule as the UI sends it: schedules, away-mode and destination blocks
/// for one device.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RuleRequest {
    pub device: Mac,
    #[serde(default)]
    pub schedule: Vec<String>,
    #[serde(default)]
    pub away_mode: bool,
    /// Household devices whose presence counts for away-mode.
    #[serde(default)]
    pub household: Vec<Mac>,
    #[serde(default)]
    pub block_domain: Vec<String>,
    #[serde(default)]
    pub block_organisation: Vec<String>,
    #[serde(default)]
    pub block_category: Vec<String>,
    #[serde(default)]
    pub persist: bool,
}

fn read(path: &Path) -> Result<Vec<Section>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(uci::parse(&t).with_context(|| format!("in {}", path.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Checks and writes the sections (temp file, then rename).
fn write(path: &Path, sections: &[Section]) -> Result<()> {
    RuleSet::from_sections(sections).map_err(|e| anyhow::anyhow!("{e}"))?;
    Settings::from_sections(sections)?;
    let text = uci::write(sections);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn hex(mac: Mac) -> String {
    mac.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `device` section of a MAC, created when missing.
fn device_section(sections: &mut Vec<Section>, mac: Mac) -> &mut Section {
    let pos = sections.iter().position(|s| {
        s.kind == "device" && s.get("mac").and_then(|m| m.parse::<Mac>().ok()) == Some(mac)
    });
    match pos {
        Some(i) => &mut sections[i],
        None => {
            let mut s = Section::new("device", Some(&format!("dev_{}", hex(mac))));
            s.set("mac", mac.to_string());
            sections.push(s);
            sections.last_mut().unwrap()
        }
    }
}

fn remove_named(sections: &mut Vec<Section>, name: &str) -> bool {
    let before = sections.len();
    sections.retain(|s| s.name.as_deref() != Some(name));
    sections.len() != before
}

/// Names a device: stored as the `label` of its `device` section.
pub fn set_label(path: &Path, mac: Mac, label: &str) -> Result<()> {
    let label = label.trim();
    if label.len() > MAX_LABEL {
        bail!("a label is at most {MAX_LABEL} bytes");
    }
    if label.chars().any(|c| c.is_control()) {
        bail!("a label cannot contain control characters");
    }
    let mut sections = read(path)?;
    let s = device_section(&mut sections, mac);
    s.remove("label_confirmed");
    if label.is_empty() {
        s.remove("label");
    } else {
        s.set("label", label);
    }
    write(path, &sections)
}

/// The owner says the label is right despite the warnings: kept as
/// `option label_confirmed` (cleared when the label changes).
pub fn confirm_label(path: &Path, mac: Mac) -> Result<()> {
    let mut sections = read(path)?;
    let s = device_section(&mut sections, mac);
    if s.get("label").is_none() {
        bail!("the device has no label to confirm");
    }
    s.set("label_confirmed", "1");
    write(path, &sections)
}

/// Blocks a device now, until unblocked (or until `until`, a pause).
pub fn block(path: &Path, mac: Mac, until: Option<i64>) -> Result<()> {
    let mut sections = read(path)?;
    let name = format!("manual_{}", hex(mac));
    remove_named(&mut sections, &name);
    let mut s = Section::new("rule", Some(&name));
    s.set("device", mac.to_string());
    s.set("label", "blocked by hand");
    match until {
        Some(t) => {
            if t <= crate::time::unix_secs() as i64 {
                bail!("the pause must end in the future");
            }
            s.set("pause_until", t.to_string());
        }
        None => s.set("block", "1"),
    }
    sections.push(s);
    write(path, &sections)
}

/// Lifts a block or pause made by [`block`].
pub fn unblock(path: &Path, mac: Mac) -> Result<bool> {
    let mut sections = read(path)?;
    let removed = remove_named(&mut sections, &format!("manual_{}", hex(mac)));
    write(path, &sections)?;
    Ok(removed)
}

/// Sets (replaces) a device's schedule / away-mode / destination rule.
/// An empty request removes it.
pub fn set_rule(path: &Path, r: &RuleRequest) -> Result<String> {
    let mut sections = read(path)?;
    let name = format!("rule_{}", hex(r.device));
    remove_named(&mut sections, &name);
    for m in &r.household {
        device_section(&mut sections, *m).set("household", "1");
    }
    let empty = r.schedule.is_empty()
        && !r.away_mode
        && r.block_domain.is_empty()
        && r.block_organisation.is_empty()
        && r.block_category.is_empty();
    if !empty {
        let mut s = Section::new("rule", Some(&name));
        s.set("device", r.device.to_string());
        if !r.schedule.is_empty() {
            s.set_list("schedule", r.schedule.iter().cloned());
        }
        if r.away_mode {
            s.set("away_mode", "1");
        }
        if !r.block_domain.is_empty() {
            s.set_list("block_domain", r.block_domain.iter().cloned());
        }
        if !r.block_organisation.is_empty() {
            s.set_list("block_organisation", r.block_organisation.iter().cloned());
        }
        if !r.block_category.is_empty() {
            s.set_list("block_category", r.block_category.iter().cloned());
        }
        if r.persist {
            s.set("persist", "1");
        }
        sections.push(s);
    }
    write(path, &sections)?;
    Ok(name)
}

/// Deletes a rule section by name.
pub fn delete_rule(path: &Path, id: &str) -> Result<()> {
    let mut sections = read(path)?;
    let before = sections.len();
    sections.retain(|s| !(s.kind == "rule" && s.name.as_deref() == Some(id)));
    if sections.len() == before {
        bail!("no rule named '{id}'");
    }
    write(path, &sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn edits_round_trip_and_bad_ones_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "config iot-inspector 'main'\n\tlist lan 'br-lan'\n").unwrap();
        let cam = mac("2c:aa:8e:10:00:01");
        let phone = mac("da:a1:19:10:00:05");
        set_label(&path, cam, "Hall <camera>").unwrap();
        block(&path, cam, None).unwrap();
        let rules = RuleSet::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(rules.rules.iter().any(|r| r.device == cam && r.block));
        assert_eq!(
            rules.device(cam).unwrap().label.as_deref(),
            Some("Hall <camera>")
        );
        assert!(unblock(&path, cam).unwrap());
        let id = set_rule(
            &path,
            &RuleRequest {
                device: cam,
                schedule: vec!["mon-fri 21:00-07:00".into()],
                away_mode: true,
                household: vec![phone],
                ..Default::default()
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rules = RuleSet::parse(&text).unwrap();
        assert_eq!(rules.household(), vec![phone]);
        assert!(
            rules
                .rules
                .iter()
                .any(|r| r.id == id && r.away_mode && r.schedule.len() == 1)
        );
        // 25:00 is refused and the file stays as it was.
        let bad = set_rule(
            &path,
            &RuleRequest {
                device: cam,
                schedule: vec!["mon 25:00-07:00".into()],
                ..Default::default()
            },
        );
        assert!(bad.unwrap_err().to_string().contains("25:00"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(set_label(&path, cam, "a\u{7}b").is_err());
        delete_rule(&path, &id).unwrap();
        assert!(delete_rule(&path, &id).is_err());
    }
}
