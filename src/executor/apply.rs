//! The fixed, parameterized SQL of each action, the replies people see, and undo.
//! Invariants: every stock change writes a stock movement (stock = sum of movements); every
//! write pushes the operations that reverse it; names resolve or the action asks (Clarify).

use super::{Ctx, Flow};
use crate::action::resolve::{self, Candidate, Match, key};
use crate::action::{
    Action, Dec, Item, MAX_STOCK, Role, fmt_money, fmt_qty, max_money_text, money_figure,
};
use crate::shop::catalog::{self, Customer, NewProduct, Product};
use crate::shop::{self, report};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// How long `undo` can reach back.
pub const UNDO_WINDOW_MS: i64 = 10 * 60 * 1000;

/// One step that reverses part of an applied action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UndoOp {
    Stock {
        product: i64,
        delta: i64,
    },
    Balance {
        customer: i64,
        delta: i64,
    },
    VoidSale {
        id: i64,
    },
    VoidPayment {
        id: i64,
    },
    VoidExpense {
        id: i64,
    },
    Price {
        product: i64,
        price: i64,
    },
    Order {
        id: i64,
        status: String,
        driver: Option<i64>,
        delivered_at: Option<String>,
    },
    RemoveProduct {
        product: i64,
    },
}

fn money(ctx: &Ctx, minor: i64) -> String {
    fmt_money(minor, ctx.settings.digits, &ctx.settings.currency)
}

fn to_money(ctx: &Ctx, d: Dec) -> i64 {
    // `Action::check` ran first, so conversions succeed.
    d.to_fixed(ctx.settings.digits).unwrap_or(0)
}

fn to_qty(d: Dec) -> i64 {
    d.to_fixed(3).unwrap_or(0)
}

/// "… is more than the books can hold": the refusal of a figure beyond `MAX_MONEY`.
fn too_large(ctx: &Ctx, what: &str) -> Flow {
    Flow::Invalid(format!(
        "{what} is more than the books can hold (at most {} {}); nothing was recorded",
        max_money_text(ctx.settings.digits),
        ctx.settings.currency
    ))
}

/// `qty` × `unit` for `product`, or the refusal when the line is beyond the books' bounds.
fn line_total(ctx: &Ctx, qty: i64, unit: i64, product: &str) -> Result<i64, Flow> {
    crate::action::line_total(qty, unit).ok_or_else(|| {
        too_large(
            ctx,
            &format!("{} {product} at {} each", fmt_qty(qty), money(ctx, unit)),
        )
    })
}

/// The sum of a sale's or order's lines, within the books' bounds.
fn lines_sum(ctx: &Ctx, lines: &[Line]) -> Result<i64, Flow> {
    money_figure(lines.iter().map(|l| i128::from(l.total)).sum())
        .ok_or_else(|| too_large(ctx, "the total of these items"))
}

fn clarify_text(kind: &str, name: &str, m: Match) -> Flow {
    match m {
        Match::Ambiguous(names) => Flow::Clarify(format!(
            "Which {kind} do you mean by \"{name}\": {}?",
            names.join(", ")
        )),
        Match::NotFound(near) if near.is_empty() => {
            Flow::Clarify(format!("I don't know a {kind} called \"{name}\"."))
        }
        Match::NotFound(near) => Flow::Clarify(format!(
            "I don't know a {kind} called \"{name}\". Did you mean {}?",
            near.join(" or ")
        )),
        Match::One(_) => unreachable!("a match is not a question"),
    }
}

fn pick(kind: &str, name: &str, cands: &[Candidate]) -> Result<i64, Flow> {
    match resolve::resolve(name, cands) {
        Match::One(id) => Ok(id),
        other => Err(clarify_text(kind, name, other)),
    }
}

fn find_product(conn: &Connection, name: &str) -> Result<Product, Flow> {
    if let Some(p) = catalog::product_by_key(conn, &key(name))? {
        return Ok(p);
    }
    let id = pick("product", name, &shop::product_candidates(conn)?)?;
    Ok(catalog::product(conn, id)?.expect("candidate exists"))
}

/// The customer a name means; with `create`, a name like no one's adds a new customer.
fn find_customer(conn: &Connection, name: &str, create: bool) -> Result<(Customer, bool), Flow> {
    if let Some(c) = catalog::customer_by_key(conn, &key(name))? {
        return Ok((c, false));
    }
    match resolve::resolve(name, &shop::customer_candidates(conn)?) {
        Match::One(id) => Ok((
            catalog::customer(conn, id)?.expect("candidate exists"),
            false,
        )),
        Match::NotFound(_) if create => Ok((catalog::insert_customer(conn, name, None)?, true)),
        other => Err(clarify_text("customer", name, other)),
    }
}

