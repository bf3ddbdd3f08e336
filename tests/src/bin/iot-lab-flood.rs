//! Sends UDP datagrams to many distinct (address, port) pairs in
//! 203.0.113.0/24, so each is a new flow in the router's table. Used by the
//! flood test of the simulated home; bounded by `--count`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

fn main() {
    let mut count: u32 = 200_000;
    // Send the same flows again this many times, this far apart, so they
    // stay active (the benchmark of the daemon at 50,000 active flows).
    let mut rounds: u32 = 1;
    let mut interval_ms: u64 = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{what} N"))
        };
        match a.as_str() {
            "--count" => count = num("--count").min(2_000_000) as u32,
            "--rounds" => rounds = num("--rounds").min(3600) as u32,
            "--interval-ms" => interval_ms = num("--interval-ms").min(60_000),
            _ => panic!("unknown argument {a}"),
        }
    }
    let sock = UdpSocket::bind("0.0.0.0:0").expect("binding a UDP socket");
    let payload = [0u8; 32];
    let mut sent = 0u64;
    for round in 0..rounds {
        let started = std::time::Instant::now();
        for i in 0..count {
            let host = 1 + (i % 254) as u8;
            let port = 1024 + (i / 254) as u16;
            let to = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port);
            if sock.send_to(&payload, to).is_ok() {
                sent += 1;
            }
        }
        if round + 1 < rounds {
            let wait =
                std::time::Duration::from_millis(interval_ms).saturating_sub(started.elapsed());
            std::thread::sleep(wait);
        }
    }
    println!("sent {sent} datagrams");
}
