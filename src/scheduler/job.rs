//! What each job kind does to a tenant's file: read the shop, compose the messages for the
//! right chats and queue them in the outbox (`mail::outbox::enqueue`, which is itself the
//! sender's signal). Invariant: a slot's effects (outbox rows, low-stock flags, the stored
//! report) commit in one transaction with its `job_runs` marker, so a slot never sends twice.

use crate::action::{Dec, Role, fmt_money, fmt_qty, fmt_units};
use crate::mail::Provider;
use crate::mail::outbox::{Out, enqueue};
use crate::schedule::JobKind;
use crate::shop::staff::{Recipient, recipients};
use crate::shop::{self, ShopSettings, catalog, report};
use crate::tenant::session;
use chrono::{DateTime, Days, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Outbox rows queued.
    pub sent: i64,
    pub detail: String,
}

/// Errors of a job run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] crate::tenant::StoreError),
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Chart(String),
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// Runs `body` for the slot in one IMMEDIATE transaction, unless the slot's marker says it
/// already ran (then returns what it did then). The marker is written only when the run
/// queued something: a run that did nothing can run again harmlessly.
pub fn once(
    conn: &mut Connection,
    kind: JobKind,
    slot: &str,
    body: impl FnOnce(&Transaction<'_>, &ShopSettings) -> Result<Outcome, JobError>,
) -> Result<Outcome, JobError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT sent, detail FROM job_runs WHERE kind = ?1 AND slot = ?2",
            params![kind.as_str(), slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((sent, detail)) = done {
        return Ok(Outcome {
            sent,
            detail: format!(
                "already done before a restart: {}",
                detail.unwrap_or_default()
            ),
        });
    }
    let settings = shop::load_settings(&tx)?;
    let outcome = body(&tx, &settings)?;
    if outcome.sent > 0 {
        tx.execute(
            "INSERT INTO job_runs (kind, slot, sent, detail, ran_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                kind.as_str(),
                slot,
                outcome.sent,
                outcome.detail,
                crate::clock::now()
            ],
        )?;
    }
    session::record(&tx, kind.as_str())?;
    tx.commit()?;
    Ok(outcome)
}

fn money(settings: &ShopSettings, d: Dec) -> String {
    fmt_money(
        d.to_fixed(settings.digits).unwrap_or(0),
        settings.digits,
        &settings.currency,
    )
}

/// The local date a slot falls on in the shop's zone.
pub fn local_date(settings: &ShopSettings, slot: DateTime<Utc>) -> NaiveDate {
    slot.with_timezone(&settings.timezone).date_naive()
}

fn sales(n: i64) -> String {
    format!("{n} sale{}", if n == 1 { "" } else { "s" })
}

fn to_each(recipients: &[Recipient], text: &str) -> Vec<Out> {
    recipients
        .iter()
        .filter_map(|r| {
            Some(Out {
                provider: Provider::parse(&r.channel)?,
                chat_id: r.chat_id.clone(),
                text: text.to_owned(),
                image: None,
            })
        })
        .collect()
}

fn nobody(what: &str) -> Outcome {
    Outcome {
        sent: 0,
        detail: format!("{what}, but no recipient has joined a chat"),
    }
}

/// The daily summary text for the local day of `slot`.
pub fn daily_summary_text(
    conn: &Connection,
    settings: &ShopSettings,
    day: NaiveDate,
) -> Result<String, report::ReportError> {
    let s = report::summary(conn, settings, None, day, day)?;
    let m = |d| money(settings, d);
    let mut out = format!(
        "Daily summary, {}\nSales: {} ({})\nCash: {} · Credit: {}\nExpenses: {}\nNet: {}",
        day.format("%a %-d %b %Y"),
        m(s.sales_total),
        sales(s.sales_count),
        m(s.cash),
        m(s.credit),
        m(s.expenses),
        m(s.net),
    );
    if !s.top_products.is_empty() {
        out.push_str("\nTop products:");
        for t in &s.top_products {
            out.push_str(&format!(
                "\n- {} × {}: {}",
                t.product,
                fmt_qty(t.qty.to_fixed(3).unwrap_or(0)),
                m(t.total)
            ));
        }
    }
    Ok(out)
}

