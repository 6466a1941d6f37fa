//! Shop routes under `/v1/tenants/{tenant}/`: parse, messages, actions; products and
//! customers; sales, orders, reports and the message log.
//! Invariant: every handler runs its SQL through the tenant pool on the blocking pool.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::action::Period;
use crate::executor::{DryRun, Input, Origin, Outcome, Request};
use crate::shop::{self, catalog, report};
use crate::tenant::session;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Longest message text accepted.
pub const MAX_TEXT: usize = 4096;
/// Longest idempotency key accepted.
pub const MAX_ID: usize = 200;

pub(super) async fn run<T: Send + 'static>(
    state: &AppState,
    access: TenantAccess,
    f: impl FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state.store.pool().with_conn(access.id, f).await
}

/// Runs `f` in one transaction that records its changes to the synced tables for the sync
/// feed (saying `what` happened) right before it commits.
pub(super) async fn write<T: Send + 'static>(
    state: &AppState,
    access: TenantAccess,
    what: &'static str,
    f: impl FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    run(state, access, move |conn| {
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        session::record(&tx, what)?;
        tx.commit()?;
        Ok(out)
    })
    .await
}

/// The sender a request names (absent: the shop's owner).
fn sender_of(sender: Option<String>) -> Result<Option<String>, ApiError> {
    match sender {
        Some(s) if s.trim().is_empty() || s.len() > 200 => Err(ApiError::bad_request(
            "sender must be a staff name or id (1-200 characters)",
        )),
        s => Ok(s),
    }
}

fn check_id(id: &Option<String>) -> Result<(), ApiError> {
    match id {
        Some(i) if i.is_empty() || i.len() > MAX_ID => Err(ApiError::bad_request(format!(
            "id must be 1-{MAX_ID} characters"
        ))),
        _ => Ok(()),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    /// The message as the person wrote it.
    #[schemars(length(min = 1, max = 4096))]
    text: String,
    /// A staff member's name or id (default: the shop's owner).
    #[schemars(length(min = 1, max = 200))]
    sender: Option<String>,
    /// Idempotency key: the same id twice applies once.
    #[schemars(length(min = 1, max = 200))]
    id: Option<String>,
}

fn text_of(body: &TextBody) -> Result<String, ApiError> {
    if body.text.trim().is_empty() || body.text.len() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "text must be 1-{MAX_TEXT} bytes"
        )));
    }
    Ok(body.text.clone())
}

pub async fn parse(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<DryRun>, ApiError> {
    let text = text_of(&body)?;
    let sender = sender_of(body.sender)?;
    let dry =
        crate::message::dry_run(&state.store, state.llm.as_ref(), &access.id, sender, text).await?;
    Ok(Json(dry))
}

pub async fn message(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<Outcome>, ApiError> {
    let text = text_of(&body)?;
    check_id(&body.id)?;
    let req = Request {
        inbound_id: body.id,
        channel: Origin::Http,
        sender: sender_of(body.sender)?,
        ceiling: access.ceiling(),
        input: Input::Text(text),
        parse_us: None,
        reply_to: None,
    };
    let outcome = crate::message::handle(&state.store, state.llm.as_ref(), &access.id, req).await?;
    Ok(Json(outcome))
}

pub async fn action(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(mut body): ApiJson<Map<String, Value>>,
) -> Result<Json<Outcome>, ApiError> {
    let id = match body.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_request("id must be a string")),
    };
    check_id(&id)?;
    let sender = match body.remove("sender") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_request("sender must be a string")),
    };
    let req = Request {
        inbound_id: id,
        channel: Origin::Http,
        sender: sender_of(sender)?,
        ceiling: access.ceiling(),
        input: Input::Action(Value::Object(body)),
        parse_us: None,
        reply_to: None,
    };
    // A structured action goes straight to the executor, as the app's messages do.
    let outcome = crate::message::handle(&state.store, state.llm.as_ref(), &access.id, req).await?;
    Ok(Json(outcome))
}

// ---- products ----

