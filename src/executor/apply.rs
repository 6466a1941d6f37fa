//! The fixed, parameterized SQL of each action and the replies people see; the shared
//! steps (names, stock, balances, sales) that orders and undo build on.
//! Invariants: every stock change writes a stock movement (stock = sum of movements); every
//! write pushes the operations that reverse it; names resolve or the action asks (Clarify);
//! every figure stays within the books' bounds or the action is refused.

use super::undo::{UndoOp, undo};
use super::{Ctx, Flow, order};
use crate::action::resolve::{self, Candidate, Match, key};
use crate::action::{
    Action, Dec, Item, MAX_STOCK, fmt_money, fmt_qty, fmt_units, max_money_text, money_figure,
};
use crate::shop::catalog::{self, Customer, NewProduct, Product};
use crate::shop::{self, report};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn money(ctx: &Ctx, minor: i64) -> String {
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

fn find_product(conn: &Connection, name: &str) -> Result<Product, Flow> {
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

/// Changes what a customer owes by `delta`; returns the balance after.
pub(super) fn change_balance(
    conn: &Connection,
    ctx: &mut Ctx,
    customer: i64,
    delta: i64,
) -> Result<i64, Flow> {
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
    fmt_units(stock, &p.unit)
}

fn low_warning(ctx: &Ctx, p: &Product, stock: i64) -> Option<String> {
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
    if !report::count_sale(conn, sale, 1)? {
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

/// Runs the action's SQL; returns the reply. Write actions leave `ctx.summary`, what they
/// did in the shop's words, for undo.
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
            ctx.summary = Some(format!("new product {}", p.name));
            Ok(format!(
                "Added {} at {} per {}. Stock: {}.",
                p.name,
                money(ctx, p.price),
                p.unit,
                stock_text(&p, p.stock)
            ))
        }
        Action::SetPrice { product, price } => set_price(conn, ctx, product, *price),
        Action::Restock {
            product,
            qty,
            unit_cost,
            supplier,
        } => restock(conn, ctx, product, *qty, *unit_cost, supplier.as_deref()),
        Action::StockCount { product, qty } => stock_count(conn, ctx, product, *qty),
        Action::CheckStock { product } => check_stock(conn, ctx, product),
        Action::RecordSale {
            items,
            customer,
            paid,
        } => sale(conn, ctx, items, customer, paid.unwrap_or(true)),
        Action::RecordPayment { customer, amount } => payment(conn, ctx, customer, *amount),
        Action::CustomerBalance { customer } => {
            let (c, _) = find_customer(conn, customer, false)?;
            *customer = c.name.clone();
            Ok(owes_text(ctx, &c, c.balance))
        }
        Action::RecordExpense {
            amount,
            category,
            note,
        } => expense(conn, ctx, *amount, category.as_deref(), note.as_deref()),
        Action::CreateOrder {
            customer,
            items,
            address,
        } => order::create(conn, ctx, customer, items, address.as_deref()),
        Action::AssignDelivery { order_id, driver } => order::assign(conn, ctx, *order_id, driver),
        Action::MarkDelivered { order_id } => order::deliver(conn, ctx, *order_id),
        Action::CancelOrder { order_id } => order::cancel(conn, ctx, *order_id),
        Action::ListOrders { status } => order::list(conn, ctx, *status),
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

fn set_price(
    conn: &Connection,
    ctx: &mut Ctx,
    product: &mut String,
    price: Dec,
) -> Result<String, Flow> {
    let p = find_product(conn, product)?;
    *product = p.name.clone();
    let new = to_money(ctx, price);
    conn.exec(
        "UPDATE products SET price = ?2 WHERE id = ?1",
        params![p.id, new],
    )?;
    ctx.undo.push(UndoOp::Price {
        product: p.id,
        price: p.price,
    });
    ctx.summary = Some(format!(
        "price of {} set to {} (it is {} again)",
        p.name,
        money(ctx, new),
        money(ctx, p.price)
    ));
    Ok(format!(
        "{} now costs {} (was {}).",
        p.name,
        money(ctx, new),
        money(ctx, p.price)
    ))
}

fn restock(
    conn: &Connection,
    ctx: &mut Ctx,
    product: &mut String,
    qty: Dec,
    unit_cost: Option<Dec>,
    supplier: Option<&str>,
) -> Result<String, Flow> {
    let p = find_product(conn, product)?;
    *product = p.name.clone();
    let q = to_qty(qty);
    let cost = unit_cost.map(|c| to_money(ctx, c));
    let cost_total = cost.map(|c| line_total(ctx, q, c, &p.name)).transpose()?;
    let after = move_stock(conn, ctx, p.id, q, "restock", cost, supplier)?;
    let mut reply = format!(
        "Restocked {} {}. Stock: {}.",
        fmt_qty(q),
        p.name,
        stock_text(&p, after)
    );
    if let (Some(c), Some(total)) = (cost, cost_total) {
        reply.push_str(&format!(
            " Cost {} ({} each).",
            money(ctx, total),
            money(ctx, c)
        ));
    }
    if let Some(w) = low_warning(ctx, &p, after) {
        reply.push(' ');
        reply.push_str(&w);
    }
    ctx.summary = Some(format!("restock of {} {}", fmt_units(q, &p.unit), p.name));
    Ok(reply)
}

fn stock_count(
    conn: &Connection,
    ctx: &mut Ctx,
    product: &mut String,
    qty: Dec,
) -> Result<String, Flow> {
    let p = find_product(conn, product)?;
    *product = p.name.clone();
    let counted = to_qty(qty);
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
    ctx.summary = Some(format!(
        "stock count of {} ({}; it shows {} again)",
        p.name,
        stock_text(&p, counted),
        stock_text(&p, p.stock)
    ));
    Ok(reply)
}

fn check_stock(conn: &Connection, ctx: &Ctx, product: &mut Option<String>) -> Result<String, Flow> {
    let default = ctx.settings.low_stock_default;
    let is_low = |p: &Product| p.stock < p.low_stock_at.unwrap_or(default);
    if let Some(product) = product {
        let p = find_product(conn, product)?;
        *product = p.name.clone();
        return Ok(format!(
            "{}: {}{}. Price {}.",
            p.name,
            stock_text(&p, p.stock),
            if is_low(&p) { " (low)" } else { "" },
            money(ctx, p.price)
        ));
    }
    let mut all = catalog::products(conn)?;
    if all.is_empty() {
        return Ok("No products yet. Add one with /addproduct <name> <price>.".into());
    }
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

fn sale(
    conn: &Connection,
    ctx: &mut Ctx,
    items: &mut [Item],
    customer: &mut Option<String>,
    paid: bool,
) -> Result<String, Flow> {
    let lines = price_items(conn, ctx, items)?;
    let cust = match customer.as_deref() {
        Some(name) => Some(find_customer(conn, name, true)?),
        None if !paid => {
            return Err(Flow::Reject(
                "A sale on credit needs a customer, like: /sale 3 rice to Ahmed on credit".into(),
            ));
        }
        None => None,
    };
    if let Some((c, created)) = &cust {
        *customer = Some(c.name.clone());
        if *created {
            ctx.undo.push(UndoOp::RemoveCustomer { customer: c.id });
        }
    }
    let done = write_sale(conn, ctx, &lines, cust.as_ref().map(|c| &c.0), paid)?;
    let mut reply = format!(
        "Sold {} = {}",
        lines_text(ctx, &lines),
        money(ctx, done.total)
    );
    let mut summary = format!("sale of {}", items_text(&lines));
    if let Some((c, created)) = &cust {
        reply.push_str(&format!(
            " to {}{}",
            c.name,
            if *created { " (new customer)" } else { "" }
        ));
        summary.push_str(&format!(" to {}", c.name));
        if !paid {
            reply.push_str(&format!(", on credit. {}", owes_text(ctx, c, done.balance)));
            summary.push_str(" on credit");
        } else {
            reply.push('.');
        }
    } else {
        reply.push('.');
    }
    for n in done.notes {
        reply.push(' ');
        reply.push_str(&n);
    }
    ctx.summary = Some(format!("{summary}, {}", money(ctx, done.total)));
    Ok(reply)
}

fn payment(
    conn: &Connection,
    ctx: &mut Ctx,
    customer: &mut String,
    amount: Dec,
) -> Result<String, Flow> {
    let (c, _) = find_customer(conn, customer, false)?;
    *customer = c.name.clone();
    let amt = to_money(ctx, amount);
    conn.exec(
        "INSERT INTO payments (customer_id, staff_id, amount, at) VALUES (?1, ?2, ?3, ?4)",
        params![c.id, ctx.staff.id, amt, ctx.now],
    )?;
    ctx.undo.push(UndoOp::VoidPayment {
        id: conn.last_insert_rowid(),
    });
    let balance = change_balance(conn, ctx, c.id, -amt)?;
    ctx.summary = Some(format!("payment of {} from {}", money(ctx, amt), c.name));
    Ok(format!(
        "Received {} from {}. {}",
        money(ctx, amt),
        c.name,
        owes_text(ctx, &c, balance)
    ))
}

fn expense(
    conn: &Connection,
    ctx: &mut Ctx,
    amount: Dec,
    category: Option<&str>,
    note: Option<&str>,
) -> Result<String, Flow> {
    let amt = to_money(ctx, amount);
    conn.exec(
        "INSERT INTO expenses (staff_id, amount, category, note, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ctx.staff.id, amt, category, note, ctx.now],
    )?;
    ctx.undo.push(UndoOp::VoidExpense {
        id: conn.last_insert_rowid(),
    });
    let what = format!(
        "{}{}",
        money(ctx, amt),
        category.map(|c| format!(" ({c})")).unwrap_or_default()
    );
    ctx.summary = Some(format!("expense of {what}"));
    Ok(format!("Expense of {what} recorded."))
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
/cancel 17 — cancel order 17 (a delivered one: stock back, balance down)
/orders [pending|assigned|delivered] — list orders
/report [today|yesterday|week|7d|month|lastmonth] — sales report
/undo — undo your last action (within 10 minutes)";
