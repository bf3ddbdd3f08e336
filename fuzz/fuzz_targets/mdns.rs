//! mDNS / DNS-SD messages, and identification from what they yield.
#![no_main]

use iot_inspector::dissect::{Mac, Observation, mdns};
use iot_inspector::identify::{Evidence, identify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut truncated = 0;
    if let Ok(m) = mdns::parse(data, Mac::default(), None, &mut truncated) {
        let mut ev = Evidence::default();
        ev.absorb(&Observation::Mdns(m));
        let _ = identify(Mac::default(), &ev);
    }
});
