//! From cumulative kernel counters to per-window deltas.
//!
//! The kernel only ever adds to a flow's counters. Each window we read every
//! flow and subtract what we had already counted (the flow's *cursor*). The
//! cursor also remembers the entry's first-seen time, which tells a
//! continuing entry from a new one under the same key (after an LRU eviction
//! or our own idle deletion), so:
//! - no byte is counted twice: a restart reloads the cursors persisted with
//!   the last stored window and continues from them;
//! - no byte is lost across idle deletion: the entry is removed with an
//!   atomic lookup-and-delete and its last increment is counted;
//! - a reset (new entry, smaller counters) starts from zero, not from a
//!   negative delta.

use std::collections::HashMap;

use iot_inspector_common::FlowKey;
use serde::{Deserialize, Serialize};

use crate::datapath::FlowReading;

/// What has been counted of one map entry so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

impl Cursor {
    fn of(r: &FlowReading) -> Self {
        Cursor {
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            packets_up: r.packets_up,
            packets_down: r.packets_down,
            first_seen_ns: r.first_seen_ns,
            last_seen_ns: r.last_seen_ns,
        }
    }

    /// Fixed-width encoding for the store (6 little-endian u64).
    pub fn to_bytes(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        for (i, v) in [
            self.bytes_up,
            self.bytes_down,
            self.packets_up,
            self.packets_down,
            self.first_seen_ns,
            self.last_seen_ns,
        ]
        .iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 48 {
            return None;
        }
        let v = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Some(Cursor {
            bytes_up: v(0),
            bytes_down: v(1),
            packets_up: v(2),
            packets_down: v(3),
            first_seen_ns: v(4),
            last_seen_ns: v(5),
        })
    }
}

/// Bytes and packets of one flow in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowDelta {
    pub key: FlowKey,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    pub tcp_flags: u8,
    pub last_seen_ns: u64,
}

impl FlowDelta {
    pub fn is_zero(&self) -> bool {
        self.bytes_up == 0 && self.bytes_down == 0 && self.packets_up == 0 && self.packets_down == 0
    }
}

/// Key bytes as stored (the `#[repr(C)]` layout).
pub fn key_bytes(key: &FlowKey) -> [u8; FlowKey::SIZE] {
    // SAFETY: FlowKey is plain #[repr(C)] data without padding (checked by a test).
    unsafe { std::mem::transmute_copy(key) }
}

pub fn key_from_bytes(b: &[u8]) -> Option<FlowKey> {
    if b.len() != FlowKey::SIZE {
        return None;
    }
    // SAFETY: any bytes form a valid FlowKey.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) })
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    cursor: Cursor,
    /// Round in which the kernel last showed this entry.
    seen_round: u64,
    /// Changed since it was last persisted.
    dirty: bool,
}

/// Cursors for every live flow, and the bookkeeping of one read round.
#[derive(Debug, Default)]
pub struct Accountant {
    entries: HashMap<FlowKey, Entry>,
    round: u64,
    /// Keys whose cursor was dropped since the last persist.
    dropped: Vec<FlowKey>,
    /// Entries that vanished without us deleting them (LRU evictions).
    pub evicted_total: u64,
}

impl Accountant {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores cursors persisted by an earlier run.
    pub fn restore(&mut self, cursors: impl IntoIterator<Item = (FlowKey, Cursor)>) {
        for (key, cursor) in cursors {
            self.entries.insert(
                key,
                Entry {
                    cursor,
                    seen_round: 0,
                    dirty: false,
                },
            );
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts a read round.
    pub fn begin_round(&mut self) {
        self.round += 1;
    }

    /// Accounts one flow as read this round; returns what is new since the
    /// last read, if anything.
    pub fn observe(&mut self, key: FlowKey, r: FlowReading) -> Option<FlowDelta> {
        let round = self.round;
        let fresh = Cursor::of(&r);
        let delta = match self.entries.get_mut(&key) {
            Some(e) => {
                let prev = e.cursor;
                e.seen_round = round;
                let same_entry = prev.first_seen_ns == r.first_seen_ns
                    && r.bytes_up >= prev.bytes_up
                    && r.bytes_down >= prev.bytes_down
                    && r.packets_up >= prev.packets_up
                    && r.packets_down >= prev.packets_down;
                if prev != fresh {
                    e.cursor = fresh;
                    e.dirty = true;
                }
                if same_entry {
                    diff(key, &r, &prev)
                } else {
                    diff(key, &r, &Cursor::default())
                }
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        cursor: fresh,
                        seen_round: round,
                        dirty: true,
                    },
                );
                diff(key, &r, &Cursor::default())
            }
        };
        (!delta.is_zero()).then_some(delta)
    }

