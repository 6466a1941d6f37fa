//! Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document.
//! Invariant: none of them needs credentials or touches a tenant file.

use super::AppState;
use crate::system;
use crate::tenant::{StoreError, pool::blocking};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let control = state.store.control().clone();
    let control_ok = match blocking(move || control.check_writable()).await {
        Ok(()) => true,
        Err::<_, StoreError>(e) => {
            tracing::warn!(error = %e, "readiness: control db not writable");
            false
        }
    };
    let free = system::free_disk_bytes(state.store.pool().layout().root());
    let min = state.config.min_free_mb * 1024 * 1024;
    let disk_ok = free.is_some_and(|f| f >= min);
    let replica = state.replica.as_ref().map(|r| r.health());
    let replica_ok = replica.as_ref().is_none_or(|h| !h.degraded);
    let ready = control_ok && disk_ok && replica_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "control_db_writable": control_ok,
            "disk_free_bytes": free,
            "disk_min_free_bytes": min,
            "disk_ok": disk_ok,
            "replication": replica,
        }
    });
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn openapi() -> Json<&'static Value> {
    Json(super::openapi::document())
}
