//! `#[repr(C)]` types shared by the eBPF programs (`ebpf/programs`) and the
//! daemon (`userspace`). Every type here crosses the kernel boundary byte for
//! byte, so fields are ordered largest-alignment first and padding is explicit.
#![no_std]

/// Names of the maps in the eBPF object, used by the loader.
pub mod maps {
    pub const FLOWS: &str = "FLOWS";
    pub const SAMPLES: &str = "SAMPLES";
    pub const STATS: &str = "STATS";
    pub const CONFIG: &str = "CONFIG";
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
}

/// Names of the programs in the eBPF object.
pub mod programs {
    pub const INGRESS: &str = "lan_ingress";
    pub const EGRESS: &str = "lan_egress";
    /// An empty classifier, the benchmark's baseline.
    pub const BASELINE: &str = "baseline_empty";
    /// One flow-map lookup and nothing else (bench reference, never attached).
    pub const LOOKUP_ONLY: &str = "baseline_lookup";
}

/// Default capacity of the flow table. The kernel evicts the least recently
/// used flow when it is full (an LRU hash), which is counted as map pressure.
pub const DEFAULT_FLOW_ENTRIES: u32 = 65_536;

/// Slots per CPU of the flow cache in front of the flow table (a power of
/// two). A packet whose flow sits in its slot is counted there, without the
/// hash-map lookup that otherwise dominates the per-packet cost.
pub const FLOW_CACHE_SLOTS: u32 = 2048;

/// A cached flow's counts are added to the flow table after this many
/// packets (and whenever another flow takes the slot). It keeps the table
/// entry recently used, so the LRU does not evict an active flow, and it
/// bounds what an eviction under pressure drops with the entry.
pub const FLOW_CACHE_FLUSH_PACKETS: u64 = 32;

/// The flow cache slot of a key: a multiplicative hash of the key's words
/// (the same on both sides of the kernel boundary, so the daemon can find a
/// flow's slot). `words` are the key's first 40 bytes as native-endian
/// `u64`s, `tail` its last 4 bytes.
#[inline(always)]
pub fn flow_cache_slot(words: [u64; 5], tail: u32) -> u32 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0u64;
    let mut i = 0;
    while i < 5 {
        h = (h ^ words[i]).wrapping_mul(K);
        i += 1;
    }
    h = (h ^ tail as u64).wrapping_mul(K);
    (h >> (64 - FLOW_CACHE_SLOTS.trailing_zeros())) as u32
}

/// Bytes of a frame copied into a sample, from the Ethernet header on.
/// 1536 covers a full 1500-byte IP packet behind an Ethernet header and two
/// VLAN tags, so a post-quantum ClientHello segment or a QUIC Initial fits.
pub const SAMPLE_BYTES: usize = 1536;

/// Ring buffer size for samples (a power of two, as the kernel requires).
pub const SAMPLE_RING_BYTES: u32 = 256 * 1024;

/// Payload segments sampled per TCP/443 (and QUIC/443) flow from the device.
/// A post-quantum TLS ClientHello (X25519MLKEM768) is ~1.8 kB: two segments.
pub const TLS_SEGMENTS_SAMPLED: u8 = 2;

/// Address family markers in [`FlowKey::family`].
pub mod family {
    /// Not IP: ARP and other ethertypes (addresses and ports are zero,
    /// `proto` holds [`super::proto::ARP`] or [`super::proto::OTHER_L2`]).
    pub const NON_IP: u8 = 0;
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 6;
}

/// Values of [`FlowKey::proto`] beyond the IP protocol numbers.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    /// An IPv6 packet whose extension header chain was longer than we follow.
    pub const IPV6_UNPARSED: u8 = 255;
    /// ARP frames (family NON_IP).
    pub const ARP: u8 = 254;
    /// Any other ethertype (family NON_IP).
    pub const OTHER_L2: u8 = 253;
}

