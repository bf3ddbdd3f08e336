//! TC (clsact) programs attached to every LAN-side port of the router.
//!
//! `lan_ingress` sees frames a device sends (keyed by the source MAC),
//! `lan_egress` frames delivered to a device (keyed by the destination MAC).
//! Both count bytes and packets per flow in the per-CPU LRU map `FLOWS`
//! (through the per-CPU flow cache `FLOW_CACHE`) and
//! copy the first bytes of name-bearing packets into the `SAMPLES` ring buffer.
//! They never drop or alter a packet: every path returns `TC_ACT_UNSPEC`
//! (`TCX_NEXT` on kernels with TCX), which hands the frame to the next
//! classifier unchanged.
//!
//! Kernel facts behind the choices:
//! - No BTF/CO-RE: OpenWrt kernels ship without BTF, so only `__sk_buff`
//!   fields (a stable UAPI) are read.
//! - The common frame (untagged IPv4 without options or IPv6 without
//!   extension headers, carrying TCP or UDP, headers in the linear part) is
//!   read by direct packet access at constant offsets, with word-sized
//!   loads: ~10 ns. Everything else (VLAN tags, options, extension headers,
//!   fragments, ARP, short or paged headers) is parsed from a copy made with
//!   `bpf_skb_load_bytes` into a per-CPU buffer, where bounded variable
//!   offsets satisfy the verifier on every kernel from 5.15 on (variable
//!   offsets into packet data do not): ~80 ns, but rare.
//! - `gso_segs` (UAPI since 4.x) lets a GRO/GSO super-packet count as the
//!   segments that crossed the wire, with each segment's headers.
//! - The clock is read only when a flow entry is created
//!   (`bpf_ktime_get_coarse_ns`, 5.11+, CLOCK_MONOTONIC_COARSE), not per
//!   packet; the daemon dates activity by the window in which counters
//!   grew. Samples keep the precise boot clock.
//! - A hash-map lookup per packet (`baseline_lookup` measures it alone)
//!   cost more than the rest put together, so a packet of a flow already
//!   seen is counted in a per-CPU, direct-mapped array (`FLOW_CACHE`),
//!   whose batches are added to the LRU table every
//!   `FLOW_CACHE_FLUSH_PACKETS` packets or when another flow needs the slot.
//! - `bpf_ringbuf_output` takes a bounded variable size, so a 300-byte DHCP
//!   sample does not occupy a 1.5 kB slot (`bpf_ringbuf_reserve` needs a
//!   constant size).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::{LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::TcContext,
};
use aya_log_ebpf::warn;
use iot_inspector_common::{
    DEFAULT_FLOW_ENTRIES, FLOW_CACHE_FLUSH_PACKETS, FLOW_CACHE_SLOTS, FlowCacheSlot, FlowCounters,
    FlowKey, SAMPLE_BYTES, SAMPLE_RING_BYTES, SampleHeader, TLS_SEGMENTS_SAMPLED, direction,
    family, flow_cache_slot, proto, reason, stat,
};

#[map]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowCounters> =
    LruPerCpuHashMap::pinned(DEFAULT_FLOW_ENTRIES, BPF_F_NO_COMMON_LRU);

/// Per-CPU LRU lists: no shared lock between CPUs on the hot path.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

