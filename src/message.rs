//! Message in -> action: the built-in parser first, the LLM only when it is configured and
//! the built-in parser is not confident; then the executor. Shared by `/messages`, `/parse`,
//! the chat channels (whose workers run `first_step` inside their own trip), `tarn chat` and
//! `tarn eval`, so all of them route a message the same way.
//! Invariants: a duplicate never reaches the LLM; writes never guess — an LLM write must be
//! grounded in the text (every number and every name it carries is in the message) and of
//! the kind the built-in parser read, or it is not applied (the built-in write, or the LLM's
//! where the built-in parser read none, is proposed for the sender's yes); an LLM undo or
//! yes runs only when the built-in parser read it too; a failing LLM leaves the built-in
//! parser's answer standing.

use crate::action::{Action, Dec};
use crate::executor::{self, DryRun, ExecError, Input, Outcome, Request};
use crate::llm::{LlmAnswer, LlmClient, LlmError, Usage};
use crate::parser::{self, Lexicon, Parsed, Source};
use crate::store::Store;
use crate::tenant::TenantId;
use std::time::Instant;

/// Whether every number a write action carries appears in the message.
pub fn numbers_grounded(action: &Action, text: &str) -> bool {
    if !action.is_write() {
        return true;
    }
    let value = serde_json::to_value(action).expect("actions serialize");
    let mut wanted = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(n) => out.push(n.to_string()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&value, &mut wanted);
    let have: Vec<i64> = parser::numbers(text)
        .iter()
        .filter_map(|d| d.to_fixed(6).ok())
        .collect();
    wanted.iter().all(|w| {
        Dec::parse(w)
            .and_then(|d| d.to_fixed(6).ok())
            .is_some_and(|w| have.contains(&w))
    })
}

/// Whether a write is grounded in the message: every number, and every name (product,
/// customer, driver, supplier) found in the text — as written, by the shop's alias, or with
/// a small typo.
pub fn grounded(action: &Action, text: &str, lex: &Lexicon) -> bool {
    numbers_grounded(action, text)
        && parser::names(action)
            .iter()
            .all(|name| parser::mentions(text, name, lex))
}

/// What routing made of a message: the action to run, who produced it, and whether it
/// must wait for the sender's yes.
#[derive(Debug, Clone)]
pub struct Choice {
    pub action: Action,
    pub source: Source,
    /// What asking the LLM cost, when a request was sent (answered or not).
    pub usage: Option<Usage>,
    /// A write nobody is sure of: proposed, not applied.
    pub tentative: bool,
}

impl Choice {
    /// The built-in parser's answer as it stands: a write it is not sure of is tentative.
    pub fn built_in(parsed: Parsed) -> Choice {
        let tentative = parsed.action.is_write() && parsed.confidence < parser::CONFIDENT;
        Choice {
            action: parsed.action,
            source: Source::Grammar,
            usage: None,
            tentative,
        }
    }
}

/// What becomes of a grounded LLM answer, by what the built-in parser read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agreement {
    /// The kind the built-in parser read (or a read where it read no write): run at once.
    Runs,
    /// A write where the built-in parser read none: proposed for the sender's yes.
    Proposed,
    /// Another kind than the built-in parser's write: the built-in write stands, proposed.
    /// (A weak model can carry the right goods and numbers under the wrong kind of write —
    /// a sale as a restock — which grounding alone does not catch.)
    BuiltIn,
    /// An undo or a yes the built-in parser did not read: never run (it would change what
    /// the sender did before, and cannot be proposed).
    Refused,
}

fn agreement(llm: &Action, built_in: &Action) -> Agreement {
    if llm.name() == built_in.name() {
        return Agreement::Runs;
    }
    match llm {
        _ if built_in.is_write() => Agreement::BuiltIn,
        Action::Undo {} | Action::Confirm {} => Agreement::Refused,
        a if a.is_write() => Agreement::Proposed,
        _ => Agreement::Runs,
    }
}

