//! DHCPv4 client messages, and dnsmasq lease-file text (both are where a
//! device's self-chosen host name enters).
#![no_main]

use iot_inspector::dissect::{Mac, dhcp};
use iot_inspector::identify::leases;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut truncated = 0;
    let _ = dhcp::parse(data, Mac::default(), &mut truncated);
    let _ = leases::parse(&String::from_utf8_lossy(data));
});