/// `daily_summary`: the day's numbers to owners and managers.
pub fn daily_summary(
    tx: &Transaction<'_>,
    settings: &ShopSettings,
    slot: DateTime<Utc>,
    roles: &[Role],
) -> Result<Outcome, JobError> {
    let day = local_date(settings, slot);
    let to = recipients(tx, roles)?;
    if to.is_empty() {
        return Ok(nobody("summary made"));
    }
    let text = daily_summary_text(tx, settings, day)?;
    let sent = enqueue(tx, JobKind::DailySummary.as_str(), &to_each(&to, &text))?;
    Ok(Outcome {
        sent,
        detail: format!("summary of {day} to {sent} chat(s)"),
    })
}

/// `low_stock_alert`: products under their threshold not alerted since they were last
/// restocked; flags them so the next runs stay quiet until stock is back up.
pub fn low_stock_alert(
    tx: &Transaction<'_>,
    settings: &ShopSettings,
    roles: &[Role],
) -> Result<Outcome, JobError> {
    let low = catalog::newly_low(tx, settings.low_stock_default)?;
    if low.is_empty() {
        return Ok(Outcome {
            sent: 0,
            detail: "no new low stock".into(),
        });
    }
    let to = recipients(tx, roles)?;
    if to.is_empty() {
        return Ok(nobody(&format!("{} product(s) low", low.len())));
    }
    let mut text = String::from("Low stock:");
    for p in &low {
        text.push_str(&format!(
            "\n- {}: {} left (alert under {})",
            p.name,
            fmt_units(p.stock, &p.unit),
            fmt_qty(p.threshold)
        ));
    }
    text.push_str("\nRestock with /restock <product> <qty>.");
    let sent = enqueue(tx, JobKind::LowStockAlert.as_str(), &to_each(&to, &text))?;
    catalog::mark_low_alerted(tx, &low)?;
    Ok(Outcome {
        sent,
        detail: format!("{} product(s) low, to {sent} chat(s)", low.len()),
    })
}

fn order_line(o: &report::OrderView, settings: &ShopSettings, with_driver: bool) -> String {
    let items: Vec<String> = o
        .items
        .iter()
        .map(|i| format!("{} {}", fmt_qty(i.qty.to_fixed(3).unwrap_or(0)), i.product))
        .collect();
    let mut line = format!("#{} {}", o.id, o.customer);
    if let Some(a) = &o.address {
        line.push_str(&format!(", {a}"));
    }
    line.push_str(&format!(
        ": {} ({})",
        items.join(", "),
        money(settings, o.total)
    ));
    if with_driver {
        match &o.driver {
            Some(d) => line.push_str(&format!(" → {d}")),
            None => line.push_str(" → not assigned"),
        }
    }
    line
}

/// `delivery_reminder`: open orders; each driver gets the ones assigned to them, the other
/// recipients the whole list.
pub fn delivery_reminder(
    tx: &Transaction<'_>,
    settings: &ShopSettings,
    roles: &[Role],
) -> Result<Outcome, JobError> {
    let open = report::orders(tx, settings.digits, None, None, 500)?;
    if open.is_empty() {
        return Ok(Outcome {
            sent: 0,
            detail: "no open orders".into(),
        });
    }
    let mut outs = Vec::new();
    let pending = open.iter().filter(|o| o.status == "pending").count();
    for r in recipients(tx, roles)? {
        let text = if r.role == Role::Driver {
            let mine: Vec<String> = open
                .iter()
                .rev()
                .filter(|o| o.driver_id == Some(r.staff_id))
                .map(|o| order_line(o, settings, false))
                .collect();
            if mine.is_empty() {
                continue;
            }
            format!(
                "Your deliveries ({}):\n{}\nWhen one is done: /delivered <order number>.",
                mine.len(),
                mine.join("\n")
            )
        } else {
            let all: Vec<String> = open
                .iter()
                .rev()
                .map(|o| order_line(o, settings, true))
                .collect();
            format!(
                "Open orders: {} ({} not assigned)\n{}",
                open.len(),
                pending,
                all.join("\n")
            )
        };
        let Some(provider) = Provider::parse(&r.channel) else {
            continue;
        };
        outs.push(Out {
            provider,
            chat_id: r.chat_id,
            text,
            image: None,
        });
    }
    if outs.is_empty() {
        return Ok(nobody(&format!("{} open order(s)", open.len())));
    }
    let sent = enqueue(tx, JobKind::DeliveryReminder.as_str(), &outs)?;
    Ok(Outcome {
        sent,
        detail: format!("{} open order(s), to {sent} chat(s)", open.len()),
    })
}

