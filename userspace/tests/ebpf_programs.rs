//! The TC programs run by the kernel on crafted frames (BPF_PROG_TEST_RUN):
//! every header combination they parse, and hostile frames. Checks the flow
//! keys and counters they leave, the statistics, and the samples.
//!
//! Needs root and the eBPF object (`cargo xtask test` builds it).

use std::net::IpAddr;
use std::path::PathBuf;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use iot_inspector::daemon::key_ips;
use iot_inspector::datapath::{Datapath, FlowReading, LoadOptions, RawSample};
use iot_inspector_common::{FlowKey, SAMPLE_BYTES, programs, proto, reason};

const DEV: [u8; 6] = [0x24, 0x0a, 0xc4, 0x00, 0x00, 0x01];
const GW: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const DEV4: [u8; 4] = [192, 0, 2, 10];
const SRV4: [u8; 4] = [203, 0, 113, 10];
const DEV6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const SRV6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn bpf_object() -> PathBuf {
    std::env::var_os("IOT_INSPECTOR_BPF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bpf/iot-inspector.bpf.o")
        })
}

/// A loaded copy of the programs with maps pinned in a private bpffs.
struct Loaded {
    dp: Datapath,
    dir: tempfile::TempDir,
}

impl Loaded {
    fn new() -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let dp = Datapath::load(&LoadOptions {
            object: bpf_object(),
            pin_dir: dir.path().join("pins"),
            flow_entries: 4096,
        })
        .expect("loading the eBPF object (run as root after `cargo xtask build`)");
        Loaded { dp, dir }
    }

    fn run(&mut self, program: &str, frame: &[u8]) {
        assert!(
            self.try_run(program, frame),
            "BPF_PROG_TEST_RUN refused a {}-byte frame",
            frame.len()
        );
    }

    /// Runs the program; `false` when the kernel refuses to build an skb
    /// from the bytes (BPF_PROG_TEST_RUN's own checks), which is not the
    /// program's doing.
    fn try_run(&mut self, program: &str, frame: &[u8]) -> bool {
        let prog: &mut SchedClassifier = self
            .dp
            .ebpf_mut()
            .program_mut(program)
            .unwrap()
            .try_into()
            .unwrap();
        let res = match prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        }) {
            Ok(r) => r,
            Err(e) if format!("{e:?}").contains("InvalidInput") => return false,
            Err(e) => panic!("BPF_PROG_TEST_RUN: {e:?}"),
        };
        // TC_ACT_UNSPEC (-1): never drops or redirects.
        assert_eq!(
            res.return_value as i32, -1,
            "the program must pass every frame on"
        );
        true
    }

    fn up(&mut self, frame: &[u8]) {
        self.run(programs::INGRESS, frame)
    }

    fn down(&mut self, frame: &[u8]) {
        self.run(programs::EGRESS, frame)
    }

    fn flows(&self) -> Vec<(FlowKey, FlowReading)> {
        let mut v = Vec::new();
        self.dp.read_flows(|k, r| v.push((k, r))).unwrap();
        v
    }

    fn only_flow(&self) -> (FlowKey, FlowReading) {
        let f = self.flows();
        assert_eq!(f.len(), 1, "expected one flow, got {f:?}");
        f[0]
    }

    fn stat(&self, name: &str) -> u64 {
        self.dp
            .stats()
            .unwrap()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    }

    fn samples(&mut self) -> Vec<RawSample> {
        let mut v = Vec::new();
        self.dp.drain_samples(1000, &mut v);
        v
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = self.dp.unpin_maps();
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn tcp4(payload: &[u8], dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(DEV, GW)
        .ipv4(DEV4, SRV4, 64)
        .tcp(40000, dport, 1, 64000)
        .psh()
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp6(payload: &[u8], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(DEV, GW)
        .ipv6(DEV6, SRV6, 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn ipv4_tcp_both_directions_share_one_flow() {
    let mut l = Loaded::new();
    let up = tcp4(&[1; 100], 8883);
    l.up(&up);
    // The answer, as delivered to the device.
    let mut down = Vec::new();
    PacketBuilder::ethernet2(GW, DEV)
        .ipv4(SRV4, DEV4, 64)
        .tcp(8883, 40000, 1, 64000)
        .ack(1)
        .write(&mut down, &[2; 300])
        .unwrap();
    l.down(&down);
    l.down(&down);
    let (k, r) = l.only_flow();
    assert_eq!(k.device_mac, DEV);
    assert_eq!(key_ips(&k), (ip("192.0.2.10"), ip("203.0.113.10")));
    assert_eq!(
        (k.proto, k.device_port, k.remote_port),
        (proto::TCP, 40000, 8883)
    );
    assert_eq!((r.bytes_up, r.packets_up), (20 + 20 + 100, 1));
    assert_eq!((r.bytes_down, r.packets_down), (2 * (20 + 20 + 300), 2));
    assert_eq!(r.tcp_flags & 0x18, 0x18, "PSH|ACK seen");
    assert!(r.first_seen_ns > 0 && r.last_seen_ns >= r.first_seen_ns);
}

#[test]
fn ipv6_udp_icmp_and_arp_are_keyed() {
    let mut l = Loaded::new();
    l.up(&udp6(&[0; 50], 5000, 6000));
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(DEV, GW)
        .ipv4(DEV4, SRV4, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0; 56])
        .unwrap();
    l.up(&icmp);
    let mut icmp6 = Vec::new();
    PacketBuilder::ethernet2(DEV, GW)
        .ipv6(DEV6, SRV6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut icmp6, &[0; 56])
        .unwrap();
    l.up(&icmp6);
    // ARP request from the device: sender 192.0.2.10 asks for 192.0.2.1.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&DEV);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&DEV);
    arp.extend_from_slice(&DEV4);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[192, 0, 2, 1]);
    l.up(&arp);
    let flows = l.flows();
    let find = |p: u8| {
        flows
            .iter()
            .find(|(k, _)| k.proto == p)
            .unwrap_or_else(|| panic!("no proto {p} in {flows:?}"))
    };
    let (k, r) = find(proto::UDP);
    assert_eq!(key_ips(k), (ip("2001:db8:1::10"), ip("2001:db8:ee::10")));
    assert_eq!(
        (k.device_port, k.remote_port, r.bytes_up),
        (5000, 6000, 40 + 8 + 50)
    );
    assert_eq!(find(proto::ICMP).1.bytes_up, 20 + 8 + 56);
    assert_eq!(find(proto::ICMPV6).1.bytes_up, 40 + 8 + 56);
    let (k, r) = find(proto::ARP);
    assert_eq!(key_ips(k), (ip("192.0.2.10"), ip("192.0.2.1")));
    assert_eq!(r.bytes_up, 28);
    assert_eq!(l.stat("non_ip"), 1);
}

#[test]
fn vlan_and_qinq_tags_are_skipped() {
    let mut l = Loaded::new();
    let plain = tcp4(&[7; 10], 443);
    for tags in [vec![(0x8100u16, 100u16)], vec![(0x88a8, 10), (0x8100, 20)]] {
        let mut f = plain[..12].to_vec();
        for (tpid, vid) in &tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&plain[12..]);
        l.up(&f);
    }
    let (k, r) = l.only_flow();
    assert_eq!((k.remote_port, r.packets_up, r.bytes_up), (443, 2, 2 * 50));
    assert_eq!(l.stat("vlan_tagged"), 2);
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    let mut l = Loaded::new();
    // Hop-by-hop (8 bytes) then destination options (8 bytes) then UDP.
    let udp = udp6(&[9; 20], 1234, 5678);
    let mut f = udp[..14 + 40].to_vec();
    f[14 + 6] = 0; // next header: hop-by-hop
    f.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // → dest opts, PadN
    f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // → UDP
    f.extend_from_slice(&udp[14 + 40..]);
    let plen = (f.len() - 14 - 40) as u16;
    f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    l.up(&f);
    // A non-first fragment: fragment header with offset 8, no ports.
    let mut frag = udp[..14 + 40].to_vec();
    frag[14 + 6] = 44;
    frag.extend_from_slice(&[17, 0, 0x00, 0x40, 0, 0, 0, 1]);
    frag.extend_from_slice(&[0xab; 32]);
    let plen = (frag.len() - 14 - 40) as u16;
    frag[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    l.up(&frag);
    // Seven hop-by-hop headers: more than the programs follow.
    let mut long = udp[..14 + 40].to_vec();
    long[14 + 6] = 0;
    for _ in 0..7 {
        long.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
    }
    let plen = (long.len() - 14 - 40) as u16;
    long[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    l.up(&long);
    let flows = l.flows();
    assert!(
        flows.iter().any(|(k, r)| k.proto == proto::UDP
            && k.device_port == 1234
            && k.remote_port == 5678
            && r.bytes_up == (40 + 16 + 8 + 20) as u64),
        "{flows:?}"
    );
    assert!(
        flows
            .iter()
            .any(|(k, _)| k.proto == proto::UDP && k.device_port == 0 && k.remote_port == 0),
        "non-first fragment counted without ports: {flows:?}"
    );
    assert!(
        flows.iter().any(|(k, _)| k.proto == proto::IPV6_UNPARSED),
        "{flows:?}"
    );
    assert_eq!(l.stat("fragments"), 1);
    assert_eq!(l.stat("ipv6_ext_limit"), 1);
    assert_eq!(l.stat("malformed"), 0);
}

#[test]
fn ipv4_fragments_keep_ports_only_on_the_first() {
    let mut l = Loaded::new();
    let mut first = tcp4(&[1; 40], 443);
    first[14 + 6] = 0x20; // MF, offset 0
    let mut later = tcp4(&[1; 40], 443);
    later[14 + 6] = 0x00;
    later[14 + 7] = 0x10; // offset 16 × 8
    l.up(&first);
    l.up(&later);
    let flows = l.flows();
    assert!(flows.iter().any(|(k, _)| k.remote_port == 443));
    assert!(
        flows
            .iter()
            .any(|(k, _)| k.proto == proto::TCP && k.remote_port == 0)
    );
    assert_eq!(l.stat("fragments"), 2);
}

#[test]
fn hostile_frames_are_counted_not_followed() {
    let mut l = Loaded::new();
    let good = tcp4(&[0; 20], 443);
    // Cut inside the IP header (the kernel may refuse to build that skb),
    // inside the TCP header.
    l.try_run(programs::INGRESS, &good[..14 + 10]);
    l.up(&good[..14 + 20 + 8]);
    // Total length beyond the frame; IHL below 5; version 7.
    let mut long = good.clone();
    long[14 + 2..14 + 4].copy_from_slice(&4000u16.to_be_bytes());
    l.up(&long);
    let mut ihl = good.clone();
    ihl[14] = 0x43;
    l.up(&ihl);
    let mut ver = good.clone();
    ver[14] = 0x75;
    l.up(&ver);
    // TCP data offset below 5.
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x20;
    l.up(&doff);
    // Garbage of every length up to a frame, and an oversized frame.
    let mut seed = 0x1234_5678u32;
    let mut ran = 0;
    for len in (14..400).step_by(7) {
        let f: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        ran += l.try_run(programs::INGRESS, &f) as u32;
        ran += l.try_run(programs::EGRESS, &f) as u32;
    }
    assert!(ran > 50, "the kernel ran only {ran} garbage frames");
    assert!(
        l.stat("malformed") >= 5,
        "malformed = {}",
        l.stat("malformed")
    );
    // A jumbo frame is counted and its sample bounded.
    let jumbo = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(DEV, GW)
            .ipv4(DEV4, SRV4, 64)
            .udp(5353, 5353)
            .write(&mut v, &[0x55; 3000])
            .unwrap();
        v
    };
    l.up(&jumbo);
    let s = l.samples();
    let big = s
        .iter()
        .find(|s| s.header.frame_len as usize == jumbo.len())
        .expect("jumbo sampled");
    assert_eq!(big.data.len(), SAMPLE_BYTES);
    assert_eq!(&big.data[..], &jumbo[..SAMPLE_BYTES]);
    for s in &s {
        assert!(s.data.len() <= SAMPLE_BYTES && s.data.len() as u32 <= s.header.frame_len);
    }
}

#[test]
fn egress_multicast_is_not_a_device() {
    let mut l = Loaded::new();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(GW, [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa])
        .ipv4(SRV4, [239, 255, 255, 250], 4)
        .udp(1900, 1900)
        .write(&mut f, b"NOTIFY * HTTP/1.1\r\n\r\n")
        .unwrap();
    l.down(&f);
    assert!(l.flows().is_empty());
    assert_eq!(l.stat("egress_group_skipped"), 1);
    assert!(l.samples().is_empty());
}

#[test]
fn name_bearing_packets_are_sampled_with_their_reason() {
    let mut l = Loaded::new();
    // DNS query up and answer down.
    l.up(&udp6(
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        40001,
        53,
    ));
    l.up(&udp6(&[0; 300], 68, 67));
    l.up(&udp6(&[0; 100], 546, 547));
    l.up(&udp6(&[0; 100], 5353, 5353));
    l.up(&udp6(b"M-SEARCH * HTTP/1.1\r\n", 40002, 1900));
    // QUIC: a long-header Initial is sampled, a short-header packet is not.
    l.up(&udp6(&[0xc0, 0, 0, 0, 1, 8], 40003, 443));
    l.up(&udp6(&[0x40, 1, 2, 3], 40004, 443));
    // TLS: the first two payload segments of a flow, not the third; a
    // bare ACK (no payload) never.
    for _ in 0..3 {
        l.up(&tcp4(&[0x16, 3, 1, 0, 10], 443));
    }
    l.up(&tcp4(&[], 443));
    // HTTP: the first request of a flow only.
    l.up(&tcp4(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 80));
    l.up(&tcp4(b"GET /2 HTTP/1.1\r\n\r\n", 80));
    // Not name-bearing.
    l.up(&tcp4(&[1; 100], 8883));
    let reasons: Vec<u8> = l.samples().iter().map(|s| s.header.reason).collect();
    let count = |r: u8| reasons.iter().filter(|x| **x == r).count();
    assert_eq!(count(reason::DNS), 1, "{reasons:?}");
    assert_eq!(count(reason::DHCP), 1);
    assert_eq!(count(reason::DHCPV6), 1);
    assert_eq!(count(reason::MDNS), 1);
    assert_eq!(count(reason::SSDP), 1);
    assert_eq!(count(reason::QUIC), 1);
    assert_eq!(count(reason::TLS), 2);
    assert_eq!(count(reason::HTTP), 1);
    assert_eq!(reasons.len(), 9);
    assert_eq!(l.stat("samples_sent"), 9);
    assert_eq!(l.stat("samples_dropped"), 0);
}

#[test]
fn a_full_flow_table_evicts_and_counts_pressure() {
    let mut l = Loaded::new();
    for port in 0..5000u16 {
        l.up(&udp6(&[0; 8], 10000 + port, 9));
    }
    let flows = l.flows();
    assert!(flows.len() <= 4096, "{}", flows.len());
    assert_eq!(l.stat("flows_created"), 5000);
}

#[test]
fn the_devices_latest_tcp_sequence_number_is_kept_for_resuming() {
    // Every run on one CPU, so its slot holds the latest segment.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
    let mut l = Loaded::new();
    let seg = |seq: u32, tag: bool| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(DEV, GW)
            .ipv4(DEV4, SRV4, 64)
            .tcp(40000, 5601, seq, 64000)
            .ack(1)
            .write(&mut f, &[0; 100])
            .unwrap();
        if tag {
            // An 802.1Q tag: parsed from the header copy, not in place.
            f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        }
        f
    };
    let heads = |l: &Loaded| l.dp.tcp_heads(ip("192.0.2.10").unwrap(), None).unwrap();
    l.up(&seg(1000, false));
    assert_eq!(heads(&l), vec![(l.only_flow().0, vec![1000])]);
    l.up(&seg(0xfedc_ba98, true));
    assert_eq!(heads(&l)[0].1, vec![0xfedc_ba98]);
    // The server's segments do not move it.
    let mut down = Vec::new();
    PacketBuilder::ethernet2(GW, DEV)
        .ipv4(SRV4, DEV4, 64)
        .tcp(5601, 40000, 5, 64000)
        .ack(1)
        .write(&mut down, &[0; 10])
        .unwrap();
    l.down(&down);
    assert_eq!(heads(&l)[0].1, vec![0xfedc_ba98]);
    // Another device address, or only UDP: nothing.
    assert!(
        l.dp.tcp_heads(ip("192.0.2.11").unwrap(), None)
            .unwrap()
            .is_empty()
    );
    l.up(&udp6(&[0; 20], 5353, 5353));
    assert!(
        l.dp.tcp_heads(ip("2001:db8:1::10").unwrap(), None)
            .unwrap()
            .is_empty()
    );
    // A destination-limited lookup.
    assert_eq!(
        l.dp.tcp_heads(ip("192.0.2.10").unwrap(), ip("203.0.113.10"))
            .unwrap()
            .len(),
        1
    );
    assert!(
        l.dp.tcp_heads(ip("192.0.2.10").unwrap(), ip("203.0.113.99"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn pins_of_an_earlier_layout_are_removed_at_load() {
    let first = Loaded::new();
    let pins = first.dir.path().join("pins");
    // What a crashed daemon of an earlier layout left: its directory, with
    // pinned maps in it (made here by loading into it).
    let old = pins.join("v1");
    drop(
        Datapath::load(&LoadOptions {
            object: bpf_object(),
            pin_dir: old.clone(),
            flow_entries: 1024,
        })
        .unwrap(),
    );
    assert!(std::fs::read_dir(&old).unwrap().next().is_some());
    let again = second_copy(&first);
    assert!(!old.exists(), "the earlier layout's pins are still there");
    assert!(again.pin_dir().join("FLOWS").exists());
}

/// Pins the calling thread to one CPU, so its runs share one CPU's flow
/// cache.
fn pin_to_cpu(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// A TCP segment from the device with the given source port.
fn tcp4_from(sport: u16, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(DEV, GW)
        .ipv4(DEV4, SRV4, 64)
        .tcp(sport, 5601, 1, 64000)
        .ack(1)
        .write(&mut f, &vec![0; payload])
        .unwrap();
    f
}

/// A source port whose flow shares the flow cache slot of `key`'s flow.
fn colliding_port(key: &FlowKey) -> u16 {
    (1..=u16::MAX)
        .find(|&p| {
            let mut other = *key;
            other.device_port = p;
            p != key.device_port && other.cache_slot() == key.cache_slot()
        })
        .expect("2048 slots: some port collides")
}

/// Packets and IP bytes sent per device port.
type Sent = std::collections::HashMap<u16, (u64, u64)>;

fn send_up(l: &mut Loaded, sent: &mut Sent, frame: &[u8], n: u64) {
    for _ in 0..n {
        l.up(frame);
    }
    let e = sent
        .entry(u16::from_be_bytes([frame[34], frame[35]]))
        .or_default();
    e.0 += n;
    e.1 += n * (frame.len() as u64 - 14);
}

fn assert_counts(l: &Loaded, sent: &Sent) {
    let flows = l.flows();
    assert_eq!(flows.len(), sent.len(), "{flows:?}");
    for (k, r) in flows {
        let (packets, bytes) = sent[&k.device_port];
        assert_eq!(
            (r.packets_up, r.bytes_up),
            (packets, bytes),
            "port {}",
            k.device_port
        );
    }
}

#[test]
fn cached_flows_count_exactly_across_flushes_and_slot_takeovers() {
    pin_to_cpu(0);
    let mut l = Loaded::new();
    let mut sent = Sent::new();
    let a = tcp4_from(40000, 100);
    send_up(&mut l, &mut sent, &a, 1);
    let (key_a, _) = l.only_flow();
    let b = tcp4_from(colliding_port(&key_a), 300);
    // Past several flushes of the batch into the table (every 32 packets),
    // reading in between: pending batches are counted, flushed ones once.
    for n in [10, 31, 1, 64, 7] {
        send_up(&mut l, &mut sent, &a, n);
        assert_counts(&l, &sent);
    }
    // Two flows taking the one slot from each other, in runs and one by one.
    for n in [1, 5, 40, 1, 1, 33] {
        send_up(&mut l, &mut sent, &b, n);
        assert_counts(&l, &sent);
        send_up(&mut l, &mut sent, &a, n);
        assert_counts(&l, &sent);
    }
    assert!(
        l.stat("flow_cache_misses") >= 13,
        "{}",
        l.stat("flow_cache_misses")
    );
    assert_eq!(l.stat("flows_created"), 2);
}

#[test]
fn a_batch_whose_table_entry_was_evicted_is_dropped_not_counted_again() {
    pin_to_cpu(0);
    let mut l = Loaded::new();
    let a = tcp4_from(40000, 100);
    for _ in 0..10 {
        l.up(&a);
    }
    let (key_a, r) = l.only_flow();
    assert_eq!(r.packets_up, 10);
    // Enough other flows (none in A's cache slot) to make the LRU table
    // (4,096 entries) evict A's entry, which A's packets no longer touch.
    let mut sent = 0;
    for port in 1..u16::MAX {
        let mut k = key_a;
        k.device_port = port;
        if port == 40000 || k.cache_slot() == key_a.cache_slot() {
            continue;
        }
        l.up(&tcp4_from(port, 0));
        sent += 1;
        if sent == 6000 {
            break;
        }
    }
    assert!(
        l.flows().iter().all(|(k, _)| *k != key_a),
        "A's table entry was not evicted; the test needs a fuller table"
    );
    // A's next flush finds no entry: the batch (9 packets the daemon may
    // already have counted, plus 23) is dropped and the slot freed; the
    // 33rd packet starts a new entry and the flow goes on from there.
    for _ in 0..30 {
        l.up(&a);
    }
    assert_eq!(l.stat("flow_cache_orphaned"), 1);
    let now: Vec<_> = l.flows().into_iter().filter(|(k, _)| *k == key_a).collect();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].1.packets_up, 7);
}

/// Each flow's packets as read lie between what had been sent before the
/// read began and after it ended: none lost, none counted twice.
fn assert_read_between(seen: &[u64; 2], before: &[u64; 2], after: &[u64; 2], when: &str) {
    for i in 0..2 {
        assert!(
            before[i] <= seen[i] && seen[i] <= after[i],
            "flow {i} read as {} packets while {}..{} had been sent ({when})",
            seen[i],
            before[i],
            after[i]
        );
    }
}

/// Runs the ingress program `n` times on `frame` through `dp`.
fn run_up(dp: &mut Datapath, frame: &[u8], n: u32) {
    let prog: &mut SchedClassifier = dp
        .ebpf_mut()
        .program_mut(programs::INGRESS)
        .unwrap()
        .try_into()
        .unwrap();
    prog.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat: n,
        ..Default::default()
    })
    .unwrap();
}

/// A second copy of the programs on the same pinned maps (as a restarted
/// daemon gets), to count with while the first one reads.
fn second_copy(l: &Loaded) -> Datapath {
    let dp = Datapath::load(&LoadOptions {
        object: bpf_object(),
        pin_dir: l.dir.path().join("pins"),
        flow_entries: 4096,
    })
    .unwrap();
    assert!(dp.resumed, "the second load shares the pinned maps");
    dp
}

#[test]
fn batches_flushed_while_a_read_is_under_way_count_once() {
    use iot_inspector::datapath::ReadPoint;
    pin_to_cpu(0);
    let l = Loaded::new();
    let mut w = second_copy(&l);
    let a = tcp4_from(42000, 100);
    run_up(&mut w, &a, 6);
    let (key_a, _) = l.only_flow();
    let b = tcp4_from(colliding_port(&key_a), 100);
    let mut sent = [6u64, 0];
    // Reads with the programs counting `during` at `point`; each flow's
    // packets must lie between what was sent before and after the read.
    let mut read = |point: ReadPoint, frame: &[u8], n: u32, sent: &mut [u64; 2]| {
        let before = *sent;
        let which = (frame == b.as_slice()) as usize;
        let mut seen = [0u64; 2];
        l.dp.read_flows_interleaved(
            |p| {
                if p == point {
                    run_up(&mut w, frame, n);
                    sent[which] += n as u64;
                }
            },
            |k, r| seen[(k.device_port != 42000) as usize] = r.packets_up,
        )
        .unwrap();
        assert_read_between(&seen, &before, sent, &format!("{point:?}"));
        seen
    };
    // A flush (the 32nd pending packet) after the cache was read, before
    // the table: the batch the reader saw pending is now in the table.
    read(ReadPoint::BeforeTable, &a, 30, &mut sent);
    // The other flow takes the slot there: the same, through a takeover.
    read(ReadPoint::BeforeTable, &b, 1, &mut sent);
    // A flush between the two copies of the cache.
    read(ReadPoint::BetweenCacheCopies, &b, 40, &mut sent);
    read(ReadPoint::BetweenCacheCopies, &a, 2, &mut sent);
    // And with nothing in between, the exact totals.
    let mut got: Vec<(u16, u64)> = l
        .flows()
        .iter()
        .map(|(k, r)| (k.device_port, r.packets_up))
        .collect();
    got.sort();
    let mut want = vec![(42000, sent[0]), (colliding_port(&key_a), sent[1])];
    want.sort();
    assert_eq!(got, want);
    // The slot's holder is known to the daemon, which leaves its table
    // entry alone when idle (see `Datapath::in_flow_cache`).
    assert!(l.dp.in_flow_cache(&key_a));
    let mut key_b = key_a;
    key_b.device_port = colliding_port(&key_a);
    assert!(!l.dp.in_flow_cache(&key_b));
}

#[test]
fn reading_while_the_programs_count_sees_every_packet_once() {
    // The programs count on one CPU while the reader runs on the other: a
    // slot copied while a flush or a takeover rewrites it must not make a
    // batch count twice or vanish.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("one CPU: nothing runs concurrently; skipped");
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let l = Loaded::new();
    let pins = l.dir.path().join("pins");
    let a = tcp4_from(41000, 60);
    let key_a = {
        let mut k = FlowKey {
            device_mac: DEV,
            device_port: 41000,
            remote_port: 5601,
            family: iot_inspector_common::family::IPV4,
            proto: proto::TCP,
            ..Default::default()
        };
        k.device_ip[10..].copy_from_slice(&[0xff, 0xff, 192, 0, 2, 10]);
        k.remote_ip[10..].copy_from_slice(&[0xff, 0xff, 203, 0, 113, 10]);
        k
    };
    let b = tcp4_from(colliding_port(&key_a), 60);
    // Packets of each flow handed to the program (`started`) and those it
    // has returned from (`sent`): a read overlapping a run may see part of
    // it, so it must lie between `sent` before the read and `started` after.
    let started = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (started, sent, done, pins) =
            (started.clone(), sent.clone(), done.clone(), pins.clone());
        let (a, b) = (a.clone(), b.clone());
        std::thread::spawn(move || {
            pin_to_cpu(0);
            let mut dp = Datapath::load(&LoadOptions {
                object: bpf_object(),
                pin_dir: pins,
                flow_entries: 4096,
            })
            .unwrap();
            // Short runs of different lengths with pauses between them, so
            // flushes (every 32 packets) and takeovers land at every point
            // of the reader's work (between its two copies of the cache,
            // and between them and the table), while few packets are in
            // flight around each read (the bounds below are no tighter).
            for i in 0..3_000u32 {
                std::thread::sleep(std::time::Duration::from_micros((i as u64 * 37) % 400));
                for (which, frame) in [(0, &a), (1, &b)] {
                    let repeat = if i % 3 == 0 {
                        1 + (i + which) % 3
                    } else {
                        31 + (i + which) % 3
                    };
                    started[which as usize].fetch_add(repeat as u64, Ordering::SeqCst);
                    run_up(&mut dp, frame, repeat);
                    sent[which as usize].fetch_add(repeat as u64, Ordering::SeqCst);
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    pin_to_cpu(1);
    let mut reads = 0;
    let mut last = [0u64; 2];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done.load(Ordering::SeqCst)
        && !writer.is_finished()
        && std::time::Instant::now() < deadline
    {
        let before = [
            sent[0].load(Ordering::SeqCst),
            sent[1].load(Ordering::SeqCst),
        ];
        let mut seen = [0u64; 2];
        l.dp.read_flows(|k, r| seen[(k.device_port != 41000) as usize] = r.packets_up)
            .unwrap();
        let after = [
            started[0].load(Ordering::SeqCst),
            started[1].load(Ordering::SeqCst),
        ];
        assert_read_between(&seen, &before, &after, "concurrently");
        for i in 0..2 {
            assert!(seen[i] >= last[i], "flow {i} went backwards");
        }
        last = seen;
        reads += 1;
    }
    writer.join().unwrap();
    let total: Vec<u64> = l.flows().iter().map(|(_, r)| r.packets_up).collect();
    let sent = [
        sent[0].load(Ordering::SeqCst),
        sent[1].load(Ordering::SeqCst),
    ];
    let mut want = sent.to_vec();
    want.sort();
    let mut got = total.clone();
    got.sort();
    assert_eq!(got, want, "after {reads} concurrent reads");
    eprintln!("{reads} reads while counting");
    assert!(reads > 10, "the reader ran only {reads} times");
}
