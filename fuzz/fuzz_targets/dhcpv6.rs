//! DHCPv6 client messages.
#![no_main]

use iot_inspector::dissect::{Mac, dhcpv6};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut truncated = 0;
    let _ = dhcpv6::parse(data, Mac::default(), None, &mut truncated);
});
