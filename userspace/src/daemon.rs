//! The daemon: one task owns the live state (devices, cursors, the
//! dissector) and the database writes; the API reads snapshots and the
//! database. Every `window` seconds it reads the kernel's flow table, turns
//! it into deltas, and commits one window; in between it follows LAN ports
//! and dissects samples as they arrive.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use iot_inspector_common::{FlowKey, direction, family};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::accounting::Accountant;
use crate::config::Settings;
use crate::datapath::{Datapath, LoadOptions, Ports, RawSample};
use crate::dissect::{Direction, DissectStats, Dissector, Frame, Mac, Observation};
use crate::inventory::Inventory;
use crate::names::{NameSource, NameTable};
use crate::store::{
    CURSOR_CHUNK_RECORDS, CappedRecords, CursorChunks, DeviceRecord, FlowRecord, Store,
    WindowCommit,
};
use crate::time::{Clock, unix_secs};

/// What the API shows about the daemon itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub started: u64,
    pub window_secs: u64,
    pub ports: Vec<String>,
    /// Kernel counters (frames, malformed, flows_created, samples_dropped, …).
    pub kernel: BTreeMap<String, u64>,
    pub flows_live: usize,
    pub flow_capacity: u32,
    /// Flows the kernel evicted from its full table before we read them.
    pub flows_evicted: u64,
    /// `flows_live / flow_capacity`, in percent.
    pub flow_table_use_pct: f64,
    pub samples_read: u64,
    pub dissect: DissectStats,
    pub last_window_end: u64,
    /// Whether this run picked up the maps of an earlier one.
    pub resumed: bool,
    pub database_bytes: u64,
    pub rss_kib: u64,
    /// The owner's lists (filled in when the status is read).
    #[serde(default)]
    pub lists: crate::explain::list_updates::ListsView,
}

/// Something worth the owner's look.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Alert {
    pub at: u64,
    /// `new_device` or `tracking`.
    pub kind: String,
    pub device: Mac,
    pub text: String,
}

/// Alerts kept.
const MAX_ALERTS: usize = 200;

/// State shared with the API.
#[derive(Default)]
pub struct Shared {
    pub status: RwLock<Status>,
    pub devices: RwLock<Vec<DeviceRecord>>,
    /// Names of remote ends per device (written by the daemon task only).
    pub names: RwLock<NameTable>,
    pub rules: RwLock<crate::control::RulesView>,
    /// Labels the owner gave devices (from the configuration).
    pub labels: RwLock<BTreeMap<Mac, String>>,
    /// Labels the owner confirmed despite warnings.
    pub labels_confirmed: RwLock<std::collections::BTreeSet<Mac>>,
    pub alerts: RwLock<Vec<Alert>>,
    /// What each device is, with the evidence.
    pub identities: RwLock<BTreeMap<Mac, crate::identify::Identity>>,
    /// The names devices gave themselves (DHCP, mDNS, UPnP), as received.
    pub self_names: RwLock<BTreeMap<Mac, Vec<String>>>,
    /// The UCI file edits go to (`None`: edits are refused).
    pub config_path: Option<PathBuf>,
    /// Where the export salt lives.
    pub salt_file: PathBuf,
    /// Serialises edits of the configuration file.
    pub config_lock: std::sync::Mutex<()>,
    /// Wakes the daemon to re-read the configuration after an edit.
    pub reload: tokio::sync::Notify,
    /// The owner's lists and how their updates went.
    pub lists: RwLock<crate::explain::list_updates::ListsView>,
}

/// Options of `iot-inspector run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    /// The UCI file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
}

/// The ring buffer's fd, for tokio to wait on (the map is owned elsewhere).
struct Fd(RawFd);
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Samples handled per wake-up at most, so a burst cannot starve the rest.
const SAMPLE_BATCH: usize = 2048;

pub fn run(opts: RunOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(opts))
}

