//! `tarn eval FILE [--lexicon FILE] [--llm]`: labelled messages run as the server would
//! route them (built-in parser, the LLM when configured and the parser is not sure, the
//! rule that a write nobody is sure of is proposed, not applied), scored against their
//! labels: exact match, intent accuracy, wrong writes, asks, a confusion table by intent,
//! and the LLM's latency, tokens and own answers. An operator compares parsers, models and
//! prompts on their own messages with it.
//! Invariant: reads files and talks to the LLM only; writes nothing.

use crate::action::Action;
use crate::llm::LlmClient;
use crate::message::{self, Choice};
use crate::parser::{self, Lexicon};
use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One labelled message: `{"text": …, "expect": {action…}}` (or `"action"` for the label).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub text: String,
    pub expect: Value,
}

/// Reads a JSONL file of labelled messages.
pub fn load(path: &Path) -> anyhow::Result<Vec<Labelled>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let (Some(t), Some(expect)) = (
            v["text"].as_str(),
            v.get("expect").or_else(|| v.get("action")),
        ) else {
            bail!(
                "{}:{}: a line needs \"text\" and \"expect\"",
                path.display(),
                n + 1
            );
        };
        serde_json::from_value::<Action>(expect.clone())
            .with_context(|| format!("{}:{}: the label is not an action", path.display(), n + 1))?;
        out.push(Labelled {
            text: t.to_owned(),
            expect: expect.clone(),
        });
    }
    Ok(out)
}

/// A shop's names from JSON: `{"products": ["Rice", {"name": "…", "aliases": […]}],
/// "customers": […], "staff": [["Mary", "manager"], …]}`.
pub fn lexicon(path: &Path) -> anyhow::Result<Lexicon> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().or_else(|| s["name"].as_str()).map(str::to_owned))
            .collect()
    };
    let staff: Vec<(String, String)> = v["staff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
        .collect();
    let mut lex = Lexicon::from_names(&strings("products"), &strings("customers"), &staff);
    for (p, v) in lex
        .products
        .iter_mut()
        .zip(v["products"].as_array().into_iter().flatten())
    {
        p.aliases = v["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
    }
    Ok(lex)
}

/// What the server would do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Run at once (a write applied, a question answered).
    Applied(Value),
    /// A write shown to the sender for a yes.
    Proposed(Value),
    /// A name the shop does not know, asked about.
    Clarify,
    /// Not understood.
    Unknown,
}

impl Outcome {
    fn tag(&self) -> &str {
        match self {
            Outcome::Applied(a) | Outcome::Proposed(a) => a["action"].as_str().unwrap_or("?"),
            Outcome::Clarify | Outcome::Unknown => "unknown",
        }
    }
}

/// Whether the executor would know every name a write carries (else it asks which one).
fn names_known(action: &Action, lex: &Lexicon) -> bool {
    let product = |p: &str| lex.product(p).as_deref() == Some(p);
    match action {
        Action::SetPrice { product: p, .. }
        | Action::StockCount { product: p, .. }
        | Action::Restock { product: p, .. } => product(p),
        Action::RecordSale { items, .. } | Action::CreateOrder { items, .. } => {
            items.iter().all(|i| product(&i.product))
        }
        Action::RecordPayment { customer, .. } => lex.customer(customer).is_some(),
        Action::AssignDelivery { driver, .. } => lex.driver(driver).is_some(),
        _ => true,
    }
}

/// How a routed message ends, by the executor's rules (with the lexicon for the catalog).
pub fn outcome(choice: &Choice, lex: &Lexicon) -> Outcome {
    let json = serde_json::to_value(&choice.action).expect("actions serialize");
    match &choice.action {
        Action::Unknown { .. } => Outcome::Unknown,
        a if a.is_write() && !names_known(a, lex) => Outcome::Clarify,
        _ if choice.tentative => Outcome::Proposed(json),
        _ => Outcome::Applied(json),
    }
}

/// One message's result.
#[derive(Debug, Clone)]
pub struct Scored {
    pub text: String,
    pub expect: Value,
    pub outcome: Outcome,
    /// When the LLM was asked about it.
    pub llm: Option<Asked>,
}

/// One ask of the LLM: its wait and tokens (as the message log keeps them) and its own
/// answer (a valid action, before grounding and routing; `None` when it gave none).
#[derive(Debug, Clone)]
pub struct Asked {
    pub usage: crate::llm::Usage,
    pub own: Option<Value>,
}

impl Scored {
    fn label_tag(&self) -> &str {
        self.expect["action"].as_str().unwrap_or("?")
    }

    /// The server's answer is the label: the same action (applied or proposed), or nothing
    /// written for a message labelled `unknown`.
    pub fn exact(&self) -> bool {
        match &self.outcome {
            Outcome::Applied(a) | Outcome::Proposed(a) => a == &self.expect,
            Outcome::Clarify | Outcome::Unknown => self.label_tag() == "unknown",
        }
    }

    /// A write applied that is not the label's.
    pub fn wrong_write(&self) -> bool {
        match &self.outcome {
            Outcome::Applied(a) => {
                let action: Action = serde_json::from_value(a.clone()).expect("an action");
                action.is_write() && a != &self.expect
            }
            _ => false,
        }
    }
}

