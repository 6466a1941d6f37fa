//! The HTTP API (axum): routes, shared state and the layers every request passes through
//! (request id, tracing span with the tenant, metrics, timeout, body limit, JSON errors).
//! Invariant: handlers never run SQLite on the async runtime; every error body is JSON.

pub mod auth;
mod channels;
mod devices;
pub mod error;
pub mod limit;
pub mod openapi;
mod ops;
pub mod placement;
mod schedules;
mod shop;
mod staff;
pub(crate) mod sync;
mod tenants;
mod trash;

use crate::config::ServeConfig;
use crate::store::Store;
use crate::telemetry::{HttpLabels, Metrics};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler needs, behind one `Arc`: every request clones it (axum's `State`),
/// so a clone is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state over `shared`.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` holds.
pub struct Shared {
    pub store: Store,
    pub metrics: Metrics,
    pub admin_token: Arc<crate::token::OperatorToken>,
    pub config: Arc<ServeConfig>,
    /// The LLM parser, when configured.
    pub llm: Option<crate::llm::LlmClient>,
    /// Chat channels: inbox workers and the outbox sender.
    pub channels: crate::channel::Channels,
    /// The job scheduler (for runs by hand; its ticker runs on its own).
    pub scheduler: crate::scheduler::Scheduler,
    /// Request rate, disk guard and answer size limits.
    pub limits: Arc<limit::Limits>,
    /// Continuous replication, when `TARN_REPLICA_URL` is set.
    pub replica: Option<Arc<crate::replica::Replicator>>,
    /// Several machines, when this one has a machine id.
    pub placement: Option<Arc<crate::placement::Placement>>,
}

/// The full router with its layers.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let api = Router::new()
        .merge(tenant_admin_routes())
        .merge(sync_routes())
        .merge(shop_routes())
        .merge(channel_routes())
        .merge(placement_routes())
        .merge(ops_routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") });

    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::map_response_with_state(
            state.clone(),
            limit::cap_response,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            placement::route,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit::disk_guard,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    api.layer(layers).with_state(state)
}

/// Tenants, the trash, device keys and settings (operator and owner routes).
fn tenant_admin_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::show).delete(tenants::delete),
        )
        .route("/v1/tenants/{tenant}/replica", get(tenants::replica))
        .route("/v1/tenants/{tenant}/rotate-key", post(tenants::rotate_key))
        .route("/v1/trash", get(trash::list))
        .route("/v1/trash/{tenant}", axum::routing::delete(trash::purge))
        .route("/v1/tenants/{tenant}/restore", post(tenants::restore))
        .route("/v1/tenants/{tenant}/backup", get(tenants::backup))
        .route(
            "/v1/tenants/{tenant}/devices",
            get(devices::list).post(devices::create),
        )
        .route(
            "/v1/tenants/{tenant}/devices/{id}",
            axum::routing::delete(devices::revoke),
        )
        .route(
            "/v1/tenants/{tenant}/settings",
            get(tenants::get_settings).patch(tenants::patch_settings),
        )
}

/// The owner's-app sync feed and event stream.
fn sync_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/sync/snapshot",
            get(sync::snapshot).layer(sync::compression()),
        )
        .route(
            "/v1/tenants/{tenant}/sync/changes",
            get(sync::changes).layer(sync::compression()),
        )
        .route("/v1/tenants/{tenant}/sync/reset", post(sync::reset))
        .route("/v1/tenants/{tenant}/events", get(sync::events))
}

