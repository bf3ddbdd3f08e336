//! QUIC server names: the ClientHello inside a client's Initial packets.
//!
//! Initial packets are encrypted, but with keys anyone can derive from the
//! packet itself (RFC 9001 §5.2): HKDF-Extract of the destination
//! connection ID with a published salt, then HKDF-Expand-Label to the
//! AES-128-GCM key, IV and header-protection key. We remove header
//! protection (§5.4), decrypt the payload (§5.3), collect CRYPTO frames by
//! offset (a post-quantum ClientHello spans two Initial packets) and hand
//! the ClientHello to the TLS code. QUIC v2 (RFC 9369) differs only in the
//! salt, the labels and the packet-type bits, so both are done.
//!
//! The packet framing (long header, varints, frames) is walked here: the
//! QUIC crates that parse it (quinn-proto, quiche) are whole QUIC stacks,
//! far too big for a router for reading one header. The cryptography is
//! RustCrypto's (`hkdf`, `sha2`, `aes`, `aes-gcm`), pure Rust.

use std::net::SocketAddr;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::{AeadInOut, Aes128Gcm};
use hkdf::Hkdf;
use sha2::Sha256;

use super::tls::{self, FlowKey, MAX_FLOW_BYTES};
use super::{Direction, Dissector, Observation, Packet, Transport};

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;

/// RFC 9001 §5.2.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// Why an Initial packet gave no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Header fields out of bounds.
    Header,
    /// The AEAD tag did not verify: not a client Initial, or damaged.
    Undecryptable,
    /// A frame that does not parse or may not appear in an Initial.
    Frames,
    /// The ClientHello in the CRYPTO frames was refused.
    Hello(tls::Reject),
}

/// The Initial-packet keys of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialKeys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &Hkdf<Sha256>, label: &str, out: &mut [u8]) {
    let full = [b"tls13 ", label.as_bytes()].concat();
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(0);
    // Lengths here are at most 32, far below HKDF's 255 * 32 limit.
    let _ = prk.expand(&info, out);
}

/// The client's Initial keys for `version` and the client-chosen
/// destination connection ID. `None` for versions we do not know.
pub fn client_initial_keys(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
    let (salt, key_l, iv_l, hp_l) = match version {
        VERSION_1 => (&SALT_V1, "quic key", "quic iv", "quic hp"),
        VERSION_2 => (&SALT_V2, "quicv2 key", "quicv2 iv", "quicv2 hp"),
        _ => return None,
    };
    let (initial_secret, _) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let initial = Hkdf::<Sha256>::from_prk(&initial_secret).ok()?;
    let mut client_secret = [0u8; 32];
    expand_label(&initial, "client in", &mut client_secret);
    let client = Hkdf::<Sha256>::from_prk(&client_secret).ok()?;
    let mut keys = InitialKeys {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&client, key_l, &mut keys.key);
    expand_label(&client, iv_l, &mut keys.iv);
    expand_label(&client, hp_l, &mut keys.hp);
    Some(keys)
}

/// A QUIC variable-length integer (RFC 9000 §16) at `*pos`.
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*pos..*pos + len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    *pos += len;
    Some(v)
}

/// A decrypted client Initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initial {
    pub version: u32,
    pub dcid: Vec<u8>,
    pub packet_number: u64,
    /// The decrypted frames.
    pub payload: Vec<u8>,
}

