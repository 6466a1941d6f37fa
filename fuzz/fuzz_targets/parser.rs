//! The built-in parser on any text: never panics, stays within its confidence range, and
//! every action it produces survives the JSON contract (serialized, read back and
//! serialized again, it is the same JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tarn::parser::{Lexicon, parse};

fn lexicon() -> &'static Lexicon {
    static LEX: OnceLock<Lexicon> = OnceLock::new();
    LEX.get_or_init(|| {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Lexicon::from_names(
            &names(&["Rice", "Sugar", "Cooking Oil", "Brown Bread", "White Bread", "Eggs"]),
            &names(&["Ahmed", "Fatima", "John Smith"]),
            &[
                ("Owner".into(), "owner".into()),
                ("Mary".into(), "manager".into()),
                ("Musa".into(), "driver".into()),
            ],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text, lexicon());
    assert!((0.0..=1.0).contains(&parsed.confidence));
    let json = serde_json::to_string(&parsed.action).expect("actions serialize");
    let back: tarn::action::Action = serde_json::from_str(&json).expect("and read back");
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
});
