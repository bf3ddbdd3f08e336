//! What sort of device something is.

use serde::{Deserialize, Serialize};

/// The device kinds people recognise (issue 3's list), serialised
/// snake_case (`garage_door`, `game_console`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Camera,
    Doorbell,
    Lock,
    GarageDoor,
    Plug,
    Light,
    Sensor,
    Speaker,
    Tv,
    Thermostat,
    Hub,
    Appliance,
    Health,
    Printer,
    GameConsole,
    Phone,
    Tablet,
    Computer,
    Router,
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 20] = [
        Kind::Camera,
        Kind::Doorbell,
        Kind::Lock,
        Kind::GarageDoor,
        Kind::Plug,
        Kind::Light,
        Kind::Sensor,
        Kind::Speaker,
        Kind::Tv,
        Kind::Thermostat,
        Kind::Hub,
        Kind::Appliance,
        Kind::Health,
        Kind::Printer,
        Kind::GameConsole,
        Kind::Phone,
        Kind::Tablet,
        Kind::Computer,
        Kind::Router,
        Kind::Unknown,
    ];

    /// A short name for people.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Camera => "camera",
            Kind::Doorbell => "doorbell",
            Kind::Lock => "lock",
            Kind::GarageDoor => "garage/door opener",
            Kind::Plug => "plug/switch",
            Kind::Light => "bulb/light",
            Kind::Sensor => "sensor",
            Kind::Speaker => "speaker/voice assistant",
            Kind::Tv => "TV/streamer",
            Kind::Thermostat => "thermostat",
            Kind::Hub => "hub/bridge",
            Kind::Appliance => "appliance",
            Kind::Health => "health device",
            Kind::Printer => "printer",
            Kind::GameConsole => "game console",
            Kind::Phone => "phone",
            Kind::Tablet => "tablet",
            Kind::Computer => "computer",
            Kind::Router => "router/access point",
            Kind::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_snake_case_and_labels_differ() {
        assert_eq!(
            serde_json::to_string(&Kind::GarageDoor).unwrap(),
            "\"garage_door\""
        );
        assert_eq!(
            serde_json::from_str::<Kind>("\"game_console\"").unwrap(),
            Kind::GameConsole
        );
        let mut labels: Vec<_> = Kind::ALL.iter().map(|k| k.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Kind::ALL.len());
    }
}
