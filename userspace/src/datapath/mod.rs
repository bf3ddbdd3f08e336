//! The kernel side as userspace sees it: loading the eBPF object, attaching
//! it to the LAN ports, and reading its flow table, statistics and samples.
//!
//! Maps and attachments are pinned in bpffs, so when the daemon dies the
//! programs go on counting (they never drop packets, so traffic flows either
//! way) and a restart picks the same maps up again: [`crate::accounting`]
//! keeps a cursor of what was already counted, so nothing is counted twice.
//!
//! A flow's counts on one CPU live in two places: its entry in the flow
//! table and, while the flow holds its slot in the per-CPU flow cache, the
//! batch pending there. [`Datapath::read_flows`] reads the cache first (twice,
//! keeping only slots whose batch did not change in between, so a slot
//! copied while the program rewrote it is not trusted), then the table, and
//! adds a pending batch to the table entry unless the entry says that batch
//! was flushed into it ([`FlowCounters::flushed_epoch`]) between the two
//! reads. So every batch is counted once, in one place or the other.

pub mod attach;
pub mod syscall;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use aya::{Ebpf, EbpfLoader};
use iot_inspector_common::{
    FLOW_CACHE_SLOTS, FlowCacheSlot, FlowCounters, FlowKey, SampleHeader, maps, proto, stat,
};

pub use attach::Ports;

/// Where pinned objects live when nothing else is configured.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/iot-inspector";

/// Bumped whenever the layout of a pinned map changes, so an upgraded daemon
/// does not reuse maps of the wrong shape.
const LAYOUT_VERSION: &str = "v2";

/// The pinned maps, all removed or recreated together (the flow cache's
/// epochs are only meaningful with the flow table they were flushed into).
const PINNED_MAPS: [&str; 4] = [maps::FLOWS, maps::FLOW_CACHE, maps::STATS, maps::SAMPLES];

/// `BPF_FS_MAGIC` from statfs(2).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// One flow as read from the kernel, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowReading {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// Earliest per-CPU first-seen (boot-clock ns); identifies this incarnation
    /// of the map entry.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub tcp_flags: u8,
}

impl FlowReading {
    /// Sums the per-CPU values of one flow.
    pub fn from_percpu(cpus: &[FlowCounters]) -> Self {
        let mut r = FlowReading::default();
        for c in cpus {
            r.bytes_up += c.bytes_up;
            r.bytes_down += c.bytes_down;
            r.packets_up += c.packets_up;
            r.packets_down += c.packets_down;
            if c.first_seen_ns != 0 && (r.first_seen_ns == 0 || c.first_seen_ns < r.first_seen_ns) {
                r.first_seen_ns = c.first_seen_ns;
            }
            r.last_seen_ns = r.last_seen_ns.max(c.last_seen_ns);
            r.tcp_flags |= c.tcp_flags;
        }
        r
    }
}

/// Each CPU's value in one per-CPU map value (the kernel pads every CPU's
/// slot to 8 bytes). `T` must be plain `#[repr(C)]` data.
fn per_cpu<T: aya::Pod>(bytes: &[u8], ncpus: usize) -> impl Iterator<Item = T> + '_ {
    let size = size_of::<T>();
    let stride = syscall::percpu_stride(size);
    (0..ncpus).map_while(move |cpu| {
        let chunk = bytes.get(cpu * stride..cpu * stride + size)?;
        // SAFETY: T is Pod: plain data for which any bytes are valid.
        Some(unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) })
    })
}

/// Points between the reads of [`Datapath::read_flows_interleaved`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPoint {
    /// After the first copy of the flow cache, before the second.
    BetweenCacheCopies,
    /// After both copies of the cache, before the flow table.
    BeforeTable,
}

/// The flow cache as read at the start of a round, slot by slot and CPU by
/// CPU (`slot * ncpus + cpu`). Sized once at load.
struct CacheView {
    /// Each slot as read the second time.
    slots: Vec<FlowCacheSlot>,
    /// Each slot's epoch as read the first time (0: not in use).
    first_epochs: Vec<u64>,
}

