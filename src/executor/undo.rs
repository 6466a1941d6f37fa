//! Undo: the operations that reverse an applied action, recorded in its journal entry, and
//! running them back for the sender's own last action.
//! Invariants: undo reverses only what its action did (a customer it created goes only if
//! nothing else has used them since); reversing stock writes a movement; the undone
//! action's log row is marked.

use super::step::{UndoOp, change_balance, move_stock};
use super::{Ctx, Flow};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

/// How long `undo` can reach back.
pub const UNDO_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The sender's last applied action within the window, reversed.
pub(super) fn undo(conn: &Connection, ctx: &mut Ctx) -> Result<String, Flow> {
    let last: Option<(i64, String, String, i64, Option<String>)> = conn
        .row(
            "SELECT id, action, undo_ops, at_ms, summary FROM journal
             WHERE staff_id = ?1 AND undone = 0 ORDER BY id DESC LIMIT 1",
            [ctx.staff.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((id, name, ops, at_ms, summary)) = last else {
        return Err(Flow::Reject("There is nothing of yours to undo.".into()));
    };
    let what = summary.unwrap_or_else(|| format!("your last {}", name.replace('_', " ")));
    if ctx.now_ms - at_ms > UNDO_WINDOW_MS {
        return Err(Flow::Reject(format!(
            "Your last action ({what}) is more than 10 minutes old and can't be undone."
        )));
    }
    let ops: Vec<UndoOp> = serde_json::from_str(&ops)
        .map_err(|e| Flow::Db(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    for op in ops.into_iter().rev() {
        reverse(conn, ctx, op, &what)?;
    }
    conn.exec("UPDATE journal SET undone = 1 WHERE id = ?1", [id])?;
    conn.exec(
        "UPDATE message_log SET undone_at = ?2 WHERE journal_id = ?1",
        params![id, ctx.now],
    )?;
    ctx.undo.clear();
    Ok(format!("Undone: {what}."))
}

fn reverse(conn: &Connection, ctx: &mut Ctx, op: UndoOp, what: &str) -> Result<(), Flow> {
    match op {
        UndoOp::Stock { product, delta } => {
            move_stock(conn, ctx, product, delta, "undo", None, None)?;
        }
        UndoOp::Balance { customer, delta } => {
            change_balance(conn, ctx, customer, delta)?;
        }
        UndoOp::VoidSale { id } => {
            crate::shop::report::count_sale(conn, id, -1)?;
            conn.exec("UPDATE sales SET voided = 1 WHERE id = ?1", [id])?;
        }
        UndoOp::RestoreSale { id } => {
            conn.exec("UPDATE sales SET voided = 0 WHERE id = ?1", [id])?;
            if !crate::shop::report::count_sale(conn, id, 1)? {
                return Err(Flow::Reject(format!(
                    "Can't undo {what}: that hour's sales would be more than the books can hold."
                )));
            }
        }
        UndoOp::VoidPayment { id } => {
            conn.exec("UPDATE payments SET voided = 1 WHERE id = ?1", [id])?;
        }
        UndoOp::VoidExpense { id } => {
            conn.exec("UPDATE expenses SET voided = 1 WHERE id = ?1", [id])?;
        }
        UndoOp::Price { product, price } => {
            conn.exec(
                "UPDATE products SET price = ?2 WHERE id = ?1",
                params![product, price],
            )?;
        }
        UndoOp::Order {
            id,
            status,
            driver,
            delivered_at,
        } => {
            conn.exec(
                "UPDATE orders SET status = ?2, driver_id = ?3, delivered_at = ?4 WHERE id = ?1",
                params![id, status, driver, delivered_at],
            )?;
        }
        UndoOp::CancelOrder { id } => {
            let n = conn.exec(
                "UPDATE orders SET status = 'cancelled'
                 WHERE id = ?1 AND status IN ('pending', 'assigned')",
                [id],
            )?;
            if n == 0 {
                return Err(Flow::Reject(format!(
                    "Can't undo {what}: order #{id} has been delivered or cancelled since."
                )));
            }
        }
        UndoOp::RemoveProduct { product } => {
            let used: bool = conn.row(
                "SELECT EXISTS (SELECT 1 FROM sale_items WHERE product_id = ?1)
                     OR EXISTS (SELECT 1 FROM order_items WHERE product_id = ?1)
                     OR EXISTS (SELECT 1 FROM stock_movements WHERE product_id = ?1 AND cause != 'initial')",
                [product],
                |r| r.get(0),
            )?;
            if used {
                return Err(Flow::Reject(format!(
                    "Can't undo {what}: the product has been used since."
                )));
            }
            conn.exec(
                "DELETE FROM stock_movements WHERE product_id = ?1",
                [product],
            )?;
            conn.exec(
                "DELETE FROM product_aliases WHERE product_id = ?1",
                [product],
            )?;
            conn.exec("DELETE FROM products WHERE id = ?1", [product])?;
        }
        UndoOp::RemoveCustomer { customer } => remove_customer(conn, customer)?,
    }
    Ok(())
}

/// Removes a customer an undone action created, unless anything else uses them: a live
/// sale, a payment, an open or delivered order, or a balance. Their undone sale or
/// cancelled order keeps them in its history; their name is free again.
fn remove_customer(conn: &Connection, customer: i64) -> Result<(), Flow> {
    let used: bool = conn.row(
        "SELECT EXISTS (SELECT 1 FROM sales WHERE customer_id = ?1 AND voided = 0)
             OR EXISTS (SELECT 1 FROM payments WHERE customer_id = ?1)
             OR EXISTS (SELECT 1 FROM orders WHERE customer_id = ?1 AND status != 'cancelled')
             OR EXISTS (SELECT 1 FROM customers WHERE id = ?1 AND balance != 0)",
        [customer],
        |r| r.get(0),
    )?;
    if !used {
        crate::shop::catalog::remove_customer(conn, customer)?;
    }
    Ok(())
}
