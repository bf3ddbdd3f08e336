//! TLS ClientHello server names (SNI), including ClientHellos that span two
//! TCP segments (post-quantum key shares make them ~1.8 kB), and the small
//! bounded reassembly buffers that both TLS and QUIC use for that.
//!
//! The ClientHello itself is decoded by `tls-parser`; only the record layer
//! framing (5-byte headers, to collect a handshake message that spans
//! records or segments) is walked here, because `tls-parser` wants whole
//! records and we have to decide how much more to wait for.

use std::net::SocketAddr;

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_message_handshake,
};

use super::{Direction, DissectStats, Dissector, Mac, Observation, Packet, Transport};

/// Most flows with a partial ClientHello kept at once.
pub const MAX_FLOWS: usize = 64;
/// Most bytes kept per flow (also the largest ClientHello we accept).
pub const MAX_FLOW_BYTES: usize = 4096;
/// A partial ClientHello older than this is dropped when a new flow needs room.
const STALE_NS: u64 = 30_000_000_000;
/// Longest server name (RFC 1035: 253 characters of text).
const MAX_NAME: usize = 253;

/// Why a ClientHello gave no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Record or handshake framing that is not a ClientHello.
    NotHello,
    /// Larger than [`MAX_FLOW_BYTES`].
    TooLong,
    /// `tls-parser` refused the ClientHello or its extensions.
    Decode,
    /// A server name that is not a host name.
    NotText,
}

/// Result of looking at the bytes of a flow so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A whole ClientHello; its server name if it had one.
    Complete(Option<String>),
    /// A ClientHello that continues in bytes not seen yet.
    NeedMore,
}

/// The flow a partial ClientHello belongs to: the device (MAC, its address
/// and port) and the remote end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub mac: Mac,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub udp: bool,
}

/// Bounded per-flow buffers: at most [`MAX_FLOWS`] flows of at most
/// [`MAX_FLOW_BYTES`] each (256 KiB in all); the least recently touched
/// flow is evicted when a new one needs room. A linear scan over 64
/// entries costs less than hashing on a router's CPU and needs no rehash.
#[derive(Debug, Default)]
pub struct HelloBuffers {
    entries: Vec<FlowBuffer>,
}

#[derive(Debug)]
pub(crate) struct FlowBuffer {
    pub key: FlowKey,
    /// First frame's timestamp: the flow's start as far as we know.
    pub started_ns: u64,
    touched_ns: u64,
    /// QUIC: the destination connection ID the keys come from.
    pub tag: Vec<u8>,
    data: Vec<u8>,
    /// Byte ranges written so far, merged, sorted.
    filled: Vec<(usize, usize)>,
}

impl FlowBuffer {
    /// Writes `bytes` at `offset`. Errs (leaving the buffer as it was) when
    /// that would pass [`MAX_FLOW_BYTES`].
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Reject> {
        let end = offset.checked_add(bytes.len()).ok_or(Reject::TooLong)?;
        if end > MAX_FLOW_BYTES {
            return Err(Reject::TooLong);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.filled.push((offset, end));
        self.filled.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.filled.len());
        for &(s, e) in &self.filled {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.filled = merged;
        Ok(())
    }

    /// Appends after the contiguous bytes (TCP segments in arrival order).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Reject> {
        let at = self.contiguous().len();
        self.write(at, bytes)
    }

    /// The bytes from offset 0 with no gap.
    pub fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => &self.data[..end],
            _ => &[],
        }
    }
}

impl HelloBuffers {
    pub(crate) fn get_mut(&mut self, key: &FlowKey, now_ns: u64) -> Option<&mut FlowBuffer> {
        let entry = self.entries.iter_mut().find(|e| e.key == *key)?;
        entry.touched_ns = now_ns;
        Some(entry)
    }

