//! Read models: sales summaries for a period in the tenant's time zone, sales and orders
//! listings, and the message log; and the hourly sales totals the summaries read.
//! Invariants: only `add_share` (through `count_sale`, `count_new_sale` and `move_sale`)
//! writes the totals; voided rows never count.

use super::ShopSettings;
use crate::action::{Dec, MAX_MONEY, MAX_STOCK, Period, fmt_money, fmt_qty};
use crate::tenant::sqlite::Cached;
use chrono::{NaiveDate, TimeZone};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// UTC instant (stored form) of local midnight starting `date` in `tz`.
pub fn local_midnight_utc(tz: chrono_tz::Tz, date: NaiveDate) -> String {
    let midnight = date.and_hms_opt(0, 0, 0).expect("valid time");
    let local = tz
        .from_local_datetime(&midnight)
        .earliest()
        // Midnight skipped by a DST change: the day starts an hour later.
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .expect("a local time exists within an hour of midnight");
    crate::clock::stamp(local.with_timezone(&chrono::Utc))
}

/// The `sales_hourly` key of a stored UTC instant on a whole hour (`…T09:00:00.000Z` ->
/// `…T09`); `None` for any other instant.
fn whole_hour(at: &str) -> Option<&str> {
    at.strip_suffix(":00:00.000Z").filter(|h| h.len() == 13)
}

/// Adds (`sign` 1) or takes away (`sign` -1) a sale's share of the hourly totals: its count,
/// total and cash, and each line's quantity and total. Every write that adds, voids or moves
/// a sale calls it (or `count_new_sale`) in the same transaction; a voided sale has no share
/// to take. Returns false, having written only part, when a total would go beyond the
/// books' bounds (`MAX_MONEY`, `MAX_STOCK`): the caller rolls its transaction back.
pub fn count_sale(conn: &Connection, sale: i64, sign: i64) -> rusqlite::Result<bool> {
    let head: Option<(String, i64, bool)> = conn
        .row(
            "SELECT at, total, paid FROM sales WHERE id = ?1 AND voided = 0",
            [sale],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((at, total, paid)) = head else {
        return Ok(true);
    };
    let lines = conn
        .prepare_cached("SELECT product_id, qty, total FROM sale_items WHERE sale_id = ?1")?
        .query_map([sale], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<(i64, i64, i64)>>>()?;
    add_share(conn, &at, sign, total, paid, lines)
}

/// Adds a sale just written (not voided) to the hourly totals from the writer's own figures
/// rather than by reading its rows back: `at` is its stored instant, `lines` each line's
/// product, quantity and total. Same bounds and answer as `count_sale`.
pub fn count_new_sale(
    conn: &Connection,
    at: &str,
    total: i64,
    paid: bool,
    lines: impl IntoIterator<Item = (i64, i64, i64)>,
) -> rusqlite::Result<bool> {
    add_share(conn, at, 1, total, paid, lines)
}

/// `sign` times a sale's share into the rows of its hour; false when a bound would be passed.
fn add_share(
    conn: &Connection,
    at: &str,
    sign: i64,
    total: i64,
    paid: bool,
    lines: impl IntoIterator<Item = (i64, i64, i64)>,
) -> rusqlite::Result<bool> {
    let cash = if paid { total } else { 0 };
    let mut counted = conn.exec(
        "INSERT INTO sales_hourly (hour, product_id, count, total, cash)
         VALUES (substr(?1, 1, 13), 0, ?2, ?2 * ?3, ?2 * ?4)
         ON CONFLICT DO UPDATE SET count = count + excluded.count, total = total + excluded.total,
           cash = cash + excluded.cash
         WHERE abs(total + excluded.total) <= ?5 AND abs(cash + excluded.cash) <= ?5",
        params![at, sign, total, cash, MAX_MONEY],
    )? == 1;
    for (product, qty, line_total) in lines {
        counted &= conn.exec(
            "INSERT INTO sales_hourly (hour, product_id, qty, total)
             VALUES (substr(?1, 1, 13), ?2, ?3 * ?4, ?3 * ?5)
             ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total
             WHERE abs(qty + excluded.qty) <= ?7 AND abs(total + excluded.total) <= ?6",
            params![at, product, sign, qty, line_total, MAX_MONEY, MAX_STOCK],
        )? == 1;
    }
    Ok(counted)
}

/// Moves a sale to the stored UTC instant `at`, its share of the hourly totals with it (for
/// corrections and seeding history). Run it inside a transaction. Returns the rows moved;
/// refuses (`ConstraintViolation`) a move that would take an hour beyond the books' bounds.
pub fn move_sale(conn: &Connection, sale: i64, at: &str) -> rusqlite::Result<usize> {
    count_sale(conn, sale, -1)?;
    let n = conn.exec("UPDATE sales SET at = ?2 WHERE id = ?1", params![sale, at])?;
    if !count_sale(conn, sale, 1)? {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some(format!(
                "moving sale {sale} takes its hour beyond the books' bounds"
            )),
        ));
    }
    Ok(n)
}