struct Daemon {
    settings: Settings,
    config_path: Option<PathBuf>,
    control: crate::control::Control,
    probes_tx: tokio::sync::mpsc::UnboundedSender<crate::control::ProbeDone>,
    /// What each device said about itself, and what it is.
    evidence: std::collections::HashMap<Mac, crate::identify::Evidence>,
    evidence_dirty: std::collections::HashSet<Mac>,
    /// UPnP descriptions fetched or being fetched, by LOCATION, with the
    /// number of attempts (a failed fetch is retried on a later announcement).
    upnp_fetched: std::collections::HashMap<String, u8>,
    upnp_tx: tokio::sync::mpsc::UnboundedSender<UpnpResult>,
    /// Devices already seen talking to advertising/tracking services.
    tracking_alerted: std::collections::HashSet<Mac>,
    datapath: Datapath,
    ports: Ports,
    store: Arc<Store>,
    shared: Arc<Shared>,
    accountant: Accountant,
    /// Reused for writing the cursors in chunks.
    cursor_buf: Vec<u8>,
    inventory: Inventory,
    dissector: Dissector,
    samples: Vec<RawSample>,
    observations: Vec<Observation>,
    samples_read: u64,
    started: u64,
    /// Downloads the owner's lists, on a thread of its own.
    lists: crate::explain::list_updates::ListUpdater,
}

