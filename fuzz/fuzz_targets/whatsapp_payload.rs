//! The WhatsApp webhook decoder on any body: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = tarn::channel::whatsapp::decode(data) {
        for b in batches {
            let _ = format!("{b:?}");
        }
    }
});
