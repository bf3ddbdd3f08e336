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
//!
//! Memory is what bounds the daemon at tens of thousands of flows (a router
//! has 128 MB), so one round allocates nothing in steady state:
//! - the cursors live in an [`IndexMap`] sized once for the kernel table's
//!   capacity: it never doubles (a doubling holds the old and the new table
//!   at once), and its entry vector is only touched as far as it is filled;
//! - a round's deltas are kept as (entry index, counts) in a reused vector,
//!   not as copies of the keys; entries that vanish or that we remove stay
//!   in place (so those indices hold) until the next round starts;
//! - the snapshot is written in fixed-size chunks through a caller's sink
//!   instead of one buffer of every cursor.

use std::hash::{BuildHasher, Hash};

use indexmap::IndexMap;
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
    seen_round: u32,
    /// Gone from the kernel (evicted, or removed by us): no longer counted
    /// or persisted, and dropped when the next round begins.
    dead: bool,
    /// Position in the kernel's walk of the table when last read.
    walk_pos: u32,
}

/// What is new of one entry this round. The key stays in the map (by
/// index), which keeps this at 48 bytes instead of a [`FlowDelta`]'s 96.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Hash of the caller's grouping key (see [`Accountant::sort_deltas`]).
    group: u64,
    counts: [u64; 4],
    index: u32,
}

/// Cursors for every live flow, and the deltas of the current read round.
#[derive(Debug, Default)]
pub struct Accountant {
    /// foldhash rather than the standard SipHash: the cursor lookup per flow
    /// and window was the daemon's largest cost at 50,000 flows. Seeded per
    /// process, so devices cannot aim collisions at it.
    entries: IndexMap<FlowKey, Entry, foldhash::fast::RandomState>,
    /// Entries marked dead and not dropped yet.
    dead: usize,
    round: u32,
    /// When the current round's read began (see [`Accountant::begin_round`]).
    read_at_ns: u64,
    pending: Vec<Pending>,
    /// The entry the next reading is expected to be (see
    /// [`Accountant::observe`]), and how many readings this round were not.
    next_hint: usize,
    walk_misses: usize,
    walk_count: u32,
    /// Entries that vanished without us deleting them (LRU evictions).
    pub evicted_total: u64,
}

