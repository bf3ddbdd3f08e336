//! A frame as the dissectors receive it, and MAC addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which way a frame crossed the LAN port it was seen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent by the device (TC ingress on its port).
    Up,
    /// Delivered to the device (TC egress on its port).
    Down,
    /// From a capture file: the direction is worked out from the addresses.
    Unknown,
}

/// One frame, from its Ethernet header on (possibly truncated).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Wall-clock time the frame was seen, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    pub direction: Direction,
    pub data: &'a [u8],
}

/// Source and destination MAC of an Ethernet frame.
pub fn macs(data: &[u8]) -> Option<(Mac, Mac)> {
    let dst: [u8; 6] = data.get(0..6)?.try_into().ok()?;
    let src: [u8; 6] = data.get(6..12)?.try_into().ok()?;
    Some((Mac(src), Mac(dst)))
}

/// An Ethernet MAC address, shown and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Broadcast or multicast (the I/G bit).
    pub fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Locally administered (the U/L bit): randomised "private" addresses
    /// of phones and laptops carry it, so the OUI means nothing.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacParseError(pub String);

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a MAC address (expected six hex pairs like 02:00:5e:10:00:01)",
            self.0
        )
    }
}

impl std::error::Error for MacParseError {}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and `aabbccddeeff`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separated = hex.len() != s.len();
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        if separated && s.len() != 17 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let m: Mac = "02:00:5E:10:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:01");
        assert_eq!("02-00-5e-10-00-01".parse::<Mac>().unwrap(), m);
        assert_eq!("02005e100001".parse::<Mac>().unwrap(), m);
        assert!(m.is_local());
        assert!(!m.is_group());
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:0g",
            "0200:5e:10:00:01",
            "zz",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