    /// A fresh, empty buffer for `key` (replacing any it had), evicting the
    /// stalest flow when full.
    pub(crate) fn start(
        &mut self,
        stats: &mut DissectStats,
        key: FlowKey,
        now_ns: u64,
    ) -> &mut FlowBuffer {
        self.remove(&key);
        self.entries
            .retain(|e| now_ns.saturating_sub(e.touched_ns) < STALE_NS);
        if self.entries.len() >= MAX_FLOWS
            && let Some((i, _)) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.touched_ns)
        {
            self.entries.swap_remove(i);
            stats.hello_buffers_evicted += 1;
        }
        self.entries.push(FlowBuffer {
            key,
            started_ns: now_ns,
            touched_ns: now_ns,
            tag: Vec::new(),
            data: Vec::new(),
            filled: Vec::new(),
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }

    pub(crate) fn remove(&mut self, key: &FlowKey) {
        self.entries.retain(|e| e.key != *key);
    }

    /// Flows with a partial ClientHello held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Dissects a TCP payload sent by a device: a ClientHello, or the next
/// segment of one we hold a part of.
pub(crate) fn dissect(d: &mut Dissector, packet: &Packet<'_>, out: &mut Vec<Observation>) {
    if packet.transport != Transport::Tcp
        || packet.payload.is_empty()
        || packet.frame.direction == Direction::Down
        || packet.src_mac.is_group()
    {
        return;
    }
    let now = packet.frame.timestamp_ns;
    let key = FlowKey {
        mac: packet.src_mac,
        local: SocketAddr::new(packet.src_ip, packet.src_port),
        remote: SocketAddr::new(packet.dst_ip, packet.dst_port),
        udp: false,
    };
    let payload = packet.payload;
    let (result, started_ns) = if looks_like_client_hello(payload) {
        // A new ClientHello (or a retransmitted first segment) starts over.
        d.stats.tls_client_hellos += 1;
        match client_hello_in_records(payload) {
            Ok(Hello::NeedMore) => {
                let buf = d.hello_buffers.start(&mut d.stats, key, now);
                if buf.append(payload).is_err() {
                    d.hello_buffers.remove(&key);
                    d.stats.tls_rejected += 1;
                }
                return;
            }
            other => (other, now),
        }
    } else {
        let Some(buf) = d.hello_buffers.get_mut(&key, now) else {
            return;
        };
        let started = buf.started_ns;
        let r = match buf.append(payload) {
            Ok(()) => client_hello_in_records(buf.contiguous()),
            Err(e) => Err(e),
        };
        if r != Ok(Hello::NeedMore) {
            d.hello_buffers.remove(&key);
        }
        (r, started)
    };
    match result {
        Ok(Hello::Complete(Some(sni))) => out.push(Observation::TlsSni {
            mac: key.mac,
            ip: packet.src_ip,
            port: packet.src_port,
            remote_ip: packet.dst_ip,
            remote_port: packet.dst_port,
            timestamp_ns: started_ns,
            sni,
        }),
        Ok(Hello::Complete(None)) | Ok(Hello::NeedMore) => {}
        Err(_) => d.stats.tls_rejected += 1,
    }
}

/// A TLS handshake record (1.0 to 1.3 framing) carrying a ClientHello.
fn looks_like_client_hello(p: &[u8]) -> bool {
    p.len() >= 6 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04 && p[5] == 0x01
}

/// Collects the first handshake message from TLS records in `stream`
/// (bytes of a TCP stream from its start) and, once whole, decodes it.
pub fn client_hello_in_records(stream: &[u8]) -> Result<Hello, Reject> {
    let mut hs: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    // Each record adds ≥1 byte to `hs`, which is capped, so this ends.
    loop {
        if hs.len() >= 4 {
            let need = 4 + u24(&hs[1..4]);
            if need > MAX_FLOW_BYTES {
                return Err(Reject::TooLong);
            }
            if hs.len() >= need {
                return parse_client_hello(&hs[..need]).map(Hello::Complete);
            }
        }
        let Some(header) = stream.get(pos..pos + 5) else {
            return Ok(Hello::NeedMore);
        };
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if header[0] != 0x16 || header[1] != 0x03 || len == 0 || len > 16384 + 256 {
            return Err(Reject::NotHello);
        }
        let body = pos + 5;
        let end = (body + len).min(stream.len());
        if hs.len() + (end - body) > MAX_FLOW_BYTES + 4 {
            return Err(Reject::TooLong);
        }
        hs.extend_from_slice(&stream[body..end]);
        if hs.first().is_some_and(|&t| t != 0x01) {
            return Err(Reject::NotHello);
        }
        if end < body + len {
            // The record continues past what we have.
            if hs.len() >= 4 && hs.len() >= 4 + u24(&hs[1..4]) {
                continue;
            }
            return Ok(Hello::NeedMore);
        }
        pos = end;
    }
}

fn u24(b: &[u8]) -> usize {
    ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
}

/// Decodes one whole ClientHello handshake message (type, 3-byte length,
/// body), as carried in TLS records or QUIC CRYPTO frames, and returns its
/// host name, lower case and without a trailing dot.
pub fn parse_client_hello(msg: &[u8]) -> Result<Option<String>, Reject> {
    let (_, message) = parse_tls_message_handshake(msg).map_err(|_| Reject::Decode)?;
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message else {
        return Err(Reject::NotHello);
    };
    let Some(ext) = hello.ext else {
        return Ok(None);
    };
    let (_, extensions) = parse_tls_client_hello_extensions(ext).map_err(|_| Reject::Decode)?;
    for e in extensions {
        if let TlsExtension::SNI(names) = e {
            for (kind, name) in names {
                if kind == SNIType::HostName {
                    return host_name(name).map(Some);
                }
            }
        }
    }
    Ok(None)
}

/// A server name as text: LDH characters plus underscore, dots between
/// non-empty labels, at most 253 characters.
fn host_name(raw: &[u8]) -> Result<String, Reject> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty()
        || raw.len() > MAX_NAME
        || !raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || raw.split(|&b| b == b'.').any(|l| l.is_empty())
    {
        return Err(Reject::NotText);
    }
    // Checked ASCII above.
    let mut s = String::from_utf8(raw.to_vec()).map_err(|_| Reject::NotText)?;
    s.make_ascii_lowercase();
    Ok(s)
}

/// A ClientHello handshake message naming `sni`, with a padding extension
/// of `padding` bytes (for tests of both TLS and QUIC).
#[cfg(test)]
pub(crate) fn test_client_hello(sni: &str, padding: usize) -> Vec<u8> {
    // Extensions: server_name, then a padding extension (21) to reach sizes
    // of real post-quantum ClientHellos.
    let mut ext = Vec::new();
    let name = sni.as_bytes();
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0x00);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    // supported_versions: TLS 1.3, 1.2.
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    if padding > 0 {
        ext.extend_from_slice(&[0x00, 0x15]);
        ext.extend_from_slice(&(padding as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, padding));
    }
    let mut body = vec![0x03, 0x03];
    body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
    body.push(32);
    body.extend(std::iter::repeat_n(0xab, 32));
    body.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    hs
}