impl Accountant {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sized for `flows` cursors (the kernel table's capacity), so that
    /// neither the cursor map nor the delta list grows while counting.
    /// Untouched capacity costs address space, not memory.
    pub fn with_capacity(flows: usize) -> Self {
        Accountant {
            entries: IndexMap::with_capacity_and_hasher(flows, Default::default()),
            pending: Vec::with_capacity(flows),
            ..Self::default()
        }
    }

    /// Restores cursors persisted by an earlier run.
    pub fn restore(&mut self, cursors: impl IntoIterator<Item = (FlowKey, Cursor)>) {
        for (key, cursor) in cursors {
            self.restore_one(key, cursor);
        }
    }

    /// Restores the cursors of one chunk of a snapshot (as written by
    /// [`Accountant::write_snapshot`]); returns how many it held.
    pub fn restore_snapshot(&mut self, chunk: &[u8]) -> usize {
        let mut n = 0;
        for (key, cursor) in snapshot_records(chunk) {
            self.restore_one(key, cursor);
            n += 1;
        }
        n
    }

    fn restore_one(&mut self, key: FlowKey, cursor: Cursor) {
        let old = self.entries.insert(
            key,
            Entry {
                cursor,
                seen_round: 0,
                dead: false,
                walk_pos: 0,
            },
        );
        if old.is_some_and(|e| e.dead) {
            self.dead -= 1;
        }
    }

    /// Live cursors (flows the kernel still had at the last read).
    pub fn len(&self) -> usize {
        self.entries.len() - self.dead
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a read round at `read_at_ns` (CLOCK_MONOTONIC, the clock of
    /// the kernel's first-seen stamps): drops the entries that died in the
    /// last one and forgets its deltas.
    ///
    /// The kernel stamps an entry only when it creates it (a clock read per
    /// packet cost more than the rest of the counting), so a flow's
    /// last-seen time is the read in which its counters grew.
    pub fn begin_round(&mut self, read_at_ns: u64) {
        self.read_at_ns = read_at_ns;
        if self.dead > 0 {
            self.entries.retain(|_, e| !e.dead);
            self.dead = 0;
        }
        // The kernel walks its table in the same order round after round
        // while the flows stay. With the cursors in that order, the next
        // reading is nearly always the next cursor: a key compare in memory
        // read in sequence, instead of a hash and two cache misses per
        // flow. Reorder (in place: no second copy of the table) when the
        // last round strayed from it.
        if self.walk_misses > 64 && self.walk_misses > self.entries.len() / 16 {
            self.entries
                .sort_unstable_by(|_, a, _, b| a.walk_pos.cmp(&b.walk_pos));
        }
        self.walk_misses = 0;
        self.walk_count = 0;
        self.next_hint = 0;
        self.pending.clear();
        self.round = self.round.wrapping_add(1);
    }

    /// Accounts one flow as read this round; returns what is new since the
    /// last read, if anything (it is also kept for [`Accountant::deltas`]).
    pub fn observe(&mut self, key: FlowKey, mut r: FlowReading) -> Option<FlowDelta> {
        let round = self.round;
        let read_at = self.read_at_ns;
        let walk_pos = self.walk_count;
        self.walk_count = self.walk_count.wrapping_add(1);
        let hinted = match self.entries.get_index(self.next_hint) {
            Some((k, _)) if *k == key => Some(self.next_hint),
            _ => {
                self.walk_misses += 1;
                self.entries.get_index_of(&key)
            }
        };
        let (index, prev) =
            match hinted.and_then(|i| self.entries.get_index_mut(i).map(|(_, e)| (i, e))) {
                Some((i, e)) => {
                    let prev = if e.dead {
                        // Removed by us earlier this round: a new incarnation.
                        self.dead -= 1;
                        e.dead = false;
                        Cursor::default()
                    } else if same_entry(&e.cursor, &r) {
                        e.cursor
                    } else {
                        Cursor::default()
                    };
                    date(&mut r, &prev, read_at);
                    e.cursor = Cursor::of(&r);
                    e.seen_round = round;
                    e.walk_pos = walk_pos;
                    (i, prev)
                }
                None => {
                    date(&mut r, &Cursor::default(), read_at);
                    let (i, _) = self.entries.insert_full(
                        key,
                        Entry {
                            cursor: Cursor::of(&r),
                            seen_round: round,
                            dead: false,
                            walk_pos,
                        },
                    );
                    (i, Cursor::default())
                }
            };
        self.next_hint = index + 1;
        self.record(index, key, &r, &prev)
    }

    /// Ends a read round: cursors of entries the kernel no longer has were
    /// evicted (their bytes since the last read are lost, and counted as
    /// pressure). Returns how many vanished.
    pub fn end_round(&mut self) -> usize {
        let round = self.round;
        let mut vanished = 0;
        for e in self.entries.values_mut() {
            if !e.dead && e.seen_round != round {
                e.dead = true;
                vanished += 1;
            }
        }
        self.dead += vanished;
        self.evicted_total += vanished as u64;
        vanished
    }

    /// Flows whose last packet is older than `idle_before_ns` (boot clock).
    pub fn idle(&self, idle_before_ns: u64) -> Vec<FlowKey> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.dead && e.cursor.last_seen_ns < idle_before_ns)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Removes every flow idle since before `idle_before_ns`, except those
    /// `keep` names, with `remove` (which deletes it from the kernel and
    /// returns its final counters) and accounts its last increment, without
    /// collecting the keys first. Returns how many were removed.
    pub fn remove_idle<E>(
        &mut self,
        idle_before_ns: u64,
        keep: impl Fn(&FlowKey) -> bool,
        mut remove: impl FnMut(&FlowKey) -> Result<Option<FlowReading>, E>,
    ) -> Result<usize, E> {
        let mut n = 0;
        for i in 0..self.entries.len() {
            let (key, e) = self.entries.get_index(i).expect("index in range");
            if e.dead || e.cursor.last_seen_ns >= idle_before_ns || keep(key) {
                continue;
            }
            let key = *key;
            let last = remove(&key)?;
            self.removed_at(i, key, last);
            n += 1;
        }
        Ok(n)
    }

    /// Accounts a flow we removed from the kernel: its final counters give
    /// the last delta, and its cursor is dropped.
    pub fn removed(&mut self, key: FlowKey, last: Option<FlowReading>) -> Option<FlowDelta> {
        let i = self.entries.get_index_of(&key)?;
        self.removed_at(i, key, last)
    }

    fn removed_at(
        &mut self,
        i: usize,
        key: FlowKey,
        last: Option<FlowReading>,
    ) -> Option<FlowDelta> {
        let (_, e) = self.entries.get_index_mut(i)?;
        if e.dead {
            return None;
        }
        e.dead = true;
        self.dead += 1;
        let r = last?;
        let prev = if same_entry(&e.cursor, &r) {
            e.cursor
        } else {
            Cursor::default()
        };
        e.cursor = Cursor::of(&r);
        self.record(i, key, &r, &prev)
    }

    fn record(
        &mut self,
        index: usize,
        key: FlowKey,
        r: &FlowReading,
        prev: &Cursor,
    ) -> Option<FlowDelta> {
        let delta = diff(key, r, prev);
        if delta.is_zero() {
            return None;
        }
        self.pending.push(Pending {
            group: 0,
            counts: [
                delta.bytes_up,
                delta.bytes_down,
                delta.packets_up,
                delta.packets_down,
            ],
            index: index as u32,
        });
        Some(delta)
    }

    /// Orders this round's deltas so that those with the same `group` key
    /// (say, device and remote end) come one after another, in place.
    pub fn sort_deltas<G: Ord + Hash>(&mut self, group: impl Fn(&FlowKey) -> G) {
        let entries = &self.entries;
        let key = |p: &Pending| {
            entries
                .get_index(p.index as usize)
                .expect("pending entry")
                .0
        };
        // A fixed, fast hasher: only equality and contiguity matter here.
        let hasher = foldhash::fast::FixedState::default();
        for p in self.pending.iter_mut() {
            p.group = hasher.hash_one(group(key(p)));
        }
        // Sorting by the hash is cheap; only equal hashes (mostly the same
        // group) compare the keys themselves, which keeps colliding groups
        // apart.
        self.pending.sort_unstable_by(|a, b| {
            a.group
                .cmp(&b.group)
                .then_with(|| group(key(a)).cmp(&group(key(b))))
        });
    }

    /// This round's deltas (observed and removed flows), in the order of the
    /// last [`Accountant::sort_deltas`] or else of reading.
    pub fn deltas(&self) -> impl Iterator<Item = FlowDelta> + '_ {
        self.pending.iter().map(|p| {
            let (key, e) = self
                .entries
                .get_index(p.index as usize)
                .expect("pending entry");
            FlowDelta {
                key: *key,
                bytes_up: p.counts[0],
                bytes_down: p.counts[1],
                packets_up: p.counts[2],
                packets_down: p.counts[3],
                tcp_flags: 0,
                last_seen_ns: e.cursor.last_seen_ns,
            }
        })
    }

    /// Writes every live cursor as fixed-width records (key then cursor),
    /// `records_per_chunk` at a time through `buf`, handing each chunk to
    /// `sink`. The chunks, concatenated, are what
    /// [`Accountant::snapshot`] returns.
    pub fn write_snapshot<E>(
        &self,
        records_per_chunk: usize,
        buf: &mut Vec<u8>,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let per_chunk = records_per_chunk.max(1);
        buf.clear();
        buf.reserve(per_chunk * SNAPSHOT_RECORD);
        let mut in_chunk = 0;
        for (k, e) in self.entries.iter().filter(|(_, e)| !e.dead) {
            buf.extend_from_slice(&key_bytes(k));
            buf.extend_from_slice(&e.cursor.to_bytes());
            in_chunk += 1;
            if in_chunk == per_chunk {
                sink(buf)?;
                buf.clear();
                in_chunk = 0;
            }
        }
        if in_chunk > 0 {
            sink(buf)?;
            buf.clear();
        }
        Ok(())
    }

    /// Every live cursor in one buffer (tests and small tables; the daemon
    /// writes chunks with [`Accountant::write_snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * SNAPSHOT_RECORD);
        let mut buf = Vec::new();
        let _ = self.write_snapshot(4096, &mut buf, |c| {
            out.extend_from_slice(c);
            Ok::<(), ()>(())
        });
        out
    }