async fn run_async(opts: RunOptions) -> Result<()> {
    let settings = opts.settings.clone();
    let store = Arc::new(Store::open(&settings.database)?);
    let datapath = Datapath::load(&LoadOptions {
        object: settings.bpf_object.clone(),
        pin_dir: settings.pin_dir.clone(),
        flow_entries: settings.flow_table_size,
    })?;
    // Sized for the kernel table once, so it never grows while counting.
    let mut accountant = Accountant::with_capacity(settings.flow_table_size as usize);
    if datapath.resumed {
        let mut n = 0;
        store.for_each_cursor_chunk(|chunk| n += accountant.restore_snapshot(chunk))?;
        log::info!("picked up the kernel maps of an earlier run ({n} flow cursors)");
    } else {
        store.clear_cursors()?;
    }
    let mut inventory = Inventory::new();
    inventory.restore(store.devices()?);
    let ports = Ports::new(settings.lan.clone(), datapath.pin_dir());
    let shared = Arc::new(Shared {
        config_path: opts.config_path.clone(),
        salt_file: settings.salt_file.clone(),
        ..Shared::default()
    });
    let restored: Vec<crate::rules::RuleState> = store
        .blob(RULE_STATES)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let control = crate::control::Control::new(
        settings
            .lan
            .first()
            .cloned()
            .unwrap_or_else(|| "br-lan".into()),
        restored,
    );
    let (probes_tx, mut probes_rx) = tokio::sync::mpsc::unbounded_channel();
    let (upnp_tx, mut upnp_rx) = tokio::sync::mpsc::unbounded_channel();
    let evidence: std::collections::HashMap<Mac, crate::identify::Evidence> = store
        .blob(EVIDENCE)?
        .and_then(|b| rmp_serde::from_slice(&b).ok())
        .unwrap_or_default();
    // The last good copies of the owner's lists apply at once; downloads
    // follow on their own thread and never hold up start-up.
    let lists = {
        let shared = shared.clone();
        crate::explain::list_updates::ListUpdater::start(settings.lists_config(), move |v| {
            *shared.lists.write().unwrap() = v;
        })?
    };
    let listener = crate::api::bind(&settings.socket)?;
    tokio::spawn(crate::api::serve(listener, shared.clone(), store.clone()));
    if let Some(addr) = settings.dashboard {
        let (token, shared, store) = (settings.token.clone(), shared.clone(), store.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::dashboard::serve(addr, token, shared, store).await {
                log::error!("dashboard: {e:#}");
            }
        });
    }

    let mut d = Daemon {
        settings,
        config_path: opts.config_path.clone(),
        control,
        probes_tx,
        tracking_alerted: Default::default(),
        evidence_dirty: evidence.keys().copied().collect(),
        evidence,
        upnp_fetched: Default::default(),
        upnp_tx,
        datapath,
        ports,
        store,
        shared,
        accountant,
        cursor_buf: Vec::new(),
        inventory,
        dissector: Dissector::new(),
        samples: Vec::with_capacity(256),
        observations: Vec::with_capacity(64),
        samples_read: 0,
        started: unix_secs(),
        lists,
    };
    d.load_rules();
    // What the database knows is shown at once, not after the first window.
    d.identify();
    *d.shared.devices.write().unwrap() = d.inventory.list();
    d.sync_ports();
    let samples_fd = match d.datapath.samples_fd() {
        // SAFETY: the fd belongs to the ring buffer owned by `d.datapath`,
        // which is declared before `samples_fd` and so outlives it.
        Some(fd) => Some(
            unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("watching the sample ring buffer: {e}"))?,
        ),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut window_end = next_boundary(unix_secs(), d.settings.window_secs);
    let mut donate_tick = tokio::time::interval(Duration::from_secs(600));
    donate_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    d.publish_status(0);
    log::info!(
        "counting on {:?} (ports {:?}), window {} s, API on {}",
        d.settings.lan,
        d.ports.attached(),
        d.settings.window_secs,
        d.settings.socket.display()
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {
                d.sync_ports();
                d.run_rules();
                d.datapath.flush_log();
                d.drain_samples();
                let now = unix_secs();
                if now >= window_end {
                    d.window(window_end)?;
                    window_end = next_boundary(now, d.settings.window_secs);
                }
            }
            ready = async {
                match &samples_fd {
                    Some(fd) => fd.readable().await.map(Some),
                    None => std::future::pending().await,
                }
            } => {
                if let Ok(Some(mut guard)) = ready {
                    d.drain_samples();
                    guard.clear_ready();
                }
            }
            _ = sighup.recv() => {
                d.reload(opts.config_path.as_deref());
            }
            _ = d.shared.reload.notified() => {
                d.reload(opts.config_path.as_deref());
                d.run_rules();
            }
            Some(done) = probes_rx.recv() => {
                d.control.probe_done(done);
            }
            Some((mac, loc, desc)) = upnp_rx.recv() => {
                if let Some(desc) = desc {
                    d.evidence.entry(mac).or_default().absorb_upnp(&desc);
                    d.evidence_dirty.insert(mac);
                    d.upnp_fetched.insert(loc, u8::MAX);
                }
            }
            _ = donate_tick.tick() => {
                d.maybe_donate();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    d.stop()
}

/// A finished UPnP description fetch: the device, its LOCATION, and the
/// description (or `None` when the fetch failed).
type UpnpResult = (Mac, String, Option<crate::identify::upnp::UpnpDescription>);

/// Attempts at fetching one LOCATION.
const UPNP_ATTEMPTS: u8 = 3;

/// Where the last rule states are kept across restarts.
const RULE_STATES: &str = "rule_states";
/// When the last donation was made (unix s, little-endian).
const LAST_DONATION: &str = "last_donation";
/// Where the devices' evidence is kept across restarts.
const EVIDENCE: &str = "evidence";
/// dnsmasq's lease file on OpenWrt (a source of device names).
const LEASES: &str = "/tmp/dhcp.leases";

/// The end of the window that contains `now`.
fn next_boundary(now: u64, window: u64) -> u64 {
    (now / window + 1) * window
}

impl Daemon {
    fn sync_ports(&mut self) {
        let report = self.ports.sync(self.datapath.ebpf_mut());
        for p in &report.added {
            log::info!("attached to LAN port {p}");
        }
        for p in &report.removed {
            log::info!("LAN port {p} left");
        }
        for (p, e) in &report.failed {
            log::warn!("could not attach to {p}: {e}");
        }
        if !(report.added.is_empty() && report.removed.is_empty()) {
            self.shared.status.write().unwrap().ports = self.ports.attached();
        }
    }

    fn drain_samples(&mut self) {
        let clock = Clock::now();
        loop {
            self.samples.clear();
            let n = self.datapath.drain_samples(SAMPLE_BATCH, &mut self.samples);
            if n == 0 {
                break;
            }
            self.samples_read += n as u64;
            for s in std::mem::take(&mut self.samples) {
                let frame = Frame {
                    timestamp_ns: clock.boot_to_unix_ns(s.header.timestamp_ns),
                    direction: if s.header.direction == direction::DOWN {
                        Direction::Down
                    } else {
                        Direction::Up
                    },
                    data: &s.data,
                };
                self.observations.clear();
                self.dissector.dissect(&frame, &mut self.observations);
                let at = frame.timestamp_ns / 1_000_000_000;
                let observations = std::mem::take(&mut self.observations);
                let shared = self.shared.clone();
                let mut names = shared.names.write().unwrap();
                for obs in &observations {
                    apply_observation(&mut self.inventory, &mut names, obs, at);
                    self.control.observe(obs);
                    self.learn(obs);
                }
                drop(names);
                self.observations = observations;
            }
            if n < SAMPLE_BATCH {
                break;
            }
        }
    }

    /// Reads the kernel's counters and commits the window ending at `end`.
    ///
    /// At tens of thousands of flows memory is the constraint: deltas stay
    /// in the accountant (by index, see [`crate::accounting`]), flows to the
    /// same remote end are summed as they are walked, each device's records
    /// are capped as they come, and the cursors go to the store in chunks.
    fn window(&mut self, end: u64) -> Result<()> {
        let secs = self.settings.window_secs;
        let start = end - secs;
        let clock = Clock::now();
        self.accountant.begin_round(crate::time::mono_ns());
        let accountant = &mut self.accountant;
        let live = self.datapath.read_flows(|k, r| {
            accountant.observe(k, r);
        })?;
        self.accountant.end_round();
        let idle_before =
            crate::time::mono_ns().saturating_sub(self.settings.idle_secs * 1_000_000_000);
        let datapath = &self.datapath;
        self.accountant.remove_idle(
            idle_before,
            |key| datapath.in_flow_cache(key),
            |key| datapath.remove_flow(key),
        )?;
        // Flows of a device to one remote end (what a stored record merges)
        // come one after another.
        self.accountant.sort_deltas(remote_end);
        let mut per_device: BTreeMap<Mac, CappedRecords> = BTreeMap::new();
        // Named records of devices not alerted about yet, for tracking alerts.
        let mut named: BTreeMap<Mac, Vec<FlowRecord>> = BTreeMap::new();
        let shared = self.shared.clone();
        let names = shared.names.read().unwrap();
        let mut open: Option<(Mac, FlowRecord)> = None;
        for d in self.accountant.deltas() {
            let mac = Mac(d.key.device_mac);
            let (device_ip, remote_ip) = key_ips(&d.key);
            let seen = clock.mono_to_unix_ns(d.last_seen_ns) / 1_000_000_000;
            let new_device = self.inventory.get(&mac).is_none();
            self.inventory.seen(mac, device_ip, seen.min(end));
            // Devices there when the daemon first starts are not news.
            if new_device && end > self.started + 2 * secs {
                self.alert(
                    "new_device",
                    mac,
                    format!("A new device joined the network ({mac})."),
                );
            }
            if d.bytes_up > 0 {
                self.control.seen(mac, seen.min(end) as i64);
            }
            self.inventory.account(
                mac,
                (d.bytes_up, d.packets_up),
                (d.bytes_down, d.packets_down),
                seen.min(end),
            );
            let same_end = open.as_ref().is_some_and(|(m, r)| {
                *m == mac
                    && r.device_ip == device_ip
                    && r.remote_ip == remote_ip
                    && r.proto == d.key.proto
                    && r.remote_port == d.key.remote_port
            });
            if !same_end && let Some((m, r)) = open.take() {
                close_record(&mut per_device, &mut named, &self.tracking_alerted, m, r);
            }
            let record = &mut open
                .get_or_insert((
                    mac,
                    FlowRecord {
                        name: None,
                        name_source: None,
                        device_ip,
                        remote_ip,
                        proto: d.key.proto,
                        remote_port: d.key.remote_port,
                        bytes_up: 0,
                        bytes_down: 0,
                        packets_up: 0,
                        packets_down: 0,
                        flows: 0,
                    },
                ))
                .1;
            record.bytes_up += d.bytes_up;
            record.bytes_down += d.bytes_down;
            record.packets_up += d.packets_up;
            record.packets_down += d.packets_down;
            record.flows += 1;
            // The first name found among the merged flows names the record.
            if record.name.is_none()
                && let Some(b) = remote_ip.and_then(|rip| {
                    names.lookup_flow(
                        mac,
                        d.key.device_port,
                        std::net::SocketAddr::new(rip, d.key.remote_port),
                        clock.mono_to_unix_ns(d.last_seen_ns),
                    )
                })
            {
                record.name = Some(b.name.clone());
                record.name_source = Some(source_name(&b.source).to_string());
            }
        }
        if let Some((m, r)) = open.take() {
            close_record(&mut per_device, &mut named, &self.tracking_alerted, m, r);
        }
        drop(names);
        self.tracking_alerts(&named);
        let per_device = per_device
            .into_iter()
            .map(|(mac, records)| (mac, records.finish()))
            .collect();
        self.shared
            .names
            .write()
            .unwrap()
            .expire(crate::time::unix_ns());
        let commit = WindowCommit {
            start,
            secs,
            per_device,
            devices: self.inventory.take_dirty(),
            cursors: None,
        };
        let (accountant, buf) = (&self.accountant, &mut self.cursor_buf);
        self.store
            .commit_window_with(
                &commit,
                self.settings.retention,
                Some(&mut |chunks: &mut CursorChunks| {
                    accountant.write_snapshot(CURSOR_CHUNK_RECORDS, buf, |c| chunks.push(c))
                }),
            )
            .context("storing a window")?;
        // glibc keeps the window's freed memory (redb's write buffer, the
        // capped records) resident in its heap; hand it back (measured:
        // ~2 MB less RSS between windows at 50,000 flows, ~0.1 ms).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe {
            libc::malloc_trim(0);
        }
        self.identify();
        *self.shared.devices.write().unwrap() = self.inventory.list();
        self.publish_status(live);
        Ok(())
    }

    fn alert(&self, kind: &str, device: Mac, text: String) {
        let mut a = self.shared.alerts.write().unwrap();
        if a.len() >= MAX_ALERTS {
            a.remove(0);
        }
        a.push(Alert {
            at: unix_secs(),
            kind: kind.into(),
            device,
            text,
        });
    }

    /// An alert the first time a device talks to advertising or tracking.
    fn tracking_alerts(&mut self, per_device: &BTreeMap<Mac, Vec<FlowRecord>>) {
        use crate::explain::Category;
        let kb = crate::explain::current();
        for (mac, records) in per_device {
            if self.tracking_alerted.contains(mac) {
                continue;
            }
            for r in records {
                let Some(name) = &r.name else { continue };
                let e = kb.explain(name, &[], None);
                if matches!(
                    e.category,
                    Category::Advertising | Category::TrackingAnalytics
                ) {
                    let who = e.organisation.unwrap_or_else(|| name.clone());
                    let what = e.category.label().to_lowercase();
                    self.tracking_alerted.insert(*mac);
                    self.alert(
                        "tracking",
                        *mac,
                        format!("{mac} started talking to {who} ({what})."),
                    );
                    break;
                }
            }
        }
    }

    /// Adds what an observation says about its device to the evidence, and
    /// fetches a UPnP description the device announced (once per LOCATION).
    fn learn(&mut self, obs: &Observation) {
        if matches!(obs, Observation::Seen { .. }) {
            return;
        }
        let mac = obs.device();
        if mac.is_group() {
            return;
        }
        let ev = self.evidence.entry(mac).or_default();
        ev.absorb(obs);
        if let Some(name) = obs.contacted_name() {
            ev.note_domain(name);
        }
        self.evidence_dirty.insert(mac);
        if let Observation::Ssdp(m) = obs
            && let (Some(loc), Some(ip)) = (&m.location, m.ip)
        {
            let attempts = self.upnp_fetched.get(loc).copied().unwrap_or(0);
            if attempts < UPNP_ATTEMPTS && self.upnp_fetched.len() < 1024 {
                self.upnp_fetched.insert(loc.clone(), attempts + 1);
                let loc = loc.clone();
                let tx = self.upnp_tx.clone();
                tokio::spawn(async move {
                    let desc = match crate::identify::upnp::fetch_description(&loc, ip).await {
                        Ok(desc) => Some(desc),
                        Err(e) => {
                            log::debug!("UPnP description {loc}: {e}");
                            None
                        }
                    };
                    let _ = tx.send((mac, loc, desc));
                });
            }
        }
    }

    /// Recomputes the identity of devices with new evidence, reads
    /// dnsmasq's leases, and keeps the evidence across restarts.
    fn identify(&mut self) {
        if let Ok(leases) = crate::identify::leases::read(std::path::Path::new(LEASES)) {
            for l in leases {
                let ev = self.evidence.entry(l.mac).or_default();
                ev.note_lease(&l);
                self.evidence_dirty.insert(l.mac);
            }
        }
        if self.evidence_dirty.is_empty() {
            return;
        }
        let mut ids = self.shared.identities.write().unwrap();
        let mut names = self.shared.self_names.write().unwrap();
        for mac in self.evidence_dirty.drain() {
            if let Some(ev) = self.evidence.get(&mac) {
                ids.insert(mac, crate::identify::identify(mac, ev));
                names.insert(mac, ev.self_names());
            }
        }
        drop(ids);
        drop(names);
        // Bounded like the inventory: forget evidence of devices it forgot.
        if self.evidence.len() > crate::inventory::MAX_DEVICES {
            let inv = &self.inventory;
            self.evidence.retain(|m, _| inv.get(m).is_some());
        }
        match rmp_serde::to_vec(&self.evidence) {
            Ok(b) => {
                if let Err(e) = self.store.put_blob(EVIDENCE, &b) {
                    log::warn!("could not keep the evidence: {e:#}");
                }
            }
            Err(e) => log::warn!("could not encode the evidence: {e}"),
        }
    }

    /// Opt-in donation: when due, exports the windows since the last
    /// donation (anonymised, no names) and uploads them with the router's
    /// own fetcher, off the daemon task. The record file says what was sent.
    fn maybe_donate(&mut self) {
        let Some(url) = self.settings.donate_url.clone() else {
            return;
        };
        let now = unix_secs();
        let last = self
            .store
            .blob(LAST_DONATION)
            .ok()
            .flatten()
            .and_then(|b| b.try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(0);
        if now < last + self.settings.donate_interval_secs {
            return;
        }
        let since = last.max(now.saturating_sub(self.settings.donate_interval_secs));
        let salt = match crate::export::salt(&self.settings.salt_file) {
            Ok(s) => s,
            Err(e) => return log::warn!("donation skipped: {e:#}"),
        };
        let mut opts =
            crate::export::ExportOptions::new(since, now, crate::export::Format::Msgpack, salt);
        opts.tier = crate::store::Tier::for_range(now - since);
        let ids = self.shared.identities.read().unwrap().clone();
        let mut bytes = Vec::new();
        if let Err(e) = crate::export::write(&self.store, &opts, &ids, &BTreeMap::new(), &mut bytes)
        {
            return log::warn!("donation skipped: {e:#}");
        }
        let _ = self.store.put_blob(LAST_DONATION, &now.to_le_bytes());
        let record = self.settings.donate_record.clone();
        let installation = crate::export::installation_id(&salt);
        tokio::task::spawn_blocking(move || {
            let opts = crate::export::DonateOptions::default();
            match crate::export::donate(&url, &installation, &bytes, &record, &opts) {
                Ok(r) => log::info!("donated {} bytes to {url}: {}", r.bytes, r.outcome),
                Err(e) => log::warn!("donation to {url} failed: {e:#}"),
            }
        });
    }

    /// Reads the rules (and labels) from the configuration file.
    fn load_rules(&mut self) {
        let sections = match &self.config_path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => match crate::uci::parse(&t) {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!("keeping the running rules: {}: {e}", p.display());
                        return;
                    }
                },
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        self.control.reload(&sections);
        let labels = self
            .control
            .rules()
            .devices
            .iter()
            .filter_map(|d| d.label.clone().map(|l| (d.mac, l)))
            .collect();
        *self.shared.labels.write().unwrap() = labels;
        let confirmed = sections
            .iter()
            .filter(|s| s.kind == "device" && s.get("label_confirmed") == Some("1"))
            .filter_map(|s| s.get("mac").and_then(|m| m.parse::<Mac>().ok()))
            .collect();
        *self.shared.labels_confirmed.write().unwrap() = confirmed;
    }

    /// The rules' clock: the system's, or a test's file.
    fn rules_now(&self) -> i64 {
        self.settings
            .clock_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(unix_secs() as i64)
    }

    /// Evaluates the rules now, starts due presence probes, publishes.
    fn run_rules(&mut self) {
        let now = self.rules_now();
        let addrs: crate::rules::nft::DeviceAddresses = self
            .inventory
            .list()
            .into_iter()
            .map(|d| (d.mac, d.ips))
            .collect();
        let names: BTreeMap<Mac, String> = self.shared.labels.read().unwrap().clone();
        for (mac, ip, lan) in self.control.due_probes(now, &addrs) {
            let tx = self.probes_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(crate::control::run_probe(mac, ip, &lan));
            });
        }
        let changes = self.control.tick(now, addrs, &names);
        self.resume_transfers();
        if !changes.is_empty()
            && let Ok(b) = serde_json::to_vec(self.control.states())
            && let Err(e) = self.store.put_blob(RULE_STATES, &b)
        {
            log::warn!("could not keep the rule states: {e:#}");
        }
        *self.shared.rules.write().unwrap() = self.control.view(now);
    }

    /// After an unblock, nudges the device's open TCP transfers so they
    /// resume now rather than at the end of their retransmission backoff.
    fn resume_transfers(&mut self) {
        for (device, remote) in self.control.take_released() {
            match self.datapath.tcp_heads(device, remote) {
                Ok(heads) => {
                    let nudges: Vec<_> = heads
                        .iter()
                        .flat_map(|(k, seqs)| {
                            seqs.iter()
                                .filter_map(|s| crate::rules::resume::nudge_for(k, *s))
                        })
                        .collect();
                    let sent = crate::rules::resume::send(&nudges);
                    log::debug!(
                        "unblocked {device}: {} open TCP flows nudged ({sent} ICMP errors)",
                        heads.len()
                    );
                }
                Err(e) => log::warn!("could not find {device}'s open transfers: {e:#}"),
            }
        }
    }

    fn publish_status(&self, live: usize) {
        let kernel = self
            .datapath
            .stats()
            .map(|v| v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            .unwrap_or_default();
        let cap = self.datapath.flow_capacity();
        let mut st = self.shared.status.write().unwrap();
        *st = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: self.started,
            window_secs: self.settings.window_secs,
            ports: self.ports.attached(),
            kernel,
            flows_live: live,
            flow_capacity: cap,
            flows_evicted: self.accountant.evicted_total,
            flow_table_use_pct: live as f64 * 100.0 / cap.max(1) as f64,
            samples_read: self.samples_read,
            dissect: self.dissector.stats.clone(),
            last_window_end: self.store.last_window_end().ok().flatten().unwrap_or(0),
            resumed: self.datapath.resumed,
            database_bytes: Store::file_bytes(&self.settings.database),
            rss_kib: rss_kib(),
            lists: Default::default(),
        };
    }

    fn reload(&mut self, path: Option<&std::path::Path>) {
        let Some(path) = path else { return };
        match Settings::load(path) {
            Ok(mut s) => {
                // Paths and map sizes take effect on restart; the rest now.
                s.database = self.settings.database.clone();
                s.socket = self.settings.socket.clone();
                s.bpf_object = self.settings.bpf_object.clone();
                s.pin_dir = self.settings.pin_dir.clone();
                s.flow_table_size = self.settings.flow_table_size;
                s.clock_file = self.settings.clock_file.clone();
                if s.lan != self.settings.lan {
                    self.ports = Ports::new(s.lan.clone(), self.datapath.pin_dir());
                }
                self.settings = s;
                self.lists.configure(self.settings.lists_config());
                self.load_rules();
                log::info!("configuration reloaded from {}", path.display());
            }
            Err(e) => log::error!("keeping the running configuration: {e:#}"),
        }
    }

    /// Clean stop: count what is left, detach, unpin, remove the socket.
    fn stop(mut self) -> Result<()> {
        log::info!("stopping");
        let now = unix_secs();
        let end = next_boundary(now, self.settings.window_secs);
        self.drain_samples();
        self.window(end)?;
        self.control.shutdown();
        self.ports.detach_all();
        self.datapath.unpin_maps()?;
        self.store.clear_cursors()?;
        let _ = std::fs::remove_file(&self.settings.socket);
        Ok(())
    }
}