/// Decrypts the first packet of a UDP datagram if it is a client Initial
/// of QUIC v1 or v2. `Ok(None)`: not one (short header, other version or
/// packet type): nothing to count.
pub fn decrypt_client_initial(datagram: &[u8]) -> Result<Option<Initial>, Reject> {
    let Some(&first) = datagram.first() else {
        return Ok(None);
    };
    if first & 0x80 == 0 || datagram.len() < 7 {
        return Ok(None);
    }
    let version = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
    let initial_type = match version {
        VERSION_1 => 0,
        VERSION_2 => 1,
        _ => return Ok(None),
    };
    if (first >> 4) & 0x03 != initial_type {
        return Ok(None);
    }
    let mut pos = 5;
    let dcid_len = datagram[pos] as usize;
    pos += 1;
    // A client's first destination connection ID is at least 8 bytes
    // (RFC 9000 §7.2); at most 20 in v1 and v2.
    if !(8..=20).contains(&dcid_len) {
        return Err(Reject::Header);
    }
    let dcid = datagram.get(pos..pos + dcid_len).ok_or(Reject::Header)?;
    pos += dcid_len;
    let scid_len = *datagram.get(pos).ok_or(Reject::Header)? as usize;
    if scid_len > 20 {
        return Err(Reject::Header);
    }
    pos += 1 + scid_len;
    let token_len = varint(datagram, &mut pos).ok_or(Reject::Header)?;
    pos = pos
        .checked_add(usize::try_from(token_len).map_err(|_| Reject::Header)?)
        .ok_or(Reject::Header)?;
    let length = varint(datagram, &mut pos).ok_or(Reject::Header)?;
    let length = usize::try_from(length).map_err(|_| Reject::Header)?;
    let pn_offset = pos;
    // Packet number (1-4) + at least a 16-byte sample past 4 bytes of it,
    // and all of it inside the datagram.
    let end = pn_offset.checked_add(length).ok_or(Reject::Header)?;
    if length < 20 || end > datagram.len() {
        return Err(Reject::Header);
    }

    let keys = client_initial_keys(version, dcid).ok_or(Reject::Header)?;
    // Header protection (RFC 9001 §5.4): AES-ECB of the sample.
    let mut mask = aes::Block::default();
    mask.copy_from_slice(&datagram[pn_offset + 4..pn_offset + 20]);
    Aes128::new(&keys.hp.into()).encrypt_block(&mut mask);
    let first = first ^ (mask[0] & 0x0f);
    let pn_len = (first & 0x03) as usize + 1;
    let mut header = datagram[..pn_offset + pn_len].to_vec();
    header[0] = first;
    let mut pn = 0u64;
    for i in 0..pn_len {
        header[pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(header[pn_offset + i]);
    }
    // The nonce is the IV xor the packet number (the first packets of a
    // connection carry the full number in their truncated field).
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    let body = &datagram[pn_offset + pn_len..end];
    let Some(split) = body.len().checked_sub(16) else {
        return Err(Reject::Header);
    };
    let (ciphertext, tag) = body.split_at(split);
    let mut payload = ciphertext.to_vec();
    let tag: [u8; 16] = tag.try_into().map_err(|_| Reject::Header)?;
    Aes128Gcm::new(&keys.key.into())
        .decrypt_inout_detached(
            &nonce.into(),
            &header,
            payload.as_mut_slice().into(),
            &tag.into(),
        )
        .map_err(|_| Reject::Undecryptable)?;
    Ok(Some(Initial {
        version,
        dcid: dcid.to_vec(),
        packet_number: pn,
        payload,
    }))
}

/// The CRYPTO frames of a decrypted Initial payload, as (offset, data).
/// Only the frames RFC 9000 §12.4 allows in a client Initial are accepted.
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, Reject> {
    let mut frames = Vec::new();
    let mut pos = 0;
    // Every frame consumes at least one byte, so this ends.
    while pos < payload.len() {
        let kind = varint(payload, &mut pos).ok_or(Reject::Frames)?;
        match kind {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges, [ECN].
                let _ = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                let _ = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                let ranges = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                let _ = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                // Each range takes at least 2 bytes: bound before looping.
                if ranges > (payload.len() as u64) / 2 {
                    return Err(Reject::Frames);
                }
                let extra = if kind == 0x03 { 3 } else { 0 };
                for _ in 0..(ranges * 2 + extra) {
                    varint(payload, &mut pos).ok_or(Reject::Frames)?;
                }
            }
            0x06 => {
                let offset = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                let len = varint(payload, &mut pos).ok_or(Reject::Frames)?;
                let len = usize::try_from(len).map_err(|_| Reject::Frames)?;
                let data = payload
                    .get(pos..pos.checked_add(len).ok_or(Reject::Frames)?)
                    .ok_or(Reject::Frames)?;
                pos += len;
                frames.push((offset, data));
            }
            // CONNECTION_CLOSE: the client gave up; nothing after it matters.
            0x1c | 0x1d => break,
            _ => return Err(Reject::Frames),
        }
    }
    Ok(frames)
}