/// Per-CPU, direct-mapped cache in front of `FLOWS`: one slot per hash of
/// the key (see [`FlowCacheSlot`] for how the daemon reads the two
/// together). An array lookup with a known index costs a few instructions;
/// the hash map's lookup (jhash over the 44-byte key, bucket walk, LRU
/// reference bit) was ~48 ns of the per-packet cost.
#[map]
static FLOW_CACHE: PerCpuArray<FlowCacheSlot> = PerCpuArray::pinned(FLOW_CACHE_SLOTS, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(stat::COUNT, 0);

#[map]
static SAMPLES: RingBuf = RingBuf::pinned(SAMPLE_RING_BYTES, 0);

/// Per-CPU scratch space for one sample (too big for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_BYTES]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU copy of the frame's first bytes, parsed instead of the packet
/// itself: one `bpf_skb_load_bytes` works the same for linear and paged
/// skbs, and bounded offsets into a map value satisfy the verifier on every
/// kernel from 5.15 on, where variable offsets into packet data do not.
#[map]
static HDRBUF: PerCpuArray<[u8; HDR]> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of headers copied for parsing: Ethernet, two VLAN tags, IPv6 with
/// extension headers, and TCP.
const HDR: usize = 128;

const HEADER_BYTES: usize = core::mem::size_of::<SampleHeader>();
const SCRATCH_BYTES: usize = HEADER_BYTES + SAMPLE_BYTES;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// VLAN tags followed (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed before giving up on the transport header.
const MAX_IPV6_EXT: usize = 6;

#[classifier]
pub fn lan_ingress(ctx: TcContext) -> i32 {
    observe(&ctx, direction::UP);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn lan_egress(ctx: TcContext) -> i32 {
    observe(&ctx, direction::DOWN);
    TC_ACT_UNSPEC
}

/// The floor under any per-flow counting: one lookup of a fixed key in the
/// flow map, nothing else. `cargo xtask bench` reports it next to the empty
/// program so the cost of the map itself is visible. Never attached.
#[classifier]
pub fn baseline_lookup(_ctx: TcContext) -> i32 {
    let key = FlowKey::default();
    if let Some(c) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot; keeps the lookup from being optimised out.
        unsafe { (*c).tcp_flags |= 0 };
    }
    TC_ACT_UNSPEC
}

/// An empty program: the baseline `cargo xtask bench` measures the others
/// against (same packets, same BPF_PROG_TEST_RUN). Never attached.
#[classifier]
pub fn baseline_empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[inline(always)]
fn bump(index: u32, by: u64) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; TC programs run with preemption disabled.
        unsafe { *p += by };
    }
}

/// What the parser learnt from one frame. Kept in a per-CPU map rather than
/// on the 512-byte BPF stack: on the stack it saved nothing measurable on
/// 6.18 (which inlines per-CPU array lookups), and the parser's extra
/// register spills made Debian's 6.12 verifier lose an offset's bounds
/// ("REG INVARIANTS VIOLATION") and refuse the program.
#[repr(C)]
#[derive(Clone, Copy)]
struct Parsed {
    /// First, so that it starts the 8-aligned map value (see `store`).
    key: FlowKey,
    /// IP-layer bytes on the wire (all GSO segments with their headers).
    bytes: u64,
    /// 0 for frames that are neither counted nor sampled.
    packets: u64,
    /// Transport payload bytes of this skb (0 when unknown).
    payload_len: u32,
    tcp_flags: u8,
    /// TCP sequence number (host order); 0 for other protocols.
    tcp_seq: u32,
    /// Offset of the transport payload from the frame start.
    payload_off: u16,
}

#[map]
static PARSED: PerCpuArray<Parsed> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn observe(ctx: &TcContext, dir: u8) {
    bump(stat::FRAMES, 1);
    let Some(p) = PARSED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; TC programs are not preempted.
    let p = unsafe { &mut *p };
    if !parse_direct(ctx, dir, p) && parse(ctx, dir, p).is_none() {
        bump(stat::MALFORMED, 1);
        return;
    }
    if p.packets == 0 {
        return;
    }
    let segments_before = account(ctx, p, dir);
    if let Some(why) = sample_reason(ctx, p, dir, segments_before) {
        sample(ctx, dir, why);
    }
}

/// The copied headers and how many bytes of them are real.
struct Hdr {
    buf: *const [u8; HDR],
    avail: usize,
}

impl Hdr {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > HDR - N || off + N > self.avail {
            return None;
        }
        // SAFETY: off + N ≤ HDR, checked above; the buffer is this CPU's slot.
        Some(unsafe {
            core::ptr::read_unaligned((self.buf as *const u8).add(off) as *const [u8; N])
        })
    }

    #[inline(always)]
    fn u8(&self, off: usize) -> Option<u8> {
        self.bytes::<1>(off).map(|b| b[0])
    }

    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.bytes::<2>(off).map(u16::from_be_bytes)
    }
}

/// Copies the frame's first bytes into this CPU's header buffer.
#[inline(always)]
fn copy_headers(ctx: &TcContext) -> Option<Hdr> {
    let buf = HDRBUF.get_ptr_mut(0)?;
    let mut n = ctx.len() as usize;
    if n > HDR {
        n = HDR;
    }
    // Checked on an opaque copy right before the helper: LLVM spilled `n`
    // before the check, and older verifiers (Debian's 6.1) do not carry a
    // bound learnt on a register over to its spilled copy ("R3 min value
    // is outside of the allowed memory range").
    let n = core::hint::black_box(n);
    if n < 14 {
        return None;
    }
    // SAFETY: `buf` holds HDR bytes and n ≤ HDR.
    let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb as *const _, 0, buf as *mut _, n as u32) };
    if rc != 0 {
        return None;
    }
    Some(Hdr {
        buf: buf as *const [u8; HDR],
        avail: n,
    })
}