/// One flow, seen from the device on the LAN side.
///
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one key type
/// serves both families. Ports are host byte order; zero for protocols
/// without ports and for non-first fragments.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub device_ip: [u8; 16],
    pub remote_ip: [u8; 16],
    pub device_mac: [u8; 6],
    pub device_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub proto: u8,
}

impl FlowKey {
    pub const SIZE: usize = core::mem::size_of::<FlowKey>();
}

/// Cumulative counters of one flow on one CPU (the map is per-CPU, so
/// userspace sums the CPUs). "Up" is device → anywhere (TC ingress on the
/// device's port), "down" is anywhere → device (TC egress).
///
/// Bytes are IP-layer bytes as they cross the wire: for a GSO/GRO
/// super-packet the headers of every segment are counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowCounters {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) of the first
    /// packet on this CPU.
    pub first_seen_ns: u64,
    /// `bpf_ktime_get_coarse_ns` of the latest packet on this CPU.
    pub last_seen_ns: u64,
    /// OR of the TCP flags seen (FIN=0x01 SYN=0x02 RST=0x04 … as on the wire).
    pub tcp_flags: u8,
    /// Payload segments from the device sampled so far (TLS/QUIC/HTTP).
    pub segments_sampled: u8,
    pub _pad: [u8; 2],
    /// TCP sequence number of the device's latest segment on this CPU. While
    /// a device is blocked its retransmissions carry the oldest unacknowledged
    /// sequence number, which an ICMP error must quote for the device's TCP
    /// to stop backing off (RFC 6069) once it is unblocked.
    pub last_seq_up: u32,
    /// [`FlowCacheSlot::epoch`] of the latest batch of counts this CPU's
    /// flow cache added here: a reader that saw that batch still pending
    /// in the cache knows it is now counted here instead.
    pub flushed_epoch: u64,
}

/// One slot of the per-CPU flow cache (`FLOW_CACHE`): a flow whose packets
/// are being counted here rather than in the flow table, and the counts not
/// yet added to the table.
///
/// A flow's total on one CPU is its table entry plus, while the batch has
/// not been flushed, the slot's pending counts. The reader tells the two
/// apart by the epoch: each batch has its own (the slot's epoch only
/// grows), and a flush stamps the batch's epoch into the table entry
/// ([`FlowCounters::flushed_epoch`]). Reading the cache before the table,
/// a pending batch with `epoch > flushed_epoch` is not in the table yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowCacheSlot {
    pub key: FlowKey,
    /// Nonzero while the slot holds a flow.
    pub in_use: u8,
    pub tcp_flags: u8,
    pub segments_sampled: u8,
    pub _pad: u8,
    /// The pending batch's number; grows at every flush and every new flow.
    pub epoch: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub packets_up: u64,
    pub packets_down: u64,
    /// TCP sequence number of the device's latest segment in this batch.
    pub last_seq_up: u32,
    pub _pad2: u32,
}

impl FlowCacheSlot {
    /// Whether counts are waiting to be added to the flow table.
    pub fn pending(&self) -> bool {
        self.in_use != 0 && (self.packets_up | self.packets_down) != 0
    }
}

impl FlowKey {
    /// This key's slot in the flow cache ([`flow_cache_slot`]).
    pub fn cache_slot(&self) -> u32 {
        // SAFETY: FlowKey is 44 bytes of plain data; unaligned reads.
        let p = self as *const FlowKey as *const u8;
        let w = |i: usize| unsafe { core::ptr::read_unaligned(p.add(i * 8) as *const u64) };
        let tail = unsafe { core::ptr::read_unaligned(p.add(40) as *const u32) };
        flow_cache_slot([w(0), w(1), w(2), w(3), w(4)], tail)
    }
}

/// Why a sample was taken ([`SampleHeader::reason`]).
pub mod reason {
    pub const DNS: u8 = 1;
    pub const DHCP: u8 = 2;
    pub const DHCPV6: u8 = 3;
    pub const MDNS: u8 = 4;
    pub const SSDP: u8 = 5;
    pub const TLS: u8 = 6;
    pub const QUIC: u8 = 7;
    pub const HTTP: u8 = 8;
}

