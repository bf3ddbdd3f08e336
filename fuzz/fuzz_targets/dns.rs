//! DNS answers: the bounded pre-walk and simple-dns decoding, bare and as a
//! UDP/TCP frame from port 53.
#![no_main]

use iot_inspector::dissect::dns::parse_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_answer(data);
});
