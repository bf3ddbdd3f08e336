//! QUIC Initial header parsing, header-protection removal, decryption and
//! CRYPTO frame walking.
#![no_main]

use iot_inspector::dissect::quic::{crypto_frames, decrypt_client_initial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(initial)) = decrypt_client_initial(data) {
        let _ = crypto_frames(&initial.payload);
    }
    // The frame walker on raw bytes too: decryption rarely succeeds.
    let _ = crypto_frames(data);
});
