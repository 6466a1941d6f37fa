//! Property tests over the fuzz targets' entry points (`fuzz/`), a few seconds each in CI:
//! the built-in parser and the Telegram and WhatsApp decoders never panic, and whatever the
//! parser produces keeps the JSON contract. The inputs the fuzzers found are pinned here.

use crate::parser::corpus_lexicon;
use proptest::prelude::*;
use tarn::action::Action;
use tarn::channel::{telegram, whatsapp};

/// The parser's output survives the action contract: serialized, read back and serialized
/// again, it is the same JSON.
fn contract_holds(text: &str) {
    let parsed = tarn::parser::parse(text, &corpus_lexicon());
    assert!((0.0..=1.0).contains(&parsed.confidence), "{text:?}");
    let json = serde_json::to_string(&parsed.action).unwrap();
    let back: Action = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{text:?} gave {json}, which does not read back: {e}"));
    assert_eq!(serde_json::to_string(&back).unwrap(), json, "{text:?}");
}

#[test]
fn inputs_the_fuzzers_found() {
    // A 24-digit quantity once came out as the float 1.1111111111111113e+23.
    contract_holds("Mama 111*1111111111111111111111Nje\0\0\u{b}i\0r  p5");
    contract_holds("fatima paid 12.50");
    contract_holds("sold 1234567890.123456789 rice");
    // serde_json's default float reading was one ULP off: 947394775542.6201 came back
    // as 947394775542.62 (fixed by its `float_roundtrip` feature).
    contract_holds("sold 947394775542.6201 rice");
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/fixtures/{path}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fixture with bytes overwritten, cut or repeated at random places.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        0..=len,
        0..3usize,
    )
        .prop_map(move |(edits, cut, repeat)| {
            let mut b = base.clone();
            for (at, byte) in edits {
                b[at] = byte;
            }
            b.truncate(cut.max(1));
            let copy = b.clone();
            for _ in 0..repeat {
                b.extend_from_slice(&copy);
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn parser_keeps_the_contract(s in "(sold|paid|/sale|/restock|/paid|/expense|rice|ahmed|for|to|x|\\*|[0-9]{1,30}|[0-9]{1,20}\\.[0-9]{1,14}|-|\\.| |,)*") {
        contract_holds(&s);
    }

    #[test]
    fn telegram_decoder_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(inbound) = telegram::decode("7000001", &body) {
            prop_assert!(inbound.update_key.starts_with("tg:7000001:"));
        }
    }

    #[test]
    fn telegram_decoder_takes_damaged_updates(body in mutated(fixture("telegram/private_text"))) {
        if let Ok(inbound) = telegram::decode("7000001", &body) {
            prop_assert!(!inbound.actionable || inbound.text.is_some());
        }
    }

    #[test]
    fn whatsapp_decoder_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = whatsapp::decode(&body);
    }

    #[test]
    fn whatsapp_decoder_takes_damaged_payloads(body in mutated(fixture("whatsapp/text_message"))) {
        if let Ok(batches) = whatsapp::decode(&body) {
            for b in batches {
                prop_assert!(b.messages.iter().all(|m| !m.update_key.is_empty()));
            }
        }
    }
}