pub async fn list_products(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    run(&state, access, |conn| {
        let s = shop::load_settings(conn)?;
        let list = catalog::products(conn)?
            .iter()
            .map(|p| catalog::product_view(conn, p, s.digits, s.low_stock_default))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({ "products": list })))
    })
    .await
}

fn product_json(conn: &Connection, p: &catalog::Product) -> Result<Value, ApiError> {
    let s = shop::load_settings(conn)?;
    let v = catalog::product_view(conn, p, s.digits, s.low_stock_default)?;
    Ok(serde_json::to_value(v).expect("views serialize"))
}

pub async fn create_product(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<catalog::NewProduct>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    write(&state, access, "product", move |tx| {
        let s = shop::load_settings(tx)?;
        let p = catalog::insert_product(tx, &body, s.digits, None)?;
        let v = product_json(tx, &p)?;
        Ok((StatusCode::CREATED, Json(v)))
    })
    .await
}

pub async fn get_product(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    run(&state, access, move |conn| {
        let p = catalog::product(conn, id)?
            .ok_or_else(|| shop::ExecError::NotFound(format!("product {id} not found")))?;
        Ok(Json(product_json(conn, &p)?))
    })
    .await
}

pub async fn patch_product(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<catalog::ProductPatch>,
) -> Result<Json<Value>, ApiError> {
    write(&state, access, "product", move |tx| {
        let s = shop::load_settings(tx)?;
        let p = catalog::update_product(tx, id, &body, s.digits)?;
        Ok(Json(product_json(tx, &p)?))
    })
    .await
}