impl CacheView {
    fn new(ncpus: usize) -> Self {
        let n = FLOW_CACHE_SLOTS as usize * ncpus;
        Self {
            slots: vec![FlowCacheSlot::default(); n],
            first_epochs: vec![0; n],
        }
    }

    /// Adds to each CPU's table counters `cpus` of `key` the batch pending
    /// in that CPU's slot which the table entry does not hold yet.
    fn add_pending_to(&self, key: &FlowKey, cpus: &mut [FlowCounters]) {
        let ncpus = self.slots.len() / FLOW_CACHE_SLOTS as usize;
        let base = key.cache_slot() as usize * ncpus;
        for (cpu, c) in cpus.iter_mut().enumerate().take(ncpus) {
            let i = base + cpu;
            let s = &self.slots[i];
            if s.pending()
                && s.epoch == self.first_epochs[i]
                && s.epoch > c.flushed_epoch
                && s.key == *key
            {
                add_pending(c, s);
            }
        }
    }

    /// Whether `key` held a cache slot on any CPU.
    fn holds(&self, key: &FlowKey) -> bool {
        let ncpus = self.slots.len() / FLOW_CACHE_SLOTS as usize;
        let i = key.cache_slot() as usize * ncpus;
        self.slots[i..i + ncpus]
            .iter()
            .any(|s| s.in_use != 0 && s.key == *key)
    }
}

/// Adds a pending cache batch to a table entry's counters on one CPU.
fn add_pending(c: &mut FlowCounters, s: &FlowCacheSlot) {
    c.bytes_up += s.bytes_up;
    c.bytes_down += s.bytes_down;
    c.packets_up += s.packets_up;
    c.packets_down += s.packets_down;
    c.tcp_flags |= s.tcp_flags;
    if s.packets_up != 0 {
        c.last_seq_up = s.last_seq_up;
    }
}

/// A sample as read from the ring buffer.
#[derive(Clone, Debug)]
pub struct RawSample {
    pub header: SampleHeader,
    pub data: Vec<u8>,
}

/// Options for [`Datapath::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub object: PathBuf,
    pub pin_dir: PathBuf,
    pub flow_entries: u32,
}

/// The loaded programs and their maps.
pub struct Datapath {
    ebpf: Ebpf,
    flows: Map,
    flow_cache: Map,
    /// The flow cache as read by the latest [`Datapath::read_flows`].
    cache_view: std::cell::RefCell<CacheView>,
    stats: PerCpuArray<MapData, u64>,
    samples: Option<RingBuf<MapData>>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pin_dir: PathBuf,
    ncpus: usize,
    flow_entries: u32,
    /// Whether pinned maps of an earlier run were found and reused.
    pub resumed: bool,
}

