//! Sends a simulated device's mDNS, SSDP and UPnP announcements from inside
//! its network namespace, for a bounded count and time:
//!
//! ```text
//! iot-lab-announce PROFILE --ip 192.0.2.11 [--ip6 2001:db8:1::11] [--ifname eth0]
//!                  [--count 3] [--interval-ms 1000] [--duration-s 10] [--http-port 49152]
//! ```
//!
//! It multicasts `count` rounds of mDNS announcements (224.0.0.251 and
//! ff02::fb, port 5353) and SSDP NOTIFYs (239.255.255.250:1900), answers
//! M-SEARCH on port 1900 and serves the UPnP description on
//! `ip:http-port` until `duration-s` has passed, then exits.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use iot_inspector_lab::announce::{self, Profile};

struct Args {
    profile: Profile,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    ifname: String,
    count: u32,
    interval: Duration,
    duration: Duration,
    http_port: u16,
}

fn usage() -> String {
    format!(
        "usage: iot-lab-announce PROFILE --ip IPV4 [--ip6 IPV6] [--ifname eth0] [--count 3] \
         [--interval-ms 1000] [--duration-s 10] [--http-port 49152]\nprofiles: {}",
        announce::PROFILES.join(", ")
    )
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let name = it.next().with_context(usage)?;
    let profile =
        announce::profile(&name).with_context(|| format!("unknown profile {name}\n{}", usage()))?;
    let mut args = Args {
        profile,
        ip: Ipv4Addr::UNSPECIFIED,
        ip6: None,
        ifname: "eth0".into(),
        count: 3,
        interval: Duration::from_millis(1000),
        duration: Duration::from_secs(10),
        http_port: 49152,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ip" => args.ip = value.parse()?,
            "--ip6" => args.ip6 = Some(value.parse()?),
            "--ifname" => args.ifname = value,
            "--count" => args.count = value.parse::<u32>()?.min(1000),
            "--interval-ms" => {
                args.interval = Duration::from_millis(value.parse::<u64>()?.clamp(10, 60_000))
            }
            "--duration-s" => args.duration = Duration::from_secs(value.parse::<u64>()?.min(3600)),
            "--http-port" => args.http_port = value.parse()?,
            _ => bail!("unknown flag {flag}\n{}", usage()),
        }
    }
    if args.ip.is_unspecified() {
        bail!("--ip is required\n{}", usage());
    }
    Ok(args)
}

/// A UDP socket bound with SO_REUSEADDR/SO_REUSEPORT (another responder,
/// e.g. avahi, may hold the port too).
fn reuse_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned by the UdpSocket below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: setsockopt with a c_int option value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let rc = match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: bind with a valid sockaddr_in.
            unsafe {
                libc::bind(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sa) as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: bind with a valid sockaddr_in6.
            unsafe {
                libc::bind(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sa) as libc::socklen_t,
                )
            }
        }
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("bind {addr}"));
    }
    Ok(sock)
}

fn ifindex(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Answers M-SEARCH requests until `deadline`.
fn ssdp_responder(p: Arc<Profile>, a: Arc<Args>, deadline: Instant) -> Result<()> {
    let sock = reuse_udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1900))?;
    sock.join_multicast_v4(&Ipv4Addr::new(239, 255, 255, 250), &a.ip)?;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let reply_from = UdpSocket::bind((a.ip, 0))?;
        for r in p.ssdp_responses(&buf[..n], a.ip, a.http_port) {
            let _ = reply_from.send_to(&r, from);
        }
    }
    Ok(())
}

/// Serves the description document until `deadline`.
fn http_server(p: Arc<Profile>, a: Arc<Args>, deadline: Instant) -> Result<()> {
    let listener = TcpListener::bind((a.ip, a.http_port))
        .with_context(|| format!("listen {}:{}", a.ip, a.http_port))?;
    listener.set_nonblocking(true)?;
    while Instant::now() < deadline {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while n < buf.len() {
            match s.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let _ = s.write_all(&p.http_response(&path, a.ip));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Arc::new(parse_args()?);
    let profile = Arc::new(args.profile.clone());
    let start = Instant::now();
    let deadline = start + args.duration.max(args.interval * args.count);
    let mut threads = Vec::new();
    if profile.ssdp.is_some() {
        let (p, a) = (profile.clone(), args.clone());
        threads.push(std::thread::spawn(move || {
            if let Err(e) = http_server(p, a, deadline) {
                eprintln!("iot-lab-announce: http: {e:#}");
            }
        }));
        let (p, a) = (profile.clone(), args.clone());
        threads.push(std::thread::spawn(move || {
            if let Err(e) = ssdp_responder(p, a, deadline) {
                eprintln!("iot-lab-announce: ssdp: {e:#}");
            }
        }));
    }
    // mDNS from port 5353 (as responders do), falling back to any port.
    let mdns4 = reuse_udp(SocketAddr::new(IpAddr::V4(args.ip), 5353))
        .or_else(|_| UdpSocket::bind((args.ip, 0)))?;
    mdns4.set_multicast_ttl_v4(255)?;
    let mdns6 = args.ip6.and_then(|_| {
        let any = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5353, 0, 0));
        reuse_udp(any).or_else(|_| UdpSocket::bind("[::]:0")).ok()
    });
    let ssdp = UdpSocket::bind((args.ip, 0))?;
    ssdp.set_multicast_ttl_v4(4)?;
    let group4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353);
    let group6 = SocketAddr::V6(SocketAddrV6::new(
        "ff02::fb".parse()?,
        5353,
        0,
        ifindex(&args.ifname),
    ));
    let ssdp_group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);
    let announcement = profile.mdns_announcement(args.ip, args.ip6);
    for round in 0..args.count {
        if round > 0 {
            std::thread::sleep(args.interval);
        }
        let _ = mdns4.send_to(&announcement, group4);
        if let Some(s) = &mdns6 {
            let _ = s.send_to(&announcement, group6);
        }
        if let Some(q) = profile.mdns_query() {
            let _ = mdns4.send_to(&q, group4);
        }
        if profile.name == "hostile" {
            let _ = mdns4.send_to(&announce::mdns_compression_loop(), group4);
        }
        for n in profile.ssdp_notifies(args.ip, args.http_port) {
            let _ = ssdp.send_to(&n, ssdp_group);
        }
    }
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
