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

/// Words that carry no data of their own: how people say who did what, with what, when.
const CARRY_NOTHING: &[&str] = &[
    // articles, pronouns, little words
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "i",
    "we",
    "us",
    "our",
    "my",
    "me",
    "you",
    "he",
    "she",
    "they",
    "them",
    "his",
    "her",
    "their",
    "him",
    "some",
    "all",
    "to",
    "for",
    "from",
    "of",
    "on",
    "at",
    "@",
    "in",
    "into",
    "with",
    "by",
    "and",
    "&",
    ",",
    "plus",
    "also",
    "x",
    "each",
    "per",
    "apiece",
    "every",
    "as",
    "then",
    "so",
    "just",
    "only",
    "now",
    "today",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "has",
    "have",
    "had",
    "will",
    "would",
    "can",
    "did",
    "do",
    "does",
    "already",
    "more",
    "again",
    "too",
    "here",
    "there",
    "out",
    "off",
    "up",
    "please",
    "thanks",
    "thank",
    "ok",
    "okay",
    "sir",
    "madam",
    "boss",
    // money and accounts
    "$",
    "usd",
    "ksh",
    "kes",
    "sh",
    "shs",
    "tsh",
    "ugx",
    "ngn",
    "naira",
    "rs",
    "inr",
    "dollars",
    "dollar",
    "bob",
    "shillings",
    "bucks",
    "cash",
    "money",
    "total",
    "price",
    "cost",
    "costs",
    "credit",
    "debt",
    "account",
    "tab",
    "owes",
    "owing",
    "later",
    "pay",
    "paid",
    "pays",
    "payment",
    "balance",
    "cleared",
    "repaid",
    "settled",
    "deposit",
    "deposited",
    // doing
    "sold",
    "sell",
    "selling",
    "sale",
    "sales",
    "bought",
    "buy",
    "buys",
    "purchased",
    "took",
    "takes",
    "taken",
    "give",
    "gave",
    "given",
    "put",
    "received",
    "receive",
    "restock",
    "restocked",
    "restocking",
    "stock",
    "delivered",
    "deliver",
    "delivery",
    "brought",
    "supplied",
    "supplier",
    "added",
    "add",
    "got",
    "arrived",
    "came",
    "dropped",
    "new",
    "order",
    "ordered",
    "wants",
    "want",
    "needs",
    "counted",
    "count",
    "left",
    "remaining",
    "remain",
    "actual",
    "real",
    "take",
    "spent",
    "spend",
    "expense",
    "expenses",
    "bill",
    "bills",
    "shop",
    "store",
    "customer",
    "lady",
    "man",
    "woman",
    "guy",
    "boy",
    "girl",
    "someone",
    "somebody",
    "person",
    "client",
    "driver",
    "start",
    "started",
    "starting",
    "product",
    "item",
    "called",
    "named",
    "change",
    "set",
    "make",
    "increase",
    "raise",
    "reduce",
    "lower",
    "priced",
    "from",
    "assign",
    "assigned",
    "send",
    "done",
    "completed",
    "stocktake",
    "recount",
    "create",
    "back",
    "address",
    "goes",
    "go",
    "number",
    "no",
];

/// Whether every word of `toks` is accounted for by `action` (its numbers, its names, its
/// category, note or address) or carries no data. A word left over is something the parser
/// did not understand, so it cannot be sure of the write.
pub(super) fn accounted(action: &Action, toks: &[Tok], lex: &Lexicon) -> bool {
    let mut used = vec![false; toks.len()];
    // Every number said is one the write carries: "sold 2 milk and paid 5" is two things.
    let carried = carried_numbers(action);
    let mut i = 0;
    while i < toks.len() {
        match text::number_at(toks, i, true) {
            Some((d, n)) => {
                let value = d.to_fixed(6).ok();
                let article = n == 1 && matches!(toks[i].low.as_str(), "a" | "an");
                if article || value.is_some_and(|v| carried.iter().any(|c| c.matches(v))) {
                    used[i..i + n].iter_mut().for_each(|u| *u = true);
                }
                i += n;
            }
            None => i += 1,
        }
    }
    let mut said = names(action);
    // Who delivered or took an order is not recorded: naming them changes nothing.
    if matches!(
        action,
        Action::MarkDelivered { .. } | Action::CancelOrder { .. }
    ) {
        said.extend(lex.customers.iter().chain(&lex.staff).cloned());
    }
    for name in said {
        for (start, len) in spans(toks, &name, lex) {
            used[start..start + len].iter_mut().for_each(|u| *u = true);
        }
    }
    let free_text: Vec<String> = match action {
        Action::RecordExpense { category, note, .. } => category
            .iter()
            .chain(note.iter())
            .flat_map(|s| text::tokenize(s).into_iter().map(|t| t.low))
            .collect(),
        Action::CreateOrder { address, .. } => address
            .iter()
            .flat_map(|s| text::tokenize(s).into_iter().map(|t| t.low))
            .collect(),
        _ => Vec::new(),
    };
    toks.iter().zip(used).all(|(t, u)| {
        u || t.low.starts_with('#')
            || CARRY_NOTHING.contains(&t.low.as_str())
            || text::UNITS.contains(&t.low.as_str())
            || free_text.contains(&t.low)
    })
}

/// A number a write carries, in millionths; a restock's unit cost may have been said as
/// the total for its quantity.
struct Carried {
    value: i64,
    times: Option<i64>,
}

impl Carried {
    fn matches(&self, said: i64) -> bool {
        said == self.value
            || self.times.is_some_and(|q| {
                (i128::from(self.value) * i128::from(q) / 1000) == i128::from(said)
            })
    }
}

fn carried_numbers(action: &Action) -> Vec<Carried> {
    let mut out = Vec::new();
    let m = |d: &crate::action::Dec| d.to_fixed(6).ok();
    let mut plain = |d: &crate::action::Dec| {
        if let Some(v) = m(d) {
            out.push(Carried {
                value: v,
                times: None,
            });
        }
    };
    match action {
        Action::AddProduct {
            price,
            stock,
            low_stock_at,
            ..
        } => {
            plain(price);
            stock.iter().chain(low_stock_at.iter()).for_each(&mut plain);
        }
        Action::SetPrice { price, .. } => plain(price),
        Action::StockCount { qty, .. } => plain(qty),
        Action::RecordPayment { amount, .. } | Action::RecordExpense { amount, .. } => {
            plain(amount)
        }
        Action::RecordSale { items, .. } | Action::CreateOrder { items, .. } => {
            for i in items {
                plain(&i.qty);
                i.unit_price
                    .iter()
                    .chain(i.total.iter())
                    .for_each(&mut plain);
            }
        }
        Action::Restock { qty, unit_cost, .. } => {
            plain(qty);
            if let Some(v) = unit_cost.as_ref().and_then(m) {
                out.push(Carried {
                    value: v,
                    times: qty.to_fixed(3).ok(),
                });
            }
        }
        Action::AssignDelivery { order_id, .. }
        | Action::MarkDelivered { order_id }
        | Action::CancelOrder { order_id } => out.push(Carried {
            value: order_id * 1_000_000,
            times: None,
        }),
        _ => {}
    }
    out
}
