//! SSDP messages, their LOCATION URL, and UPnP description documents.
#![no_main]

use iot_inspector::dissect::{Mac, ssdp};
use iot_inspector::identify::upnp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut truncated = 0;
    if let Ok(m) = ssdp::parse(data, Mac::default(), None, &mut truncated) {
        if let Some(l) = &m.location {
            let _ = upnp::parse_location(l);
        }
    }
    let _ = upnp::parse_description(data);
});