#[inline(always)]
fn set_v4_mapped(dst: &mut [u8; 16], a: [u8; 4]) {
    *dst = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ];
}

/// Loads a `T` from the packet at a constant offset the caller has checked
/// against `data_end`.
///
/// Word-sized loads, not byte by byte: every offset used is aligned for its
/// width when the frame starts at `NET_IP_ALIGN` (2), as drivers arrange on
/// CPUs without cheap unaligned access (where the verifier insists on it);
/// x86 and arm64 accept any alignment.
#[inline(always)]
unsafe fn load<T: Copy>(data: usize, off: usize) -> T {
    // SAFETY: bounds checked by the caller; alignment as explained above.
    unsafe { core::ptr::read((data + off) as *const T) }
}

/// Stores a `T` into the parsed key at `off` (the key starts the 8-aligned
/// map value and every offset used is aligned for its width).
#[inline(always)]
unsafe fn store<T: Copy>(key: *mut FlowKey, off: usize, v: T) {
    // SAFETY: `off + size_of::<T>() <= FlowKey::SIZE` at every call site.
    unsafe { core::ptr::write((key as *mut u8).add(off) as *mut T, v) }
}

/// Offsets inside [`FlowKey`] (`#[repr(C)]`).
const K_DEVICE_IP: usize = 0;
const K_REMOTE_IP: usize = 16;
const K_MAC: usize = 32;

