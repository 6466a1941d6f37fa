//! Turning a chat message into one `Action`: the slash grammar of ACTIONS.md, then the
//! phrase parser for everyday wording (the LLM, when configured, is asked by `message`).
//! Invariant: parsers only produce actions — no IO, no SQL, and text is only ever data.

mod grammar;
mod guard;
mod lexicon;
mod phrase;
mod text;

pub use guard::{mentions, names};
pub use lexicon::Lexicon;
pub use text::numbers;

use crate::action::Action;

/// Which parser produced an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The built-in slash grammar / phrase parser.
    Grammar,
    /// A structured action sent through the API.
    Api,
    /// The LLM.
    Llm,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Grammar => "grammar",
            Source::Api => "api",
            Source::Llm => "llm",
        }
    }
}

/// A parser's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub action: Action,
    /// 0..=1: how sure the parser is.
    pub confidence: f32,
}

/// Below this confidence the LLM (when configured) is asked.
pub const CONFIDENT: f32 = 0.8;

/// Parses a message with the built-in parser: slash commands, then phrasing.
pub fn parse(text: &str, lexicon: &Lexicon) -> Parsed {
    match grammar::parse_command(text) {
        Some(Ok(mut action)) => {
            canonicalize(&mut action, lexicon);
            Parsed {
                action,
                confidence: 1.0,
            }
        }
        Some(Err(reason)) => Parsed {
            action: Action::Unknown {
                reason: Some(reason),
            },
            confidence: 1.0,
        },
        None => {
            let mut parsed = phrase::parse(text, lexicon);
            // Writes never guess: a word the parser could not place makes it unsure.
            if parsed.action.is_write()
                && !guard::accounted(&parsed.action, &text::tokenize(text), lexicon)
            {
                parsed.confidence = parsed.confidence.min(0.5);
            }
            parsed
        }
    }
}

/// Replaces names the lexicon knows unambiguously with their catalog spelling.
fn canonicalize(action: &mut Action, lex: &Lexicon) {
    let product = |p: &mut String| {
        if let Some(n) = lex.product(p) {
            *p = n;
        }
    };
    let customer = |c: &mut String| {
        if let Some(n) = lex.customer(c) {
            *c = n;
        }
    };
    match action {
        Action::SetPrice { product: p, .. }
        | Action::Restock { product: p, .. }
        | Action::StockCount { product: p, .. }
        | Action::CheckStock { product: Some(p) } => product(p),
        Action::RecordSale {
            items, customer: c, ..
        } => {
            items.iter_mut().for_each(|i| product(&mut i.product));
            if let Some(c) = c {
                customer(c);
            }
        }
        Action::CreateOrder {
            items, customer: c, ..
        } => {
            items.iter_mut().for_each(|i| product(&mut i.product));
            customer(c);
        }
        Action::RecordPayment { customer: c, .. } | Action::CustomerBalance { customer: c } => {
            customer(c)
        }
        Action::AssignDelivery { driver, .. } => {
            if let Some(n) = lex.driver(driver) {
                *driver = n;
            }
        }
        _ => {}
    }
}