/// Routes and scores every message; `llm` (with the tenant name for its rate limit) asks
/// the model when the built-in parser is not sure, as the server does — or about every
/// message with `ask_all`, to see the model's own answers.
pub async fn evaluate(
    messages: &[Labelled],
    lex: &Lexicon,
    llm: Option<&LlmClient>,
    digits: u32,
    ask_all: bool,
) -> Vec<Scored> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let parsed = parser::parse(&m.text, lex);
        let (choice, asked) = match llm.filter(|_| ask_all || message::wants_llm(&parsed)) {
            Some(llm) => {
                let started = Instant::now();
                let answer = llm.parse("eval", &m.text, lex, digits).await;
                let own = answer
                    .as_ref()
                    .ok()
                    .map(|a| serde_json::to_value(&a.action).expect("actions serialize"));
                let choice = message::settle(llm, "eval", &m.text, parsed, lex, answer, started);
                let usage = choice.usage.unwrap_or_default();
                (choice, Some(Asked { usage, own }))
            }
            None => (Choice::built_in(parsed), None),
        };
        out.push(Scored {
            text: m.text.clone(),
            expect: m.expect.clone(),
            outcome: outcome(&choice, lex),
            llm: asked,
        });
    }
    out
}

/// The figures of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub messages: usize,
    pub exact: usize,
    /// Exact and applied at once (no yes needed).
    pub exact_applied: usize,
    pub intent: usize,
    pub wrong_writes: usize,
    pub proposed: usize,
    pub clarify: usize,
    pub unknown: usize,
}

impl Summary {
    /// Counts a run.
    pub fn of(scored: &[Scored]) -> Summary {
        let mut s = Summary {
            messages: scored.len(),
            ..Summary::default()
        };
        for r in scored {
            s.exact += usize::from(r.exact());
            s.exact_applied += usize::from(r.exact() && matches!(r.outcome, Outcome::Applied(_)));
            s.intent += usize::from(r.outcome.tag() == r.label_tag());
            s.wrong_writes += usize::from(r.wrong_write());
            match r.outcome {
                Outcome::Proposed(_) => s.proposed += 1,
                Outcome::Clarify => s.clarify += 1,
                Outcome::Unknown => s.unknown += 1,
                Outcome::Applied(_) => {}
            }
        }
        s
    }

    /// Exact matches, as a share of the messages.
    pub fn exact_rate(&self) -> f64 {
        self.exact as f64 / self.messages.max(1) as f64
    }
}

fn pct(n: usize, of: usize) -> String {
    format!("{:.1}%", 100.0 * n as f64 / of.max(1) as f64)
}

/// The report `tarn eval` prints.
pub fn report(title: &str, scored: &[Scored], misses: bool) -> String {
    let s = Summary::of(scored);
    let n = s.messages;
    let mut out =
        format!("\n{title}: {n} messages\n\n| measure | count | share |\n|---|---|---|\n");
    for (what, count) in [
        ("exact match (applied or proposed as labelled)", s.exact),
        ("  of which applied at once", s.exact_applied),
        ("intent right", s.intent),
        ("wrong writes (applied, not as labelled)", s.wrong_writes),
        ("proposed for a yes", s.proposed),
        ("asked which name (clarify)", s.clarify),
        ("not understood (unknown)", s.unknown),
    ] {
        out.push_str(&format!("| {what} | {count} | {} |\n", pct(count, n)));
    }
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for r in scored {
        *confusion
            .entry(r.label_tag().to_owned())
            .or_default()
            .entry(r.outcome.tag().to_owned())
            .or_default() += 1;
    }
    out.push_str("\nby intent (label -> routed to: count)\n\n| label | total | exact | routed to |\n|---|---|---|---|\n");
    for (label, row) in &confusion {
        let total: usize = row.values().sum();
        let exact = scored
            .iter()
            .filter(|r| r.label_tag() == label && r.exact())
            .count();
        let cells: Vec<String> = row.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "| {label} | {total} | {exact} | {} |\n",
            cells.join(", ")
        ));
    }
    let asked: Vec<(&Asked, &Value)> = scored
        .iter()
        .filter_map(|r| r.llm.as_ref().map(|a| (a, &r.expect)))
        .collect();
    if !asked.is_empty() {
        let mut ms: Vec<f64> = asked
            .iter()
            .map(|(a, _)| a.usage.micros as f64 / 1e3)
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        let (p, c) = asked.iter().fold((0, 0), |(p, c), (a, _)| {
            (p + a.usage.prompt_tokens, c + a.usage.completion_tokens)
        });
        let n = asked.len();
        let valid = asked.iter().filter(|(a, _)| a.own.is_some()).count();
        let own_exact = asked
            .iter()
            .filter(|(a, expect)| a.own.as_ref() == Some(*expect))
            .count();
        let own_intent = asked
            .iter()
            .filter(|(a, expect)| {
                a.own
                    .as_ref()
                    .is_some_and(|o| o["action"] == expect["action"])
            })
            .count();
        out.push_str(&format!(
            "\nLLM asked for {n} messages: latency p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; tokens per message asked: {:.0} prompt, {:.0} completion\nthe model's own answers (before grounding and routing): {valid} valid actions ({}), {own_intent} of the label's kind ({}), {own_exact} exactly the label ({})\n",
            at(0.5),
            at(0.95),
            at(1.0),
            p as f64 / n as f64,
            c as f64 / n as f64,
            pct(valid, n),
            pct(own_intent, n),
            pct(own_exact, n),
        ));
    }
    if misses {
        for r in scored.iter().filter(|r| !r.exact()) {
            out.push_str(&format!(
                "\n{} {:?}\n   want {}\n   got  {:?}",
                if r.wrong_write() { "WRONG" } else { "MISS " },
                r.text,
                r.expect,
                r.outcome
            ));
        }
        out.push('\n');
    }
    out
}
