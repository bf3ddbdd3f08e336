//! The database (redb): traffic windows at three resolutions, devices, and
//! the accounting cursors.
//!
//! Only the daemon's single writer task writes; API handlers read through
//! their own read transactions (redb is MVCC, so readers never block it).
//!
//! | table | key | value |
//! |---|---|---|
//! | `windows_5s`, `windows_1m`, `windows_1h` | (start unix s, device MAC) | rmp-serde `Vec<FlowRecord>` |
//! | `devices` | device MAC | rmp-serde [`DeviceRecord`] |
//! | `cursors` | chunk number | the accounting cursors of the last window, [`CURSOR_CHUNK_RECORDS`] fixed-width records a chunk |
//! | `blobs` | name | small state: rule states, evidence (and the cursors as one value, from before `cursors`) |
//! | `meta` | name | u64 |
//!
//! A window and the cursors that produced it are committed in one
//! transaction: after a crash either both are there or neither, so a restart
//! neither loses nor repeats a window.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use iot_inspector_common::FlowKey;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::accounting::Cursor;
use crate::dissect::Mac;

type WindowTable = TableDefinition<'static, (u64, [u8; 6]), &'static [u8]>;

const RAW: WindowTable = TableDefinition::new("windows_5s");
const MINUTE: WindowTable = TableDefinition::new("windows_1m");
const HOUR: WindowTable = TableDefinition::new("windows_1h");
const DEVICES: TableDefinition<[u8; 6], &[u8]> = TableDefinition::new("devices");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const CURSORS: TableDefinition<u32, &[u8]> = TableDefinition::new("cursors");

/// Where earlier versions kept every cursor as one value (read on restore,
/// removed by the next commit).
const CURSOR_BLOB: &str = "cursors";

/// Cursor records per stored chunk. One value of every cursor (4.6 MB at
/// 50,000 flows) needed a buffer of it and a page run of the next power of
/// two (8 MB) in the write transaction; chunks of ~31 KB fit a 32 KB page
/// and keep the commit's memory small, at ~150 inserts per window instead
/// of one per flow.
pub const CURSOR_CHUNK_RECORDS: usize = 340;
const META_ROLLED_MINUTE: &str = "rolled_minute";
const META_ROLLED_HOUR: &str = "rolled_hour";
const META_LAST_WINDOW: &str = "last_window_end";

/// Flow records kept per device and window; the rest are summed into one
/// "other" record so a flood of flows cannot grow the database without bound.
pub const MAX_RECORDS_PER_WINDOW: usize = 256;

/// A resolution of stored traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The accounting window (5 s by default).
    Raw,
    Minute,
    Hour,
}

impl Tier {
    fn table(self) -> WindowTable {
        match self {
            Tier::Raw => RAW,
            Tier::Minute => MINUTE,
            Tier::Hour => HOUR,
        }
    }

    /// The finest tier that still holds data from `since` under `retention`.
    pub fn for_range(span_secs: u64) -> Tier {
        if span_secs <= 2 * 3600 {
            Tier::Raw
        } else if span_secs <= 3 * 86400 {
            Tier::Minute
        } else {
            Tier::Hour
        }
    }
}

/// Traffic between a device and one remote end (address, protocol and
/// remote port) in one window; device ports are merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub device_ip: Option<IpAddr>,
    /// `None` for the record that sums what did not fit.
    pub remote_ip: Option<IpAddr>,
    pub proto: u8,
    pub remote_port: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// Kernel flows (5-tuples) merged into this record.
    pub flows: u32,
    /// The remote end's name as the device knew it when the window was
    /// stored (DNS answer, TLS/QUIC SNI, HTTP Host).
    #[serde(default)]
    pub name: Option<String>,
    /// Where the name came from (`dns`, `tls_sni`, `quic_sni`, `http_host`).
    #[serde(default)]
    pub name_source: Option<String>,
}

impl FlowRecord {
    pub fn bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }

    fn add(&mut self, o: &FlowRecord) {
        if self.name.is_none() {
            self.name = o.name.clone();
            self.name_source = o.name_source.clone();
        }
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.packets_up += o.packets_up;
        self.packets_down += o.packets_down;
        self.flows += o.flows;
    }

    fn merge_key(&self) -> (Option<IpAddr>, Option<IpAddr>, u8, u16) {
        (self.device_ip, self.remote_ip, self.proto, self.remote_port)
    }
}