fn find_driver(conn: &Connection, name: &str) -> Result<shop::Staff, Flow> {
    let id = pick("driver", name, &shop::driver_candidates(conn)?)?;
    Ok(shop::staff_by_id(conn, id)?.expect("candidate exists"))
}

/// Resolves every name in `action` to its catalog spelling without writing (for `/parse`).
pub(crate) fn resolve_names(conn: &Connection, action: &mut Action) -> Result<(), Flow> {
    match action {
        Action::SetPrice { product, .. }
        | Action::Restock { product, .. }
        | Action::StockCount { product, .. } => *product = find_product(conn, product)?.name,
        Action::CheckStock {
            product: Some(product),
        } => *product = find_product(conn, product)?.name,
        Action::RecordSale {
            items, customer, ..
        } => {
            for it in items.iter_mut() {
                it.product = find_product(conn, &it.product)?.name;
            }
            if let Some(c) = customer
                && let Some(found) = existing_customer(conn, c)?
            {
                *c = found;
            }
        }
        Action::CreateOrder {
            items, customer, ..
        } => {
            for it in items.iter_mut() {
                it.product = find_product(conn, &it.product)?.name;
            }
            if let Some(found) = existing_customer(conn, customer)? {
                *customer = found;
            }
        }
        Action::RecordPayment { customer, .. } | Action::CustomerBalance { customer } => {
            *customer = find_customer(conn, customer, false)?.0.name
        }
        Action::AssignDelivery { driver, .. } => *driver = find_driver(conn, driver)?.name,
        _ => {}
    }
    Ok(())
}