    /// Approximate heap use, for the status page and the benchmark: the
    /// entry vector and index as far as they are filled, the delta list.
    pub fn approx_memory_bytes(&self) -> usize {
        let hash_entry = 8 + size_of::<FlowKey>() + size_of::<Entry>();
        self.entries.len() * hash_entry
            + self.entries.capacity() * (size_of::<usize>() + 1) * 8 / 7
            + self.pending.len() * size_of::<Pending>()
    }
}

/// Whether a reading continues the entry a cursor was taken from (same
/// first-seen, no counter went backwards).
fn same_entry(prev: &Cursor, r: &FlowReading) -> bool {
    prev.first_seen_ns == r.first_seen_ns
        && r.bytes_up >= prev.bytes_up
        && r.bytes_down >= prev.bytes_down
        && r.packets_up >= prev.packets_up
        && r.packets_down >= prev.packets_down
}

/// Bytes of one record of [`Accountant::snapshot`].
pub const SNAPSHOT_RECORD: usize = FlowKey::SIZE + 48;

/// The records of a snapshot (or of one of its chunks), without copying.
pub fn snapshot_records(b: &[u8]) -> impl Iterator<Item = (FlowKey, Cursor)> + '_ {
    b.chunks_exact(SNAPSHOT_RECORD).filter_map(|r| {
        Some((
            key_from_bytes(&r[..FlowKey::SIZE])?,
            Cursor::from_bytes(&r[FlowKey::SIZE..])?,
        ))
    })
}