pub async fn delete_product(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    write(&state, access, "product", move |conn| {
        catalog::delete_product(conn, id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

// ---- customers ----

pub async fn list_customers(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    run(&state, access, |conn| {
        let d = shop::load_settings(conn)?.digits;
        let list: Vec<_> = catalog::customers(conn)?
            .iter()
            .map(|c| c.view(d))
            .collect();
        Ok(Json(json!({ "customers": list })))
    })
    .await
}

pub async fn create_customer(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<catalog::CustomerInput>,
) -> Result<(StatusCode, Json<catalog::CustomerView>), ApiError> {
    write(&state, access, "customer", move |conn| {
        let d = shop::load_settings(conn)?.digits;
        let c = catalog::create_customer(conn, &body)?;
        Ok((StatusCode::CREATED, Json(c.view(d))))
    })
    .await
}

pub async fn get_customer(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<Json<catalog::CustomerView>, ApiError> {
    run(&state, access, move |conn| {
        let d = shop::load_settings(conn)?.digits;
        let c = catalog::customer(conn, id)?
            .ok_or_else(|| shop::ExecError::NotFound(format!("customer {id} not found")))?;
        Ok(Json(c.view(d)))
    })
    .await
}

pub async fn patch_customer(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<catalog::CustomerInput>,
) -> Result<Json<catalog::CustomerView>, ApiError> {
    write(&state, access, "customer", move |conn| {
        let d = shop::load_settings(conn)?.digits;
        Ok(Json(catalog::update_customer(conn, id, &body)?.view(d)))
    })
    .await
}

pub async fn delete_customer(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    write(&state, access, "customer", move |conn| {
        catalog::delete_customer(conn, id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

// ---- read models ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

fn day(field: &str, s: &str) -> Result<chrono::NaiveDate, ApiError> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("{field} must be a date like 2026-11-22")))
}

/// `GET /sales?from=YYYY-MM-DD&to=YYYY-MM-DD` (local days, `to` included; default today).
pub async fn sales(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<SalesQuery>,
) -> Result<Json<Value>, ApiError> {
    let from = q.from.as_deref().map(|s| day("from", s)).transpose()?;
    let to = q.to.as_deref().map(|s| day("to", s)).transpose()?;
    let limit = super::page_limit(q.limit, 500)?;
    run(&state, access, move |conn| {
        let s = shop::load_settings(conn)?;
        let today = report::local_today(&s);
        let (from, to) = (from.unwrap_or(today), to.unwrap_or(today));
        if to < from {
            return Err(ApiError::bad_request("to is before from"));
        }
        let a = report::local_midnight_utc(s.timezone, from);
        let b = report::local_midnight_utc(s.timezone, to + chrono::Days::new(1));
        let list = report::sales_between(conn, s.digits, &a, &b, limit)?;
        Ok(Json(json!({ "from": from, "to": to, "sales": list })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn orders(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<OrdersQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s @ ("pending" | "assigned" | "delivered" | "cancelled")) => Some(s.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "status must be pending, assigned, delivered or cancelled",
            ));
        }
    };
    let limit = super::page_limit(q.limit, 200)?;
    run(&state, access, move |conn| {
        let d = shop::load_settings(conn)?.digits;
        let list = report::orders(conn, d, status.as_deref(), None, limit)?;
        Ok(Json(json!({ "orders": list })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /reports/sales?period=` or `?from=&to=` (local days, both included; default today)
/// as JSON, or CSV with `Accept: text/csv`.
pub async fn sales_report(
    State(state): State<AppState>,
    access: TenantAccess,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let from = q.from.as_deref().map(|s| day("from", s)).transpose()?;
    let to = q.to.as_deref().map(|s| day("to", s)).transpose()?;
    let period =
        match q.period.as_deref() {
            Some(_) if from.is_some() || to.is_some() => {
                return Err(ApiError::bad_request(
                    "give a period, or from and to, not both",
                ));
            }
            None if from.is_some() || to.is_some() => None,
            None => Some(Period::Today),
            Some(p) => Some(Period::parse(p).ok_or_else(|| {
                ApiError::bad_request(format!("period must be {}", Period::NAMES))
            })?),
        };
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    let summary = run(&state, access, move |conn| {
        let s = shop::load_settings(conn)?;
        if let Some(period) = period {
            return Ok(report::period_summary(conn, &s, period)?);
        }
        let today = report::local_today(&s);
        let (from, to) = (from.unwrap_or(today), to.unwrap_or(today));
        if to < from {
            return Err(ApiError::bad_request("to is before from"));
        }
        if to - from > chrono::Duration::days(MAX_REPORT_DAYS) {
            return Err(ApiError::bad_request(format!(
                "a report covers at most {MAX_REPORT_DAYS} days"
            )));
        }
        Ok(report::summary(conn, &s, None, from, to)?)
    })
    .await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report::summary_csv(&summary),
        )
            .into_response()
    } else {
        Json(summary).into_response()
    })
}

/// The longest range `GET /reports/sales?from=&to=` covers (a year and a day).
pub const MAX_REPORT_DAYS: i64 = 366;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    before: Option<i64>,
    limit: Option<usize>,
    status: Option<String>,
    sender: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /messages?before=&limit=&status=&sender=&from=&to=`: the message log, newest first;
/// `from`/`to` are local days, both included, as everywhere.
pub async fn messages(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit, 50)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s @ ("applied" | "rejected" | "clarify")) => Some(s.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "status must be applied, rejected or clarify",
            ));
        }
    };
    let from = q
        .from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| day("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| day("to", s))
            .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err(ApiError::bad_request("to is before from"));
    }
    let sender = q.sender.filter(|s| !s.is_empty());
    run(&state, access, move |conn| {
        let s = shop::load_settings(conn)?;
        let staff_id = match sender {
            None => None,
            Some(name) => Some(
                shop::find_staff(conn, &name)?
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("sender {name:?} is no staff member"))
                    })?
                    .id,
            ),
        };
        let filter = report::LogFilter {
            before: q.before,
            status,
            staff_id,
            from: from.map(|d| report::local_midnight_utc(s.timezone, d)),
            to: to.map(|d| report::local_midnight_utc(s.timezone, d + chrono::Days::new(1))),
        };
        let list = report::messages(conn, &filter, limit)?;
        let next_before = (list.len() == limit)
            .then(|| list.last().map(|m| m.id))
            .flatten();
        Ok(Json(
            json!({ "messages": list, "next_before": next_before }),
        ))
    })
    .await
}