/// Today's date in the shop's zone.
pub fn local_today(settings: &ShopSettings) -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&settings.timezone)
        .date_naive()
}

/// A product's line in a summary.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TopProduct {
    pub product: String,
    pub qty: Dec,
    pub total: Dec,
}

/// Sales, payments and expenses over a period.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SalesSummary {
    pub period: Option<&'static str>,
    /// First local day included.
    pub from: NaiveDate,
    /// Last local day included.
    pub to: NaiveDate,
    pub currency: String,
    pub sales_count: i64,
    pub sales_total: Dec,
    pub cash: Dec,
    pub credit: Dec,
    pub payments: Dec,
    pub expenses: Dec,
    /// Sales total minus expenses.
    pub net: Dec,
    pub top_products: Vec<TopProduct>,
}

/// Why a summary cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A total of the period is beyond what one figure of the books holds.
    #[error(
        "the totals of {0} are more than one figure of the books can show (15 digits); ask for a shorter period"
    )]
    TooLarge(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// A failed sum: SQLite's `sum()` stops on an i64 overflow, which is a total too large.
fn overflow(e: rusqlite::Error, what: &str) -> ReportError {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("integer overflow") => {
            ReportError::TooLarge(what.to_owned())
        }
        e => e.into(),
    }
}

/// A sum over a period as a figure of the books: anything beyond `bound` (`MAX_MONEY` or
/// `MAX_STOCK`) cannot be shown exactly.
fn within(v: i64, bound: i64, what: &str) -> Result<i64, ReportError> {
    if v.unsigned_abs() <= bound.unsigned_abs() {
        Ok(v)
    } else {
        Err(ReportError::TooLarge(what.to_owned()))
    }
}