/// What an observation changes in the live state.
fn apply_observation(inventory: &mut Inventory, names: &mut NameTable, obs: &Observation, at: u64) {
    if let Observation::Seen { mac, ip } = obs {
        inventory.seen(*mac, *ip, at);
    }
    names.observe(obs);
}

/// How a name's source is written in the API and the database.
pub fn source_name(s: &NameSource) -> &'static str {
    match s {
        NameSource::Dns { .. } => "dns",
        NameSource::TlsSni => "tls_sni",
        NameSource::QuicSni => "quic_sni",
        NameSource::HttpHost => "http_host",
    }
}

/// What a stored record merges flows by: the device and the remote end
/// (device ports merged).
type RemoteEnd = ([u8; 6], Option<IpAddr>, Option<IpAddr>, u8, u16);

fn remote_end(k: &FlowKey) -> RemoteEnd {
    let (device_ip, remote_ip) = key_ips(k);
    (k.device_mac, device_ip, remote_ip, k.proto, k.remote_port)
}

/// A window's record of a device and remote end is complete: into the
/// device's capped records, and (when named, for a device not alerted
/// about yet) into what the tracking alerts look at.
fn close_record(
    per_device: &mut BTreeMap<Mac, CappedRecords>,
    named: &mut BTreeMap<Mac, Vec<FlowRecord>>,
    alerted: &std::collections::HashSet<Mac>,
    mac: Mac,
    record: FlowRecord,
) {
    if record.name.is_some() && !alerted.contains(&mac) {
        named.entry(mac).or_default().push(record.clone());
    }
    per_device.entry(mac).or_default().push(record);
}

/// The device and remote addresses of a flow key (IPv4-mapped → IPv4).
pub fn key_ips(k: &FlowKey) -> (Option<IpAddr>, Option<IpAddr>) {
    let conv = |b: [u8; 16]| -> Option<IpAddr> {
        if b == [0; 16] {
            return None;
        }
        let v6 = Ipv6Addr::from(b);
        Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        })
    };
    match k.family {
        family::IPV4 | family::IPV6 | family::NON_IP => (conv(k.device_ip), conv(k.remote_ip)),
        _ => (None, None),
    }
}

/// Resident memory of this process, from /proc.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
