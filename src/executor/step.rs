//! The shared steps that actions, orders and undo are made of: finding names, moving stock,
//! changing balances, pricing lines and writing sales, each pushing the operations that
//! reverse it; and the words replies use for them.
//! Invariants: every stock change writes a stock movement (stock = sum of movements); every
//! figure stays within the books' bounds or the step refuses (nothing is written).

use super::{Ctx, Flow};
use crate::action::resolve::{self, Candidate, Match, key};
use crate::action::{
    Action, Dec, Item, MAX_STOCK, fmt_money, fmt_qty, fmt_units, max_money_text, money_figure,
};
use crate::shop::catalog::{self, Customer, Product};
use crate::shop::{self, report};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

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
    /// Counts a sale again (reverses a cancellation that voided it).
    RestoreSale {
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
    /// Cancels an order the action created, while it is still open.
    CancelOrder {
        id: i64,
    },
    RemoveProduct {
        product: i64,
    },
    /// Removes a customer the action created, unless they have been used since.
    RemoveCustomer {
        customer: i64,
    },
}

pub(super) fn money(ctx: &Ctx, minor: i64) -> String {
    fmt_money(minor, ctx.settings.digits, &ctx.settings.currency)
}

pub(super) fn to_money(ctx: &Ctx, d: Dec) -> i64 {
    // `Action::check` ran first, so conversions succeed.
    d.to_fixed(ctx.settings.digits).unwrap_or(0)
}

pub(super) fn to_qty(d: Dec) -> i64 {
    d.to_fixed(3).unwrap_or(0)
}

/// "… is more than the books can hold": the refusal of a figure beyond `MAX_MONEY`.
pub(super) fn too_large(ctx: &Ctx, what: &str) -> Flow {
    Flow::Invalid(format!(
        "{what} is more than the books can hold (at most {} {}); nothing was recorded",
        max_money_text(ctx.settings.digits),
        ctx.settings.currency
    ))
}

/// `qty` × `unit` for `product`, or the refusal when the line is beyond the books' bounds.
pub(super) fn line_total(ctx: &Ctx, qty: i64, unit: i64, product: &str) -> Result<i64, Flow> {
    crate::action::line_total(qty, unit).ok_or_else(|| {
        too_large(
            ctx,
            &format!("{} {product} at {} each", fmt_qty(qty), money(ctx, unit)),
        )
    })
}

