//! Schedule routes under `/v1/tenants/{tenant}/`: the tenant's schedules (read, change, run
//! now), the run ledger and the stored reports with their charts.
//! Invariant: a change is checked whole before anything is written; SQLite runs on the
//! blocking pool.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::control::schedule::ScheduleRow;
use crate::schedule::cron::Spec;
use crate::schedule::{JobKind, ScheduleChange, apply_changes};
use crate::scheduler::ScheduleError;
use crate::tenant::pool::blocking;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Store(e) => e.into(),
            ScheduleError::Invalid(m) => ApiError::bad_request(m),
            e @ ScheduleError::UnknownKind(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            e @ ScheduleError::Busy(_) => {
                ApiError::new(StatusCode::CONFLICT, "busy", e.to_string())
            }
        }
    }
}

fn view(s: &ScheduleRow) -> Value {
    let mut v = serde_json::to_value(s).expect("rows serialize");
    let next = s
        .next_run_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(crate::clock::stamp);
    v["next_run"] = json!(next);
    v["description"] = json!(Spec::parse(&s.cron, &s.timezone).ok().map(|p| p.describe()));
    v
}

async fn list(state: &AppState, access: &TenantAccess) -> Result<Json<Value>, ApiError> {
    let control = state.store.control().clone();
    let id = access.id.clone();
    let rows = blocking(move || {
        control.get_active(&id)?;
        control.schedules(&id)
    })
    .await?;
    Ok(Json(
        json!({ "schedules": rows.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `GET /schedules`: the tenant's schedules with their next run.
pub async fn get_schedules(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    list(&state, &access).await
}

/// The body of `PUT /schedules`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulesBody {
    schedules: Vec<ScheduleChange>,
}

/// `PUT /schedules`: changes the listed schedules (cron, timezone, enabled, recipients;
/// fields left out stay); all or nothing. Returns every schedule after.
pub async fn put_schedules(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<SchedulesBody>,
) -> Result<Json<Value>, ApiError> {
    if body.schedules.is_empty() {
        return Err(ApiError::bad_request(
            "schedules must list at least one schedule",
        ));
    }
    let store = state.store.clone();
    let id = access.id.clone();
    blocking(move || {
        let control = store.control();
        control.get_active(&id)?;
        let current = control.schedules(&id)?;
        let rows = apply_changes(&current, &body.schedules, chrono::Utc::now())
            .map_err(ApiError::bad_request)?;
        store.put_schedules(&id, &rows)?;
        Ok::<_, ApiError>(())
    })
    .await?;
    list(&state, &access).await
}

/// `POST /schedules/{kind}/run`: runs the job now and answers its ledger row.
pub async fn run_now(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, kind)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = state.scheduler.run_now(&access.id, &kind).await?;
    Ok(Json(json!({ "run": run })))
}

/// Query of `GET /runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// `GET /runs?kind=&before=&limit=`: the run ledger, newest first.
pub async fn runs(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit, 50)?;
    if let Some(k) = &q.kind
        && JobKind::parse(k).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "unknown schedule kind {k:?}"
        )));
    }
    let control = state.store.control().clone();
    let id = access.id.clone();
    let list = blocking(move || {
        control.get_active(&id)?;
        control.runs(&id, q.kind.as_deref(), q.before, limit)
    })
    .await?;
    let next_before = (list.len() == limit)
        .then(|| list.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({ "runs": list, "next_before": next_before })))
}

/// Query of `GET /reports`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

/// `GET /reports?before=&limit=`: stored reports, newest first, each with its chart's URL.
pub async fn reports(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<ReportsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit, 20)?;
    let tenant = access.id.to_string();
    let list = state
        .store
        .pool()
        .with_conn(access.id, move |conn| {
            Ok::<_, ApiError>(crate::shop::report::reports(conn, q.before, limit)?)
        })
        .await?;
    let next_before = (list.len() == limit)
        .then(|| list.last().map(|r| r.id))
        .flatten();
    let list: Vec<Value> = list
        .into_iter()
        .map(|r| {
            let id = r.id;
            let mut v = serde_json::to_value(r).expect("reports serialize");
            v["chart_url"] = json!(format!("/v1/tenants/{tenant}/reports/{id}/chart.png"));
            v
        })
        .collect();
    Ok(Json(json!({ "reports": list, "next_before": next_before })))
}

/// `GET /reports/{id}/chart.png`: a report's chart.
pub async fn report_chart(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<Response, ApiError> {
    let png = state
        .store
        .pool()
        .with_conn(access.id, move |conn| {
            Ok::<_, ApiError>(crate::shop::report::report_chart(conn, id)?)
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no chart for report {id}"),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}
