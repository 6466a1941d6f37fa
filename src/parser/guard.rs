//! Writes never guess: what a parsed write carries must be found in the message — every
//! number (as digits or words) and every name (as written, by alias, or with a small typo) —
//! and every word of the message must be accounted for by the action or be one of the words
//! that carry no data; anything less is not sure.
//! Invariant: pure functions of the text, the action and the tenant's names; no IO.

use super::lexicon::Lexicon;
use super::text::{self, Tok};
use crate::action::Action;
use crate::action::resolve::{self, Candidate, Match};

/// The names a write carries: products, customers, drivers, suppliers, a new product.
pub fn names(action: &Action) -> Vec<String> {
    let mut out = Vec::new();
    match action {
        Action::AddProduct { name, .. } => out.push(name.clone()),
        Action::SetPrice { product, .. } | Action::StockCount { product, .. } => {
            out.push(product.clone())
        }
        Action::Restock {
            product, supplier, ..
        } => {
            out.push(product.clone());
            out.extend(supplier.clone());
        }
        Action::RecordSale {
            items, customer, ..
        } => {
            out.extend(items.iter().map(|i| i.product.clone()));
            out.extend(customer.clone());
        }
        Action::CreateOrder {
            items, customer, ..
        } => {
            out.extend(items.iter().map(|i| i.product.clone()));
            out.push(customer.clone());
        }
        Action::RecordPayment { customer, .. } => out.push(customer.clone()),
        Action::AssignDelivery { driver, .. } => out.push(driver.clone()),
        _ => {}
    }
    out
}

/// The candidates a name may be written as: itself, and a product's aliases.
fn candidate(name: &str, lex: &Lexicon) -> Candidate {
    let aliases = lex
        .products
        .iter()
        .find(|p| resolve::key(&p.name) == resolve::key(name))
        .map(|p| p.aliases.clone())
        .unwrap_or_default();
    Candidate {
        id: 0,
        name: name.to_owned(),
        aliases,
    }
}

/// The spans of `toks` (start, length) that name `name`: up to four words that resolve to
/// it alone.
fn spans(toks: &[Tok], name: &str, lex: &Lexicon) -> Vec<(usize, usize)> {
    let cand = [candidate(name, lex)];
    let mut out = Vec::new();
    for start in 0..toks.len() {
        for len in (1..=4.min(toks.len() - start)).rev() {
            let words: Vec<&str> = toks[start..start + len]
                .iter()
                .map(|t| t.low.as_str())
                .collect();
            if words.iter().any(|w| !w.chars().any(char::is_alphabetic)) {
                continue;
            }
            if resolve::resolve(&words.join(" "), &cand) == Match::One(0) {
                out.push((start, len));
                break;
            }
        }
    }
    out
}

/// Whether `text` mentions `name`.
pub fn mentions(text: &str, name: &str, lex: &Lexicon) -> bool {
    !spans(&text::tokenize(text), name, lex).is_empty()
}