/// The count and total of the sales (not voided) in `[a, b)` (stored UTC instants).
pub fn sales_between_totals(
    conn: &Connection,
    a: &str,
    b: &str,
    what: &str,
) -> Result<(i64, i64), ReportError> {
    let (count, total) = conn
        .row(
            "SELECT count(*), coalesce(sum(total), 0) FROM sales
             WHERE voided = 0 AND at >= ?1 AND at < ?2",
            params![a, b],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .map_err(|e| overflow(e, what))?;
    Ok((count, within(total, MAX_MONEY, what)?))
}

/// Summarises the local days `from` to `to`, both included.
pub fn summary(
    conn: &Connection,
    settings: &ShopSettings,
    period: Option<Period>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<SalesSummary, ReportError> {
    let what = match period {
        Some(p) => p.as_str().replace('_', " "),
        None => format!("{from} to {to}"),
    };
    let (a, b) = (
        local_midnight_utc(settings.timezone, from),
        local_midnight_utc(settings.timezone, to + chrono::Days::new(1)),
    );
    // Whole-hour bounds (every zone but the few with :30 and :45 offsets) read the hourly
    // totals; other bounds read the sales themselves.
    let hours = whole_hour(&a).zip(whole_hour(&b));
    let sql = match hours {
        Some(_) => {
            "SELECT coalesce(sum(count), 0), coalesce(sum(total), 0), coalesce(sum(cash), 0)
             FROM sales_hourly WHERE hour >= ?1 AND hour < ?2 AND product_id = 0"
        }
        None => {
            "SELECT count(*), coalesce(sum(total), 0), coalesce(sum(CASE WHEN paid THEN total END), 0)
             FROM sales WHERE voided = 0 AND at >= ?1 AND at < ?2"
        }
    };
    let range = hours.unwrap_or((a.as_str(), b.as_str()));
    let (count, total, cash): (i64, i64, i64) = conn
        .row(sql, params![range.0, range.1], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| overflow(e, &what))?;
    let sum = |sql: &str| -> Result<i64, ReportError> {
        let v = conn
            .row(sql, params![a, b], |r| r.get(0))
            .map_err(|e| overflow(e, &what))?;
        within(v, MAX_MONEY, &what)
    };
    let payments = sum(
        "SELECT coalesce(sum(amount), 0) FROM payments WHERE voided = 0 AND at >= ?1 AND at < ?2",
    )?;
    let expenses = sum(
        "SELECT coalesce(sum(amount), 0) FROM expenses WHERE voided = 0 AND at >= ?1 AND at < ?2",
    )?;
    let total = within(total, MAX_MONEY, &what)?;
    let cash = within(cash, MAX_MONEY, &what)?;
    let net = within(total - expenses, MAX_MONEY, &what)?;
    let top_products = top_products(conn, settings.digits, hours, (&a, &b), &what)?;
    let d = settings.digits;
    Ok(SalesSummary {
        period: period.map(Period::as_str),
        from,
        to,
        currency: settings.currency.clone(),
        sales_count: count,
        sales_total: Dec::from_fixed(total, d),
        cash: Dec::from_fixed(cash, d),
        credit: Dec::from_fixed(total - cash, d),
        payments: Dec::from_fixed(payments, d),
        expenses: Dec::from_fixed(expenses, d),
        net: Dec::from_fixed(net, d),
        top_products,
    })
}

/// The five best-selling products of a period, by takings.
fn top_products(
    conn: &Connection,
    digits: u32,
    hours: Option<(&str, &str)>,
    (a, b): (&str, &str),
    what: &str,
) -> Result<Vec<TopProduct>, ReportError> {
    let (sql, range) = match hours {
        // A product whose sales in the period were all voided has zero rows left: skipped.
        Some((ha, hb)) => (
            "SELECT p.name, sum(h.qty), sum(h.total) FROM sales_hourly h
             JOIN products p ON p.id = h.product_id
             WHERE h.hour >= ?1 AND h.hour < ?2 AND h.product_id != 0
             GROUP BY h.product_id HAVING sum(h.qty) != 0 OR sum(h.total) != 0
             ORDER BY sum(h.total) DESC, p.name LIMIT 5",
            (ha, hb),
        ),
        None => (
            "SELECT p.name, sum(i.qty), sum(i.total) FROM sale_items i
             JOIN sales s ON s.id = i.sale_id JOIN products p ON p.id = i.product_id
             WHERE s.voided = 0 AND s.at >= ?1 AND s.at < ?2
             GROUP BY i.product_id ORDER BY sum(i.total) DESC, p.name LIMIT 5",
            (a, b),
        ),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![range.0, range.1], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(|e| overflow(e, what))?;
    let mut out = Vec::new();
    for row in rows {
        let (product, qty, total) = row.map_err(|e| overflow(e, what))?;
        out.push(TopProduct {
            product,
            qty: Dec::from_fixed(within(qty, MAX_STOCK, what)?, 3),
            total: Dec::from_fixed(within(total, MAX_MONEY, what)?, digits),
        });
    }
    Ok(out)
}

/// The summary of a named period ending today.
pub fn period_summary(
    conn: &Connection,
    settings: &ShopSettings,
    period: Period,
) -> Result<SalesSummary, ReportError> {
    let (from, to) = period.range(local_today(settings));
    summary(
        conn,
        settings,
        Some(period),
        from,
        to - chrono::Days::new(1),
    )
}

/// The summary as a chat reply.
pub fn summary_reply(s: &SalesSummary, settings: &ShopSettings) -> String {
    let m = |d: Dec| {
        fmt_money(
            d.to_fixed(settings.digits).unwrap_or(0),
            settings.digits,
            &settings.currency,
        )
    };
    let title = s.period.unwrap_or("period").replace('_', " ");
    let mut out = format!(
        "Sales {title} ({}{}): {} sale{}, {} ({} cash, {} credit). Payments in {}. Expenses {}. Net {}.",
        s.from,
        if s.to > s.from {
            format!(" to {}", s.to)
        } else {
            String::new()
        },
        s.sales_count,
        if s.sales_count == 1 { "" } else { "s" },
        m(s.sales_total),
        m(s.cash),
        m(s.credit),
        m(s.payments),
        m(s.expenses),
        m(s.net),
    );
    if !s.top_products.is_empty() {
        let tops: Vec<String> = s
            .top_products
            .iter()
            .map(|t| {
                format!(
                    "{} {} ({})",
                    t.product,
                    fmt_qty(t.qty.to_fixed(3).unwrap_or(0)),
                    m(t.total)
                )
            })
            .collect();
        out.push_str(&format!(" Top: {}.", tops.join(", ")));
    }
    out
}

/// The summary as CSV (one header row, one value row, then the top products).
pub fn summary_csv(s: &SalesSummary) -> String {
    let mut out = String::from(
        "period,from,to,currency,sales_count,sales_total,cash,credit,payments,expenses,net\n",
    );
    out.push_str(&format!(
        "{},{},{},{},{},{},{},{},{},{},{}\n",
        s.period.unwrap_or(""),
        s.from,
        s.to,
        s.currency,
        s.sales_count,
        s.sales_total,
        s.cash,
        s.credit,
        s.payments,
        s.expenses,
        s.net
    ));
    out.push_str("\nproduct,qty,total\n");
    for t in &s.top_products {
        out.push_str(&format!(
            "{},{},{}\n",
            csv_field(&t.product),
            t.qty,
            t.total
        ));
    }
    out
}

/// Quotes a CSV field when needed (and defuses spreadsheet formulas).
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A line of a sale or an order.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LineView {
    pub product: String,
    pub qty: Dec,
    pub unit_price: Dec,
    pub total: Dec,
}

fn lines(
    conn: &Connection,
    table: &str,
    parent: &str,
    id: i64,
    digits: u32,
) -> rusqlite::Result<Vec<LineView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.name, i.qty, i.unit_price, i.total FROM {table} i
         JOIN products p ON p.id = i.product_id WHERE i.{parent} = ?1 ORDER BY i.id"
    ))?;
    let rows = stmt.query_map([id], |r| {
        Ok(LineView {
            product: r.get(0)?,
            qty: Dec::from_fixed(r.get(1)?, 3),
            unit_price: Dec::from_fixed(r.get(2)?, digits),
            total: Dec::from_fixed(r.get(3)?, digits),
        })
    })?;
    rows.collect()
}

