//! Writes the parser is not sure of: instead of guessing, the person is shown what would be
//! recorded ("Record a sale of 3 Rice to Ahmed? Reply yes or no.") and their next "yes"
//! records exactly that, "no" drops it.
//! Invariants: a proposal belongs to one staff member and lives until their next message
//! or for `PROPOSAL_TTL_MS`; it is taken at most once; nothing is written for it before yes.

use super::step::{money, resolve_names};
use super::{Ctx, Flow};
use crate::action::{Action, Item, fmt_qty};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

/// How long a question waits for its yes.
pub const PROPOSAL_TTL_MS: i64 = 10 * 60 * 1000;

/// "3 Rice and 2 Sugar".
fn items(list: &[Item]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|i| format!("{} {}", fmt_qty(i.qty.to_fixed(3).unwrap_or(0)), i.product))
        .collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.concat(),
    }
}

/// What recording `action` would do, in the shop's words ("a sale of 3 Rice to Ahmed").
pub(super) fn describe(ctx: &Ctx, action: &Action) -> String {
    let m = |d: crate::action::Dec| money(ctx, d.to_fixed(ctx.settings.digits).unwrap_or(0));
    let priced = |list: &[Item]| {
        let mut s = items(list);
        if let [one] = list {
            if let Some(t) = one.total {
                s.push_str(&format!(" for {}", m(t)));
            } else if let Some(u) = one.unit_price {
                s.push_str(&format!(" at {} each", m(u)));
            }
        }
        s
    };
    match action {
        Action::RecordSale {
            items: list,
            customer,
            paid,
        } => format!(
            "a sale of {}{}{}",
            priced(list),
            customer
                .as_deref()
                .map(|c| format!(" to {c}"))
                .unwrap_or_default(),
            if *paid == Some(false) {
                " on credit"
            } else {
                ""
            }
        ),
        Action::Restock {
            product,
            qty,
            unit_cost,
            supplier,
        } => format!(
            "{} {product} coming in{}{}",
            fmt_qty(qty.to_fixed(3).unwrap_or(0)),
            supplier
                .as_deref()
                .map(|s| format!(" from {s}"))
                .unwrap_or_default(),
            unit_cost
                .map(|c| format!(" at {} each", m(c)))
                .unwrap_or_default()
        ),
        Action::StockCount { product, qty } => format!(
            "a stock count of {} {product}",
            fmt_qty(qty.to_fixed(3).unwrap_or(0))
        ),
        Action::RecordPayment { customer, amount } => {
            format!("a payment of {} from {customer}", m(*amount))
        }
        Action::RecordExpense {
            amount, category, ..
        } => format!(
            "an expense of {}{}",
            m(*amount),
            category
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        Action::SetPrice { product, price } => {
            format!("the price of {product} as {}", m(*price))
        }
        Action::AddProduct { name, price, .. } => {
            format!("a new product {name} at {}", m(*price))
        }
        Action::CreateOrder {
            customer,
            items: list,
            ..
        } => format!("an order of {} for {customer}", priced(list)),
        Action::AssignDelivery { order_id, driver } => {
            format!("order #{order_id} going to {driver}")
        }
        Action::MarkDelivered { order_id } => format!("order #{order_id} as delivered"),
        Action::CancelOrder { order_id } => format!("order #{order_id} as cancelled"),
        other => other.name().replace('_', " "),
    }
}

/// Resolves the names of a write the parser is unsure of and asks the person to confirm
/// it. Returns the question and the action to keep for their yes; a name that needs a
/// choice is asked about instead (and nothing is kept).
pub(super) fn propose(conn: &Connection, ctx: &Ctx, action: &mut Action) -> Result<String, Flow> {
    resolve_names(conn, action)?;
    Ok(format!(
        "Record {}? Reply yes or no.",
        describe(ctx, action)
    ))
}

/// The action the sender's last message proposed, taken (it cannot be confirmed twice):
/// only their very last message counts, and only within `PROPOSAL_TTL_MS`.
pub(super) fn take(conn: &Connection, staff: i64, now_ms: i64) -> rusqlite::Result<Option<Action>> {
    let last: Option<(i64, Option<String>, Option<i64>)> = conn
        .row(
            "SELECT id, proposal, proposal_until_ms FROM message_log
             WHERE staff_id = ?1 ORDER BY id DESC LIMIT 1",
            [staff],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((id, Some(proposal), Some(until))) = last else {
        return Ok(None);
    };
    if until < now_ms {
        return Ok(None);
    }
    conn.exec(
        "UPDATE message_log SET proposal_until_ms = NULL WHERE id = ?1",
        [id],
    )?;
    Ok(serde_json::from_str(&proposal).ok())
}

/// The reply to a "no".
pub(super) fn decline(conn: &Connection, ctx: &Ctx) -> Result<String, Flow> {
    Ok(match take(conn, ctx.staff.id, ctx.now_ms)? {
        Some(a) => format!("OK, nothing recorded ({} dropped).", describe(ctx, &a)),
        None => "There is nothing waiting for a yes or no.".to_owned(),
    })
}

/// The reply to a "yes" with nothing waiting.
pub(super) const NOTHING_TO_CONFIRM: &str =
    "There is nothing waiting for a yes. Say again what to record.";

/// Keeps a proposal on its log row for the sender's yes.
pub(super) fn keep(
    conn: &Connection,
    log_row: i64,
    action: &Action,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.exec(
        "UPDATE message_log SET proposal = ?2, proposal_until_ms = ?3 WHERE id = ?1",
        params![
            log_row,
            serde_json::to_string(action).expect("actions serialize"),
            now_ms + PROPOSAL_TTL_MS
        ],
    )?;
    Ok(())
}