/// The common case read straight from the packet: an untagged frame with
/// IPv4 (no options, not a fragment) or IPv6 (no extension headers) carrying
/// TCP or UDP, its headers in the skb's linear part. Every offset is a
/// constant, so one `data + K <= data_end` comparison proves the reads to
/// the verifier (it learns packet bounds only from pointer comparisons).
/// This skips the header copy and the bounds check per field that the
/// general parser needs. Returns false for anything else, which `parse`
/// then handles from a copy of the headers.
#[inline(always)]
fn parse_direct(ctx: &TcContext, dir: u8, p: &mut Parsed) -> bool {
    let data = ctx.data();
    let end = ctx.data_end();
    // Ethernet + IPv4 + TCP up to its flags.
    if data + 48 > end {
        return false;
    }
    let up = dir == direction::UP;
    // SAFETY (every `load` below): offsets < 48, or < 68 after the IPv6
    // check; see `load` for alignment.
    let mac_at = if up { 6 } else { 0 };
    let mac: [u16; 3] = unsafe {
        [
            load(data, mac_at),
            load(data, mac_at + 2),
            load(data, mac_at + 4),
        ]
    };
    if !up && mac[0] & 1 != 0 {
        return false; // a flooded group frame: `parse` skips and counts it
    }
    let ethertype = u16::from_be(unsafe { load(data, 12) });
    // A tag the NIC (or the kernel's receive path) moved into metadata
    // leaves the frame untagged: still the fast path, still counted.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        bump(stat::VLAN_TAGGED, 1);
    }
    let l3_len = ctx.len() as u64 - 14;
    let gso_segs = unsafe { (*ctx.skb.skb).gso_segs } as u64;
    let key: *mut FlowKey = &mut p.key;
    let (dev_at, rem_at) = if up { (0usize, 1usize) } else { (1, 0) };
    let (l4_proto, l4, ip_bytes);
    if ethertype == ETH_P_IP {
        let w0: u32 = unsafe { load(data, 14) };
        let w1: u32 = unsafe { load(data, 18) };
        let w2: u32 = unsafe { load(data, 22) };
        let w0 = w0.to_ne_bytes();
        let (w1, w2) = (w1.to_ne_bytes(), w2.to_ne_bytes());
        // Version 4, header length 20 (no options).
        if w0[0] != 0x45 {
            return false;
        }
        // A fragment (more-fragments set or an offset): `parse` counts it.
        if w1[2] & 0x3f != 0 || w1[3] != 0 {
            return false;
        }
        let tot_len = u16::from_be_bytes([w0[2], w0[3]]) as u64;
        let Some(n) = ip_bytes_of(tot_len, tot_len, 20, l3_len, gso_segs) else {
            return false;
        };
        ip_bytes = n;
        l4_proto = w2[1];
        let addrs: [u32; 2] = unsafe { [load(data, 26), load(data, 30)] };
        // ::ffff:a.b.c.d
        let mapped = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
        unsafe {
            store(key, K_DEVICE_IP, 0u64);
            store(key, K_DEVICE_IP + 8, mapped);
            store(key, K_DEVICE_IP + 12, addrs[dev_at]);
            store(key, K_REMOTE_IP, 0u64);
            store(key, K_REMOTE_IP + 8, mapped);
            store(key, K_REMOTE_IP + 12, addrs[rem_at]);
        }
        p.key.family = family::IPV4;
        l4 = 34usize;
    } else if ethertype == ETH_P_IPV6 {
        if data + 68 > end {
            return false;
        }
        let w0: u32 = unsafe { load(data, 14) };
        let w1: u32 = unsafe { load(data, 18) };
        let (w0, w1) = (w0.to_ne_bytes(), w1.to_ne_bytes());
        if w0[0] >> 4 != 6 {
            return false;
        }
        let payload_len = u16::from_be_bytes([w1[0], w1[1]]) as u64;
        let Some(n) = ip_bytes_of(payload_len, 40 + payload_len, 40, l3_len, gso_segs) else {
            return false;
        };
        ip_bytes = n;
        l4_proto = w1[2];
        let addrs: [[u64; 2]; 2] = unsafe {
            [
                [load(data, 22), load(data, 30)],
                [load(data, 38), load(data, 46)],
            ]
        };
        unsafe {
            store(key, K_DEVICE_IP, addrs[dev_at][0]);
            store(key, K_DEVICE_IP + 8, addrs[dev_at][1]);
            store(key, K_REMOTE_IP, addrs[rem_at][0]);
            store(key, K_REMOTE_IP + 8, addrs[rem_at][1]);
        }
        p.key.family = family::IPV6;
        l4 = 54usize;
    } else {
        return false;
    }
    // Checked above: l4 + 14 ≤ 48 (IPv4) or ≤ 68 (IPv6).
    let (ports, seq, tcp): ([u16; 2], u32, u16) = if l4 == 34 {
        unsafe {
            (
                [load(data, 34), load(data, 36)],
                load(data, 38),
                load(data, 46),
            )
        }
    } else {
        unsafe {
            (
                [load(data, 54), load(data, 56)],
                load(data, 58),
                load(data, 66),
            )
        }
    };
    let l4_hlen = match l4_proto {
        proto::TCP => {
            let [off, flags] = tcp.to_ne_bytes();
            let doff = ((off >> 4) as usize) * 4;
            if doff < 20 {
                return false;
            }
            p.tcp_flags = flags;
            p.tcp_seq = u32::from_be(seq);
            doff
        }
        proto::UDP => {
            p.tcp_flags = 0;
            p.tcp_seq = 0;
            8
        }
        _ => return false,
    };
    p.key.device_port = u16::from_be(ports[dev_at]);
    p.key.remote_port = u16::from_be(ports[rem_at]);
    unsafe {
        store(key, K_MAC, mac[0]);
        store(key, K_MAC + 2, mac[1]);
        store(key, K_MAC + 4, mac[2]);
    }
    p.key.proto = l4_proto;
    let hdrs = (l4 - 14 + l4_hlen) as u64;
    set_size(p, ip_bytes, hdrs, gso_segs);
    p.payload_len = ip_bytes.saturating_sub(hdrs) as u32;
    p.payload_off = (l4 + l4_hlen) as u16;
    true
}

/// IP-layer bytes of one packet: `total` (from the header's length
/// `field`) when it is plausible, the skb's own length when the field is 0
/// (BIG TCP) or the skb is a GSO super-packet; `None` for a header that
/// claims fewer than `min` or more bytes than the skb holds.
#[inline(always)]
fn ip_bytes_of(field: u64, total: u64, min: u64, l3_len: u64, gso_segs: u64) -> Option<u64> {
    if field == 0 || gso_segs > 1 {
        return Some(l3_len);
    }
    if total < min || total > l3_len {
        return None;
    }
    Some(total)
}

/// Bytes and packets as they crossed the wire: a GSO super-packet counts
/// every segment, each with its own `hdrs` bytes of headers.
#[inline(always)]
fn set_size(p: &mut Parsed, ip_bytes: u64, hdrs: u64, gso_segs: u64) {
    if gso_segs > 1 {
        p.bytes = ip_bytes + (gso_segs - 1) * hdrs;
        p.packets = gso_segs;
    } else {
        p.bytes = ip_bytes;
        p.packets = 1;
    }
}