/// A device's records of one window, capped as they come: the same result
/// as [`merge_records`] when every pushed record has its own remote end,
/// without holding every record of a flood at once (it keeps at most
/// 4 × [`MAX_RECORDS_PER_WINDOW`]; smaller ones are summed into "other"
/// as soon as they cannot be among the largest).
#[derive(Debug, Default)]
pub struct CappedRecords {
    kept: Vec<FlowRecord>,
    other: Option<FlowRecord>,
}

impl CappedRecords {
    pub fn push(&mut self, r: FlowRecord) {
        self.kept.push(r);
        if self.kept.len() >= 4 * MAX_RECORDS_PER_WINDOW {
            // Keep the largest MAX - 1 (the last place is "other"'s).
            let keep = MAX_RECORDS_PER_WINDOW - 1;
            self.kept.select_nth_unstable_by(keep, record_order);
            let other = self.other.get_or_insert_with(other_record);
            for r in self.kept.drain(keep..) {
                other.add(&r);
            }
        }
    }

    pub fn finish(mut self) -> Vec<FlowRecord> {
        self.kept.sort_by(record_order);
        if self.other.is_none() && self.kept.len() <= MAX_RECORDS_PER_WINDOW {
            return self.kept;
        }
        let mut other = self.other.take().unwrap_or_else(other_record);
        if self.kept.len() >= MAX_RECORDS_PER_WINDOW {
            for r in self.kept.drain(MAX_RECORDS_PER_WINDOW - 1..) {
                other.add(&r);
            }
        }
        self.kept.push(other);
        self.kept
    }
}

/// Largest first; the remote address breaks ties.
fn record_order(a: &FlowRecord, b: &FlowRecord) -> std::cmp::Ordering {
    b.bytes()
        .cmp(&a.bytes())
        .then(a.remote_ip.cmp(&b.remote_ip))
}

/// The record that sums what did not fit.
fn other_record() -> FlowRecord {
    FlowRecord {
        device_ip: None,
        remote_ip: None,
        proto: 0,
        remote_port: 0,
        bytes_up: 0,
        bytes_down: 0,
        packets_up: 0,
        packets_down: 0,
        flows: 0,
        name: None,
        name_source: None,
    }
}

/// Merges records with the same remote end, keeps the largest
/// [`MAX_RECORDS_PER_WINDOW`] and sums the rest into one "other" record.
pub fn merge_records(records: impl IntoIterator<Item = FlowRecord>) -> Vec<FlowRecord> {
    let mut by_key: HashMap<_, FlowRecord> = HashMap::new();
    for r in records {
        by_key
            .entry(r.merge_key())
            .and_modify(|e| e.add(&r))
            .or_insert(r);
    }
    let mut v: Vec<FlowRecord> = by_key.into_values().collect();
    v.sort_by(|a, b| {
        b.bytes()
            .cmp(&a.bytes())
            .then(a.remote_ip.cmp(&b.remote_ip))
    });
    if v.len() > MAX_RECORDS_PER_WINDOW {
        let rest = v.split_off(MAX_RECORDS_PER_WINDOW - 1);
        let mut other = other_record();
        for r in &rest {
            other.add(r);
        }
        v.push(other);
    }
    v
}

/// What the database keeps about a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub mac: Mac,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Addresses seen, newest last (bounded).
    pub ips: Vec<IpAddr>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
}

/// One device's records in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredWindow {
    pub start: u64,
    pub mac: Mac,
    pub records: Vec<FlowRecord>,
}

/// Everything one accounting window writes, committed atomically.
#[derive(Debug, Default)]
pub struct WindowCommit {
    /// Unix seconds of the window start.
    pub start: u64,
    pub secs: u64,
    pub per_device: BTreeMap<Mac, Vec<FlowRecord>>,
    pub devices: Vec<DeviceRecord>,
    /// [`crate::accounting::Accountant::snapshot`] after this window (the
    /// daemon writes chunks instead, with [`Store::commit_window_with`]).
    pub cursors: Option<Vec<u8>>,
}