    /// Ends a read round: cursors of entries the kernel no longer has were
    /// evicted (their bytes since the last read are lost, and counted as
    /// pressure). Returns how many vanished.
    pub fn end_round(&mut self) -> usize {
        let round = self.round;
        let before = self.entries.len();
        let dropped = &mut self.dropped;
        self.entries.retain(|k, e| {
            let keep = e.seen_round == round;
            if !keep {
                dropped.push(*k);
            }
            keep
        });
        let vanished = before - self.entries.len();
        self.evicted_total += vanished as u64;
        vanished
    }

    /// Flows whose last packet is older than `idle_before_ns` (boot clock).
    pub fn idle(&self, idle_before_ns: u64) -> Vec<FlowKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.cursor.last_seen_ns < idle_before_ns)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Accounts a flow we removed from the kernel: its final counters give
    /// the last delta, and its cursor is dropped.
    pub fn removed(&mut self, key: FlowKey, last: Option<FlowReading>) -> Option<FlowDelta> {
        let entry = self.entries.remove(&key)?;
        self.dropped.push(key);
        let r = last?;
        let prev = entry.cursor;
        let delta = if prev.first_seen_ns == r.first_seen_ns && r.bytes_up >= prev.bytes_up {
            diff(key, &r, &prev)
        } else {
            diff(key, &r, &Cursor::default())
        };
        (!delta.is_zero()).then_some(delta)
    }

    /// Cursors changed and dropped since the last call, for persisting
    /// together with the window they belong to.
    pub fn take_changes(&mut self) -> (Vec<(FlowKey, Cursor)>, Vec<FlowKey>) {
        let mut changed = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            if e.dirty {
                e.dirty = false;
                changed.push((*k, e.cursor));
            }
        }
        (changed, std::mem::take(&mut self.dropped))
    }

    /// Every cursor, as fixed-width records (key then cursor), to be stored
    /// with the window it belongs to. One value per window is much cheaper
    /// for the store than one insert per active flow.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * SNAPSHOT_RECORD);
        for (k, e) in &self.entries {
            out.extend_from_slice(&key_bytes(k));
            out.extend_from_slice(&e.cursor.to_bytes());
        }
        out
    }

    /// Approximate heap use, for the status page and the benchmark.
    pub fn approx_memory_bytes(&self) -> usize {
        self.entries.capacity() * (size_of::<FlowKey>() + size_of::<Entry>() + 8)
    }
}

/// Bytes of one record of [`Accountant::snapshot`].
pub const SNAPSHOT_RECORD: usize = FlowKey::SIZE + 48;

/// Reads an [`Accountant::snapshot`] back.
pub fn parse_snapshot(b: &[u8]) -> Vec<(FlowKey, Cursor)> {
    b.chunks_exact(SNAPSHOT_RECORD)
        .filter_map(|r| {
            Some((
                key_from_bytes(&r[..FlowKey::SIZE])?,
                Cursor::from_bytes(&r[FlowKey::SIZE..])?,
            ))
        })
        .collect()
}