/// The sum of a sale's or order's lines, within the books' bounds.
pub(super) fn lines_sum(ctx: &Ctx, lines: &[Line]) -> Result<i64, Flow> {
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

pub(super) fn find_product(conn: &Connection, name: &str) -> Result<Product, Flow> {
    if let Some(p) = catalog::product_by_key(conn, &key(name))? {
        return Ok(p);
    }
    let id = pick("product", name, &shop::product_candidates(conn)?)?;
    Ok(catalog::product(conn, id)?.expect("candidate exists"))
}

/// The customer a name means; with `create`, a name like no one's adds a new customer.
pub(super) fn find_customer(
    conn: &Connection,
    name: &str,
    create: bool,
) -> Result<(Customer, bool), Flow> {
    if let Some(c) = catalog::customer_by_key(conn, &key(name))? {
        return Ok((c, false));
    }
    match resolve::resolve(name, &shop::customer_candidates(conn)?) {
        Match::One(id) => Ok((
            catalog::customer(conn, id)?.expect("candidate exists"),
            false,
        )),
        Match::NotFound(_) if create => Ok((
            catalog::insert_customer(conn, &capitalized(name), None)?,
            true,
        )),
        other => Err(clarify_text("customer", name, other)),
    }
}

/// A name typed all in lower case ("yara khan"), as a name is written ("Yara Khan"); any
/// other spelling is kept as typed.
fn capitalized(name: &str) -> String {
    if name.chars().any(char::is_uppercase) {
        return name.to_owned();
    }
    name.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .join(" ")
}

pub(super) fn find_driver(conn: &Connection, name: &str) -> Result<shop::Staff, Flow> {
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
pub(super) fn move_stock(
    conn: &Connection,
    ctx: &mut Ctx,
    product: i64,
    delta: i64,
    cause: &str,
    unit_cost: Option<i64>,
    supplier: Option<&str>,
) -> Result<i64, Flow> {
    // Back at or over its threshold: the low-stock alert may fire again next time. (No
    // RETURNING: SQLite gathers returned rows in a temporary table, which costs more than
    // reading the row again.)
    let changed = conn.exec(
        "UPDATE products SET stock = stock + ?2,
            low_alerted = CASE WHEN stock + ?2 >= coalesce(low_stock_at, ?3) THEN 0
                               ELSE low_alerted END
         WHERE id = ?1 AND abs(stock + ?2) <= ?4",
        params![product, delta, ctx.settings.low_stock_default, MAX_STOCK],
    )?;
    if changed == 0 {
        return Err(Flow::Invalid(format!(
            "the stock after this would be more than the books can hold (at most {}); nothing was recorded",
            fmt_qty(MAX_STOCK)
        )));
    }
    let stock: i64 = conn.row("SELECT stock FROM products WHERE id = ?1", [product], |r| {
        r.get(0)
    })?;
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

/// Changes what a customer owes by `delta`; returns the balance after.
pub(super) fn change_balance(
    conn: &Connection,
    ctx: &mut Ctx,
    customer: i64,
    delta: i64,
) -> Result<i64, Flow> {
    // No RETURNING: see `move_stock`.
    let changed = conn.exec(
        "UPDATE customers SET balance = balance + ?2 WHERE id = ?1 AND abs(balance + ?2) <= ?3",
        params![customer, delta, crate::action::MAX_MONEY],
    )?;
    if changed == 0 {
        return Err(too_large(ctx, "the customer's balance after this"));
    }
    let balance: i64 = conn.row(
        "SELECT balance FROM customers WHERE id = ?1",
        [customer],
        |r| r.get(0),
    )?;
    ctx.undo.push(UndoOp::Balance {
        customer,
        delta: -delta,
    });
    Ok(balance)
}

pub(super) fn stock_text(p: &Product, stock: i64) -> String {
    fmt_units(stock, &p.unit)
}

pub(super) fn low_warning(ctx: &Ctx, p: &Product, stock: i64) -> Option<String> {
    let threshold = p.low_stock_at.unwrap_or(ctx.settings.low_stock_default);
    (stock < threshold).then(|| format!("Low stock: {} has {} left.", p.name, stock_text(p, stock)))
}

pub(super) fn owes_text(ctx: &Ctx, c: &Customer, balance: i64) -> String {
    match balance {
        0 => format!("{} owes nothing.", c.name),
        b if b > 0 => format!("{} owes {}.", c.name, money(ctx, b)),
        b => format!("{} has {} credit.", c.name, money(ctx, -b)),
    }
}

/// A priced line.
pub(super) struct Line {
    pub product: Product,
    pub qty: i64,
    pub unit_price: i64,
    pub total: i64,
}

pub(super) fn price_items(
    conn: &Connection,
    ctx: &Ctx,
    items: &mut [Item],
) -> Result<Vec<Line>, Flow> {
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

/// "3 Rice (15.00 USD each), 2 Sugar (2.50 USD each)".
pub(super) fn lines_text(ctx: &Ctx, lines: &[Line]) -> String {
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

/// "3 Rice", "3 Rice and 2 Sugar", "3 Rice, 2 Sugar and 1 Oil".
pub(super) fn items_text(lines: &[Line]) -> String {
    let parts: Vec<String> = lines
        .iter()
        .map(|l| format!("{} {}", fmt_qty(l.qty), l.product.name))
        .collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.concat(),
    }
}

/// A sale written: its id and total, the customer's balance after, the stock notes.
pub(super) struct SaleDone {
    pub id: i64,
    pub total: i64,
    pub balance: i64,
    pub notes: Vec<String>,
}

/// The reply's note on one line's stock after a sale.
fn stock_note(ctx: &Ctx, l: &Line, after: i64) -> String {
    let before = l.product.stock;
    if l.qty > before {
        return format!(
            "Warning: {} had {} in stock, fewer than sold; it now shows {}. Please check the count.",
            l.product.name,
            stock_text(&l.product, before),
            stock_text(&l.product, after)
        );
    }
    low_warning(ctx, &l.product, after).unwrap_or_else(|| {
        format!(
            "{}: {} left.",
            l.product.name,
            stock_text(&l.product, after)
        )
    })
}

/// Records a sale: rows, stock out, the hour's totals, the balance on credit.
pub(super) fn write_sale(
    conn: &Connection,
    ctx: &mut Ctx,
    lines: &[Line],
    customer: Option<&Customer>,
    paid: bool,
) -> Result<SaleDone, Flow> {
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
        let after = move_stock(conn, ctx, l.product.id, -l.qty, "sale", None, None)?;
        notes.push(stock_note(ctx, l, after));
    }
    let counted = lines.iter().map(|l| (l.product.id, l.qty, l.total));
    if !report::count_new_sale(conn, &ctx.now, total, paid, counted)? {
        return Err(too_large(ctx, "this hour's sales with this one"));
    }
    let balance = match customer {
        Some(c) if !paid => change_balance(conn, ctx, c.id, total)?,
        Some(c) => c.balance,
        None => 0,
    };
    Ok(SaleDone {
        id: sale,
        total,
        balance,
        notes,
    })
}