/// The numbers of a weekly report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeeklyFacts {
    pub currency: String,
    /// First local day of the week reported.
    pub from: NaiveDate,
    /// Last local day of the week reported (included).
    pub to: NaiveDate,
    pub sales_total: Dec,
    pub sales_count: i64,
    pub expenses: Dec,
    pub net: Dec,
    pub previous_sales_total: Dec,
    pub previous_sales_count: i64,
    pub previous_net: Dec,
    /// Change of sales on the week before, in percent (none when it had no sales).
    pub sales_change_pct: Option<f64>,
    /// Sales of each day, `from` first.
    pub daily: Vec<DaySales>,
    pub top_products: Vec<(String, Dec)>,
}

/// One day's sales in a weekly report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaySales {
    pub date: NaiveDate,
    pub total: Dec,
    pub count: i64,
}

/// The week reported by a run at `slot`: the seven local days before the slot's day.
pub fn report_week(settings: &ShopSettings, slot: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let today = local_date(settings, slot);
    (today - Days::new(7), today - Days::new(1))
}

/// Reads the numbers of the week `from` to `to` (both included) and the week before it.
pub fn weekly_facts(
    conn: &Connection,
    settings: &ShopSettings,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<WeeklyFacts, report::ReportError> {
    let week = report::summary(conn, settings, None, from, to)?;
    let before = report::summary(
        conn,
        settings,
        None,
        from - Days::new(7),
        from - Days::new(1),
    )?;
    let mut daily = Vec::new();
    let mut day = from;
    while day <= to {
        let next = day + Days::new(1);
        let (a, b) = (
            report::local_midnight_utc(settings.timezone, day),
            report::local_midnight_utc(settings.timezone, next),
        );
        let (count, total) = report::sales_between_totals(conn, &a, &b, &day.to_string())?;
        daily.push(DaySales {
            date: day,
            total: Dec::from_fixed(total, settings.digits),
            count,
        });
        day = next;
    }
    let fixed = |d: Dec| d.to_fixed(settings.digits).unwrap_or(0);
    let (now, was) = (fixed(week.sales_total), fixed(before.sales_total));
    Ok(WeeklyFacts {
        currency: settings.currency.clone(),
        from,
        to,
        sales_total: week.sales_total,
        sales_count: week.sales_count,
        expenses: week.expenses,
        net: week.net,
        previous_sales_total: before.sales_total,
        previous_sales_count: before.sales_count,
        previous_net: before.net,
        sales_change_pct: (was != 0)
            .then(|| ((now - was) as f64 * 1000.0 / was as f64).round() / 10.0),
        daily,
        top_products: week
            .top_products
            .into_iter()
            .map(|t| (t.product, t.total))
            .collect(),
    })
}

/// The chart of a week's daily sales.
pub fn weekly_chart(f: &WeeklyFacts) -> Result<Vec<u8>, JobError> {
    let labels: Vec<String> = f
        .daily
        .iter()
        .map(|d| d.date.format("%a %-d").to_string())
        .collect();
    let values: Vec<f64> = f
        .daily
        .iter()
        .map(|d| d.total.to_string().parse().unwrap_or(0.0))
        .collect();
    let title = format!(
        "Daily sales, {} to {}",
        f.from.format("%-d %b"),
        f.to.format("%-d %b %Y")
    );
    super::chart::bars(&title, &labels, &values, &f.currency).map_err(JobError::Chart)
}

/// The weekly report as text (without the narrative).
pub fn weekly_text(f: &WeeklyFacts, settings: &ShopSettings) -> String {
    let m = |d| money(settings, d);
    let change = match f.sales_change_pct {
        Some(p) if p >= 0.0 => format!("up {p}% on the week before"),
        Some(p) => format!("down {}% on the week before", -p),
        None => "no sales the week before".into(),
    };
    let best = f
        .daily
        .iter()
        .filter(|d| d.count > 0)
        .max_by_key(|d| d.total.to_fixed(settings.digits).unwrap_or(0));
    let mut out = format!(
        "Weekly report, {} to {}\nSales: {} ({}), {change} ({} in {})\nExpenses: {}\nNet: {} (week before: {})",
        f.from.format("%a %-d %b"),
        f.to.format("%a %-d %b %Y"),
        m(f.sales_total),
        sales(f.sales_count),
        m(f.previous_sales_total),
        sales(f.previous_sales_count),
        m(f.expenses),
        m(f.net),
        m(f.previous_net),
    );
    if let Some(b) = best {
        out.push_str(&format!(
            "\nBest day: {} ({})",
            b.date.format("%A"),
            m(b.total)
        ));
    }
    if !f.top_products.is_empty() {
        let tops: Vec<String> = f
            .top_products
            .iter()
            .map(|(p, t)| format!("{p} {}", m(*t)))
            .collect();
        out.push_str(&format!("\nTop products: {}", tops.join(", ")));
    }
    out
}

/// `weekly_report`, the writing half: stores the report and queues the chart (a photo
/// with a short caption) and the text to each recipient.
pub fn weekly_report(
    tx: &Transaction<'_>,
    settings: &ShopSettings,
    facts: &WeeklyFacts,
    chart: &[u8],
    narrative: Option<&str>,
    roles: &[Role],
) -> Result<Outcome, JobError> {
    tx.execute(
        "INSERT INTO reports (kind, period_start, period_end, data, narrative, chart_png, created_at)
         VALUES ('weekly', ?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, period_start) DO UPDATE SET period_end = excluded.period_end,
           data = excluded.data, narrative = excluded.narrative, chart_png = excluded.chart_png,
           created_at = excluded.created_at",
        params![
            facts.from.to_string(),
            facts.to.to_string(),
            serde_json::to_string(facts).expect("facts serialize"),
            narrative,
            chart,
            crate::clock::now()
        ],
    )?;
    let what = format!(
        "report of {} to {}{}",
        facts.from,
        facts.to,
        if narrative.is_some() {
            " with a narrative"
        } else {
            ""
        }
    );
    let to = recipients(tx, roles)?;
    if to.is_empty() {
        return Ok(nobody(&what));
    }
    let mut text = weekly_text(facts, settings);
    if let Some(n) = narrative {
        text.push_str("\n\n");
        text.push_str(n);
    }
    let caption = format!(
        "Weekly report {} to {}: sales {}",
        facts.from.format("%-d %b"),
        facts.to.format("%-d %b"),
        money(settings, facts.sales_total)
    );
    let mut outs = Vec::new();
    for r in &to {
        let Some(provider) = Provider::parse(&r.channel) else {
            continue;
        };
        outs.push(Out {
            provider,
            chat_id: r.chat_id.clone(),
            text: caption.clone(),
            image: Some(chart.to_vec()),
        });
        outs.push(Out {
            provider,
            chat_id: r.chat_id.clone(),
            text: text.clone(),
            image: None,
        });
    }
    let sent = enqueue(tx, JobKind::WeeklyReport.as_str(), &outs)?;
    Ok(Outcome {
        sent,
        detail: format!("{what} to {} chat(s)", to.len()),
    })
}
