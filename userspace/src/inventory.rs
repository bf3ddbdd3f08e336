//! The live table of devices on the LAN, keyed by MAC.
//!
//! Every MAC the programs key a flow by is a LAN device: the source of
//! frames entering from a port, or the destination of frames leaving to one.
//! The table is bounded; past the bound the device seen longest ago goes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::dissect::Mac;
use crate::store::DeviceRecord;

/// Devices kept in memory (a home has dozens; this bounds a MAC flood).
pub const MAX_DEVICES: usize = 2048;
/// Addresses remembered per device.
const MAX_IPS: usize = 8;
/// A device is online while seen within this many seconds.
pub const ONLINE_SECS: u64 = 120;

#[derive(Debug, Default)]
pub struct Inventory {
    devices: HashMap<Mac, DeviceRecord>,
    dirty: HashSet<Mac>,
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn restore(&mut self, records: impl IntoIterator<Item = DeviceRecord>) {
        for r in records {
            self.devices.insert(r.mac, r);
        }
    }

    fn entry(&mut self, mac: Mac, now: u64) -> &mut DeviceRecord {
        if !self.devices.contains_key(&mac)
            && self.devices.len() >= MAX_DEVICES
            && let Some(oldest) = self
                .devices
                .values()
                .min_by_key(|d| d.last_seen)
                .map(|d| d.mac)
        {
            self.devices.remove(&oldest);
            self.dirty.remove(&oldest);
        }
        self.dirty.insert(mac);
        self.devices.entry(mac).or_insert_with(|| DeviceRecord {
            mac,
            first_seen: now,
            last_seen: now,
            ..Default::default()
        })
    }

    /// A device was seen (traffic or an announcement), at an address if known.
    pub fn seen(&mut self, mac: Mac, ip: Option<IpAddr>, now: u64) {
        if mac.is_group() || mac.0 == [0; 6] {
            return;
        }
        let d = self.entry(mac, now);
        d.last_seen = d.last_seen.max(now);
        if let Some(ip) = ip.filter(usable_device_ip) {
            if let Some(pos) = d.ips.iter().position(|x| *x == ip) {
                d.ips.remove(pos);
            }
            d.ips.push(ip);
            if d.ips.len() > MAX_IPS {
                d.ips.remove(0);
            }
        }
    }

    /// Adds a window's traffic to a device's totals.
    pub fn account(&mut self, mac: Mac, up: (u64, u64), down: (u64, u64), now: u64) {
        let d = self.entry(mac, now);
        d.bytes_up += up.0;
        d.packets_up += up.1;
        d.bytes_down += down.0;
        d.packets_down += down.1;
        d.last_seen = d.last_seen.max(now);
    }

    pub fn get(&self, mac: &Mac) -> Option<&DeviceRecord> {
        self.devices.get(mac)
    }

    pub fn list(&self) -> Vec<DeviceRecord> {
        let mut v: Vec<DeviceRecord> = self.devices.values().cloned().collect();
        v.sort_by_key(|d| d.mac);
        v
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Records changed since the last call, for the store.
    pub fn take_dirty(&mut self) -> Vec<DeviceRecord> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|m| self.devices.get(&m).cloned())
            .collect()
    }
}

/// Addresses that identify a device (not unspecified, multicast or loopback).
fn usable_device_ip(ip: &IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || broadcast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_keep_recent_addresses_and_totals() {
        let mut inv = Inventory::new();
        let mac: Mac = "02:00:5e:00:53:01".parse().unwrap();
        inv.seen(mac, Some("192.0.2.10".parse().unwrap()), 100);
        inv.seen(mac, Some("0.0.0.0".parse().unwrap()), 101);
        inv.seen(mac, Some("2001:db8::10".parse().unwrap()), 102);
        inv.seen(mac, Some("192.0.2.10".parse().unwrap()), 103);
        inv.account(mac, (100, 1), (2000, 2), 104);
        let d = inv.get(&mac).unwrap();
        assert_eq!(d.ips.len(), 2);
        assert_eq!(d.ips.last().unwrap().to_string(), "192.0.2.10");
        assert_eq!((d.bytes_up, d.bytes_down), (100, 2000));
        assert_eq!((d.first_seen, d.last_seen), (100, 104));
        assert_eq!(inv.take_dirty().len(), 1);
        assert!(inv.take_dirty().is_empty());
        // Group addresses are not devices.
        inv.seen("ff:ff:ff:ff:ff:ff".parse().unwrap(), None, 1);
        assert_eq!(inv.len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut inv = Inventory::new();
        for i in 0..(MAX_DEVICES as u32 + 10) {
            let b = i.to_be_bytes();
            inv.seen(Mac([2, 0, b[0], b[1], b[2], b[3]]), None, i as u64);
        }
        assert_eq!(inv.len(), MAX_DEVICES);
        assert!(inv.get(&Mac([2, 0, 0, 0, 0, 0])).is_none());
    }
}