/// Fills `p` from the frame; `None` when its headers are malformed.
#[inline(never)]
fn parse(ctx: &TcContext, dir: u8, p: &mut Parsed) -> Option<()> {
    let skb_len = ctx.len() as usize;
    p.key = FlowKey::default();
    p.bytes = 0;
    p.packets = 0;
    p.payload_len = 0;
    p.tcp_flags = 0;
    p.tcp_seq = 0;
    p.payload_off = 0;
    let h = copy_headers(ctx)?;
    if dir == direction::UP {
        p.key.device_mac = h.bytes(6)?;
    } else {
        let dst: [u8; 6] = h.bytes(0)?;
        if dst[0] & 1 != 0 {
            // A broadcast/multicast frame flooded to this port is not the
            // device's own traffic; the sender's port already counted it.
            bump(stat::EGRESS_GROUP_SKIPPED, 1);
            return Some(());
        }
        p.key.device_mac = dst;
    }

    let mut off = 12usize;
    let mut ethertype = h.be16(off)?;
    // A tag the NIC (or the kernel's receive path) moved into metadata.
    let mut tagged = unsafe { (*ctx.skb.skb).vlan_present } != 0;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        tagged = true;
        off += 4;
        ethertype = h.be16(off)?;
    }
    if tagged {
        bump(stat::VLAN_TAGGED, 1);
    }
    let l3 = off + 2;
    let l3_len = skb_len.checked_sub(l3)? as u64;
    let gso_segs = unsafe { (*ctx.skb.skb).gso_segs } as u64;
    let up = dir == direction::UP;
    // Where the device's and the remote's addresses sit in the IP header.
    let (dev_at, rem_at) = if up { (0, 1) } else { (1, 0) };

    let (l4_proto, l4, ip_bytes, has_ports);
    match ethertype {
        ETH_P_IP => {
            let vihl = h.u8(l3)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            let tot_len = h.be16(l3 + 2)? as u64;
            let frag = h.be16(l3 + 6)?;
            l4_proto = h.u8(l3 + 9)?;
            let addrs = [h.bytes::<4>(l3 + 12)?, h.bytes::<4>(l3 + 16)?];
            set_v4_mapped(&mut p.key.device_ip, addrs[dev_at]);
            set_v4_mapped(&mut p.key.remote_ip, addrs[rem_at]);
            p.key.family = family::IPV4;
            ip_bytes = ip_bytes_of(tot_len, tot_len, ihl as u64, l3_len, gso_segs)?;
            if frag & 0x3fff != 0 {
                bump(stat::FRAGMENTS, 1);
            }
            // Only the first fragment carries the transport header.
            has_ports = frag & 0x1fff == 0;
            l4 = l3 + ihl;
        }
        ETH_P_IPV6 => {
            if h.u8(l3)? >> 4 != 6 {
                return None;
            }
            let payload_len = h.be16(l3 + 4)? as u64;
            let mut next = h.u8(l3 + 6)?;
            p.key.device_ip = h.bytes(l3 + 8 + 16 * dev_at)?;
            p.key.remote_ip = h.bytes(l3 + 8 + 16 * rem_at)?;
            p.key.family = family::IPV6;
            ip_bytes = ip_bytes_of(payload_len, 40 + payload_len, 40, l3_len, gso_segs)?;
            let mut off = l3 + 40;
            let mut first_fragment = true;
            let mut done = false;
            for _ in 0..MAX_IPV6_EXT {
                match next {
                    // Hop-by-hop, routing, destination options: (len+1)*8 bytes.
                    0 | 43 | 60 => {
                        let nh = h.u8(off)?;
                        let len = h.u8(off + 1)? as usize;
                        next = nh;
                        off += (len + 1) * 8;
                    }
                    // Fragment header: 8 bytes; offset in the upper 13 bits.
                    44 => {
                        let nh = h.u8(off)?;
                        let fo = h.be16(off + 2)?;
                        bump(stat::FRAGMENTS, 1);
                        if fo & 0xfff8 != 0 {
                            first_fragment = false;
                        }
                        next = nh;
                        off += 8;
                    }
                    // Authentication header: (len+2)*4 bytes.
                    51 => {
                        let nh = h.u8(off)?;
                        let len = h.u8(off + 1)? as usize;
                        next = nh;
                        off += (len + 2) * 4;
                    }
                    _ => {
                        done = true;
                        break;
                    }
                }
            }
            if !done && matches!(next, 0 | 43 | 44 | 51 | 60) {
                bump(stat::IPV6_EXT_LIMIT, 1);
                next = proto::IPV6_UNPARSED;
            }
            l4_proto = next;
            has_ports = first_fragment && next != proto::IPV6_UNPARSED;
            l4 = off;
        }
        ETH_P_ARP => {
            bump(stat::NON_IP, 1);
            p.key.family = family::NON_IP;
            p.key.proto = proto::ARP;
            // ARP for IPv4 over Ethernet: sender IP at 14, target IP at 24.
            if let (Some(spa), Some(tpa)) = (h.bytes::<4>(l3 + 14), h.bytes::<4>(l3 + 24)) {
                let addrs = [spa, tpa];
                set_v4_mapped(&mut p.key.device_ip, addrs[dev_at]);
                set_v4_mapped(&mut p.key.remote_ip, addrs[rem_at]);
            }
            p.bytes = l3_len;
            p.packets = 1;
            return Some(());
        }
        _ => {
            bump(stat::NON_IP, 1);
            p.key.family = family::NON_IP;
            p.key.proto = proto::OTHER_L2;
            p.bytes = l3_len;
            p.packets = 1;
            return Some(());
        }
    }
    p.key.proto = l4_proto;

    let mut l4_hlen = 0usize;
    if has_ports {
        match l4_proto {
            proto::TCP => {
                // Ports, sequence number, data offset and flags in one read.
                let t: [u8; 14] = h.bytes(l4)?;
                let ports = [
                    u16::from_be_bytes([t[0], t[1]]),
                    u16::from_be_bytes([t[2], t[3]]),
                ];
                p.key.device_port = ports[dev_at];
                p.key.remote_port = ports[rem_at];
                let doff = ((t[12] >> 4) as usize) * 4;
                if doff < 20 {
                    return None;
                }
                p.tcp_flags = t[13];
                p.tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
                l4_hlen = doff;
            }
            proto::UDP => {
                let ports = [h.be16(l4)?, h.be16(l4 + 2)?];
                p.key.device_port = ports[dev_at];
                p.key.remote_port = ports[rem_at];
                l4_hlen = 8;
            }
            _ => {}
        }
    }

    let hdrs = ((l4 - l3) + l4_hlen) as u64;
    set_size(p, ip_bytes, hdrs, gso_segs);
    if l4_hlen > 0 {
        p.payload_len = ip_bytes.saturating_sub(hdrs) as u32;
    }
    p.payload_off = (l4 + l4_hlen) as u16;
    Some(())
}

