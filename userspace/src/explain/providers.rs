//! A small, team-written table of address ranges that well-known providers
//! publish as theirs, to say something about an address no name was seen
//! for. Only ranges we are sure of; anything else is "no name seen".
//! Longest prefix wins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Category;

pub(super) struct Provider {
    pub organisation: &'static str,
    pub category: Category,
    pub description: &'static str,
}

const GOOGLE_DNS: Provider = Provider {
    organisation: "Google Public DNS",
    category: Category::Dns,
    description: "Google's public name-lookup (DNS) service: turns names into addresses.",
};
const CLOUDFLARE_DNS: Provider = Provider {
    organisation: "Cloudflare DNS",
    category: Category::Dns,
    description: "Cloudflare's public name-lookup (DNS) service (1.1.1.1): turns names into addresses.",
};
const QUAD9: Provider = Provider {
    organisation: "Quad9",
    category: Category::Dns,
    description: "Quad9's public name-lookup (DNS) service, run by a non-profit foundation.",
};
const OPENDNS: Provider = Provider {
    organisation: "OpenDNS (Cisco)",
    category: Category::Dns,
    description: "Cisco's OpenDNS public name-lookup (DNS) service.",
};
const GOOGLE: Provider = Provider {
    organisation: "Google",
    category: Category::CdnHosting,
    description: "An address of Google's network; which Google service is not known.",
};
const CLOUDFLARE: Provider = Provider {
    organisation: "Cloudflare",
    category: Category::CdnHosting,
    description: "An address of Cloudflare, which delivers and protects websites and apps for many companies.",
};
const AKAMAI: Provider = Provider {
    organisation: "Akamai",
    category: Category::CdnHosting,
    description: "An address of Akamai, a content delivery network many companies use.",
};
const FASTLY: Provider = Provider {
    organisation: "Fastly",
    category: Category::CdnHosting,
    description: "An address of Fastly, a content delivery network many companies use.",
};
const APPLE: Provider = Provider {
    organisation: "Apple",
    category: Category::VendorCloud,
    description: "An address of Apple's network; which Apple service is not known.",
};
const META: Provider = Provider {
    organisation: "Meta (Facebook)",
    category: Category::Social,
    description: "An address of Meta's network (Facebook, Instagram, WhatsApp).",
};
const NETFLIX: Provider = Provider {
    organisation: "Netflix",
    category: Category::StreamingMedia,
    description: "An address of Netflix's video delivery network.",
};

fn v4(a: [u8; 4], len: u8, p: &'static Provider) -> (IpAddr, u8, &'static Provider) {
    (IpAddr::V4(Ipv4Addr::from(a)), len, p)
}

fn v6(s: [u16; 8], len: u8, p: &'static Provider) -> (IpAddr, u8, &'static Provider) {
    (IpAddr::V6(Ipv6Addr::from(s)), len, p)
}

fn table() -> [(IpAddr, u8, &'static Provider); 24] {
    [
        v4([8, 8, 8, 0], 24, &GOOGLE_DNS),
        v4([8, 8, 4, 0], 24, &GOOGLE_DNS),
        v6([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0], 48, &GOOGLE_DNS),
        v4([1, 1, 1, 0], 24, &CLOUDFLARE_DNS),
        v4([1, 0, 0, 0], 24, &CLOUDFLARE_DNS),
        v6([0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0], 48, &CLOUDFLARE_DNS),
        v4([9, 9, 9, 0], 24, &QUAD9),
        v4([149, 112, 112, 0], 24, &QUAD9),
        v6([0x2620, 0x00fe, 0, 0, 0, 0, 0, 0], 48, &QUAD9),
        v4([208, 67, 222, 0], 24, &OPENDNS),
        v4([208, 67, 220, 0], 24, &OPENDNS),
        v4([142, 250, 0, 0], 15, &GOOGLE),
        v4([172, 217, 0, 0], 16, &GOOGLE),
        v6([0x2607, 0xf8b0, 0, 0, 0, 0, 0, 0], 32, &GOOGLE),
        v4([104, 16, 0, 0], 13, &CLOUDFLARE),
        v4([162, 158, 0, 0], 15, &CLOUDFLARE),
        v6([0x2606, 0x4700, 0, 0, 0, 0, 0, 0], 32, &CLOUDFLARE),
        v4([23, 0, 0, 0], 12, &AKAMAI),
        v4([151, 101, 0, 0], 16, &FASTLY),
        v6([0x2a04, 0x4e40, 0, 0, 0, 0, 0, 0], 32, &FASTLY),
        v4([17, 0, 0, 0], 8, &APPLE),
        v4([157, 240, 0, 0], 16, &META),
        v6([0x2a03, 0x2880, 0, 0, 0, 0, 0, 0], 32, &META),
        v4([198, 38, 96, 0], 19, &NETFLIX),
    ]
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

pub(super) fn lookup(ip: IpAddr) -> Option<&'static Provider> {
    // IPv4-mapped IPv6 addresses are looked up as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    table()
        .into_iter()
        .filter(|(net, len, _)| contains(*net, *len, ip))
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, p)| p)
}