/// Whether the LLM should be asked about this built-in answer.
pub fn wants_llm(parsed: &Parsed) -> bool {
    parsed.confidence < parser::CONFIDENT
}

/// Asks the LLM about a message the built-in parser is not sure of. A grounded answer is
/// the LLM's, run or proposed by its `Agreement` with the built-in one; an ungrounded write
/// is never applied (the built-in write, if any, is proposed instead; else the person is
/// asked to rephrase); a failing LLM leaves the built-in answer.
pub async fn ask_llm(
    llm: &LlmClient,
    tenant: &str,
    text: &str,
    built_in: Parsed,
    lexicon: &Lexicon,
    digits: u32,
) -> Choice {
    let started = Instant::now();
    let answer = llm.parse(tenant, text, lexicon, digits).await;
    settle(llm, tenant, text, built_in, lexicon, answer, started)
}

/// What the LLM's `answer` makes of a message, by the rules of `ask_llm`. `started` is when
/// it was asked: the wait of an ask that failed without an answer (an answer carries its own).
pub fn settle(
    llm: &LlmClient,
    tenant: &str,
    text: &str,
    built_in: Parsed,
    lexicon: &Lexicon,
    answer: Result<LlmAnswer, LlmError>,
    started: Instant,
) -> Choice {
    let rephrase = |built_in: Parsed, reason: &str, usage: Option<Usage>| {
        let mut choice = Choice::built_in(built_in);
        if !choice.action.is_write() {
            choice.action = Action::Unknown {
                reason: Some(reason.into()),
            };
            choice.source = Source::Llm;
        }
        choice.usage = usage;
        choice
    };
    match answer {
        Ok(answer) if grounded(&answer.action, text, lexicon) => {
            match agreement(&answer.action, &built_in.action) {
                agreed @ (Agreement::Runs | Agreement::Proposed) => Choice {
                    tentative: agreed == Agreement::Proposed,
                    action: answer.action,
                    source: Source::Llm,
                    usage: Some(answer.usage),
                },
                Agreement::BuiltIn => {
                    tracing::debug!(tenant = %tenant, action = answer.action.name(), "LLM read another kind of action than the built-in parser; the built-in write is proposed");
                    Choice {
                        usage: Some(answer.usage),
                        ..Choice::built_in(built_in)
                    }
                }
                Agreement::Refused => {
                    tracing::warn!(tenant = %tenant, action = answer.action.name(), "LLM answered an undo or a yes the built-in parser did not read; not run");
                    rephrase(
                        built_in,
                        "please say it again, for example /undo",
                        Some(answer.usage),
                    )
                }
            }
        }
        Ok(answer) => {
            llm.metrics().ungrounded.inc();
            tracing::warn!(tenant = %tenant, action = answer.action.name(), "LLM write not grounded in the message (a number or name it does not contain); not applied");
            rephrase(
                built_in,
                "please say it again with the names, quantities and prices",
                Some(answer.usage),
            )
        }
        Err(LlmError::Unusable { reason, usage }) => {
            tracing::warn!(tenant = %tenant, error = %reason, "LLM output invalid after one repair");
            rephrase(
                built_in,
                "please rephrase, for example /sale 3 rice",
                Some(usage),
            )
        }
        Err(e @ (LlmError::CircuitOpen | LlmError::RateLimited)) => {
            tracing::warn!(tenant = %tenant, error = %e, "LLM not asked; the built-in parser's answer stands");
            Choice::built_in(built_in)
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "LLM unavailable; the built-in parser's answer stands");
            // The message log keeps the wait of every ask that was sent, answered or not.
            let waited = Usage {
                micros: started.elapsed().as_micros() as i64,
                ..Usage::default()
            };
            Choice {
                usage: Some(waited),
                ..Choice::built_in(built_in)
            }
        }
    }
}

/// Where the first (blocking) step of a chat message ended.
pub enum FirstStep {
    /// Done: a duplicate, or a built-in answer already executed.
    Done(Outcome),
    /// The LLM should be asked; the built-in answer stands if it fails.
    AskLlm(Box<AskLlm>),
}