/// Reads an [`Accountant::snapshot`] back.
pub fn parse_snapshot(b: &[u8]) -> Vec<(FlowKey, Cursor)> {
    snapshot_records(b).collect()
}

/// Dates a reading: the read time if its counters grew since `prev`, else
/// the last time they did.
fn date(r: &mut FlowReading, prev: &Cursor, read_at_ns: u64) {
    let grew = r.bytes_up != prev.bytes_up
        || r.bytes_down != prev.bytes_down
        || r.packets_up != prev.packets_up
        || r.packets_down != prev.packets_down;
    let since = if grew { read_at_ns } else { prev.last_seen_ns };
    r.last_seen_ns = r.last_seen_ns.max(since);
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
    use std::collections::HashMap;

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

    fn snapshot_keys(a: &Accountant) -> Vec<FlowKey> {
        let mut v: Vec<FlowKey> = parse_snapshot(&a.snapshot())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn deltas_follow_cumulative_counters() {
        let mut a = Accountant::new();
        a.begin_round(0);
        let d = a.observe(key(1), reading(1000, 5000, 1, 2)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (1000, 5000));
        a.end_round();
        a.begin_round(0);
        let d = a.observe(key(1), reading(1500, 9000, 1, 3)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (500, 4000));
        // Nothing new: no delta.
        a.end_round();
        a.begin_round(0);
        assert!(a.observe(key(1), reading(1500, 9000, 1, 3)).is_none());
        assert_eq!(a.deltas().count(), 0);
    }

    #[test]
    fn a_new_entry_under_the_same_key_counts_from_zero() {
        let mut a = Accountant::new();
        a.begin_round(0);
        a.observe(key(1), reading(1000, 1000, 1, 2));
        a.end_round();
        a.begin_round(0);
        // Evicted and recreated: smaller counters, later first-seen.
        let d = a.observe(key(1), reading(300, 200, 50, 60)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (300, 200));
        // Recreated with *larger* counters still counts from zero (first-seen differs).
        a.end_round();
        a.begin_round(0);
        let d = a.observe(key(1), reading(5000, 5000, 70, 80)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (5000, 5000));
    }

    #[test]
    fn restart_from_persisted_cursors_does_not_double_count() {
        let mut a = Accountant::new();
        a.begin_round(0);
        a.observe(key(1), reading(1000, 2000, 1, 2));
        a.observe(key(2), reading(10, 20, 1, 2));
        a.end_round();
        assert_eq!(snapshot_keys(&a), vec![key(1), key(2)]);
        // A new process restores the cursors and reads the same, grown, map.
        let mut b = Accountant::new();
        let restored = parse_snapshot(&a.snapshot());
        assert_eq!(restored.len(), 2);
        b.restore(restored);
        b.begin_round(0);
        let d = b.observe(key(1), reading(1100, 2500, 1, 9)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (100, 500));
        assert!(b.observe(key(2), reading(10, 20, 1, 2)).is_none());
    }

    #[test]
    fn vanished_entries_are_counted_as_evictions() {
        let mut a = Accountant::new();
        a.begin_round(0);
        a.observe(key(1), reading(1, 1, 1, 1));
        a.observe(key(2), reading(1, 1, 1, 1));
        a.end_round();
        a.begin_round(0);
        a.observe(key(1), reading(2, 2, 1, 2));
        assert_eq!(a.end_round(), 1);
        assert_eq!(a.evicted_total, 1);
        assert_eq!(a.len(), 1);
        // The vanished cursor is neither persisted nor kept.
        assert_eq!(snapshot_keys(&a), vec![key(1)]);
        a.begin_round(0);
        assert_eq!(a.entries.len(), 1);
        // Back under the same key later: a new entry, counted from zero.
        let d = a.observe(key(2), reading(5, 5, 9, 9)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (5, 5));
    }

    #[test]
    fn activity_is_dated_by_the_read_in_which_counters_grew() {
        // The kernel stamps first and last seen only when it creates the
        // entry (at 10 here); the reads date the activity.
        let mut a = Accountant::new();
        a.begin_round(50);
        a.observe(key(1), reading(100, 0, 10, 10));
        assert_eq!(a.deltas().next().unwrap().last_seen_ns, 50);
        a.end_round();
        // Grew again: dated by this read.
        a.begin_round(80);
        a.observe(key(1), reading(200, 0, 10, 10));
        a.end_round();
        // Unchanged since: keeps 80, so it can go idle.
        a.begin_round(500);
        assert_eq!(a.observe(key(1), reading(200, 0, 10, 10)), None);
        a.end_round();
        assert_eq!(a.idle(100), vec![key(1)]);
        assert!(a.idle(80).is_empty());
    }

    #[test]
    fn idle_removal_counts_the_final_increment() {
        let mut a = Accountant::new();
        a.begin_round(0);
        a.observe(key(1), reading(1000, 1000, 1, 10));
        a.end_round();
        assert_eq!(a.idle(11), vec![key(1)]);
        assert!(a.idle(10).is_empty());
        // A last packet arrived between the read and the delete.
        let d = a.removed(key(1), Some(reading(1100, 1000, 1, 12))).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (100, 0));
        assert!(a.is_empty());
        assert!(a.snapshot().is_empty());
        // Removing twice counts nothing more.
        assert!(
            a.removed(key(1), Some(reading(1100, 1000, 1, 12)))
                .is_none()
        );
    }

    #[test]
    fn remove_idle_lists_final_increments_with_the_round_deltas() {
        let mut a = Accountant::new();
        a.begin_round(0);
        for p in 1..=4 {
            a.observe(key(p), reading(100, 100, 1, 10 * p as u64));
        }
        a.end_round();
        a.begin_round(0);
        // Flows 1 and 2 are idle (last packet before 25); 3 and 4 grew.
        for p in 1..=4 {
            let last = 10 * p as u64;
            let up = if p >= 3 { 150 } else { 100 };
            a.observe(key(p), reading(up, 100, 1, last));
        }
        a.end_round();
        let mut kernel_final: HashMap<FlowKey, FlowReading> = HashMap::new();
        // Flow 1 got 7 more bytes before the delete; flow 2 is already gone.
        kernel_final.insert(key(1), reading(107, 100, 1, 10));
        let mut asked = Vec::new();
        let n = a
            .remove_idle(
                25,
                |_| false,
                |k| {
                    asked.push(*k);
                    Ok::<_, ()>(kernel_final.get(k).copied())
                },
            )
            .unwrap();
        assert_eq!(n, 2);
        asked.sort();
        assert_eq!(asked, vec![key(1), key(2)]);
        assert_eq!(a.len(), 2);
        let mut got: Vec<(u16, u64)> = a
            .deltas()
            .map(|d| (d.key.device_port, d.bytes_up))
            .collect();
        got.sort();
        // The indices of the round's deltas still name the right flows.
        assert_eq!(got, vec![(1, 7), (3, 50), (4, 50)]);
        assert_eq!(snapshot_keys(&a), vec![key(3), key(4)]);
        // Next round: the removed cursors are gone for good.
        a.begin_round(0);
        assert_eq!(a.entries.len(), 2);
        assert!(a.idle(u64::MAX).iter().all(|k| k.device_port >= 3));
    }

    #[test]
    fn cursors_take_the_kernels_walk_order_and_count_the_same() {
        let mut a = Accountant::with_capacity(2000);
        // Inserted in one order, read in another (the kernel's hash order).
        a.begin_round(0);
        for p in 0..1000u16 {
            a.observe(key(p), reading(10, 0, 1, 1));
        }
        a.end_round();
        let walk = |p: u16| (p * 7 + 3) % 1000;
        let mut total = 0;
        for round in 1..=3u64 {
            a.begin_round(round);
            for i in 0..1000u16 {
                let d = a.observe(key(walk(i)), reading(10 + round * 5, 0, 1, 1));
                total += d.map_or(0, |d| d.bytes_up);
            }
            a.end_round();
            // Round 1 strays from the stored order; afterwards the cursors
            // follow the walk and no lookup is needed.
            let misses = a.walk_misses;
            if round == 1 {
                assert!(misses > 900, "{misses}");
            } else {
                assert_eq!(misses, 0, "round {round}");
            }
        }
        assert_eq!(total, 1000 * 15);
        assert_eq!(a.len(), 1000);
        // A new flow in the middle of the walk costs one lookup after it.
        a.begin_round(4);
        for i in 0..1000u16 {
            a.observe(key(walk(i)), reading(25, 0, 1, 1));
            if i == 500 {
                assert!(a.observe(key(5000), reading(1, 0, 1, 1)).is_some());
            }
        }
        assert!(a.walk_misses <= 2, "{}", a.walk_misses);
    }

    #[test]
    fn idle_flows_the_caller_keeps_stay_counted() {
        let mut a = Accountant::new();
        a.begin_round(0);
        for p in 1..=2 {
            a.observe(key(p), reading(100, 0, 1, 1));
        }
        a.end_round();
        // Flow 2 holds a flow cache slot: not removed, its cursor stays, so
        // its next reading continues it.
        let n = a
            .remove_idle(
                10,
                |k| k.device_port == 2,
                |k| {
                    assert_eq!(k.device_port, 1, "only flow 1 is removed");
                    Ok::<_, ()>(Some(reading(100, 0, 1, 1)))
                },
            )
            .unwrap();
        assert_eq!(n, 1);
        a.begin_round(20);
        assert!(a.observe(key(2), reading(100, 0, 1, 1)).is_none());
        assert_eq!(
            a.observe(key(2), reading(130, 0, 1, 1)).unwrap().bytes_up,
            30
        );
        assert_eq!(snapshot_keys(&a), vec![key(2)]);
    }

    #[test]
    fn a_flow_back_after_our_removal_counts_from_zero() {
        let mut a = Accountant::new();
        a.begin_round(0);
        a.observe(key(1), reading(100, 0, 1, 1));
        a.end_round();
        a.removed(key(1), Some(reading(120, 0, 1, 2)));
        // Recreated by the kernel before the next round drops the cursor:
        // a new incarnation, not a continuation.
        let d = a.observe(key(1), reading(30, 0, 5, 5)).unwrap();
        assert_eq!(d.bytes_up, 30);
        assert_eq!(a.len(), 1);
        assert_eq!(snapshot_keys(&a), vec![key(1)]);
    }

    #[test]
    fn sorted_deltas_put_each_group_together_and_keep_every_byte() {
        let mut a = Accountant::with_capacity(4096);
        a.begin_round(0);
        let mut sent: HashMap<u16, u64> = HashMap::new();
        for i in 0..3000u32 {
            let mut k = key(i as u16);
            // 37 remote ports, many device ports each.
            k.remote_port = 1000 + (i % 37) as u16;
            let up = 1 + (i as u64 * 7919) % 1000;
            *sent.entry(k.remote_port).or_default() += up;
            a.observe(k, reading(up, 0, 1, 1));
        }
        a.end_round();
        a.sort_deltas(|k| k.remote_port);
        let mut seen_groups = Vec::new();
        let mut sums: HashMap<u16, u64> = HashMap::new();
        let mut last = None;
        for d in a.deltas() {
            if last != Some(d.key.remote_port) {
                seen_groups.push(d.key.remote_port);
                last = Some(d.key.remote_port);
            }
            *sums.entry(d.key.remote_port).or_default() += d.bytes_up;
        }
        // Each group appears in one run.
        let mut distinct = seen_groups.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), seen_groups.len());
        assert_eq!(seen_groups.len(), 37);
        assert_eq!(sums, sent);
    }

    #[test]
    fn presized_for_the_kernel_table_it_never_grows() {
        let mut a = Accountant::with_capacity(5000);
        let (entries, pending) = (a.entries.capacity(), a.pending.capacity());
        for round in 0..3u64 {
            a.begin_round(0);
            for p in 0..5000u16 {
                a.observe(key(p), reading(100 * (round + 1), 0, 1, round));
            }
            a.end_round();
        }
        assert_eq!(a.len(), 5000);
        assert_eq!(a.deltas().count(), 5000);
        assert_eq!(a.entries.capacity(), entries);
        assert_eq!(a.pending.capacity(), pending);
    }

    #[test]
    fn chunked_snapshot_restores_like_the_whole() {
        let mut a = Accountant::new();
        a.begin_round(0);
        for p in 0..1000u16 {
            a.observe(key(p), reading(p as u64, 2 * p as u64, 1, 1));
        }
        a.end_round();
        // One flow vanishes, one is removed: neither is persisted.
        a.begin_round(0);
        for p in 1..1000u16 {
            a.observe(key(p), reading(p as u64 + 1, 2 * p as u64, 1, 2));
        }
        a.end_round();
        a.removed(key(500), None);
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut buf = Vec::new();
        a.write_snapshot(64, &mut buf, |c| {
            chunks.push(c.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(chunks.len(), 998usize.div_ceil(64));
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c.len() == 64 * SNAPSHOT_RECORD)
        );
        assert_eq!(chunks.concat(), a.snapshot());
        let mut b = Accountant::new();
        let n: usize = chunks.iter().map(|c| b.restore_snapshot(c)).sum();
        assert_eq!(n, 998);
        assert_eq!(b.len(), 998);
        // The restored cursors continue exactly where the old ones stopped.
        b.begin_round(0);
        assert!(b.observe(key(7), reading(8, 14, 1, 2)).is_none());
        let d = b.observe(key(9), reading(20, 18, 1, 3)).unwrap();
        assert_eq!((d.bytes_up, d.bytes_down), (10, 0));
        // A sink error stops the writing and is returned.
        let mut calls = 0;
        let r = a.write_snapshot(64, &mut buf, |_| {
            calls += 1;
            Err("disk full")
        });
        assert_eq!((r, calls), (Err("disk full"), 1));
    }

    /// A kernel table driven at random — traffic, LRU evictions, idle
    /// removal, restarts from the persisted snapshot — against the
    /// accountant: every byte is counted once, except what an eviction
    /// took after the flow's last read.
    #[test]
    fn random_traffic_evictions_removals_and_restarts_balance() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut kernel: HashMap<FlowKey, FlowReading> = HashMap::new();
        // What the accountant last read of each live kernel entry.
        let mut last_read: HashMap<FlowKey, FlowReading> = HashMap::new();
        let (mut sent, mut lost, mut counted) = (0u64, 0u64, 0u64);
        let mut a = Accountant::with_capacity(256);
        let mut snapshot: Vec<Vec<u8>> = Vec::new();
        let mut clock = 1u64;
        for round in 0..400 {
            clock += 10;
            for _ in 0..next(40) {
                let k = key(next(300) as u16);
                let bytes = 1 + next(1500);
                let e = kernel.entry(k).or_insert_with(|| FlowReading {
                    first_seen_ns: clock,
                    ..Default::default()
                });
                e.bytes_up += bytes;
                e.packets_up += 1;
                e.last_seen_ns = clock;
                sent += bytes;
            }
            // LRU pressure: the kernel drops an entry on its own.
            if next(3) == 0 && !kernel.is_empty() {
                let victims: Vec<FlowKey> = kernel.keys().copied().collect();
                let k = victims[next(victims.len() as u64) as usize];
                let r = kernel.remove(&k).unwrap();
                lost += r.bytes_up - last_read.remove(&k).map_or(0, |l| l.bytes_up);
            }
            // A restart: a new process continues from the last window's snapshot.
            if round % 97 == 50 {
                a = Accountant::with_capacity(256);
                for c in &snapshot {
                    a.restore_snapshot(c);
                }
            }
            // One window.
            a.begin_round(0);
            for (k, r) in &kernel {
                a.observe(*k, *r);
                last_read.insert(*k, *r);
            }
            a.end_round();
            a.remove_idle(
                clock.saturating_sub(100),
                |_| false,
                |k| {
                    last_read.remove(k);
                    Ok::<_, ()>(kernel.remove(k))
                },
            )
            .unwrap();
            counted += a.deltas().map(|d| d.bytes_up).sum::<u64>();
            snapshot.clear();
            let mut buf = Vec::new();
            a.write_snapshot(50, &mut buf, |c| {
                snapshot.push(c.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        assert!(lost > 0 && counted > sent / 2);
        assert_eq!(
            counted + lost + kernel.values().map(|r| r.bytes_up).sum::<u64>()
                - last_read.values().map(|r| r.bytes_up).sum::<u64>(),
            sent
        );
    }

    #[test]
    fn key_bytes_round_trip() {
        let k = key(7);
        assert_eq!(key_from_bytes(&key_bytes(&k)), Some(k));
    }
}
