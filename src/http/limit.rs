//! Request limits: a per-tenant request rate for tenant API keys (governor, keyed by
//! tenant), the disk guard that refuses writes while the data dir is nearly full, the cap
//! on JSON answer size and the per-tenant cap on waiting sync listeners (long-polls and
//! event streams). Invariant: a refused request has touched no tenant file.

use super::AppState;
use super::error::ApiError;
use crate::tenant::TenantId;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Keyed = RateLimiter<TenantId, DefaultKeyedStateStore<TenantId>, DefaultClock>;

/// The limits' state, shared by every request.
pub struct Limits {
    rate: Option<Keyed>,
    checks: AtomicU64,
    data_dir: PathBuf,
    min_free_bytes: u64,
    /// When the free space was last read, and whether it was enough.
    disk: Mutex<(Option<Instant>, bool)>,
    /// Largest JSON answer.
    pub max_response_bytes: usize,
    /// Open long-polls and event streams, per tenant (a tenant with none has no entry).
    listeners: Arc<Mutex<HashMap<TenantId, usize>>>,
    max_listeners: usize,
}

/// One open long-poll or event stream, counted against its tenant until dropped.
pub struct Listener {
    listeners: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut map = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

/// How long a free-space reading is trusted.
const DISK_READING_TTL: Duration = Duration::from_secs(1);

impl Limits {
    /// Limits from the server's settings.
    pub fn new(config: &crate::config::ServeConfig) -> Limits {
        let rate = NonZeroU32::new(config.tenant_rps).map(|rps| {
            let burst = NonZeroU32::new(config.tenant_burst.max(config.tenant_rps)).unwrap_or(rps);
            RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        Limits {
            rate,
            checks: AtomicU64::new(0),
            data_dir: config.store.data_dir.clone(),
            min_free_bytes: config.min_free_mb * 1024 * 1024,
            disk: Mutex::new((None, true)),
            max_response_bytes: config.max_response_bytes,
            listeners: Arc::default(),
            max_listeners: config.sync_max_listeners,
        }
    }

    /// Counts a new long-poll or event stream of `id`, or answers 429 when the tenant already
    /// has as many as allowed (each wakes on every commit and holds a socket).
    pub fn listen(&self, id: &TenantId) -> Result<Listener, ApiError> {
        let mut map = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(id.clone()).or_insert(0);
        if *n >= self.max_listeners {
            return Err(ApiError::too_many(
                format!(
                    "this shop already has {} open long-polls and event streams; close one or retry later",
                    self.max_listeners
                ),
                1,
            ));
        }
        *n += 1;
        Ok(Listener {
            listeners: self.listeners.clone(),
            tenant: id.clone(),
        })
    }

    /// Takes one request from the tenant's budget, or answers 429 with the wait.
    pub fn check_tenant(&self, id: &TenantId) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        // Forget idle tenants now and then: the map holds only recent ones.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
        rate.check_key(id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::too_many(
                "too many requests for this tenant; slow down",
                wait.as_secs_f64().ceil() as u64,
            )
        })
    }

    /// Whether the data dir has at least the minimum free space (read at most once a
    /// second).
    pub fn disk_ok(&self) -> bool {
        let mut d = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        if d.0.is_none_or(|at| at.elapsed() > DISK_READING_TTL) {
            let free = crate::system::free_disk_bytes(&self.data_dir);
            *d = (
                Some(Instant::now()),
                free.is_none_or(|f| f >= self.min_free_bytes),
            );
        }
        d.1
    }
}

/// Refuses requests that write (POST, PUT, PATCH) with 507 while the disk is nearly full,
/// before any of them touches a file. Providers retry webhooks answered this way.
pub async fn disk_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let writes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if writes && !state.limits.disk_ok() {
        tracing::warn!(path = %req.uri().path(), "write refused: the disk is nearly full");
        return ApiError::storage_full().into_response();
    }
    next.run(req).await
}

/// Replaces a JSON answer larger than the cap with a 422 that says to ask for less.
pub async fn cap_response(State(state): State<AppState>, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let size = axum::body::HttpBody::size_hint(response.body()).exact();
    match size {
        Some(n) if is_json && n as usize > state.limits.max_response_bytes => {
            tracing::warn!(bytes = n, "answer over the size cap refused");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "response_too_large",
                format!(
                    "the answer would be {n} bytes, over the {} byte cap; ask for fewer rows (limit)",
                    state.limits.max_response_bytes
                ),
            )
            .into_response()
        }
        _ => response,
    }
}