/// What the LLM is asked about a message, with the built-in answer to fall back on.
pub struct AskLlm {
    built_in: Parsed,
    lexicon: Lexicon,
    digits: u32,
}

fn parsed_input(text: String, choice: Choice) -> Input {
    Input::Parsed {
        text,
        action: Box::new(choice.action),
        source: choice.source,
        usage: choice.usage,
        tentative: choice.tentative,
    }
}

/// The blocking first step of a chat message (`req.input` is text), on the tenant's
/// connection: a duplicate's answer, or the built-in parser's answer executed — unless an
/// LLM is configured (`with_llm`) and the built-in parser is not confident.
pub fn first_step(
    conn: &mut rusqlite::Connection,
    req: &Request,
    with_llm: bool,
    started: Instant,
) -> Result<FirstStep, ExecError> {
    // `execute` answers a duplicate inside its own transaction; looking first (a read
    // transaction of its own) only pays when it spares asking the LLM.
    let Input::Text(text) = &req.input else {
        return executor::execute(conn, req).map(FirstStep::Done);
    };
    if with_llm
        && let Some(dup) = req
            .inbound_id
            .as_deref()
            .map(|k| executor::seen(conn, k, &req.input.request_sha()))
            .transpose()?
            .flatten()
    {
        return Ok(FirstStep::Done(dup));
    }
    let (parsed, lexicon) = executor::parse_builtin(conn, text)?;
    if !with_llm || !wants_llm(&parsed) {
        let mut req = req.clone();
        req.parse_us = Some(started.elapsed().as_micros() as i64);
        req.input = parsed_input(text.clone(), Choice::built_in(parsed));
        return executor::execute(conn, &req).map(FirstStep::Done);
    }
    let digits = crate::shop::load_settings(conn)?.digits;
    Ok(FirstStep::AskLlm(Box::new(AskLlm {
        built_in: parsed,
        lexicon,
        digits,
    })))
}

/// The rest of a chat message the built-in parser was not sure of: asks the LLM, then
/// runs its answer (or the built-in one).
pub async fn with_llm(
    store: &Store,
    llm: &LlmClient,
    tenant: &TenantId,
    mut req: Request,
    ask: AskLlm,
    started: Instant,
) -> Result<Outcome, ExecError> {
    let Input::Text(text) = &req.input else {
        return run(store, tenant, req).await;
    };
    let text = text.clone();
    let AskLlm {
        built_in,
        lexicon,
        digits,
    } = ask;
    let choice = ask_llm(llm, tenant.as_str(), &text, built_in, &lexicon, digits).await;
    req.parse_us = Some(started.elapsed().as_micros() as i64);
    req.input = parsed_input(text, choice);
    run(store, tenant, req).await
}

/// Runs one message end to end. Without an LLM, or when the built-in parser is
/// confident, this is one trip to the blocking pool.
pub async fn handle(
    store: &Store,
    llm: Option<&LlmClient>,
    tenant: &TenantId,
    req: Request,
) -> Result<Outcome, ExecError> {
    if !matches!(req.input, Input::Text(_)) {
        return run(store, tenant, req).await;
    }
    let started = Instant::now();
    let with = llm.is_some();
    let first = req.clone();
    let step = store
        .pool()
        .with_conn_grouped(tenant.clone(), move |conn| {
            first_step(conn, &first, with, started)
        })
        .await?;
    match (step, llm) {
        (FirstStep::Done(outcome), _) => Ok(outcome),
        (FirstStep::AskLlm(ask), Some(llm)) => {
            with_llm(store, llm, tenant, req, *ask, started).await
        }
        (FirstStep::AskLlm(_), None) => unreachable!("asked only when configured"),
    }
}

async fn run(store: &Store, tenant: &TenantId, req: Request) -> Result<Outcome, ExecError> {
    store
        .pool()
        .with_conn_grouped(tenant.clone(), move |conn| executor::execute(conn, &req))
        .await
}

