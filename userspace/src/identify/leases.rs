//! dnsmasq's lease file (`/tmp/dhcp.leases` on OpenWrt): one lease per line,
//! `expiry mac ip hostname clientid`, hostname `*` when the client sent
//! none. DHCPv6 leases follow a `duid ...` line and carry an IAID where the
//! MAC would be; they do not parse as MACs and are skipped.
//!
//! Clients choose their host names, so the file is hostile input too:
//! lines, fields and the file are bounded, and names are made inert.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use crate::dissect::Mac;
use crate::identify::text::{self, MAX_TEXT};

/// The path dnsmasq writes on OpenWrt.
pub const DEFAULT_PATH: &str = "/tmp/dhcp.leases";
/// Most of the file read (a home has a few dozen leases).
pub const MAX_FILE: u64 = 1 << 20;
/// Most leases returned.
pub const MAX_LEASES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: IpAddr,
    pub hostname: Option<String>,
}

/// Parses the file's text; lines that are not IPv4 leases are skipped and
/// counted in the second value.
pub fn parse(text: &str) -> (Vec<Lease>, usize) {
    let mut leases = Vec::new();
    let mut skipped = 0;
    let mut t = 0;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("duid ") {
            continue;
        }
        if leases.len() >= MAX_LEASES {
            skipped += 1;
            continue;
        }
        let mut f = line.split_ascii_whitespace();
        let (Some(expiry), Some(mac), Some(ip), Some(host)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            skipped += 1;
            continue;
        };
        let (Ok(_), Ok(mac), Ok(ip)) = (
            expiry.parse::<u64>(),
            mac.parse::<Mac>(),
            ip.parse::<IpAddr>(),
        ) else {
            skipped += 1;
            continue;
        };
        let hostname = (host != "*").then(|| text::bounded_str(host, MAX_TEXT, &mut t));
        leases.push(Lease { mac, ip, hostname });
    }
    (leases, skipped)
}

/// Reads and parses the lease file at `path` (at most [`MAX_FILE`] bytes).
pub fn read(path: &Path) -> std::io::Result<Vec<Lease>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE)
        .read_to_end(&mut buf)?;
    Ok(parse(&String::from_utf8_lossy(&buf)).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnsmasq_lines() {
        let text = "1732560000 24:0a:c4:12:34:56 192.0.2.23 wemo-plug-1A2B 01:24:0a:c4:12:34:56\n\
                    1732560100 da:a1:19:00:00:01 192.0.2.24 * *\n\
                    duid 00:01:00:01:2c:aa:bb:cc:02:00:5e:10:00:01\n\
                    1732560200 12345678 2001:db8::24 phone 00:01:00:01\n";
        let (leases, skipped) = parse(text);
        assert_eq!(leases.len(), 2);
        assert_eq!(leases[0].mac, "24:0a:c4:12:34:56".parse().unwrap());
        assert_eq!(leases[0].ip, "192.0.2.23".parse::<IpAddr>().unwrap());
        assert_eq!(leases[0].hostname.as_deref(), Some("wemo-plug-1A2B"));
        assert_eq!(leases[1].hostname, None);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn hostile_lines_are_skipped_or_made_inert() {
        let long = "h".repeat(10_000);
        let text = format!(
            "garbage\n\n1 zz:zz 192.0.2.1 x\nnotanumber 24:0a:c4:12:34:56 192.0.2.2 x\n\
             1 24:0a:c4:12:34:56 999.0.2.2 x\n\
             1 24:0a:c4:12:34:56 192.0.2.3 <img\x1bsrc=x>\n1 24:0a:c4:12:34:57 192.0.2.4 {long}\n"
        );
        let (leases, skipped) = parse(&text);
        assert_eq!(skipped, 4);
        assert_eq!(leases[0].hostname.as_deref(), Some("<img\u{FFFD}src=x>"));
        assert_eq!(leases[1].hostname.as_ref().unwrap().len(), MAX_TEXT);
        let many = "1 24:0a:c4:12:34:56 192.0.2.2 x\n".repeat(MAX_LEASES + 10);
        let (leases, skipped) = parse(&many);
        assert_eq!((leases.len(), skipped), (MAX_LEASES, 10));
    }

    #[test]
    fn reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dhcp.leases");
        std::fs::write(&p, "1 b8:27:eb:00:00:01 192.0.2.9 raspberrypi *\n").unwrap();
        let l = read(&p).unwrap();
        assert_eq!(l[0].hostname.as_deref(), Some("raspberrypi"));
        assert!(read(&dir.path().join("missing")).is_err());
    }
}
