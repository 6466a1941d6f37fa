//! The built-in parser against the labelled corpus (`tests/data/parse_corpus.jsonl`), at
//! library level and through `POST /parse`; and property tests over arbitrary input.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tarn::parser::{self, Lexicon};

/// The corpus tenant's names (`tests/data/parse_lexicon.json`): products, customers, staff.
pub struct CorpusNames {
    pub products: Vec<String>,
    pub customers: Vec<String>,
    pub staff: Vec<(String, String)>,
}

pub fn corpus_names() -> CorpusNames {
    let v: Value = serde_json::from_str(include_str!("../data/parse_lexicon.json")).unwrap();
    let strings = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    CorpusNames {
        products: strings("products"),
        customers: strings("customers"),
        staff: v["staff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

pub fn corpus_lexicon() -> Lexicon {
    let n = corpus_names();
    let mut staff = n.staff.clone();
    staff.push(("Owner".into(), "owner".into()));
    Lexicon::from_names(&n.products, &n.customers, &staff)
}

pub fn corpus() -> Vec<(String, Value)> {
    include_str!("../data/parse_corpus.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["text"].as_str().unwrap().to_owned(), v["action"].clone())
        })
        .collect()
}

/// Exact match, except that `unknown` compares by tag only (its reason is free text).
pub fn matches(got: &Value, want: &Value) -> bool {
    if want["action"] == "unknown" {
        return got["action"] == "unknown";
    }
    got == want
}

/// Per action: (correct, total).
pub fn score(
    mut parse: impl FnMut(&str) -> Value,
) -> (BTreeMap<String, (usize, usize)>, Vec<String>) {
    let mut table = BTreeMap::<String, (usize, usize)>::new();
    let mut misses = Vec::new();
    for (text, want) in corpus() {
        let got = parse(&text);
        let e = table
            .entry(want["action"].as_str().unwrap().to_owned())
            .or_default();
        e.1 += 1;
        if matches(&got, &want) {
            e.0 += 1;
        } else {
            misses.push(format!("{text:?}\n   want {want}\n   got  {got}"));
        }
    }
    (table, misses)
}

#[test]
fn corpus_has_200_messages_covering_every_action() {
    let c = corpus();
    assert!(c.len() >= 200, "{}", c.len());
    let schema = tarn::action::json_schema().to_string();
    for (_, want) in &c {
        let tag = want["action"].as_str().unwrap();
        assert!(schema.contains(&format!("\"{tag}\"")), "{tag}");
    }
    let tags: std::collections::BTreeSet<&str> = c
        .iter()
        .map(|(_, w)| w["action"].as_str().unwrap())
        .collect();
    assert!(tags.len() >= 17, "{tags:?}");
}

#[test]
fn built_in_parser_reaches_90_percent_exact_match() {
    let lex = corpus_lexicon();
    let (table, misses) = score(|t| serde_json::to_value(parser::parse(t, &lex).action).unwrap());
    let (ok, all) = table.values().fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let rate = ok as f64 / all as f64;
    for m in &misses {
        eprintln!("MISS {m}");
    }
    for (action, (c, t)) in &table {
        eprintln!("{action:18} {c:3}/{t:3}");
    }
    eprintln!("overall {ok}/{all} = {:.1}%", rate * 100.0);
    assert!(rate >= 0.9, "exact match {:.1}% < 90%", rate * 100.0);
}

#[tokio::test]
async fn parse_endpoint_agrees_with_the_corpus() {
    let app = spawn_app().await;
    let t = "corpus";
    app.new_tenant(t).await;
    let names = corpus_names();
    for p in &names.products {
        app.post(
            &format!("/v1/tenants/{t}/products"),
            json!({"name": p, "price": 1}),
        )
        .await;
    }
    for c in &names.customers {
        app.post(&format!("/v1/tenants/{t}/customers"), json!({"name": c}))
            .await;
    }
    for (n, r) in &names.staff {
        app.post(
            &format!("/v1/tenants/{t}/staff"),
            json!({"name": n, "role": r}),
        )
        .await;
    }
    let lex = corpus_lexicon();
    for (text, _) in corpus().iter().step_by(7) {
        let r = app
            .post(&format!("/v1/tenants/{t}/parse"), json!({"text": text}))
            .await;
        assert_eq!(r.status, reqwest::StatusCode::OK, "{text}: {}", r.text);
        let local = serde_json::to_value(parser::parse(text, &lex).action).unwrap();
        assert!(
            matches(&r.body["action"], &local),
            "{text}: {} vs {local}",
            r.body["action"]
        );
        assert_eq!(r.body["source"], "grammar");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
        let lex = corpus_lexicon();
        let _ = parser::parse(&s, &lex);
    }

    #[test]
    fn parser_never_panics_on_shop_like_text(s in "(sold|received|paid|order|/sale|/restock|how much|#|@|for|to|on credit|[0-9]{1,4}|\\.|,| |rice|eggs|ahmed|a dozen|half|twenty)*") {
        let lex = corpus_lexicon();
        let _ = parser::parse(&s, &lex);
    }
}

#[test]
fn parser_is_fast_on_10_kb_input() {
    let lex = corpus_lexicon();
    let limit = std::time::Duration::from_millis(500);
    let big = "sold 3 bags of rice to Ahmed for 45 and ".repeat(260);
    let noise: String = (0..10_240)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let slash = format!("/sale {}", "3 rice 15, ".repeat(1000));
    for text in [big.as_str(), noise.as_str(), slash.as_str()] {
        assert!(text.len() > 10_000);
        let started = std::time::Instant::now();
        let _ = parser::parse(text, &lex);
        assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    }
    // The slowest shapes under the phrase parser's length cap: product-like words, numbers.
    for unit in [
        "rice sugar oil ",
        "3 eggs 4 milk ",
        "to ahmed for 5 and ",
        "bread bread ",
    ] {
        let worst = unit.repeat(1999 / unit.len());
        let started = std::time::Instant::now();
        let _ = parser::parse(&worst, &lex);
        assert!(
            started.elapsed() < limit,
            "{unit:?}: {:?}",
            started.elapsed()
        );
    }
}