/// A sale as the API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SaleView {
    pub id: i64,
    pub at: String,
    pub customer: Option<String>,
    pub staff: String,
    pub total: Dec,
    pub paid: bool,
    pub items: Vec<LineView>,
}

/// Sales (not voided) at or after `from` and before `to` (stored UTC strings), newest first.
pub fn sales_between(
    conn: &Connection,
    digits: u32,
    from: &str,
    to: &str,
    limit: usize,
) -> rusqlite::Result<Vec<SaleView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.at, c.name, st.name, s.total, s.paid FROM sales s
         LEFT JOIN customers c ON c.id = s.customer_id JOIN staff st ON st.id = s.staff_id
         WHERE s.voided = 0 AND s.at >= ?1 AND s.at < ?2 ORDER BY s.at DESC, s.id DESC LIMIT ?3",
    )?;
    let heads = stmt
        .query_map(params![from, to, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, i64>(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    heads
        .into_iter()
        .map(|(id, at, customer, staff, total, paid)| {
            Ok(SaleView {
                id,
                at,
                customer,
                staff,
                total: Dec::from_fixed(total, digits),
                paid,
                items: lines(conn, "sale_items", "sale_id", id, digits)?,
            })
        })
        .collect()
}

/// An order as the API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OrderView {
    pub id: i64,
    pub customer: String,
    pub status: String,
    pub driver: Option<String>,
    pub driver_id: Option<i64>,
    pub address: Option<String>,
    pub total: Dec,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub items: Vec<LineView>,
}

/// Orders, newest first, by status (`None`: pending and assigned) and driver.
pub fn orders(
    conn: &Connection,
    digits: u32,
    status: Option<&str>,
    driver: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<OrderView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, c.name, o.status, d.name, o.driver_id, o.address, o.total, o.created_at, o.delivered_at
         FROM orders o JOIN customers c ON c.id = o.customer_id LEFT JOIN staff d ON d.id = o.driver_id
         WHERE (?1 IS NULL AND o.status IN ('pending', 'assigned') OR o.status = ?1)
           AND (?2 IS NULL OR o.driver_id = ?2)
         ORDER BY o.id DESC LIMIT ?3",
    )?;
    let heads = stmt
        .query_map(params![status, driver, limit as i64], |r| {
            Ok(OrderView {
                id: r.get(0)?,
                customer: r.get(1)?,
                status: r.get(2)?,
                driver: r.get(3)?,
                driver_id: r.get(4)?,
                address: r.get(5)?,
                total: Dec::from_fixed(r.get(6)?, digits),
                created_at: r.get(7)?,
                delivered_at: r.get(8)?,
                items: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    heads
        .into_iter()
        .map(|mut o| {
            o.items = lines(conn, "order_items", "order_id", o.id, digits)?;
            Ok(o)
        })
        .collect()
}

/// One entry of the message log.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MessageView {
    pub id: i64,
    pub inbound_id: Option<String>,
    pub channel: String,
    pub sender: String,
    pub text: Option<String>,
    pub action: Option<serde_json::Value>,
    pub source: String,
    pub status: String,
    pub reply: String,
    pub received_at: String,
    /// When the action was undone, if it was.
    pub undone_at: Option<String>,
    pub parse_us: Option<i64>,
    pub exec_us: Option<i64>,
    /// When the LLM was asked: how long it took (within `parse_us`) and the tokens it used.
    pub llm_us: Option<i64>,
    pub llm_prompt_tokens: Option<i64>,
    pub llm_completion_tokens: Option<i64>,
}

/// Which part of the message log to list.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    /// Only ids below this one (the next page).
    pub before: Option<i64>,
    /// `applied`, `rejected` or `clarify`.
    pub status: Option<String>,
    /// A staff member's id: the messages they sent.
    pub staff_id: Option<i64>,
    /// Stored UTC instants: received at or after / before.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The message log, newest first, filtered.
pub fn messages(
    conn: &Connection,
    filter: &LogFilter,
    limit: usize,
) -> rusqlite::Result<Vec<MessageView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, inbound_id, channel, sender, text, action, source, status, reply, received_at,
                parse_us, exec_us, undone_at, llm_us, llm_prompt_tokens, llm_completion_tokens
         FROM message_log
         WHERE id < ?1 AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR staff_id = ?4)
           AND (?5 IS NULL OR received_at >= ?5) AND (?6 IS NULL OR received_at < ?6)
         ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![
            filter.before.unwrap_or(i64::MAX),
            limit as i64,
            filter.status,
            filter.staff_id,
            filter.from,
            filter.to
        ],
        |r| {
            let action: Option<String> = r.get(5)?;
            Ok(MessageView {
                id: r.get(0)?,
                inbound_id: r.get(1)?,
                channel: r.get(2)?,
                sender: r.get(3)?,
                text: r.get(4)?,
                action: action.and_then(|a| serde_json::from_str(&a).ok()),
                source: r.get(6)?,
                status: r.get(7)?,
                reply: r.get(8)?,
                received_at: r.get(9)?,
                parse_us: r.get(10)?,
                exec_us: r.get(11)?,
                undone_at: r.get(12)?,
                llm_us: r.get(13)?,
                llm_prompt_tokens: r.get(14)?,
                llm_completion_tokens: r.get(15)?,
            })
        },
    )?;
    rows.collect()
}

