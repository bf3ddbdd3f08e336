//! Whole frames through the dissect front end (Ethernet/VLAN/IP/transport).
#![no_main]

use iot_inspector::dissect::{DissectStats, Direction, Frame, dissect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stats = DissectStats::default();
    let mut out = Vec::new();
    for direction in [Direction::Up, Direction::Down, Direction::Unknown] {
        let frame = Frame { timestamp_ns: 0, direction, data };
        dissect(&frame, &mut stats, &mut out);
    }
});
