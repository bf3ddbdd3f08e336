//! TLS ClientHello record framing (the reassembly check) and ClientHello
//! decoding.
#![no_main]

use iot_inspector::dissect::tls::{client_hello_in_records, parse_client_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = client_hello_in_records(data);
    let _ = parse_client_hello(data);
});