/// The shop: messages and actions, catalog, staff, books, schedules and reports.
fn shop_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/parse", post(shop::parse))
        .route(
            "/v1/tenants/{tenant}/messages",
            post(shop::message).get(shop::messages),
        )
        .route("/v1/tenants/{tenant}/actions", post(shop::action))
        .route(
            "/v1/tenants/{tenant}/products",
            get(shop::list_products).post(shop::create_product),
        )
        .route(
            "/v1/tenants/{tenant}/products/{id}",
            get(shop::get_product)
                .patch(shop::patch_product)
                .delete(shop::delete_product),
        )
        .route(
            "/v1/tenants/{tenant}/customers",
            get(shop::list_customers).post(shop::create_customer),
        )
        .route(
            "/v1/tenants/{tenant}/customers/{id}",
            get(shop::get_customer)
                .patch(shop::patch_customer)
                .delete(shop::delete_customer),
        )
        .route(
            "/v1/tenants/{tenant}/staff",
            get(staff::list).post(staff::create),
        )
        .route(
            "/v1/tenants/{tenant}/staff/{id}",
            get(staff::get).patch(staff::patch).delete(staff::delete),
        )
        .route("/v1/tenants/{tenant}/staff/{id}/chats", get(staff::chats))
        .route(
            "/v1/tenants/{tenant}/staff/{id}/chats/{chat}",
            axum::routing::delete(staff::unlink),
        )
        .route(
            "/v1/tenants/{tenant}/staff/{id}/join-code",
            post(staff::join_code),
        )
        .route("/v1/tenants/{tenant}/sales", get(shop::sales))
        .route("/v1/tenants/{tenant}/orders", get(shop::orders))
        .route(
            "/v1/tenants/{tenant}/reports/sales",
            get(shop::sales_report),
        )
        .route(
            "/v1/tenants/{tenant}/schedules",
            get(schedules::get_schedules).put(schedules::put_schedules),
        )
        .route(
            "/v1/tenants/{tenant}/schedules/{kind}/run",
            post(schedules::run_now),
        )
        .route("/v1/tenants/{tenant}/runs", get(schedules::runs))
        .route("/v1/tenants/{tenant}/reports", get(schedules::reports))
        .route(
            "/v1/tenants/{tenant}/reports/{id}/chart.png",
            get(schedules::report_chart),
        )
}

/// Chat channels: bindings and the webhooks.
fn channel_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/channels", get(channels::get_channels))
        .route(
            "/v1/tenants/{tenant}/channels/telegram",
            axum::routing::put(channels::put_telegram)
                .get(channels::get_telegram)
                .delete(channels::delete_telegram),
        )
        .route(
            "/webhooks/telegram/{tenant}",
            post(channels::telegram_webhook),
        )
        .route(
            "/v1/tenants/{tenant}/channels/whatsapp",
            axum::routing::put(channels::put_whatsapp)
                .get(channels::get_whatsapp)
                .delete(channels::delete_whatsapp),
        )
        .route(
            "/webhooks/whatsapp",
            get(channels::whatsapp_verify).post(channels::whatsapp_webhook),
        )
}

/// Several machines: the directory, moves, takeovers and forwarded WhatsApp parts.
fn placement_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/placement", get(placement::overview))
        .route("/v1/placement/tenants", get(placement::list))
        .route("/v1/placement/tenants/{tenant}", get(placement::show))
        .route(
            "/v1/placement/tenants/{tenant}/move",
            post(placement::move_tenant),
        )
        .route(
            "/v1/placement/tenants/{tenant}/forget",
            post(placement::forget),
        )
        .route(
            "/v1/placement/machines/{machine}/draining",
            axum::routing::put(placement::set_draining),
        )
        .route(
            "/v1/placement/machines/{machine}/alive",
            get(placement::alive),
        )
        .route(
            "/v1/placement/machines/{machine}/tenants",
            get(placement::machine_tenants),
        )
        .route(
            "/v1/placement/machines/{machine}/adopt",
            post(placement::adopt),
        )
        .route("/v1/placement/whatsapp", post(channels::whatsapp_part))
        .route(
            "/v1/placement/arrivals/{tenant}",
            post(placement::arrive).delete(placement::cancel),
        )
        .route(
            "/v1/placement/arrivals/{tenant}/promote",
            post(placement::promote),
        )
}

/// Health, readiness, metrics and the OpenAPI document.
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
}

/// Largest page any listing returns.
pub const MAX_PAGE: usize = 1000;

/// A listing's `limit`: `default` when absent, else 1..=`MAX_PAGE`.
fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let l = limit.unwrap_or(default);
    if !(1..=MAX_PAGE).contains(&l) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(l)
}

/// Query of a listing paged by id: `?limit=&after=`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

/// Of `rows` fetched as `limit + 1` (the extra row tells whether another page follows):
/// the page, and the `after` of the next one (`None` on the last page).
fn page_of<T>(
    mut rows: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> crate::tenant::TenantId,
) -> (Vec<T>, Option<crate::tenant::TenantId>) {
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(key);
    (rows, next)
}

fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The raw path segment, capped: it may be invalid, and is logged as data only.
    let tenant: String = req
        .uri()
        .path()
        .strip_prefix("/v1/tenants/")
        .map(|rest| {
            rest.split('/')
                .next()
                .unwrap_or("")
                .chars()
                .take(64)
                .collect()
        })
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        tenant = %tenant,
        request_id = %request_id,
    )
}

async fn count_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Turns error answers made outside tarn's handlers (axum rejections, 404/405, 408, 413)
/// into the JSON error shape, keeping their text as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() || status.is_server_error() {
        message = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
    }
    let mut out = ApiError::new(status, ApiError::code_for(status), message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}