fn existing_customer(conn: &Connection, name: &str) -> Result<Option<String>, Flow> {
    match find_customer(conn, name, false) {
        Ok((c, _)) => Ok(Some(c.name)),
        Err(Flow::Clarify(q)) if q.starts_with("I don't know") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Changes stock by `delta` with a movement; returns the stock after.
fn move_stock(
    conn: &Connection,
    ctx: &mut Ctx,
    product: i64,
    delta: i64,
    cause: &str,
    unit_cost: Option<i64>,
    supplier: Option<&str>,
) -> Result<i64, Flow> {
    use rusqlite::OptionalExtension;
    let stock: Option<i64> = conn
        .row(
            // Back at or over its threshold: the low-stock alert may fire again next time.
            "UPDATE products SET stock = stock + ?2,
                low_alerted = CASE WHEN stock + ?2 >= coalesce(low_stock_at, ?3) THEN 0
                                   ELSE low_alerted END
             WHERE id = ?1 AND abs(stock + ?2) <= ?4 RETURNING stock",
            params![product, delta, ctx.settings.low_stock_default, MAX_STOCK],
            |r| r.get(0),
        )
        .optional()?;
    let Some(stock) = stock else {
        return Err(Flow::Invalid(format!(
            "the stock after this would be more than the books can hold (at most {}); nothing was recorded",
            fmt_qty(MAX_STOCK)
        )));
    };
    conn.exec(
        "INSERT INTO stock_movements (product_id, delta, cause, unit_cost, supplier, journal_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![product, delta, cause, unit_cost, supplier, ctx.journal_id, ctx.now],
    )?;
    ctx.undo.push(UndoOp::Stock {
        product,
        delta: -delta,
    });
    Ok(stock)
}

fn change_balance(
    conn: &Connection,
    ctx: &mut Ctx,
    customer: i64,
    delta: i64,
) -> Result<i64, Flow> {
    use rusqlite::OptionalExtension;
    let balance: Option<i64> = conn
        .row(
            "UPDATE customers SET balance = balance + ?2
             WHERE id = ?1 AND abs(balance + ?2) <= ?3 RETURNING balance",
            params![customer, delta, crate::action::MAX_MONEY],
            |r| r.get(0),
        )
        .optional()?;
    let Some(balance) = balance else {
        return Err(too_large(ctx, "the customer's balance after this"));
    };
    ctx.undo.push(UndoOp::Balance {
        customer,
        delta: -delta,
    });
    Ok(balance)
}

fn stock_text(p: &Product, stock: i64) -> String {
    format!("{} {}", fmt_qty(stock), p.unit)
}

fn low_warning(ctx: &Ctx, p: &Product, stock: i64) -> Option<String> {
    let threshold = p.low_stock_at.unwrap_or(ctx.settings.low_stock_default);
    (stock < threshold).then(|| format!("Low stock: {} has {} left.", p.name, stock_text(p, stock)))
}

fn owes_text(ctx: &Ctx, c: &Customer, balance: i64) -> String {
    match balance {
        0 => format!("{} owes nothing.", c.name),
        b if b > 0 => format!("{} owes {}.", c.name, money(ctx, b)),
        b => format!("{} has {} credit.", c.name, money(ctx, -b)),
    }
}

/// A priced line.
struct Line {
    product: Product,
    qty: i64,
    unit_price: i64,
    total: i64,
}

fn price_items(conn: &Connection, ctx: &Ctx, items: &mut [Item]) -> Result<Vec<Line>, Flow> {
    let mut lines = Vec::with_capacity(items.len());
    for it in items.iter_mut() {
        let product = find_product(conn, &it.product)?;
        it.product = product.name.clone();
        let qty = to_qty(it.qty);
        let (unit_price, total) = match (it.unit_price, it.total) {
            (Some(u), _) => {
                let u = to_money(ctx, u);
                (u, line_total(ctx, qty, u, &product.name)?)
            }
            (None, Some(t)) => {
                let t = to_money(ctx, t);
                let unit =
                    money_figure((i128::from(t) * 1000 + i128::from(qty) / 2) / i128::from(qty))
                        .ok_or_else(|| {
                            too_large(
                                ctx,
                                &format!("the price of one {} at that total", product.name),
                            )
                        })?;
                (unit, t)
            }
            (None, None) => (
                product.price,
                line_total(ctx, qty, product.price, &product.name)?,
            ),
        };
        lines.push(Line {
            product,
            qty,
            unit_price,
            total,
        });
    }
    Ok(lines)
}

fn lines_text(ctx: &Ctx, lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {} ({} each)",
                fmt_qty(l.qty),
                l.product.name,
                money(ctx, l.unit_price)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records a sale: rows, stock out, balance on credit. Returns the reply's stock notes.
fn write_sale(
    conn: &Connection,
    ctx: &mut Ctx,
    lines: &[Line],
    customer: Option<&Customer>,
    paid: bool,
) -> Result<(i64, i64, Vec<String>), Flow> {
    let total = lines_sum(ctx, lines)?;
    conn.exec(
        "INSERT INTO sales (customer_id, staff_id, total, paid, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![customer.map(|c| c.id), ctx.staff.id, total, paid, ctx.now],
    )?;
    let sale = conn.last_insert_rowid();
    ctx.undo.push(UndoOp::VoidSale { id: sale });
    let mut notes = Vec::new();
    for l in lines {
        conn.exec(
            "INSERT INTO sale_items (sale_id, product_id, qty, unit_price, total)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sale, l.product.id, l.qty, l.unit_price, l.total],
        )?;
        let before = l.product.stock;
        let after = move_stock(conn, ctx, l.product.id, -l.qty, "sale", None, None)?;
        if l.qty > before {
            notes.push(format!(
                "Warning: only {} of {} were in stock; stock is now {}. Please check the count.",
                fmt_qty(before.max(0)),
                l.product.name,
                fmt_qty(after)
            ));
        } else if let Some(w) = low_warning(ctx, &l.product, after) {
            notes.push(w);
        } else {
            notes.push(format!(
                "{}: {} left.",
                l.product.name,
                stock_text(&l.product, after)
            ));
        }
    }
    if !crate::shop::report::count_sale(conn, sale, 1)? {
        return Err(too_large(ctx, "this hour's sales with this one"));
    }
    let balance = match customer {
        Some(c) if !paid => change_balance(conn, ctx, c.id, total)?,
        Some(c) => c.balance,
        None => 0,
    };
    Ok((total, balance, notes))
}

/// An order's state, as `undo` restores it.
struct OrderState {
    status: String,
    driver: Option<i64>,
    delivered_at: Option<String>,
    customer_id: i64,
}

fn order_state(conn: &Connection, id: i64) -> Result<OrderState, Flow> {
    use rusqlite::OptionalExtension;
    conn.row(
        "SELECT status, driver_id, delivered_at, customer_id FROM orders WHERE id = ?1",
        [id],
        |r| {
            Ok(OrderState {
                status: r.get(0)?,
                driver: r.get(1)?,
                delivered_at: r.get(2)?,
                customer_id: r.get(3)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| Flow::Reject(format!("There is no order #{id}.")))
}

/// Runs the action's SQL; returns the reply.
pub(crate) fn apply(conn: &Connection, ctx: &mut Ctx, action: &mut Action) -> Result<String, Flow> {
    match action {
        Action::AddProduct {
            name,
            price,
            unit,
            stock,
            low_stock_at,
        } => {
            let new = NewProduct {
                name: name.clone(),
                price: *price,
                unit: unit.clone(),
                stock: *stock,
                low_stock_at: *low_stock_at,
                aliases: Vec::new(),
            };
            let p = catalog::insert_product(conn, &new, ctx.settings.digits, ctx.journal_id)?;
            *name = p.name.clone();
            ctx.undo.push(UndoOp::RemoveProduct { product: p.id });
            Ok(format!(
                "Added {} at {} per {}. Stock: {}.",
                p.name,
                money(ctx, p.price),
                p.unit,
                stock_text(&p, p.stock)
            ))
        }
        Action::SetPrice { product, price } => {
            let p = find_product(conn, product)?;
            *product = p.name.clone();
            let new = to_money(ctx, *price);
            conn.exec(
                "UPDATE products SET price = ?2 WHERE id = ?1",
                params![p.id, new],
            )?;
            ctx.undo.push(UndoOp::Price {
                product: p.id,
                price: p.price,
            });
            Ok(format!(
                "{} now costs {} (was {}).",
                p.name,
                money(ctx, new),
                money(ctx, p.price)
            ))
        }
        Action::Restock {
            product,
            qty,
            unit_cost,
            supplier,
        } => {
            let p = find_product(conn, product)?;
            *product = p.name.clone();
            let q = to_qty(*qty);
            let cost = unit_cost.map(|c| to_money(ctx, c));
            let after = move_stock(conn, ctx, p.id, q, "restock", cost, supplier.as_deref())?;
            let mut reply = format!(
                "Restocked {} {}. Stock: {}.",
                fmt_qty(q),
                p.name,
                stock_text(&p, after)
            );
            if let Some(c) = cost {
                reply.push_str(&format!(
                    " Cost {} ({} each).",
                    money(ctx, line_total(ctx, q, c, &p.name)?),
                    money(ctx, c)
                ));
            }
            if let Some(w) = low_warning(ctx, &p, after) {
                reply.push(' ');
                reply.push_str(&w);
            }
            Ok(reply)
        }
        Action::StockCount { product, qty } => {
            let p = find_product(conn, product)?;
            *product = p.name.clone();
            let counted = to_qty(*qty);
            let delta = counted - p.stock;
            if delta != 0 {
                move_stock(conn, ctx, p.id, delta, "count", None, None)?;
            }
            let mut reply = format!(
                "Counted {} {} (was {}, {}{}).",
                fmt_qty(counted),
                p.name,
                fmt_qty(p.stock),
                if delta >= 0 { "+" } else { "" },
                fmt_qty(delta)
            );
            if let Some(w) = low_warning(ctx, &p, counted) {
                reply.push(' ');
                reply.push_str(&w);
            }
            Ok(reply)
        }
        Action::CheckStock {
            product: Some(product),
        } => {
            let p = find_product(conn, product)?;
            *product = p.name.clone();
            let low = if p.stock < p.low_stock_at.unwrap_or(ctx.settings.low_stock_default) {
                " (low)"
            } else {
                ""
            };
            Ok(format!(
                "{}: {}{low}. Price {}.",
                p.name,
                stock_text(&p, p.stock),
                money(ctx, p.price)
            ))
        }
        Action::CheckStock { product: None } => {
            let mut all = catalog::products(conn)?;
            if all.is_empty() {
                return Ok("No products yet. Add one with /addproduct <name> <price>.".into());
            }
            let default = ctx.settings.low_stock_default;
            let is_low = |p: &Product| p.stock < p.low_stock_at.unwrap_or(default);
            all.sort_by_key(|p| !is_low(p));
            let lines: Vec<String> = all
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}{}",
                        p.name,
                        stock_text(p, p.stock),
                        if is_low(p) { " (low)" } else { "" }
                    )
                })
                .collect();
            Ok(format!("Stock:\n{}", lines.join("\n")))
        }
        Action::RecordSale {
            items,
            customer,
            paid,
        } => {
            let lines = price_items(conn, ctx, items)?;
            let paid_now = paid.unwrap_or(true);
            let cust = match customer.as_deref() {
                Some(name) => Some(find_customer(conn, name, true)?),
                None if !paid_now => {
                    return Err(Flow::Reject(
                        "A sale on credit needs a customer, like: /sale 3 rice to Ahmed on credit"
                            .into(),
                    ));
                }
                None => None,
            };
            if let (Some(name), Some((c, _))) = (customer.as_mut(), &cust) {
                *name = c.name.clone();
            }
            let (total, balance, notes) =
                write_sale(conn, ctx, &lines, cust.as_ref().map(|c| &c.0), paid_now)?;
            let mut reply = format!("Sold {} = {}", lines_text(ctx, &lines), money(ctx, total));
            if let Some((c, created)) = &cust {
                reply.push_str(&format!(
                    " to {}{}",
                    c.name,
                    if *created { " (new customer)" } else { "" }
                ));
                if !paid_now {
                    reply.push_str(&format!(", on credit. {}", owes_text(ctx, c, balance)));
                } else {
                    reply.push('.');
                }
            } else {
                reply.push('.');
            }
            for n in notes {
                reply.push(' ');
                reply.push_str(&n);
            }
            Ok(reply)
        }
        Action::RecordPayment { customer, amount } => {
            let (c, _) = find_customer(conn, customer, false)?;
            *customer = c.name.clone();
            let amt = to_money(ctx, *amount);
            conn.exec(
                "INSERT INTO payments (customer_id, staff_id, amount, at) VALUES (?1, ?2, ?3, ?4)",
                params![c.id, ctx.staff.id, amt, ctx.now],
            )?;
            ctx.undo.push(UndoOp::VoidPayment {
                id: conn.last_insert_rowid(),
            });
            let balance = change_balance(conn, ctx, c.id, -amt)?;
            Ok(format!(
                "Received {} from {}. {}",
                money(ctx, amt),
                c.name,
                owes_text(ctx, &c, balance)
            ))
        }
        Action::CustomerBalance { customer } => {
            let (c, _) = find_customer(conn, customer, false)?;
            *customer = c.name.clone();
            Ok(owes_text(ctx, &c, c.balance))
        }
        Action::RecordExpense {
            amount,
            category,
            note,
        } => {
            let amt = to_money(ctx, *amount);
            conn.exec(
                "INSERT INTO expenses (staff_id, amount, category, note, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ctx.staff.id, amt, &*category, &*note, ctx.now],
            )?;
            ctx.undo.push(UndoOp::VoidExpense {
                id: conn.last_insert_rowid(),
            });
            Ok(format!(
                "Expense of {}{} recorded.",
                money(ctx, amt),
                category
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ))
        }
        Action::CreateOrder {
            customer,
            items,
            address,
        } => {
            let lines = price_items(conn, ctx, items)?;
            let total = lines_sum(ctx, &lines)?;
            let (c, created) = find_customer(conn, customer, true)?;
            *customer = c.name.clone();
            conn.exec(
                "INSERT INTO orders (customer_id, staff_id, address, status, total, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
                params![c.id, ctx.staff.id, &*address, total, ctx.now],
            )?;
            let id = conn.last_insert_rowid();
            for l in &lines {
                conn.exec(
                    "INSERT INTO order_items (order_id, product_id, qty, unit_price, total)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, l.product.id, l.qty, l.unit_price, l.total],
                )?;
            }
            ctx.undo.push(UndoOp::Order {
                id,
                status: "cancelled".into(),
                driver: None,
                delivered_at: None,
            });
            Ok(format!(
                "Order #{id} for {}{}: {} = {}. Assign it with /assign {id} <driver>.",
                c.name,
                if created { " (new customer)" } else { "" },
                lines_text(ctx, &lines),
                money(ctx, total)
            ))
        }
        Action::AssignDelivery { order_id, driver } => {
            let OrderState {
                status,
                driver: prev_driver,
                delivered_at,
                ..
            } = order_state(conn, *order_id)?;
            if !matches!(status.as_str(), "pending" | "assigned") {
                return Err(Flow::Reject(format!(
                    "Order #{order_id} is already {status}."
                )));
            }
            let d = find_driver(conn, driver)?;
            *driver = d.name.clone();
            conn.exec(
                "UPDATE orders SET status = 'assigned', driver_id = ?2 WHERE id = ?1",
                params![*order_id, d.id],
            )?;
            ctx.undo.push(UndoOp::Order {
                id: *order_id,
                status,
                driver: prev_driver,
                delivered_at,
            });
            Ok(format!("Order #{order_id} assigned to {}.", d.name))
        }
        Action::MarkDelivered { order_id } => {
            let id = *order_id;
            let OrderState {
                status,
                driver,
                delivered_at,
                customer_id,
            } = order_state(conn, id)?;
            if !matches!(status.as_str(), "pending" | "assigned") {
                return Err(Flow::Reject(format!("Order #{id} is already {status}.")));
            }
            if ctx.staff.role == Role::Driver && driver != Some(ctx.staff.id) {
                return Err(Flow::Reject(format!("Order #{id} is not assigned to you.")));
            }
            conn.exec(
                "UPDATE orders SET status = 'delivered', delivered_at = ?2 WHERE id = ?1",
                params![id, ctx.now],
            )?;
            ctx.undo.push(UndoOp::Order {
                id,
                status,
                driver,
                delivered_at,
            });
            // The delivery is a sale on the customer's account.
            let mut stmt = conn.prepare_cached(
                "SELECT product_id, qty, unit_price, total FROM order_items WHERE order_id = ?1 ORDER BY id",
            )?;
            let raw = stmt
                .query_map([id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<(i64, i64, i64, i64)>, _>>()?;
            let mut lines = Vec::new();
            for (pid, qty, unit_price, total) in raw {
                let product = catalog::product(conn, pid)?.ok_or_else(|| {
                    Flow::Reject(format!("A product of order #{id} was deleted."))
                })?;
                lines.push(Line {
                    product,
                    qty,
                    unit_price,
                    total,
                });
            }
            let c = catalog::customer(conn, customer_id)?.expect("orders reference customers");
            let (total, balance, notes) = write_sale(conn, ctx, &lines, Some(&c), false)?;
            Ok(format!(
                "Order #{id} delivered to {}: {} added to their account. {} {}",
                c.name,
                money(ctx, total),
                owes_text(ctx, &c, balance),
                notes.join(" ")
            )
            .trim_end()
            .to_owned())
        }
        Action::ListOrders { status } => {
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
        Action::SalesReport { period } => {
            let s = report::period_summary(conn, &ctx.settings, *period)?;
            Ok(report::summary_reply(&s, &ctx.settings))
        }
        Action::Undo {} => undo(conn, ctx),
        Action::Help {} => Ok(HELP.into()),
        Action::Unknown { reason } => Ok(format!(
            "Sorry, I didn't understand{}. {SHORT_HELP}",
            reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
    }
}

fn undo(conn: &Connection, ctx: &mut Ctx) -> Result<String, Flow> {
    use rusqlite::OptionalExtension;
    let last: Option<(i64, String, String, i64)> = conn
        .query_row(
            "SELECT id, action, undo_ops, at_ms FROM journal
             WHERE staff_id = ?1 AND undone = 0 ORDER BY id DESC LIMIT 1",
            [ctx.staff.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((id, name, ops, at_ms)) = last else {
        return Err(Flow::Reject("There is nothing of yours to undo.".into()));
    };
    let what = name.replace('_', " ");
    if ctx.now_ms - at_ms > UNDO_WINDOW_MS {
        return Err(Flow::Reject(format!(
            "Your last action ({what}) is more than 10 minutes old and can't be undone."
        )));
    }
    let ops: Vec<UndoOp> = serde_json::from_str(&ops)
        .map_err(|e| Flow::Db(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    for op in ops.into_iter().rev() {
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
        }
    }
    conn.exec("UPDATE journal SET undone = 1 WHERE id = ?1", [id])?;
    ctx.undo.clear();
    Ok(format!("Undone: your last {what}."))
}

const SHORT_HELP: &str = "Try /help to see what I can do.";

/// The `/help` text.
pub const HELP: &str = "I keep the shop's books. Commands:
/sale 3 rice 15 — sell (qty, product, optional unit price); several: /sale 3 rice, 2 sugar; add 'to Ahmed' or 'on credit'
/restock sugar 20 2.5 — stock in (product, qty, optional unit cost)
/count rice 12 — set stock after counting
/stock [product] — what is in stock
/price rice 16 — change a price
/addproduct chocolate bar 1.20 — new product
/expense 20 fuel [note] — record an expense
/paid ahmed 200 — a customer pays
/balance ahmed — what a customer owes
/order fatima 2 rice, 1 oil — new delivery order
/assign 17 musa — give order 17 to a driver
/delivered 17 — order 17 delivered
/orders [pending|assigned|delivered] — list orders
/report [today|yesterday|week|7d|month|lastmonth] — sales report
/undo — undo your last action (within 10 minutes)";
