//! MAC address → vendor, from the compact IEEE-registry subset in
//! `data/identify/oui.toml` (see the file for why it is a subset), and
//! detection of locally administered (randomised) addresses.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::Kind;
use super::rules::{OuiVendor, knowledge};
use crate::dissect::Mac;

/// What the address says about its maker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacVendor<'a> {
    /// A registered block of this vendor.
    Vendor {
        name: &'a str,
        /// A Wi-Fi module/chipset maker: the product's brand is someone else.
        chip: bool,
        kind: Option<Kind>,
    },
    /// Locally administered: randomised "private" addresses of phones,
    /// tablets and laptops (or virtual machines). The prefix means nothing.
    Randomised,
    /// Not in our table.
    Unknown,
}

struct Table {
    /// 24-, 28- and 36-bit prefixes as integers, with their bit length.
    blocks: HashMap<(u8, u64), usize>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut blocks = HashMap::new();
        for (i, v) in knowledge().oui.vendor.iter().enumerate() {
            for p in &v.prefixes {
                if let Some(key) = prefix_key(p) {
                    blocks.insert(key, i);
                } else {
                    log::error!("data/identify/oui.toml: bad prefix {p:?} for {}", v.name);
                }
            }
        }
        Table { blocks }
    })
}

/// `"240AC4"` → (24, 0x240ac4); 7 and 9 hex digits for MA-M/MA-S.
fn prefix_key(p: &str) -> Option<(u8, u64)> {
    if !matches!(p.len(), 6 | 7 | 9) {
        return None;
    }
    let v = u64::from_str_radix(p, 16).ok()?;
    Some(((p.len() * 4) as u8, v))
}

fn mac_bits(mac: Mac) -> u64 {
    mac.0.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// Looks up the vendor of `mac`: the longest registered block wins.
pub fn lookup(mac: Mac) -> MacVendor<'static> {
    if mac.is_local() {
        return MacVendor::Randomised;
    }
    let t = table();
    let bits = mac_bits(mac);
    for len in [36u8, 28, 24] {
        if let Some(&i) = t.blocks.get(&(len, bits >> (48 - len))) {
            let v: &OuiVendor = &knowledge().oui.vendor[i];
            return MacVendor::Vendor {
                name: &v.name,
                chip: v.chip,
                kind: v.kind,
            };
        }
    }
    MacVendor::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn finds_registered_blocks() {
        // 24:0A:C4 is an Espressif MA-L block (ESP32 modules).
        assert_eq!(
            lookup(mac("24:0a:c4:12:34:56")),
            MacVendor::Vendor {
                name: "Espressif",
                chip: true,
                kind: None
            }
        );
        // B8:27:EB: Raspberry Pi Foundation.
        assert!(matches!(
            lookup(mac("b8:27:eb:00:00:01")),
            MacVendor::Vendor {
                name: "Raspberry Pi",
                ..
            }
        ));
        // 00:0E:58: Sonos.
        assert!(matches!(
            lookup(mac("00:0e:58:aa:bb:cc")),
            MacVendor::Vendor {
                name: "Sonos",
                kind: Some(Kind::Speaker),
                ..
            }
        ));
    }

    #[test]
    fn longer_blocks_win_and_only_inside_them() {
        // 8C:1F:64:79:D is a Murata MA-S block inside the IEEE MA-S parent range.
        assert!(matches!(
            lookup(mac("8c:1f:64:79:d0:01")),
            MacVendor::Vendor { name: "Murata", .. }
        ));
        assert_eq!(lookup(mac("8c:1f:64:79:e0:01")), MacVendor::Unknown);
    }

    #[test]
    fn randomised_addresses_say_so() {
        // A locally administered address that would otherwise look like Apple's.
        assert_eq!(lookup(mac("da:a1:19:00:00:01")), MacVendor::Randomised);
        assert_eq!(lookup(mac("02:00:5e:10:00:01")), MacVendor::Randomised);
        assert_eq!(lookup(mac("00:00:5e:00:53:01")), MacVendor::Unknown);
    }

    #[test]
    fn every_prefix_is_well_formed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for v in &knowledge().oui.vendor {
            assert!(!v.prefixes.is_empty(), "{}", v.name);
            for p in &v.prefixes {
                let key = prefix_key(p).unwrap_or_else(|| panic!("{p}"));
                assert!(seen.insert(key), "duplicate {p}");
                // Registered blocks are universally administered unicast.
                let first = (key.1 >> (key.0 - 8)) as u8;
                assert_eq!(first & 0x03, 0, "{p} of {}", v.name);
            }
        }
    }
}
