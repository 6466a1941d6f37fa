//! Message in -> action: the built-in parser first, the LLM only when it is configured and
//! the built-in parser is not confident; then the executor. Shared by `/messages` and
//! `/parse` (and later the chat channels).
//! Invariants: a duplicate never reaches the LLM; an LLM write must be grounded in the text
//! (every number it carries appears in the message) or the person is asked to rephrase; a
//! failing LLM leaves the built-in parser's answer standing.

use crate::action::{Action, Dec};
use crate::executor::{self, DryRun, ExecError, Input, Outcome, Request};
use crate::llm::{LlmClient, LlmError, Usage};
use crate::parser::{self, Source};
use crate::store::Store;
use crate::tenant::TenantId;
use std::time::Instant;

/// Whether every number a write action carries appears in the message.
pub fn grounded(action: &Action, text: &str) -> bool {
    if action.is_read_only() || matches!(action, Action::Undo {}) {
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

/// Where the first (blocking) step of a message ended.
enum FirstStep {
    /// Done: a duplicate, or a confident built-in parse already executed.
    Done(Outcome),
    /// The LLM should be asked; the built-in answer stands if it fails.
    AskLlm {
        built_in: Box<Action>,
        lexicon: crate::parser::Lexicon,
        digits: u32,
    },
}

/// Asks the LLM; returns the action to run and its source and usage.
async fn ask_llm(
    llm: &LlmClient,
    tenant: &TenantId,
    text: &str,
    built_in: Action,
    lexicon: &crate::parser::Lexicon,
    digits: u32,
) -> (Action, Source, Option<Usage>) {
    match llm.parse(tenant.as_str(), text, lexicon, digits).await {
        Ok(answer) if grounded(&answer.action, text) => {
            (answer.action, Source::Llm, Some(answer.usage))
        }
        Ok(answer) => {
            tracing::warn!(tenant = %tenant, action = answer.action.name(), "LLM action not grounded in the message; asking to rephrase");
            let action = Action::Unknown {
                reason: Some("please say it again with the quantities and prices".into()),
            };
            (action, Source::Llm, Some(answer.usage))
        }
        Err(LlmError::Invalid(e)) => {
            tracing::warn!(tenant = %tenant, error = %e, "LLM output invalid after one repair");
            let action = Action::Unknown {
                reason: Some("please rephrase, for example /sale 3 rice".into()),
            };
            (action, Source::Llm, None)
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "LLM unavailable; the built-in parser's answer stands");
            (built_in, Source::Grammar, None)
        }
    }
}

/// Runs one chat message end to end. Without an LLM, or when the built-in parser is
/// confident, this is one trip to the blocking pool.
pub async fn handle(
    store: &Store,
    llm: Option<&LlmClient>,
    tenant: &TenantId,
    req: Request,
) -> Result<Outcome, ExecError> {
    let Input::Text(text) = &req.input else {
        return run(store, tenant, req).await;
    };
    let text = text.clone();
    let started = Instant::now();
    let with_llm = llm.is_some();
    let mut first = req.clone();
    let step = store
        .pool()
        .with_conn(tenant.clone(), move |conn| {
            if let Some(dup) = first
                .inbound_id
                .as_deref()
                .map(|k| executor::seen(conn, k, &first.input.request_sha()))
                .transpose()?
                .flatten()
            {
                return Ok(FirstStep::Done(dup));
            }
            let Input::Text(text) = &first.input else {
                unreachable!("checked above")
            };
            let (parsed, lexicon) = executor::parse_builtin(conn, text)?;
            if !with_llm || parsed.confidence >= parser::CONFIDENT {
                first.parse_us = Some(started.elapsed().as_micros() as i64);
                first.input = Input::Parsed {
                    text: text.clone(),
                    action: parsed.action,
                    source: Source::Grammar,
                    usage: None,
                };
                return executor::execute(conn, &first).map(FirstStep::Done);
            }
            let digits = crate::shop::load_settings(conn)?.digits;
            Ok(FirstStep::AskLlm {
                built_in: Box::new(parsed.action),
                lexicon,
                digits,
            })
        })
        .await?;
    let (built_in, lexicon, digits) = match step {
        FirstStep::Done(outcome) => return Ok(outcome),
        FirstStep::AskLlm {
            built_in,
            lexicon,
            digits,
        } => (*built_in, lexicon, digits),
    };
    let llm = llm.expect("asked only when configured");
    let (action, source, usage) = ask_llm(llm, tenant, &text, built_in, &lexicon, digits).await;
    let mut req = req;
    req.parse_us = Some(started.elapsed().as_micros() as i64);
    req.input = Input::Parsed {
        text,
        action,
        source,
        usage,
    };
    run(store, tenant, req).await
}

async fn run(store: &Store, tenant: &TenantId, req: Request) -> Result<Outcome, ExecError> {
    store
        .pool()
        .with_conn(tenant.clone(), move |conn| executor::execute(conn, &req))
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
    let (action, source, usage) = match llm.filter(|_| parsed.confidence < parser::CONFIDENT) {
        Some(llm) => ask_llm(llm, tenant, &text, parsed.action, &lexicon, digits).await,
        None => (parsed.action, Source::Grammar, None),
    };
    store
        .pool()
        .with_conn(tenant.clone(), move |conn| {
            let input = Input::Parsed {
                text,
                action,
                source,
                usage,
            };
            executor::dry_run(conn, sender.as_deref(), &input)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: serde_json::Value) -> Action {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn llm_writes_must_carry_only_numbers_from_the_message() {
        let sale = a(
            serde_json::json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 3, "total": 45}]}),
        );
        assert!(grounded(&sale, "sold three bags of rice for 45"));
        assert!(!grounded(&sale, "sold some rice"));
        let big = a(serde_json::json!({"action": "restock", "product": "Rice", "qty": 500}));
        assert!(!grounded(&big, "please do the usual thing"));
        let price = a(serde_json::json!({"action": "set_price", "product": "Rice", "price": 2.5}));
        assert!(grounded(&price, "rice is 2.50 now"));
        assert!(grounded(
            &a(serde_json::json!({"action": "check_stock"})),
            "anything"
        ));
    }
}
