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
    let mut text = state.metrics.render();
    if let Some(r) = &state.replica {
        replica_metrics(&mut text, &r.health());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Replication's gauges, read when scraped, placed before the exposition's `# EOF`.
fn replica_metrics(text: &mut String, h: &crate::replica::Health) {
    use std::fmt::Write;
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    let mut more = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = write!(
            more,
            "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}\n"
        );
    };
    gauge(
        "tarn_replica_up",
        "Litestream answers on its control socket.",
        f64::from(u8::from(h.up)),
    );
    gauge(
        "tarn_replica_files",
        "Files replicated now (the registry and the open tenants).",
        h.files as f64,
    );
    gauge(
        "tarn_replica_failing_files",
        "Replicated files whose last sync failed.",
        h.failing_files as f64,
    );
    gauge(
        "tarn_replica_failing_seconds",
        "How long replication has been failing (0: it is not).",
        h.failing_secs.unwrap_or(0.0),
    );
    gauge(
        "tarn_replica_starts",
        "Times the Litestream child was started.",
        h.starts as f64,
    );
    text.insert_str(eof, &more);
}

pub async fn openapi() -> Json<&'static Value> {
    Json(super::openapi::document())
}