/// Parses and resolves a message without writing anything.
pub async fn dry_run(
    store: &Store,
    llm: Option<&LlmClient>,
    tenant: &TenantId,
    sender: Option<String>,
    text: String,
) -> Result<DryRun, ExecError> {
    let t = text.clone();
    let (parsed, lexicon, digits) = store
        .pool()
        .with_conn(tenant.clone(), move |conn| {
            let (parsed, lexicon) = executor::parse_builtin(conn, &t)?;
            let digits = crate::shop::load_settings(conn)?.digits;
            Ok::<_, ExecError>((parsed, lexicon, digits))
        })
        .await?;
    let choice = match llm.filter(|_| wants_llm(&parsed)) {
        Some(llm) => ask_llm(llm, tenant.as_str(), &text, parsed, &lexicon, digits).await,
        None => Choice::built_in(parsed),
    };
    store
        .pool()
        .with_conn(tenant.clone(), move |conn| {
            executor::dry_run(conn, sender.as_deref(), &parsed_input(text, choice))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: serde_json::Value) -> Action {
        serde_json::from_value(v).unwrap()
    }

    fn shop() -> Lexicon {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Lexicon::from_names(
            &names(&["Rice", "Cooking Oil", "Milk"]),
            &names(&["Ahmed", "Fatima"]),
            &[("Musa".into(), "driver".into())],
        )
    }

    #[test]
    fn llm_writes_must_carry_only_numbers_from_the_message() {
        let lex = shop();
        let sale = a(
            serde_json::json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 3, "total": 45}]}),
        );
        assert!(grounded(&sale, "sold three bags of rice for 45", &lex));
        assert!(!grounded(&sale, "sold some rice", &lex));
        let big = a(serde_json::json!({"action": "restock", "product": "Rice", "qty": 500}));
        assert!(!grounded(&big, "please do the usual thing", &lex));
        assert!(grounded(
            &a(serde_json::json!({"action": "check_stock"})),
            "anything",
            &lex
        ));
    }

    #[test]
    fn an_llm_answer_runs_only_as_far_as_the_built_in_reading_allows() {
        let sale = a(
            serde_json::json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 2}]}),
        );
        let restock = a(serde_json::json!({"action": "restock", "product": "Rice", "qty": 2}));
        let stock = a(serde_json::json!({"action": "check_stock", "product": "Rice"}));
        let unknown = a(serde_json::json!({"action": "unknown"}));
        let undo = a(serde_json::json!({"action": "undo"}));
        assert_eq!(agreement(&sale, &sale), Agreement::Runs);
        assert_eq!(agreement(&restock, &sale), Agreement::BuiltIn);
        assert_eq!(agreement(&stock, &sale), Agreement::BuiltIn);
        assert_eq!(agreement(&restock, &unknown), Agreement::Proposed);
        assert_eq!(agreement(&stock, &unknown), Agreement::Runs);
        assert_eq!(agreement(&undo, &unknown), Agreement::Refused);
        assert_eq!(agreement(&undo, &undo), Agreement::Runs);
    }

    #[test]
    fn llm_writes_must_carry_only_names_from_the_message() {
        let lex = shop();
        let payment =
            a(serde_json::json!({"action": "record_payment", "customer": "Fatima", "amount": 12}));
        assert!(
            !grounded(&payment, "the delivery guy dropped 12 milk crates", &lex),
            "Fatima is a customer, but the message never names her"
        );
        assert!(grounded(&payment, "fatma paid 12", &lex), "a small typo");
        let oil = a(serde_json::json!({"action": "restock", "product": "Cooking Oil", "qty": 12}));
        assert!(grounded(&oil, "got 12 oil", &lex), "a word of the name");
        assert!(!grounded(&oil, "got 12 milk", &lex));
        let supplier = a(
            serde_json::json!({"action": "restock", "product": "Milk", "qty": 12, "supplier": "Karim"}),
        );
        assert!(!grounded(
            &supplier,
            "the delivery guy dropped 12 milk",
            &lex
        ));
    }
}
