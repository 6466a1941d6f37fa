//! Built-in parser: messages per second on one core over the labelled corpus, and its
//! exact-match accuracy per action. Prints numbers.
//!
//! `cargo bench --bench parser`

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;
use tarn::parser::{self, Lexicon};

fn lexicon() -> Lexicon {
    let v: Value = serde_json::from_str(include_str!("../tests/data/parse_lexicon.json")).unwrap();
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let staff: Vec<(String, String)> = v["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Lexicon::from_names(&strings("products"), &strings("customers"), &staff)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lex = lexicon();
    let heldout = load(include_str!("../tests/data/parse_heldout.jsonl"));
    let corpus = load(include_str!("../tests/data/parse_corpus.jsonl"));
    report(&lex, &corpus, "corpus (tests/data/parse_corpus.jsonl)");
    report(
        &lex,
        &heldout,
        "held-out set written without tuning against it (tests/data/parse_heldout.jsonl)",
    );
    throughput(&lex, &corpus);
}

fn load(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["text"].as_str().unwrap().to_owned(), v["action"].clone())
        })
        .collect()
}

fn report(lex: &Lexicon, corpus: &[(String, Value)], title: &str) {
    let mut table = BTreeMap::<String, (usize, usize)>::new();
    let mut misses = Vec::new();
    for (text, want) in corpus {
        let got = serde_json::to_value(parser::parse(text, lex).action).unwrap();
        let ok = if want["action"] == "unknown" {
            got["action"] == "unknown"
        } else {
            &got == want
        };
        if !ok {
            misses.push(format!("MISS {text:?}\n  want {want}\n  got  {got}"));
        }
        let e = table
            .entry(want["action"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += usize::from(ok);
        e.1 += 1;
    }
    println!(
        "\nbuilt-in parser — exact match on the {title}, {} messages\n",
        corpus.len()
    );
    println!("| action | correct | total | accuracy |\n|---|---|---|---|");
    let (mut ok, mut all) = (0, 0);
    for (action, (c, t)) in &table {
        println!(
            "| {action} | {c} | {t} | {:.0}% |",
            100.0 * *c as f64 / *t as f64
        );
        ok += c;
        all += t;
    }
    println!(
        "| **all** | {ok} | {all} | {:.1}% |",
        100.0 * ok as f64 / all as f64
    );
    if std::env::var_os("TARN_BENCH_MISSES").is_some() {
        misses.iter().for_each(|m| println!("{m}"));
    }
}

fn throughput(lex: &Lexicon, corpus: &[(String, Value)]) {
    // One thread: short messages, median of 5 one-second runs.
    let texts: Vec<&str> = corpus.iter().map(|(t, _)| t.as_str()).collect();
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut n = 0usize;
        let mut sink = 0usize;
        while started.elapsed().as_secs_f64() < 1.0 {
            for t in &texts {
                sink += parser::parse(t, lex).action.name().len();
                n += 1;
            }
        }
        std::hint::black_box(sink);
        rates.push(n as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let slash: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| t.starts_with('/'))
        .collect();
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed().as_secs_f64() < 1.0 {
        for t in &slash {
            std::hint::black_box(parser::parse(t, lex));
            n += 1;
        }
    }
    let slash_rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "\nthroughput, one thread: corpus mix {:.0} msg/s (median of 5 one-second runs; min {:.0}, max {:.0}); slash commands only {:.0} msg/s",
        rates[2], rates[0], rates[4], slash_rate
    );
}