/// Adds a parsed frame to a flow's counts — a cache slot's or a table
/// entry's, which have the same fields but are different types — and
/// returns how many payload segments were sampled before it. A macro
/// rather than a trait: both expansions inline into straight-line code.
macro_rules! count_frame {
    ($c:expr, $p:expr, $dir:expr) => {{
        let (c, p, dir) = (&mut *$c, $p, $dir);
        if dir == direction::UP {
            c.bytes_up += p.bytes;
            c.packets_up += p.packets;
            c.last_seq_up = p.tcp_seq;
        } else {
            c.bytes_down += p.bytes;
            c.packets_down += p.packets;
        }
        c.tcp_flags |= p.tcp_flags;
        let before = c.segments_sampled;
        c.segments_sampled = segments_after(p, dir, before);
        before
    }};
}

/// Payload segments of a flow sampled once this frame is: one more when it
/// is a segment the budget covers and the budget is not spent.
#[inline(always)]
fn segments_after(p: &Parsed, dir: u8, before: u8) -> u8 {
    if wants_segment(p, dir) && before < TLS_SEGMENTS_SAMPLED {
        before + 1
    } else {
        before
    }
}

/// Counts the frame: in its flow cache slot when its flow is there (the
/// common case: a word compare instead of a hash-map lookup), else in the
/// flow table, after which the flow takes the slot. Returns how many
/// payload segments of the flow were sampled before this frame.
#[inline(always)]
fn account(ctx: &TcContext, p: &Parsed, dir: u8) -> u8 {
    // SAFETY: `p.key` starts the 8-aligned PARSED value.
    let (words, tail) = unsafe { key_words(&p.key) };
    let index = flow_cache_slot(words, tail);
    let Some(s) = FLOW_CACHE.get_ptr_mut(index) else {
        return account_table(ctx, p, dir);
    };
    // SAFETY: this CPU's slot; TC programs are not preempted.
    let s = unsafe { &mut *s };
    // SAFETY: the key starts the 8-aligned slot value.
    if s.in_use != 0 && unsafe { same_key(&s.key, words, tail) } {
        let before = count_frame!(s, p, dir);
        if s.packets_up + s.packets_down >= FLOW_CACHE_FLUSH_PACKETS {
            flush(s);
        }
        return before;
    }
    bump(stat::FLOW_CACHE_MISSES, 1);
    if s.in_use != 0 {
        flush(s);
    }
    let before = account_table(ctx, p, dir);
    // The flow takes the slot, with nothing pending: this frame is in the
    // table already.
    unsafe { set_key_words(&mut s.key, words, tail) };
    s.in_use = 1;
    s.epoch += 1;
    s.segments_sampled = segments_after(p, dir, before);
    before
}

