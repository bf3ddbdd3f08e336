//! Plain-HTTP request heads.
#![no_main]

use iot_inspector::dissect::{Mac, http};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut truncated = 0;
    let _ = http::parse(data, Mac::default(), None, &mut truncated);
});
