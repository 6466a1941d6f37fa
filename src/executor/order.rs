//! Delivery orders: create, assign to a driver, mark delivered (the delivery is a sale on
//! the customer's account), cancel, list.
//! Invariants: an order moves pending -> assigned -> delivered, or to cancelled; cancelling
//! a delivered order reverses its sale (stock back, balance down) in the same transaction.

use super::step::{
    Line, UndoOp, change_balance, find_customer, find_driver, items_text, lines_sum, lines_text,
    money, move_stock, owes_text, price_items, write_sale,
};
use super::{Ctx, Flow};
use crate::action::{Item, OrderStatus, Role, fmt_money};
use crate::shop::{catalog, report};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

/// An order's state, as `undo` restores it.
struct OrderState {
    status: String,
    driver: Option<i64>,
    delivered_at: Option<String>,
    customer_id: i64,
    sale_id: Option<i64>,
    total: i64,
}

impl OrderState {
    /// The undo step that puts order `id` back in this state.
    fn restore(&self, id: i64) -> UndoOp {
        UndoOp::Order {
            id,
            status: self.status.clone(),
            driver: self.driver,
            delivered_at: self.delivered_at.clone(),
        }
    }
}

fn order_state(conn: &Connection, id: i64) -> Result<OrderState, Flow> {
    conn.row(
        "SELECT status, driver_id, delivered_at, customer_id, sale_id, total FROM orders
         WHERE id = ?1",
        [id],
        |r| {
            Ok(OrderState {
                status: r.get(0)?,
                driver: r.get(1)?,
                delivered_at: r.get(2)?,
                customer_id: r.get(3)?,
                sale_id: r.get(4)?,
                total: r.get(5)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| Flow::Reject(format!("There is no order #{id}.")))
}

fn open_or_refuse(id: i64, status: &str) -> Result<(), Flow> {
    if matches!(status, "pending" | "assigned") {
        Ok(())
    } else {
        Err(Flow::Reject(format!("Order #{id} is already {status}.")))
    }
}

/// `create_order`: a pending order for a customer (a new name adds the customer).
pub(super) fn create(
    conn: &Connection,
    ctx: &mut Ctx,
    customer: &mut String,
    items: &mut [Item],
    address: Option<&str>,
) -> Result<String, Flow> {
    let lines = price_items(conn, ctx, items)?;
    let total = lines_sum(ctx, &lines)?;
    let (c, created) = find_customer(conn, customer, true)?;
    *customer = c.name.clone();
    if created {
        ctx.undo.push(UndoOp::RemoveCustomer { customer: c.id });
    }
    conn.exec(
        "INSERT INTO orders (customer_id, staff_id, address, status, total, created_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
        params![c.id, ctx.staff.id, address, total, ctx.now],
    )?;
    let id = conn.last_insert_rowid();
    for l in &lines {
        conn.exec(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price, total)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, l.product.id, l.qty, l.unit_price, l.total],
        )?;
    }
    ctx.undo.push(UndoOp::CancelOrder { id });
    ctx.summary = Some(format!(
        "order #{id} of {} for {}, {}",
        items_text(&lines),
        c.name,
        money(ctx, total)
    ));
    Ok(format!(
        "Order #{id} for {}{}: {} = {}. Assign it with /assign {id} <driver>.",
        c.name,
        if created { " (new customer)" } else { "" },
        lines_text(ctx, &lines),
        money(ctx, total)
    ))
}

/// `assign_delivery`: gives an open order to a driver.
pub(super) fn assign(
    conn: &Connection,
    ctx: &mut Ctx,
    id: i64,
    driver: &mut String,
) -> Result<String, Flow> {
    let state = order_state(conn, id)?;
    open_or_refuse(id, &state.status)?;
    let d = find_driver(conn, driver)?;
    *driver = d.name.clone();
    conn.exec(
        "UPDATE orders SET status = 'assigned', driver_id = ?2 WHERE id = ?1",
        params![id, d.id],
    )?;
    ctx.undo.push(state.restore(id));
    ctx.summary = Some(format!("assignment of order #{id} to {}", d.name));
    Ok(format!("Order #{id} assigned to {}.", d.name))
}

/// The lines of an order, priced as they were ordered.
fn order_lines(conn: &Connection, id: i64) -> Result<Vec<Line>, Flow> {
    let mut stmt = conn.prepare_cached(
        "SELECT product_id, qty, unit_price, total FROM order_items WHERE order_id = ?1 ORDER BY id",
    )?;
    let raw = stmt
        .query_map([id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<(i64, i64, i64, i64)>, _>>()?;
    raw.into_iter()
        .map(|(pid, qty, unit_price, total)| {
            let product = catalog::product(conn, pid)?
                .ok_or_else(|| Flow::Reject(format!("A product of order #{id} was deleted.")))?;
            Ok(Line {
                product,
                qty,
                unit_price,
                total,
            })
        })
        .collect()
}

/// `mark_delivered`: the delivery is a sale on the customer's account.
pub(super) fn deliver(conn: &Connection, ctx: &mut Ctx, id: i64) -> Result<String, Flow> {
    let state = order_state(conn, id)?;
    open_or_refuse(id, &state.status)?;
    if ctx.staff.role == Role::Driver && state.driver != Some(ctx.staff.id) {
        return Err(Flow::Reject(format!("Order #{id} is not assigned to you.")));
    }
    let lines = order_lines(conn, id)?;
    let c = catalog::customer(conn, state.customer_id)?.expect("orders reference customers");
    let sale = write_sale(conn, ctx, &lines, Some(&c), false)?;
    conn.exec(
        "UPDATE orders SET status = 'delivered', delivered_at = ?2, sale_id = ?3 WHERE id = ?1",
        params![id, ctx.now, sale.id],
    )?;
    ctx.undo.push(state.restore(id));
    ctx.summary = Some(format!("delivery of order #{id} to {}", c.name));
    Ok(format!(
        "Order #{id} delivered to {}: {} added to their account. {} {}",
        c.name,
        money(ctx, sale.total),
        owes_text(ctx, &c, sale.balance),
        sale.notes.join(" ")
    )
    .trim_end()
    .to_owned())
}

/// `cancel_order`: an open order is closed; a delivered one has its sale reversed: the
/// stock comes back and the customer no longer owes it.
pub(super) fn cancel(conn: &Connection, ctx: &mut Ctx, id: i64) -> Result<String, Flow> {
    let state = order_state(conn, id)?;
    let mut reply = format!("Order #{id} cancelled.");
    match state.status.as_str() {
        "pending" | "assigned" => {}
        "delivered" => {
            let Some(sale) = state.sale_id else {
                return Err(Flow::Reject(format!(
                    "Order #{id} was delivered before cancelling was possible; record a correction instead (a /restock and a /paid)."
                )));
            };
            crate::shop::report::count_sale(conn, sale, -1)?;
            conn.exec("UPDATE sales SET voided = 1 WHERE id = ?1", [sale])?;
            ctx.undo.push(UndoOp::RestoreSale { id: sale });
            for l in order_lines(conn, id)? {
                move_stock(conn, ctx, l.product.id, l.qty, "undo", None, None)?;
            }
            let c =
                catalog::customer(conn, state.customer_id)?.expect("orders reference customers");
            let balance = change_balance(conn, ctx, c.id, -state.total)?;
            reply = format!(
                "Order #{id} cancelled: its sale of {} is reversed and the stock is back. {}",
                money(ctx, state.total),
                owes_text(ctx, &c, balance)
            );
        }
        other => return Err(Flow::Reject(format!("Order #{id} is already {other}."))),
    }
    conn.exec("UPDATE orders SET status = 'cancelled' WHERE id = ?1", [id])?;
    ctx.undo.push(state.restore(id));
    ctx.summary = Some(format!("cancellation of order #{id}"));
    Ok(reply)
}

/// `list_orders`: open orders (or those of a status), a driver's own only.
pub(super) fn list(
    conn: &Connection,
    ctx: &Ctx,
    status: Option<OrderStatus>,
) -> Result<String, Flow> {
    let driver = (ctx.staff.role == Role::Driver).then_some(ctx.staff.id);
    let orders = report::orders(
        conn,
        ctx.settings.digits,
        status.map(|s| s.as_str()),
        driver,
        20,
    )?;
    if orders.is_empty() {
        return Ok(format!(
            "No {}orders.",
            status
                .map(|s| format!("{} ", s.as_str()))
                .unwrap_or_else(|| "open ".into())
        ));
    }
    let lines: Vec<String> = orders
        .iter()
        .map(|o| {
            let items: Vec<String> = o
                .items
                .iter()
                .map(|i| format!("{} {}", i.qty, i.product))
                .collect();
            format!(
                "#{} {}: {} = {} [{}{}]",
                o.id,
                o.customer,
                items.join(", "),
                fmt_money(
                    o.total.to_fixed(ctx.settings.digits).unwrap_or(0),
                    ctx.settings.digits,
                    &ctx.settings.currency
                ),
                o.status,
                o.driver
                    .as_deref()
                    .map(|d| format!(", {d}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    Ok(lines.join("\n"))
}