/// A handshake message in one TLS record.
#[cfg(test)]
pub(crate) fn test_record(hs: &[u8]) -> Vec<u8> {
    let mut r = vec![0x16, 0x03, 0x01];
    r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    r.extend_from_slice(hs);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::Frame;
    use etherparse::PacketBuilder;

    const DEV: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0, 1];
    const GW: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0, 0xfe];

    fn tcp_frame(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(DEV, GW)
            .ipv4([192, 0, 2, 10], [203, 0, 113, 5], 64)
            .tcp(49152, 443, seq, 64240)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn run(d: &mut Dissector, t: u64, data: &[u8]) -> Vec<Observation> {
        let mut out = Vec::new();
        d.dissect(
            &Frame {
                timestamp_ns: t,
                direction: Direction::Up,
                data,
            },
            &mut out,
        );
        out.retain(|o| !matches!(o, Observation::Seen { .. }));
        out
    }

    #[test]
    fn sni_from_one_segment() {
        let rec = test_record(&test_client_hello("API.xbcs.net.", 0));
        let mut d = Dissector::new();
        let out = run(&mut d, 7, &tcp_frame(1, &rec));
        assert_eq!(
            out,
            vec![Observation::TlsSni {
                mac: Mac(DEV),
                ip: "192.0.2.10".parse().unwrap(),
                port: 49152,
                remote_ip: "203.0.113.5".parse().unwrap(),
                remote_port: 443,
                timestamp_ns: 7,
                sni: "api.xbcs.net".into(),
            }]
        );
    }

    #[test]
    fn sni_from_hello_split_over_two_segments() {
        let rec = test_record(&test_client_hello("tv.example.net", 1700));
        assert!(rec.len() > 1800, "{}", rec.len());
        let (a, b) = rec.split_at(1400);
        let mut d = Dissector::new();
        assert!(run(&mut d, 1, &tcp_frame(1, a)).is_empty());
        assert_eq!(d.hello_buffers.len(), 1);
        let out = run(&mut d, 2, &tcp_frame(1401, b));
        assert_eq!(out.len(), 1);
        match &out[0] {
            Observation::TlsSni {
                sni, timestamp_ns, ..
            } => {
                assert_eq!(sni, "tv.example.net");
                assert_eq!(*timestamp_ns, 1, "the flow's first segment time");
            }
            o => panic!("{o:?}"),
        }
        assert!(d.hello_buffers.is_empty());
        // The SNI sits in the second segment here: the first alone names nothing.
        let rec = test_record(&test_hello_sni_last("late.example.net", 1700));
        let (a, b) = rec.split_at(1000);
        assert!(run(&mut d, 3, &tcp_frame(1, a)).is_empty());
        let out = run(&mut d, 4, &tcp_frame(1001, b));
        assert!(matches!(&out[..], [Observation::TlsSni { sni, .. }] if sni == "late.example.net"));
    }

    fn test_hello_sni_last(sni: &str, padding: usize) -> Vec<u8> {
        let hs = test_client_hello(sni, padding);
        // Re-order: build extensions padding-first by hand.
        let name = sni.as_bytes();
        let mut ext = vec![0x00, 0x15];
        ext.extend_from_slice(&(padding as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, padding));
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        // Same fixed part as test_client_hello up to the extensions length.
        let fixed = 4 + 2 + 32 + 1 + 32 + 8 + 2;
        let mut body = hs[4..fixed].to_vec();
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut out = vec![0x01];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn hostile_hellos_are_rejected_and_counted() {
        let mut d = Dissector::new();
        // Handshake length claiming 16 MB.
        let mut huge = vec![0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&[0; 4]);
        assert!(run(&mut d, 1, &tcp_frame(1, &huge)).is_empty());
        assert_eq!(d.stats.tls_rejected, 1);
        // A name with a NUL and one with bytes beyond ASCII.
        for bad in ["bad\0name.example", "caf\u{e9}.example"] {
            let rec = test_record(&test_client_hello(bad, 0));
            assert!(run(&mut d, 2, &tcp_frame(1, &rec)).is_empty());
        }
        assert_eq!(d.stats.tls_rejected, 3);
        // Every truncation of a good hello: never a panic, never a wrong name.
        let rec = test_record(&test_client_hello("ok.example", 0));
        for cut in 6..rec.len() {
            assert_eq!(client_hello_in_records(&rec[..cut]), Ok(Hello::NeedMore));
        }
        // Garbage after a hello-looking header.
        let mut garbage = rec.clone();
        for b in garbage.iter_mut().skip(9) {
            *b = 0xff;
        }
        assert!(client_hello_in_records(&garbage).is_err());
    }

    #[test]
    fn buffers_stay_bounded() {
        let mut d = Dissector::new();
        let rec = test_record(&test_client_hello("x.example", 1700));
        for port in 0..(MAX_FLOWS as u16 * 2) {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(DEV, GW)
                .ipv4([192, 0, 2, 10], [203, 0, 113, 5], 64)
                .tcp(10000 + port, 443, 1, 64240)
                .write(&mut v, &rec[..1000])
                .unwrap();
            run(&mut d, u64::from(port), &v);
        }
        assert_eq!(d.hello_buffers.len(), MAX_FLOWS);
        assert_eq!(d.stats.hello_buffers_evicted, MAX_FLOWS as u64);
        // A continuation past 4 KiB is dropped, not grown.
        let mut buf = FlowBuffer {
            key: FlowKey {
                mac: Mac(DEV),
                local: "192.0.2.1:1".parse().unwrap(),
                remote: "203.0.113.1:2".parse().unwrap(),
                udp: false,
            },
            started_ns: 0,
            touched_ns: 0,
            tag: vec![],
            data: vec![],
            filled: vec![],
        };
        assert!(buf.write(0, &[1; 4000]).is_ok());
        assert_eq!(buf.append(&[1; 200]), Err(Reject::TooLong));
        assert_eq!(buf.contiguous().len(), 4000);
        assert!(buf.write(usize::MAX - 1, &[1; 4]).is_err());
    }
}