/// Adds a slot's pending counts to the flow table and starts a new batch.
///
/// The table entry is normally there (the flow's first frame created it,
/// and the daemon does not remove the entry of a flow holding a slot). When
/// the LRU evicted it under pressure, the batch is dropped with it and the
/// slot freed, so the flow's next frame starts a new entry: the daemon may
/// already have counted part of the batch, and a new entry holding it would
/// count that part twice. Eviction loses counts either way (map pressure).
#[inline(never)]
fn flush(s: &mut FlowCacheSlot) {
    if s.packets_up | s.packets_down != 0 {
        if let Some(c) = FLOWS.get_ptr_mut(&s.key) {
            // SAFETY: the value is this CPU's slot of a per-CPU map.
            let c = unsafe { &mut *c };
            c.bytes_up += s.bytes_up;
            c.bytes_down += s.bytes_down;
            c.packets_up += s.packets_up;
            c.packets_down += s.packets_down;
            if s.packets_up != 0 {
                c.last_seq_up = s.last_seq_up;
            }
            c.tcp_flags |= s.tcp_flags;
            if s.segments_sampled > c.segments_sampled {
                c.segments_sampled = s.segments_sampled;
            }
            c.flushed_epoch = s.epoch;
        } else {
            bump(stat::FLOW_CACHE_ORPHANED, 1);
            s.in_use = 0;
        }
    }
    s.epoch += 1;
    s.bytes_up = 0;
    s.bytes_down = 0;
    s.packets_up = 0;
    s.packets_down = 0;
    s.tcp_flags = 0;
}

/// The key as five words and a tail, for hashing, comparing and copying.
///
/// # Safety
/// `k` must be 8-aligned (it starts a map value everywhere it is used).
#[inline(always)]
unsafe fn key_words(k: &FlowKey) -> ([u64; 5], u32) {
    let p = k as *const FlowKey as *const u8;
    // SAFETY: 44 bytes, 8-aligned per the contract.
    unsafe {
        (
            [
                core::ptr::read(p as *const u64),
                core::ptr::read(p.add(8) as *const u64),
                core::ptr::read(p.add(16) as *const u64),
                core::ptr::read(p.add(24) as *const u64),
                core::ptr::read(p.add(32) as *const u64),
            ],
            core::ptr::read(p.add(40) as *const u32),
        )
    }
}

/// Whether `k` is the key of [`key_words`]' parts: XORs ORed together, as
/// `==` on arrays compiles to a BPF-to-BPF call (a call and a return are
/// dear on CPUs with return-stack mitigations).
///
/// # Safety
/// `k` must be 8-aligned.
#[inline(always)]
unsafe fn same_key(k: &FlowKey, words: [u64; 5], tail: u32) -> bool {
    // SAFETY: per the contract.
    let (w, t) = unsafe { key_words(k) };
    (w[0] ^ words[0])
        | (w[1] ^ words[1])
        | (w[2] ^ words[2])
        | (w[3] ^ words[3])
        | (w[4] ^ words[4])
        | (t ^ tail) as u64
        == 0
}

/// Writes a key from [`key_words`]' parts.
///
/// # Safety
/// `k` must be 8-aligned.
#[inline(always)]
unsafe fn set_key_words(k: &mut FlowKey, words: [u64; 5], tail: u32) {
    let p = k as *mut FlowKey as *mut u8;
    // SAFETY: 44 bytes, 8-aligned per the contract.
    unsafe {
        core::ptr::write(p as *mut u64, words[0]);
        core::ptr::write(p.add(8) as *mut u64, words[1]);
        core::ptr::write(p.add(16) as *mut u64, words[2]);
        core::ptr::write(p.add(24) as *mut u64, words[3]);
        core::ptr::write(p.add(32) as *mut u64, words[4]);
        core::ptr::write(p.add(40) as *mut u32, tail);
    }
}