impl Datapath {
    /// Loads the eBPF object without BTF (OpenWrt kernels have none),
    /// reusing pinned maps from an earlier run when they are there.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        ensure_bpffs(&opts.pin_dir)?;
        remove_other_layouts(&opts.pin_dir);
        let pin_dir = opts.pin_dir.join(LAYOUT_VERSION);
        std::fs::create_dir_all(&pin_dir)
            .with_context(|| format!("creating the pin directory {}", pin_dir.display()))?;
        let resumed = pin_dir.join(maps::FLOWS).exists();
        let object = std::fs::read(&opts.object).with_context(|| {
            format!(
                "reading the eBPF object {} (build it with `cargo xtask build`, or pass --bpf-object)",
                opts.object.display()
            )
        })?;
        let load = |object: &[u8]| {
            EbpfLoader::new()
                .btf(None)
                .default_map_pin_directory(&pin_dir)
                .map_max_entries(maps::FLOWS, opts.flow_entries)
                .load(object)
        };
        let mut ebpf = match load(&object) {
            Ok(e) => e,
            Err(e) if resumed => {
                // Pinned maps of another shape (the flow table size changed):
                // start afresh rather than refuse to run.
                log::warn!(
                    "pinned maps in {} do not fit ({e}); recreating them",
                    pin_dir.display()
                );
                for name in PINNED_MAPS {
                    let _ = std::fs::remove_file(pin_dir.join(name));
                }
                load(&object).context("loading the eBPF object")?
            }
            Err(e) => return Err(anyhow!(e).context("loading the eBPF object")),
        };
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("no eBPF logger: {e}");
                None
            }
        };
        for name in [
            iot_inspector_common::programs::INGRESS,
            iot_inspector_common::programs::EGRESS,
        ] {
            let prog: &mut aya::programs::SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("the kernel refused program {name}"))
                .map_err(|e| match kernel_too_old() {
                    Some(why) => e.context(why),
                    None => e,
                })?;
        }
        let flows = ebpf
            .take_map(maps::FLOWS)
            .ok_or_else(|| anyhow!("no FLOWS map"))?;
        let flow_cache = ebpf
            .take_map(maps::FLOW_CACHE)
            .ok_or_else(|| anyhow!("no FLOW_CACHE map"))?;
        let stats = PerCpuArray::try_from(
            ebpf.take_map(maps::STATS)
                .ok_or_else(|| anyhow!("no STATS map"))?,
        )?;
        let samples = match ebpf.take_map(maps::SAMPLES) {
            Some(m) => Some(RingBuf::try_from(m)?),
            None => None,
        };
        let ncpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        Ok(Self {
            ebpf,
            flows,
            flow_cache,
            cache_view: std::cell::RefCell::new(CacheView::new(ncpus)),
            stats,
            samples,
            logger,
            pin_dir,
            ncpus,
            flow_entries: opts.flow_entries,
            resumed,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn flow_capacity(&self) -> u32 {
        self.flow_entries
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn flows_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>> {
        let data = match &self.flows {
            Map::PerCpuLruHashMap(d) | Map::PerCpuHashMap(d) => d,
            other => bail!("FLOWS has an unexpected map type {other:?}"),
        };
        Ok(data.fd().as_fd())
    }

    /// Reads every flow; `each` gets the key and the CPU-summed counters.
    pub fn read_flows(&self, mut each: impl FnMut(FlowKey, FlowReading)) -> Result<usize> {
        self.each_flow(|key, cpus| each(key, FlowReading::from_percpu(cpus)))
    }

    /// [`Datapath::read_flows`] calling `at` at each point between its
    /// reads, so a test can make the programs count exactly there.
    #[doc(hidden)]
    pub fn read_flows_interleaved(
        &self,
        mut at: impl FnMut(ReadPoint),
        mut each: impl FnMut(FlowKey, FlowReading),
    ) -> Result<usize> {
        self.each_flow_at(&mut at, |key, cpus| {
            each(key, FlowReading::from_percpu(cpus))
        })
    }

    /// The TCP flows of the device at `device` (and only those to `remote`
    /// when given), each with the distinct sequence numbers of the device's
    /// latest segment on each CPU (see `rules::resume`).
    pub fn tcp_heads(
        &self,
        device: IpAddr,
        remote: Option<IpAddr>,
    ) -> Result<Vec<(FlowKey, Vec<u32>)>> {
        let key_ip = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let (device, remote) = (key_ip(device), remote.map(key_ip));
        let mut out = Vec::new();
        self.each_flow(|key, cpus| {
            if key.proto != proto::TCP
                || key.device_ip != device
                || remote.is_some_and(|r| key.remote_ip != r)
            {
                return;
            }
            let mut seqs = Vec::new();
            for c in cpus {
                if c.packets_up > 0 && !seqs.contains(&c.last_seq_up) {
                    seqs.push(c.last_seq_up);
                }
            }
            if !seqs.is_empty() {
                out.push((key, seqs));
            }
        })?;
        Ok(out)
    }

    /// Whether the flow held a flow cache slot at the latest read. Such a
    /// flow's table entry is not removed as idle: its slot may still hold
    /// counted packets that a later flush would add to a new entry, counting
    /// them again.
    pub fn in_flow_cache(&self, key: &FlowKey) -> bool {
        self.cache_view.borrow().holds(key)
    }

    /// Every flow: its key and each CPU's counters, the flow table entry
    /// with the batch still pending in the flow cache added (see the
    /// module's documentation for why this order of reads counts each
    /// batch once).
    fn each_flow(&self, each: impl FnMut(FlowKey, &[FlowCounters])) -> Result<usize> {
        self.each_flow_at(&mut |_| {}, each)
    }

    fn each_flow_at(
        &self,
        at: &mut dyn FnMut(ReadPoint),
        mut each: impl FnMut(FlowKey, &[FlowCounters]),
    ) -> Result<usize> {
        let ncpus = self.ncpus;
        self.read_cache(at)?;
        at(ReadPoint::BeforeTable);
        let view = self.cache_view.borrow();
        let mut cpus = Vec::with_capacity(ncpus);
        syscall::lookup_all_percpu(
            self.flows_fd()?,
            FlowKey::SIZE,
            size_of::<FlowCounters>(),
            ncpus,
            512,
            |k, v| {
                // SAFETY: FlowKey is plain #[repr(C)] data of FlowKey::SIZE bytes.
                let key: FlowKey = unsafe { std::ptr::read_unaligned(k.as_ptr().cast()) };
                cpus.clear();
                cpus.extend(per_cpu::<FlowCounters>(v, ncpus));
                view.add_pending_to(&key, &mut cpus);
                each(key, &cpus);
            },
        )
        .context("reading the flow table")
    }

    /// Reads the flow cache into `cache_view`: every slot's epoch, then
    /// every slot (a slot whose epoch differs between the two was being
    /// rewritten and is not trusted; its batch is in the table by the time
    /// the table is read).
    fn read_cache(&self, at: &mut dyn FnMut(ReadPoint)) -> Result<()> {
        let ncpus = self.ncpus;
        let fd = match &self.flow_cache {
            Map::PerCpuArray(d) => d.fd().as_fd(),
            other => bail!("FLOW_CACHE has an unexpected map type {other:?}"),
        };
        let mut view = self.cache_view.borrow_mut();
        let view = &mut *view;
        let slot_of = |k: &[u8]| u32::from_ne_bytes(k.try_into().unwrap_or_default()) as usize;
        for pass in 0..2 {
            if pass == 1 {
                at(ReadPoint::BetweenCacheCopies);
            }
            syscall::lookup_all_percpu(fd, 4, size_of::<FlowCacheSlot>(), ncpus, 256, |k, v| {
                let base = slot_of(k) * ncpus;
                for (cpu, s) in per_cpu::<FlowCacheSlot>(v, ncpus).enumerate() {
                    let i = base + cpu;
                    if i >= view.slots.len() {
                        return;
                    }
                    if pass == 0 {
                        view.first_epochs[i] = if s.in_use != 0 { s.epoch } else { 0 };
                    } else {
                        view.slots[i] = s;
                    }
                }
            })
            .context("reading the flow cache")?;
        }
        Ok(())
    }

    /// Removes a flow, returning its counters as they were at removal.
    pub fn remove_flow(&self, key: &FlowKey) -> Result<Option<FlowReading>> {
        let fd = self.flows_fd()?;
        // SAFETY: FlowKey is plain #[repr(C)] data.
        let bytes = unsafe {
            std::slice::from_raw_parts((key as *const FlowKey).cast::<u8>(), FlowKey::SIZE)
        };
        Ok(
            syscall::lookup_and_delete_percpu(fd, bytes, size_of::<FlowCounters>(), self.ncpus)?
                .map(|v| {
                    let cpus: Vec<FlowCounters> = per_cpu(&v, self.ncpus).collect();
                    FlowReading::from_percpu(&cpus)
                }),
        )
    }

    /// The kernel's statistics, summed over CPUs, by name.
    pub fn stats(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::with_capacity(stat::COUNT as usize);
        for (i, name) in stat::NAMES.iter().enumerate() {
            let values = self.stats.get(&(i as u32), 0)?;
            out.push((*name, values.iter().sum()));
        }
        Ok(out)
    }

    /// Takes every sample waiting in the ring buffer (at most `max`).
    pub fn drain_samples(&mut self, max: usize, out: &mut Vec<RawSample>) -> usize {
        let Some(rb) = self.samples.as_mut() else {
            return 0;
        };
        let hsize = size_of::<SampleHeader>();
        let mut n = 0;
        while n < max {
            let Some(item) = rb.next() else { break };
            let bytes: &[u8] = &item;
            if bytes.len() < hsize {
                continue;
            }
            // SAFETY: the program writes a SampleHeader first; plain data.
            let header: SampleHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            let captured = (header.captured as usize).min(bytes.len() - hsize);
            out.push(RawSample {
                header,
                data: bytes[hsize..hsize + captured].to_vec(),
            });
            n += 1;
        }
        n
    }

    /// The ring buffer's file descriptor, for waiting on it.
    pub fn samples_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.samples.as_ref().map(|r| r.as_raw_fd())
    }

    /// Forwards the programs' aya-log records to the daemon's log.
    pub fn flush_log(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Removes the pinned maps: called on a clean stop, after detaching.
    pub fn unpin_maps(&self) -> Result<()> {
        for name in PINNED_MAPS {
            match std::fs::remove_file(self.pin_dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Removes what a daemon with another map layout left pinned (it crashed
/// before an upgrade, or the upgrade went back): its maps are of no use to
/// this one, and unpinning its links detaches its programs, which would
/// otherwise go on counting into maps nobody reads.
fn remove_other_layouts(pin_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let is_layout = name.len() > 1
            && name.starts_with('v')
            && name[1..].bytes().all(|b| b.is_ascii_digit());
        if is_layout && name != LAYOUT_VERSION {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => log::info!(
                    "removed pins of an earlier layout in {}",
                    e.path().display()
                ),
                Err(err) => log::warn!("could not remove {}: {err}", e.path().display()),
            }
        }
    }
}

/// Mounts bpffs at the pin directory's parent when it is not one already
/// (OpenWrt's procd mounts /sys/fs/bpf; plain Debian may not).
fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    let mut probe = pin_dir.to_path_buf();
    // Walk up to an existing directory and ask what filesystem it is on.
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if is_bpffs(&probe) {
        return Ok(());
    }
    let mount_at = if pin_dir.starts_with("/sys/fs/bpf") {
        PathBuf::from("/sys/fs/bpf")
    } else {
        pin_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| pin_dir.to_path_buf())
    };
    std::fs::create_dir_all(&mount_at)?;
    if is_bpffs(&mount_at) {
        return Ok(());
    }
    let target = std::ffi::CString::new(mount_at.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid C strings; mount(2) with no data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "mounting bpffs at {} (pinned maps need it; mount it or pass --pin-dir on a bpffs)",
                mount_at.display()
            )
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Per-interface attachment bookkeeping is in [`attach`]; this map type is
/// shared by it and the daemon's status.
pub type AttachedPorts = HashMap<String, attach::PortState>;

/// Why the programs cannot run here, when the kernel predates what they
/// use: `bpf_ktime_get_coarse_ns` (5.11) and batch reads of a per-CPU
/// array, the flow cache (5.13). OpenWrt 23.05's 5.15 is the oldest kernel
/// supported; Debian's 5.10 refuses the programs (the VM test shows it).
fn kernel_too_old() -> Option<String> {
    too_old(aya::util::KernelVersion::current().ok()?)
}

fn too_old(v: aya::util::KernelVersion) -> Option<String> {
    (v < aya::util::KernelVersion::new(5, 15, 0)).then(|| {
        format!(
            "Linux {v} is older than 5.15, the oldest kernel iot-inspector runs on \
             (OpenWrt 23.05 and newer): its eBPF programs need bpf_ktime_get_coarse_ns \
             (5.11) and batch reads of per-CPU arrays (5.13)"
        )
    })
}

#[cfg(test)]
mod tests {
    use aya::util::KernelVersion;

    #[test]
    fn kernels_before_5_15_are_named_too_old() {
        let msg = super::too_old(KernelVersion::new(5, 10, 0)).expect("5.10 is too old");
        assert!(msg.starts_with("Linux 5.10.0 is older than 5.15"), "{msg}");
        assert!(super::too_old(KernelVersion::new(5, 14, 21)).is_some());
        for ok in [(5, 15, 0), (5, 15, 167), (6, 6, 0), (6, 12, 3)] {
            assert_eq!(
                super::too_old(KernelVersion::new(ok.0, ok.1, ok.2)),
                None,
                "{ok:?}"
            );
        }
    }
}