/// Dissects a UDP datagram sent by a device: a client Initial, maybe the
/// second one of a ClientHello we hold a part of.
pub(crate) fn dissect(d: &mut Dissector, packet: &Packet<'_>, out: &mut Vec<Observation>) {
    if packet.transport != Transport::Udp
        || packet.frame.direction == Direction::Down
        || packet.src_mac.is_group()
        || packet.payload.first().is_none_or(|b| b & 0x80 == 0)
    {
        return;
    }
    let initial = match decrypt_client_initial(packet.payload) {
        Ok(Some(i)) => i,
        Ok(None) => return,
        Err(Reject::Undecryptable) => {
            // A server's Initial, a lost key, or noise: not an attack.
            d.stats.quic_undecryptable += 1;
            return;
        }
        Err(_) => {
            d.stats.quic_rejected += 1;
            return;
        }
    };
    d.stats.quic_initials += 1;
    let frames = match crypto_frames(&initial.payload) {
        Ok(f) => f,
        Err(_) => {
            d.stats.quic_rejected += 1;
            return;
        }
    };
    if frames.is_empty() {
        return;
    }
    let now = packet.frame.timestamp_ns;
    let key = FlowKey {
        mac: packet.src_mac,
        local: SocketAddr::new(packet.src_ip, packet.src_port),
        remote: SocketAddr::new(packet.dst_ip, packet.dst_port),
        udp: true,
    };
    let has_start = frames.iter().any(|(o, _)| *o == 0);
    let buffers = &mut d.hello_buffers;
    let existing = buffers
        .get_mut(&key, now)
        .is_some_and(|b| b.tag == initial.dcid);
    if !existing {
        if !has_start && frames.iter().all(|(o, _)| *o as usize >= MAX_FLOW_BYTES) {
            return;
        }
        let buf = buffers.start(&mut d.stats, key, now);
        buf.tag = initial.dcid.clone();
    }
    let Some(buf) = buffers.get_mut(&key, now) else {
        return;
    };
    for (offset, data) in &frames {
        let Ok(offset) = usize::try_from(*offset) else {
            continue;
        };
        if buf.write(offset, data).is_err() {
            buffers.remove(&key);
            d.stats.quic_rejected += 1;
            return;
        }
    }
    let started_ns = buf.started_ns;
    let stream = buf.contiguous();
    if stream.len() < 4 {
        return;
    }
    let need =
        4 + (((stream[1] as usize) << 16) | ((stream[2] as usize) << 8) | stream[3] as usize);
    let result = if stream[0] != 0x01 {
        Err(tls::Reject::NotHello)
    } else if need > MAX_FLOW_BYTES {
        Err(tls::Reject::TooLong)
    } else if stream.len() < need {
        return; // the rest comes in the next Initial
    } else {
        tls::parse_client_hello(&stream[..need])
    };
    buffers.remove(&key);
    match result {
        Ok(Some(sni)) => out.push(Observation::QuicSni {
            mac: key.mac,
            ip: packet.src_ip,
            port: packet.src_port,
            remote_ip: packet.dst_ip,
            remote_port: packet.dst_port,
            timestamp_ns: started_ns,
            sni,
            version: initial.version,
        }),
        Ok(None) => {}
        Err(_) => d.stats.quic_rejected += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::{Frame, Mac};
    use etherparse::PacketBuilder;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9001 Appendix A.2: the client Initial (1200 bytes) protected
    /// with keys from DCID 0x8394c8f03e515708, packet number 2, carrying a
    /// ClientHello for example.com.
    const RFC9001_CLIENT_INITIAL: &str = include_str!("testdata/rfc9001_client_initial.hex");

    /// RFC 9369 Appendix A.2: the same ClientHello as a QUIC v2 Initial.
    const RFC9369_CLIENT_INITIAL: &str = "
        d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485dd04de806071
        bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad049f9a3dd4425ae4d0992cfff18ecf
        0fdb5a842d09747052f17ac2053d21f57c5d250f2c4f0e0202b70785b7946e992e58a59ac52dea67
        74d4f03b55545243cf1a12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda
        5500cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd6818f6625efce3
        b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff3312ae50b187c1433c0f028edcc4c2
        838b6a9bfc226ca4b4530e7a4ccee1bfa2a3d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11
        a53c7777c023462239dd6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f
        6520bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045636e7c0c0fe4
        eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1fac7cf4ed77f322e8fa894b6a8381
        0a34b361901751a6f5eb65a0326e07de7c1216ccce2d0193f958bb3850a833f7ae432b65bc5a5397
        5c155aa4bcb4f7b2c4e54df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77
        ffb4fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b8017c25ca905
        2ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de714d19d61370f8149748c72f132f0
        fc99f34d766c6938597040d8f9e2bb522ff99c63a344d6a2ae8aa8e51b7b90a4a806105fcbca3150
        6c446151adfeceb51b91abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325b
        a3bd80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db848265e3e5eb
        72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18d703dd84045a274ae8bfa7337966
        1388d6991fe39b0d93debb41700b41f90a15c4d526250235ddcd6776fc77bc97e7a417ebcb31600d
        01e57f32162a8560cacc7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e823
        8e61f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e7071010d3f270121b
        493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b3d6758158197107c14ebb193230c
        d1157380aa79cae1374a7c1e5bbcb80ee23e06ebfde206bfb0fcbc0edc4ebec309661bdd908d532e
        b0c6adc38b7ca7331dce8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e34
        17d134b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1e86215c2d54e
        6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd5d3b22dc2be80919b490437ae4f3
        6a0ae55edf1d0b5cb4e9a3ecabee93dfc6e38d209d0fa6536d27a5d6fbb17641cde27525d61093f1
        b28072d111b2b4ae5f89d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf
        4b536f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb199a37ddec6005
        45473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96ba18b2faa745b6fe189cf772a9f84
        cbfc";

    #[test]
    fn rfc9001_client_keys() {
        let keys = client_initial_keys(VERSION_1, &unhex("8394c8f03e515708")).unwrap();
        assert_eq!(keys.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(keys.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(keys.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
        assert_eq!(client_initial_keys(0xff00_001d, b"12345678"), None);
    }

    #[test]
    fn rfc9001_client_initial_decrypts_to_example_com() {
        let packet = unhex(RFC9001_CLIENT_INITIAL);
        assert_eq!(packet.len(), 1200);
        let initial = decrypt_client_initial(&packet).unwrap().unwrap();
        assert_eq!(initial.version, VERSION_1);
        assert_eq!(initial.packet_number, 2);
        assert_eq!(initial.dcid, unhex("8394c8f03e515708"));
        let frames = crypto_frames(&initial.payload).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, 0);
        assert_eq!(frames[0].1.len(), 0xf1);
        assert_eq!(
            tls::parse_client_hello(frames[0].1),
            Ok(Some("example.com".to_string()))
        );
        // One flipped ciphertext bit: the tag no longer verifies.
        let mut damaged = packet.clone();
        damaged[600] ^= 1;
        assert_eq!(decrypt_client_initial(&damaged), Err(Reject::Undecryptable));
    }

    #[test]
    fn rfc9369_v2_client_initial_decrypts_to_example_com() {
        let packet = unhex(RFC9369_CLIENT_INITIAL);
        let initial = decrypt_client_initial(&packet).unwrap().unwrap();
        assert_eq!(initial.version, VERSION_2);
        let frames = crypto_frames(&initial.payload).unwrap();
        assert_eq!(
            tls::parse_client_hello(frames[0].1),
            Ok(Some("example.com".to_string()))
        );
    }

    const DEV: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0, 2];
    const GW: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0, 0xfe];

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(DEV, GW)
            .ipv6(
                "2001:db8::10"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8:1::443"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                64,
            )
            .udp(50000, 443)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    #[test]
    fn quic_sni_observation_from_a_frame() {
        let mut d = Dissector::new();
        let mut out = Vec::new();
        let data = udp_frame(&unhex(RFC9001_CLIENT_INITIAL));
        d.dissect(
            &Frame {
                timestamp_ns: 42,
                direction: Direction::Up,
                data: &data,
            },
            &mut out,
        );
        out.retain(|o| !matches!(o, Observation::Seen { .. }));
        assert_eq!(
            out,
            vec![Observation::QuicSni {
                mac: Mac(DEV),
                ip: "2001:db8::10".parse().unwrap(),
                port: 50000,
                remote_ip: "2001:db8:1::443".parse().unwrap(),
                remote_port: 443,
                timestamp_ns: 42,
                sni: "example.com".into(),
                version: VERSION_1,
            }]
        );
        assert_eq!(d.stats.quic_initials, 1);
        assert!(d.hello_buffers.is_empty());
    }

    #[test]
    fn crypto_frames_out_of_order_and_hostile() {
        let hello = tls::test_client_hello("split.example", 0);
        let (a, b) = hello.split_at(40);
        // Second half first, then the first half, with padding and a PING.
        let mut payload = vec![0x01, 0x06];
        payload.push(40); // offset 40 (1-byte varint)
        payload.extend_from_slice(&[0x40 | (b.len() >> 8) as u8, b.len() as u8]);
        payload.extend_from_slice(b);
        payload.extend_from_slice(&[0x06, 0x00, a.len() as u8]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0; 10]);
        let frames = crypto_frames(&payload).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, 40);
        // A CRYPTO length past the end, an ACK claiming 2^60 ranges, a
        // STREAM frame (not allowed in Initial).
        assert_eq!(crypto_frames(&[0x06, 0x00, 0x7f, 1]), Err(Reject::Frames));
        assert_eq!(
            crypto_frames(&[
                0x02, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0
            ]),
            Err(Reject::Frames)
        );
        assert_eq!(crypto_frames(&[0x08, 0, 0]), Err(Reject::Frames));
        // Header lengths that lie: no panic, a rejection.
        let mut packet = unhex(RFC9001_CLIENT_INITIAL);
        packet[5] = 21;
        assert_eq!(decrypt_client_initial(&packet), Err(Reject::Header));
        let packet = unhex(RFC9001_CLIENT_INITIAL);
        for cut in 0..packet.len() {
            assert!(decrypt_client_initial(&packet[..cut]).is_err() || cut < 7);
        }
    }
}