/// Direction of a packet relative to the device.
pub mod direction {
    /// Device → anywhere (TC ingress on the device's port).
    pub const UP: u8 = 0;
    /// Anywhere → device (TC egress on the device's port).
    pub const DOWN: u8 = 1;
}

/// A frame prefix sent to userspace through the `SAMPLES` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SampleHeader {
    /// `bpf_ktime_get_boot_ns` when the frame was seen.
    pub timestamp_ns: u64,
    /// Interface the frame crossed.
    pub ifindex: u32,
    /// Length of the whole frame (`skb->len`).
    pub frame_len: u32,
    /// Bytes of the frame copied into `data` (≤ SAMPLE_BYTES).
    pub captured: u16,
    pub direction: u8,
    pub reason: u8,
    pub _pad: [u8; 4],
}

/// The ring buffer record: header then the frame from its Ethernet header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sample {
    pub header: SampleHeader,
    pub data: [u8; SAMPLE_BYTES],
}

/// Indices into the per-CPU `STATS` array.
pub mod stat {
    /// Frames seen by the programs.
    pub const FRAMES: u32 = 0;
    /// Frames too short for the headers they announce, or malformed headers.
    pub const MALFORMED: u32 = 1;
    /// Frames that are not IP (ARP included).
    pub const NON_IP: u32 = 2;
    /// IPv4/IPv6 fragments (a non-first fragment has no ports: counted with port 0).
    pub const FRAGMENTS: u32 = 3;
    /// IPv6 packets whose extension header chain exceeds what is followed.
    pub const IPV6_EXT_LIMIT: u32 = 4;
    /// Flows created in the flow table (userspace derives evictions from it).
    pub const FLOWS_CREATED: u32 = 5;
    /// Flow updates that failed (the map refused the insert).
    pub const FLOW_UPDATE_FAILED: u32 = 6;
    /// Samples written to the ring buffer.
    pub const SAMPLES_SENT: u32 = 7;
    /// Samples lost because the ring buffer was full.
    pub const SAMPLES_DROPPED: u32 = 8;
    /// Frames with one or more VLAN tags.
    pub const VLAN_TAGGED: u32 = 9;
    /// Multicast/broadcast frames leaving towards a port (not a device's own traffic).
    pub const EGRESS_GROUP_SKIPPED: u32 = 10;
    /// Packets whose flow was not in its flow cache slot (a new flow, or
    /// another flow had the slot): these pay for a flow-table lookup.
    pub const FLOW_CACHE_MISSES: u32 = 11;
    /// Flow cache batches dropped because the LRU had evicted their flow's
    /// table entry (map pressure, like the eviction itself).
    pub const FLOW_CACHE_ORPHANED: u32 = 12;
    pub const COUNT: u32 = 13;

    pub const NAMES: [&str; COUNT as usize] = [
        "frames",
        "malformed",
        "non_ip",
        "fragments",
        "ipv6_ext_limit",
        "flows_created",
        "flow_update_failed",
        "samples_sent",
        "samples_dropped",
        "vlan_tagged",
        "egress_group_skipped",
        "flow_cache_misses",
        "flow_cache_orphaned",
    ];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data without pointers; any bit pattern is valid.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowCounters {}
    unsafe impl aya::Pod for super::FlowCacheSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<FlowKey>(), 16 + 16 + 6 + 2 + 2 + 1 + 1);
        assert_eq!(
            core::mem::size_of::<FlowCounters>(),
            6 * 8 + 1 + 1 + 2 + 4 + 8
        );
        assert_eq!(
            core::mem::size_of::<FlowCacheSlot>(),
            FlowKey::SIZE + 4 + 8 + 4 * 8 + 4 + 4
        );
        assert_eq!(
            core::mem::size_of::<SampleHeader>(),
            8 + 4 + 4 + 2 + 1 + 1 + 4
        );
        assert_eq!(core::mem::size_of::<Sample>(), 24 + SAMPLE_BYTES);
    }
}