/// A stored report as the API lists it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReportView {
    pub id: i64,
    pub kind: String,
    /// First local day of the report.
    pub period_start: String,
    /// Last local day of the report (included).
    pub period_end: String,
    pub data: serde_json::Value,
    pub narrative: Option<String>,
    pub chart_bytes: i64,
    pub created_at: String,
}

/// Stored reports, newest first, with id below `before`.
pub fn reports(
    conn: &Connection,
    before: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<ReportView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, period_start, period_end, data, narrative, length(chart_png), created_at
         FROM reports WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), limit as i64], |r| {
        let data: String = r.get(4)?;
        Ok(ReportView {
            id: r.get(0)?,
            kind: r.get(1)?,
            period_start: r.get(2)?,
            period_end: r.get(3)?,
            data: serde_json::from_str(&data).unwrap_or_default(),
            narrative: r.get(5)?,
            chart_bytes: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
            created_at: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// A report's chart.
pub fn report_chart(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row("SELECT chart_png FROM reports WHERE id = ?1", [id], |r| {
            r.get::<_, Option<Vec<u8>>>(0)
        })
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_map_to_utc_across_dst() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            local_midnight_utc(berlin, d("2026-01-15")),
            "2026-01-14T23:00:00.000Z"
        );
        assert_eq!(
            local_midnight_utc(berlin, d("2026-07-15")),
            "2026-07-14T22:00:00.000Z"
        );
        // Santiago skips midnight when DST starts (2026-09-06).
        let santiago: chrono_tz::Tz = "America/Santiago".parse().unwrap();
        assert_eq!(
            local_midnight_utc(santiago, d("2026-09-06")),
            "2026-09-06T04:00:00.000Z"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("Rice"), "Rice");
        assert_eq!(csv_field("Oil, 1L"), "\"Oil, 1L\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
