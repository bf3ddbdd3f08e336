//! The kernel side as userspace sees it: loading the eBPF object, attaching
//! it to the LAN ports, and reading its flow table, statistics and samples.
//!
//! Maps and attachments are pinned in bpffs, so when the daemon dies the
//! programs go on counting (they never drop packets, so traffic flows either
//! way) and a restart picks the same maps up again: [`crate::accounting`]
//! keeps a cursor of what was already counted, so nothing is counted twice.

pub mod attach;
pub mod syscall;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use aya::{Ebpf, EbpfLoader};
use iot_inspector_common::{FlowCounters, FlowKey, SampleHeader, maps, proto, stat};

pub use attach::Ports;

/// Where pinned objects live when nothing else is configured.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/iot-inspector";

/// Bumped whenever the layout of a pinned map changes, so an upgraded daemon
/// does not reuse maps of the wrong shape.
const LAYOUT_VERSION: &str = "v1";

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
    /// Sums the per-CPU values of one map entry.
    pub fn from_percpu(bytes: &[u8], ncpus: usize) -> Self {
        let mut r = FlowReading::default();
        for c in per_cpu(bytes, ncpus) {
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

/// Each CPU's counters in one per-CPU map value (the kernel pads every
/// CPU's slot to 8 bytes).
fn per_cpu(bytes: &[u8], ncpus: usize) -> impl Iterator<Item = FlowCounters> + '_ {
    let size = size_of::<FlowCounters>();
    let stride = syscall::percpu_stride(size);
    (0..ncpus).map_while(move |cpu| {
        let chunk = bytes.get(cpu * stride..cpu * stride + size)?;
        // SAFETY: FlowCounters is plain #[repr(C)] data; any bytes are valid.
        Some(unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) })
    })
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
                for name in [maps::FLOWS, maps::STATS, maps::SAMPLES] {
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
                .with_context(|| format!("the kernel refused program {name}"))?;
        }
        let flows = ebpf
            .take_map(maps::FLOWS)
            .ok_or_else(|| anyhow!("no FLOWS map"))?;
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
        let ncpus = self.ncpus;
        self.each_flow(|key, v| each(key, FlowReading::from_percpu(v, ncpus)))
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
        let ncpus = self.ncpus;
        let mut out = Vec::new();
        self.each_flow(|key, v| {
            if key.proto != proto::TCP
                || key.device_ip != device
                || remote.is_some_and(|r| key.remote_ip != r)
            {
                return;
            }
            let mut seqs = Vec::new();
            for c in per_cpu(v, ncpus) {
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

    /// Every entry of the flow map: its key and its raw per-CPU values.
    fn each_flow(&self, mut each: impl FnMut(FlowKey, &[u8])) -> Result<usize> {
        syscall::lookup_all_percpu(
            self.flows_fd()?,
            FlowKey::SIZE,
            size_of::<FlowCounters>(),
            self.ncpus,
            512,
            |k, v| {
                // SAFETY: FlowKey is plain #[repr(C)] data of FlowKey::SIZE bytes.
                let key: FlowKey = unsafe { std::ptr::read_unaligned(k.as_ptr().cast()) };
                each(key, v);
            },
        )
        .context("reading the flow table")
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
                .map(|v| FlowReading::from_percpu(&v, self.ncpus)),
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
        for name in [maps::FLOWS, maps::STATS, maps::SAMPLES] {
            match std::fs::remove_file(self.pin_dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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