/// Counts the frame in the flow table (a flow not in the cache).
#[inline(never)]
fn account_table(ctx: &TcContext, p: &Parsed, dir: u8) -> u8 {
    if let Some(c) = FLOWS.get_ptr_mut(&p.key) {
        // SAFETY: the value is this CPU's slot of a per-CPU map.
        let c = unsafe { &mut *c };
        return count_frame!(c, p, dir);
    }
    // A new entry (or a new CPU's slot) is the only place the clock is read:
    // it tells userspace a new flow from a continuing one. Last-seen is the
    // daemon's business (the window in which the counters grew); reading
    // even the coarse clock for every packet cost ~14 ns in the benchmark.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mut c = FlowCounters {
        first_seen_ns: now,
        last_seen_ns: now,
        ..FlowCounters::default()
    };
    count_frame!(&mut c, p, dir);
    match FLOWS.insert(&p.key, &c, 0) {
        Ok(()) => bump(stat::FLOWS_CREATED, 1),
        Err(e) => {
            bump(stat::FLOW_UPDATE_FAILED, 1);
            warn!(ctx, "flow table insert failed: {}", e);
        }
    }
    0
}

/// Whether this frame is a payload segment from the device that counts
/// against the per-flow TLS/QUIC/HTTP sample budget.
#[inline(always)]
fn wants_segment(p: &Parsed, dir: u8) -> bool {
    dir == direction::UP
        && p.payload_len > 0
        && matches!(p.key.proto, proto::TCP | proto::UDP)
        && matches!(p.key.remote_port, 443 | 80 | 8080)
}

#[inline(always)]
fn sample_reason(ctx: &TcContext, p: &Parsed, dir: u8, segments_before: u8) -> Option<u8> {
    if p.packets == 0 || p.payload_len == 0 {
        return None;
    }
    let (dp, rp) = (p.key.device_port, p.key.remote_port);
    let either = |port: u16| dp == port || rp == port;
    match p.key.proto {
        proto::UDP => {
            if either(53) {
                Some(reason::DNS)
            } else if either(67) || either(68) {
                Some(reason::DHCP)
            } else if either(546) || either(547) {
                Some(reason::DHCPV6)
            } else if either(5353) {
                Some(reason::MDNS)
            } else if either(1900) {
                Some(reason::SSDP)
            } else if rp == 443 && dir == direction::UP && segments_before < TLS_SEGMENTS_SAMPLED {
                // QUIC long-header packets (Initial, Handshake) have the top bit set.
                let first = ctx.load::<u8>(p.payload_off as usize).ok()?;
                (first & 0x80 != 0).then_some(reason::QUIC)
            } else {
                None
            }
        }
        proto::TCP => {
            if either(53) {
                Some(reason::DNS)
            } else if dir != direction::UP {
                None
            } else if rp == 443 && segments_before < TLS_SEGMENTS_SAMPLED {
                Some(reason::TLS)
            } else if (rp == 80 || rp == 8080) && segments_before < 1 {
                Some(reason::HTTP)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[inline(always)]
fn sample(ctx: &TcContext, dir: u8, why: u8) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let buf = buf as *mut u8;
    let frame_len = ctx.len();
    let mut n = frame_len as usize;
    if n > SAMPLE_BYTES {
        n = SAMPLE_BYTES;
    }
    // `< 14` rather than `== 0`: older verifiers (Debian's 6.1) learn no
    // lower bound from `!= 0`, and bpf_skb_load_bytes' length must be
    // provably non-zero. No frame shorter than an Ethernet header is worth
    // sampling anyway.
    if n < 14 {
        return;
    }
    let header = SampleHeader {
        timestamp_ns: unsafe { bpf_ktime_get_boot_ns() },
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        frame_len,
        captured: n as u16,
        direction: dir,
        reason: why,
        _pad: [0; 4],
    };
    // SAFETY: `buf` is this CPU's SCRATCH slot of SCRATCH_BYTES bytes and
    // `n` ≤ SAMPLE_BYTES, so header + data stay inside it.
    unsafe {
        core::ptr::write_unaligned(buf as *mut SampleHeader, header);
        if bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            0,
            buf.add(HEADER_BYTES) as *mut _,
            n as u32,
        ) != 0
        {
            return;
        }
        let record = core::slice::from_raw_parts(buf as *const u8, HEADER_BYTES + n);
        match SAMPLES.output::<[u8]>(record, 0) {
            Ok(()) => bump(stat::SAMPLES_SENT, 1),
            Err(_) => bump(stat::SAMPLES_DROPPED, 1),
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The kernel needs a GPL-compatible licence for some helpers; the programs
/// are dual MIT/GPL-2.0.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
