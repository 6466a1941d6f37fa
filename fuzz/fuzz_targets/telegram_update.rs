//! The Telegram webhook decoder on any body: never panics; what it accepts has a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(inbound) = tarn::channel::telegram::decode("7000001", data) {
        assert!(inbound.update_key.starts_with("tg:7000001:"));
        assert!(!inbound.actionable || inbound.text.is_some());
    }
});