/// What writes a window's cursors, chunk by chunk.
pub type WriteCursors<'a> = dyn FnMut(&mut CursorChunks) -> Result<()> + 'a;

/// Writes the cursor chunks of a window inside its transaction.
pub struct CursorChunks<'t> {
    table: redb::Table<'t, u32, &'static [u8]>,
    next: u32,
}

impl CursorChunks<'_> {
    /// Stores the next chunk (at most [`CURSOR_CHUNK_RECORDS`] records).
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.table.insert(self.next, chunk)?;
        self.next += 1;
        Ok(())
    }
}

/// How long each tier is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub raw_secs: u64,
    pub minute_secs: u64,
    pub hour_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_secs: 3600,
            minute_secs: 2 * 86400,
            hour_secs: 30 * 86400,
        }
    }
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database. The page cache is kept small: the
    /// daemon runs on routers with 128 MB of RAM.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Database::builder()
            .set_cache_size(1 << 20)
            .create(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(RAW)?;
            tx.open_table(MINUTE)?;
            tx.open_table(HOUR)?;
            tx.open_table(DEVICES)?;
            tx.open_table(META)?;
            tx.open_table(BLOBS)?;
            tx.open_table(CURSORS)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// Cursors persisted by the last committed window.
    pub fn cursors(&self) -> Result<Vec<(FlowKey, Cursor)>> {
        let mut out = Vec::new();
        self.for_each_cursor_chunk(|c| out.extend(crate::accounting::snapshot_records(c)))?;
        Ok(out)
    }

    /// Hands the cursor chunks persisted by the last committed window to
    /// `each`, in order, one at a time.
    pub fn for_each_cursor_chunk(&self, mut each: impl FnMut(&[u8])) -> Result<()> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CURSORS)?;
        let mut any = false;
        for item in t.iter()? {
            let (_, v) = item?;
            each(v.value());
            any = true;
        }
        if !any && let Some(b) = tx.open_table(BLOBS)?.get(CURSOR_BLOB)? {
            each(b.value());
        }
        Ok(())
    }

    /// Small state kept across restarts (rule states, name bindings),
    /// serialised by the caller.
    pub fn put_blob(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.open_table(BLOBS)?.insert(name, value)?;
        tx.commit()?;
        Ok(())
    }

    pub fn blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOBS)?;
        Ok(t.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Forgets every cursor (the kernel maps they described are gone).
    pub fn clear_cursors(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(BLOBS)?.remove(CURSOR_BLOB)?;
        tx.open_table(CURSORS)?.retain(|_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    /// End (unix s) of the last committed window, if any.
    pub fn last_window_end(&self) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(META_LAST_WINDOW)?.map(|v| v.value()))
    }

    /// Writes one window, its devices and cursors, then rolls completed
    /// minutes and hours up and applies retention — all in one transaction.
    pub fn commit_window(&self, w: &WindowCommit, retention: Retention) -> Result<()> {
        match &w.cursors {
            Some(all) => self.commit_window_with(
                w,
                retention,
                Some(&mut |chunks: &mut CursorChunks| {
                    for c in all.chunks(CURSOR_CHUNK_RECORDS * crate::accounting::SNAPSHOT_RECORD) {
                        chunks.push(c)?;
                    }
                    Ok(())
                }),
            ),
            None => self.commit_window_with(w, retention, None),
        }
    }

    /// [`Store::commit_window`] with the cursors written by `cursors`, chunk
    /// by chunk, in the same transaction (`w.cursors` is ignored). With
    /// `None` the cursors of the last window stay.
    pub fn commit_window_with(
        &self,
        w: &WindowCommit,
        retention: Retention,
        cursors: Option<&mut WriteCursors>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut raw = tx.open_table(RAW)?;
            for (mac, records) in &w.per_device {
                if records.is_empty() {
                    continue;
                }
                let key = (w.start, mac.0);
                // Merge with what is stored for the same window (a restart
                // inside a window).
                let mut all: Vec<FlowRecord> = match raw.get(key)? {
                    Some(v) => rmp_serde::from_slice(v.value()).unwrap_or_default(),
                    None => Vec::new(),
                };
                all.extend(records.iter().cloned());
                let merged = merge_records(all);
                raw.insert(key, rmp_serde::to_vec(&merged)?.as_slice())?;
            }
            let mut devices = tx.open_table(DEVICES)?;
            for d in &w.devices {
                devices.insert(d.mac.0, rmp_serde::to_vec(d)?.as_slice())?;
            }
            if let Some(write) = cursors {
                let mut chunks = CursorChunks {
                    table: tx.open_table(CURSORS)?,
                    next: 0,
                };
                write(&mut chunks)?;
                // Chunks beyond this window's (it had fewer flows).
                chunks.table.retain_in(chunks.next.., |_, _| false)?;
                tx.open_table(BLOBS)?.remove(CURSOR_BLOB)?;
            }
            let mut meta = tx.open_table(META)?;
            let end = w.start + w.secs;
            meta.insert(META_LAST_WINDOW, end)?;
            let rolled_minute = meta.get(META_ROLLED_MINUTE)?.map(|v| v.value());
            let rolled_hour = meta.get(META_ROLLED_HOUR)?.map(|v| v.value());
            let earliest_raw = raw.first()?.map(|(k, _)| k.value().0).unwrap_or(w.start);
            let m = roll_up(
                &raw,
                &mut tx.open_table(MINUTE)?,
                60,
                rolled_minute,
                earliest_raw,
                end,
            )?;
            drop(raw);
            if let Some(m) = m {
                meta.insert(META_ROLLED_MINUTE, m)?;
            }
            let minute = tx.open_table(MINUTE)?;
            let earliest_min = minute.first()?.map(|(k, _)| k.value().0).unwrap_or(w.start);
            let end_minutes = m.or(rolled_minute).map(|m| m + 60).unwrap_or(0);
            drop(minute);
            let h = {
                let minute = tx.open_table(MINUTE)?;
                roll_up(
                    &minute,
                    &mut tx.open_table(HOUR)?,
                    3600,
                    rolled_hour,
                    earliest_min,
                    end_minutes,
                )?
            };
            if let Some(h) = h {
                meta.insert(META_ROLLED_HOUR, h)?;
            }
            for (tier, keep) in [
                (RAW, retention.raw_secs),
                (MINUTE, retention.minute_secs),
                (HOUR, retention.hour_secs),
            ] {
                let cutoff = end.saturating_sub(keep);
                let mut t = tx.open_table(tier)?;
                t.retain_in((0u64, [0u8; 6])..(cutoff, [0u8; 6]), |_, _| false)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every device the database knows.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DEVICES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            if let Ok(d) = rmp_serde::from_slice::<DeviceRecord>(v.value()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Windows of one tier in `[since, until)`, for one device or all.
    pub fn windows(
        &self,
        tier: Tier,
        since: u64,
        until: u64,
        device: Option<Mac>,
    ) -> Result<Vec<StoredWindow>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(tier.table())?;
        let mut out = Vec::new();
        for item in t.range((since, [0u8; 6])..(until, [0u8; 6]))? {
            let (k, v) = item?;
            let (start, mac) = k.value();
            if device.is_some_and(|d| d.0 != mac) {
                continue;
            }
            let records: Vec<FlowRecord> = rmp_serde::from_slice(v.value()).unwrap_or_default();
            out.push(StoredWindow {
                start,
                mac: Mac(mac),
                records,
            });
        }
        Ok(out)
    }

    /// Windows covering `[since, until)` at `tier` where that tier has been
    /// rolled up, and from the finer tiers for the recent part not rolled
    /// up yet (the current hour of a 7-day view, the current minute of a
    /// 24-hour one), so a coarse view still shows the last minutes.
    pub fn windows_covering(
        &self,
        tier: Tier,
        since: u64,
        until: u64,
        device: Option<Mac>,
    ) -> Result<Vec<StoredWindow>> {
        let (rolled_minute, rolled_hour) = {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(META)?;
            (
                t.get(META_ROLLED_MINUTE)?.map(|v| v.value() + 60),
                t.get(META_ROLLED_HOUR)?.map(|v| v.value() + 3600),
            )
        };
        let minute_end = rolled_minute.unwrap_or(0);
        let hour_end = rolled_hour.unwrap_or(0);
        let mut out = Vec::new();
        let mut from = since;
        if tier == Tier::Hour {
            let to = until.min(hour_end.max(since));
            out.extend(self.windows(Tier::Hour, from, to, device)?);
            from = from.max(to);
        }
        if matches!(tier, Tier::Hour | Tier::Minute) {
            let to = until.min(minute_end.max(from));
            out.extend(self.windows(Tier::Minute, from, to, device)?);
            from = from.max(to);
        }
        out.extend(self.windows(Tier::Raw, from, until, device)?);
        Ok(out)
    }

    /// Approximate on-disk size, for the status page.
    pub fn file_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Sums the finer table's windows into `period`-long windows of the coarser
/// table for every complete period after `rolled` (the last period rolled)
/// and before `end`. Returns the start of the last period rolled.
fn roll_up(
    fine: &impl ReadableTable<(u64, [u8; 6]), &'static [u8]>,
    coarse: &mut redb::Table<(u64, [u8; 6]), &'static [u8]>,
    period: u64,
    rolled: Option<u64>,
    earliest: u64,
    end: u64,
) -> Result<Option<u64>> {
    let mut next = match rolled {
        Some(r) => r + period,
        None => earliest / period * period,
    };
    // Bounded: at most a week of periods per commit (after a long outage the
    // rest follows on the next commits).
    let mut last = None;
    for _ in 0..(7 * 86400 / period) {
        if next + period > end {
            break;
        }
        let mut per_mac: BTreeMap<[u8; 6], Vec<FlowRecord>> = BTreeMap::new();
        for item in fine.range((next, [0u8; 6])..(next + period, [0u8; 6]))? {
            let (k, v) = item?;
            let recs: Vec<FlowRecord> = rmp_serde::from_slice(v.value()).unwrap_or_default();
            per_mac.entry(k.value().1).or_default().extend(recs);
        }
        for (mac, recs) in per_mac {
            coarse.insert(
                (next, mac),
                rmp_serde::to_vec(&merge_records(recs))?.as_slice(),
            )?;
        }
        last = Some(next);
        next += period;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(remote: &str, port: u16, up: u64, down: u64) -> FlowRecord {
        FlowRecord {
            device_ip: Some("192.0.2.10".parse().unwrap()),
            remote_ip: Some(remote.parse().unwrap()),
            proto: 6,
            remote_port: port,
            bytes_up: up,
            bytes_down: down,
            packets_up: 1,
            packets_down: 1,
            flows: 1,
            name: None,
            name_source: None,
        }
    }

    #[test]
    fn merging_caps_records_and_keeps_every_byte() {
        let many: Vec<FlowRecord> = (0..1000u32)
            .map(|i| {
                rec(
                    &format!("203.0.113.{}", i % 250),
                    1000 + (i / 250) as u16,
                    10,
                    1,
                )
            })
            .collect();
        let merged = merge_records(many);
        assert_eq!(merged.len(), MAX_RECORDS_PER_WINDOW);
        let total: u64 = merged.iter().map(|r| r.bytes()).sum();
        assert_eq!(total, 11_000);
        assert!(merged.last().unwrap().remote_ip.is_none());
    }

    #[test]
    fn capped_records_as_they_come_match_merging_them_all() {
        for n in [0usize, 1, 255, 256, 257, 1023, 1024, 1025, 5000] {
            // Distinct remote ends with distinct sizes, in no particular order.
            let records: Vec<FlowRecord> = (0..n)
                .map(|i| {
                    let j = (i * 7919) % n.max(1);
                    rec(
                        &format!("2001:db8::{:x}", j + 1),
                        443,
                        10 + j as u64 * 3,
                        j as u64,
                    )
                })
                .collect();
            let mut capped = CappedRecords::default();
            for r in records.iter().cloned() {
                capped.push(r);
            }
            assert_eq!(capped.finish(), merge_records(records), "{n} records");
        }
    }

    fn cursor_records(n: u16) -> Vec<u8> {
        let mut a = crate::accounting::Accountant::new();
        a.begin_round(0);
        for p in 0..n {
            let key = FlowKey {
                device_mac: [2, 0, 0x5e, 0, 0x53, 1],
                device_port: p,
                remote_port: 443,
                family: 4,
                proto: 6,
                ..FlowKey::default()
            };
            let r = crate::datapath::FlowReading {
                bytes_up: p as u64 * 10,
                first_seen_ns: 1,
                ..Default::default()
            };
            a.observe(key, r);
        }
        a.end_round();
        a.snapshot()
    }

    #[test]
    fn cursors_are_stored_in_chunks_with_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let stored = |store: &Store| {
            let mut chunks = Vec::new();
            store
                .for_each_cursor_chunk(|c| chunks.push(c.to_vec()))
                .unwrap();
            chunks
        };
        let many = cursor_records(1000);
        let w = WindowCommit {
            start: 1_800_000_000,
            secs: 5,
            cursors: Some(many.clone()),
            ..Default::default()
        };
        store.commit_window(&w, Retention::default()).unwrap();
        let chunks = stored(&store);
        assert_eq!(chunks.len(), 1000usize.div_ceil(CURSOR_CHUNK_RECORDS));
        assert_eq!(chunks.concat(), many);
        assert_eq!(
            store.cursors().unwrap(),
            crate::accounting::parse_snapshot(&many)
        );
        // Fewer flows in the next window: no chunk of the last one is left.
        let few = cursor_records(10);
        let w = WindowCommit {
            start: 1_800_000_005,
            cursors: Some(few.clone()),
            ..w
        };
        store.commit_window(&w, Retention::default()).unwrap();
        assert_eq!(stored(&store), vec![few.clone()]);
        // A window without cursors keeps the last ones; clearing forgets them.
        let w = WindowCommit {
            start: 1_800_000_010,
            cursors: None,
            ..w
        };
        store.commit_window(&w, Retention::default()).unwrap();
        assert_eq!(stored(&store).concat(), few);
        store.clear_cursors().unwrap();
        assert!(stored(&store).is_empty());
    }

    #[test]
    fn cursors_of_the_single_value_format_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let old = cursor_records(500);
        store.put_blob(CURSOR_BLOB, &old).unwrap();
        assert_eq!(store.cursors().unwrap().len(), 500);
        // The next window stores chunks and drops the old value.
        let new = cursor_records(3);
        let w = WindowCommit {
            start: 1_800_000_000,
            secs: 5,
            cursors: Some(new.clone()),
            ..Default::default()
        };
        store.commit_window(&w, Retention::default()).unwrap();
        assert_eq!(store.blob(CURSOR_BLOB).unwrap(), None);
        assert_eq!(
            store.cursors().unwrap(),
            crate::accounting::parse_snapshot(&new)
        );
    }

    #[test]
    fn windows_roll_up_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let mac: Mac = "02:00:5e:00:53:01".parse().unwrap();
        let retention = Retention {
            raw_secs: 120,
            minute_secs: 3600,
            hour_secs: 86400,
        };
        // Five minutes of 5-second windows, 100 bytes up each.
        let t0 = 1_800_000_000 / 3600 * 3600;
        for i in 0..60 {
            let mut w = WindowCommit {
                start: t0 + i * 5,
                secs: 5,
                ..Default::default()
            };
            w.per_device
                .insert(mac, vec![rec("198.51.100.7", 443, 100, 0)]);
            store.commit_window(&w, retention).unwrap();
        }
        // Minutes complete so far: 0..4 (the 5th ends at t0+300 = last end).
        let minutes = store
            .windows(Tier::Minute, t0, t0 + 3600, Some(mac))
            .unwrap();
        assert_eq!(minutes.len(), 5);
        for m in &minutes {
            assert_eq!(m.records[0].bytes_up, 1200);
        }
        // Raw windows older than two minutes are gone.
        let raw = store.windows(Tier::Raw, 0, u64::MAX, None).unwrap();
        assert!(raw.iter().all(|w| w.start >= t0 + 300 - 120));
        assert_eq!(raw.len(), 24);
        // An hour later, the hour rolls up with everything.
        let mut w = WindowCommit {
            start: t0 + 3605,
            secs: 5,
            ..Default::default()
        };
        w.per_device.insert(mac, vec![]);
        store.commit_window(&w, retention).unwrap();
        let hours = store
            .windows(Tier::Hour, t0, t0 + 86400, Some(mac))
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].records[0].bytes_up, 6000);
    }
}
