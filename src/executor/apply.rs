//! Each action's fixed, parameterized SQL and the reply people see: catalog, stock, sales,
//! payments and expenses here; orders in `order`, undo in `undo`, the shared steps in `step`.
//! Invariants: every write pushes the operations that reverse it and leaves `ctx.summary`
//! (what it did, in the shop's words); names resolve or the action asks (Clarify).

use super::step::{
    UndoOp, change_balance, find_customer, find_product, items_text, line_total, lines_text,
    low_warning, money, move_stock, owes_text, price_items, stock_text, to_money, to_qty,
    write_sale,
};
use super::undo::undo;
use super::{Ctx, Flow, order, proposal};
use crate::action::{Action, Dec, Item, fmt_qty, fmt_units};
use crate::shop::catalog::{self, NewProduct, Product};
use crate::shop::report;
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, params};

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
        Action::Decline {} => proposal::decline(conn, ctx),
        // A yes is replaced by what it confirms before it gets here.
        Action::Confirm {} => Ok(proposal::NOTHING_TO_CONFIRM.into()),
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
