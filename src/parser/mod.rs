//! Turning a chat message into one `Action`. This parser is the slash grammar of
//! ACTIONS.md; free text becomes `unknown` until the phrase parser arrives.
//! Invariant: parsers only produce actions — no IO, no SQL, and text is only ever data.

mod grammar;

use crate::action::Action;

/// Which parser produced an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The built-in slash grammar / phrase parser.
    Grammar,
    /// A structured action sent through the API.
    Api,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Grammar => "grammar",
            Source::Api => "api",
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

/// Parses a message with the built-in parser.
pub fn parse(text: &str) -> Parsed {
    match grammar::parse_command(text) {
        Some(Ok(action)) => Parsed {
            action,
            confidence: 1.0,
        },
        Some(Err(reason)) => Parsed {
            action: Action::Unknown {
                reason: Some(reason),
            },
            confidence: 1.0,
        },
        None => Parsed {
            action: Action::Unknown {
                reason: Some("not a command; start with / (try /help)".into()),
            },
            confidence: 0.0,
        },
    }
}
