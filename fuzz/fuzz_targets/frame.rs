//! Whole frames through the dissect front end (Ethernet/VLAN/IP/transport).
#![no_main]

use iot_inspector::dissect::{Direction, Dissector, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Dissector::new();
    let mut out = Vec::new();
    for direction in [Direction::Up, Direction::Down, Direction::Unknown] {
        let frame = Frame { timestamp_ns: 0, direction, data };
        d.dissect(&frame, &mut out);
    }
});
