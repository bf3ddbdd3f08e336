//! Sends UDP datagrams to many distinct (address, port) pairs in
//! 203.0.113.0/24, so each is a new flow in the router's table. Used by the
//! flood test of the simulated home; bounded by `--count`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

fn main() {
    let mut count: u32 = 200_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--count" {
            count = args
                .next()
                .and_then(|v| v.parse::<u32>().ok())
                .expect("--count N")
                .min(2_000_000);
        }
    }
    let sock = UdpSocket::bind("0.0.0.0:0").expect("binding a UDP socket");
    let payload = [0u8; 32];
    let mut sent = 0u32;
    for i in 0..count {
        let host = 1 + (i % 254) as u8;
        let port = 1024 + (i / 254) as u16;
        let to = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port);
        if sock.send_to(&payload, to).is_ok() {
            sent += 1;
        }
    }
    println!("sent {sent} datagrams");
}