fn diff(key: FlowKey, r: &FlowReading, prev: &Cursor) -> FlowDelta {
    FlowDelta {
        key,
        bytes_up: r.bytes_up - prev.bytes_up,
        bytes_down: r.bytes_down - prev.bytes_down,
        packets_up: r.packets_up - prev.packets_up,
        packets_down: r.packets_down - prev.packets_down,
        tcp_flags: r.tcp_flags,
        last_seen_ns: r.last_seen_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            device_mac: [2, 0, 0, 0, 0, 1],
            device_port: port,
            remote_port: 443,
            family: 4,
            proto: 6,
            ..FlowKey::default()
        }
    }

    fn reading(up: u64, down: u64, first: u64, last: u64) -> FlowReading {
        FlowReading {
            bytes_up: up,
            bytes_down: down,
            packets_up: up / 100,
            packets_down: down / 100,
            first_seen_ns: first,
            last_seen_ns: last,
            tcp_flags: 0x10,
        }
    }

    #[test]
    fn deltas_follow_cumulative_counters() {
        let mut a = Accountant::new();
        a.begin_round();
        let d = a.observe(key(1), reading(1000, 5000, 1, 2)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (1000, 5000));
        a.end_round();
        a.begin_round();
        let d = a.observe(key(1), reading(1500, 9000, 1, 3)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (500, 4000));
        // Nothing new: no delta.
        a.end_round();
        a.begin_round();
        assert!(a.observe(key(1), reading(1500, 9000, 1, 3)).is_none());
    }

    #[test]
    fn a_new_entry_under_the_same_key_counts_from_zero() {
        let mut a = Accountant::new();
        a.begin_round();
        a.observe(key(1), reading(1000, 1000, 1, 2));
        a.end_round();
        a.begin_round();
        // Evicted and recreated: smaller counters, later first-seen.
        let d = a.observe(key(1), reading(300, 200, 50, 60)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (300, 200));
        // Recreated with *larger* counters still counts from zero (first-seen differs).
        a.end_round();
        a.begin_round();
        let d = a.observe(key(1), reading(5000, 5000, 70, 80)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (5000, 5000));
    }

    #[test]
    fn restart_from_persisted_cursors_does_not_double_count() {
        let mut a = Accountant::new();
        a.begin_round();
        a.observe(key(1), reading(1000, 2000, 1, 2));
        a.observe(key(2), reading(10, 20, 1, 2));
        a.end_round();
        let (changed, dropped) = a.take_changes();
        assert_eq!(changed.len(), 2);
        assert!(dropped.is_empty());
        // A new process restores the cursors and reads the same, grown, map.
        let mut b = Accountant::new();
        let restored = parse_snapshot(&a.snapshot());
        assert_eq!(restored.len(), changed.len());
        b.restore(restored);
        b.begin_round();
        let d = b.observe(key(1), reading(1100, 2500, 1, 9)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (100, 500));
        assert!(b.observe(key(2), reading(10, 20, 1, 2)).is_none());
    }

    #[test]
    fn vanished_entries_are_counted_as_evictions() {
        let mut a = Accountant::new();
        a.begin_round();
        a.observe(key(1), reading(1, 1, 1, 1));
        a.observe(key(2), reading(1, 1, 1, 1));
        a.end_round();
        a.take_changes();
        a.begin_round();
        a.observe(key(1), reading(2, 2, 1, 2));
        assert_eq!(a.end_round(), 1);
        assert_eq!(a.evicted_total, 1);
        let (_, dropped) = a.take_changes();
        assert_eq!(dropped, vec![key(2)]);
    }

    #[test]
    fn idle_removal_counts_the_final_increment() {
        let mut a = Accountant::new();
        a.begin_round();
        a.observe(key(1), reading(1000, 1000, 1, 10));
        a.end_round();
        assert_eq!(a.idle(11), vec![key(1)]);
        assert!(a.idle(10).is_empty());
        // A last packet arrived between the read and the delete.
        let d = a.removed(key(1), Some(reading(1100, 1000, 1, 12))).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (100, 0));
        assert!(a.is_empty());
    }

    #[test]
    fn key_bytes_round_trip() {
        let k = key(7);
        assert_eq!(key_from_bytes(&key_bytes(&k)), Some(k));
    }
}
