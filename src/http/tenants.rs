//! Tenant admin routes: create, list, show, delete, restore, rotate-key, settings.
//! Invariant: handlers only validate and call the `Store` on the blocking pool.

use super::AppState;
use super::auth::{Operator, TenantAccess};
use super::error::{ApiError, ApiJson};
use crate::control::TenantRecord;
use crate::store::{Created, NewTenant};
use crate::tenant::{TenantId, pool::blocking};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const DEFAULT_PAGE: usize = 100;

pub async fn create(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(new): ApiJson<NewTenant>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let store = state.store.clone();
    let created = blocking(move || store.create_tenant(new)).await?;
    tracing::info!(tenant = %created.tenant.id, "tenant created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Serialize)]
pub struct Page {
    tenants: Vec<TenantRecord>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<TenantId>,
}

pub async fn list(
    State(state): State<AppState>,
    _: Operator,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = super::page_limit(q.limit, DEFAULT_PAGE)?;
    let after = q.after.as_deref().map(TenantId::parse).transpose()?;
    let store = state.store.clone();
    // One extra row tells whether another page follows.
    let mut tenants = blocking(move || store.list_tenants(after.as_ref(), limit + 1)).await?;
    let next_after = if tenants.len() > limit {
        tenants.truncate(limit);
        tenants.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(Json(Page {
        tenants,
        next_after,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<TenantRecord>, ApiError> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.get_tenant(&access.id)).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<TenantRecord>, ApiError> {
    access.require_operator()?;
    let store = state.store.clone();
    let rec = blocking(move || store.delete_tenant(&access.id)).await?;
    tracing::info!(tenant = %rec.id, "tenant deleted (files moved to trash)");
    Ok(Json(rec))
}

pub async fn restore(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Created>, ApiError> {
    access.require_operator()?;
    let store = state.store.clone();
    let created = blocking(move || store.restore_tenant(&access.id)).await?;
    tracing::info!(tenant = %created.tenant.id, "tenant restored from trash");
    Ok(Json(created))
}

pub async fn rotate_key(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Created>, ApiError> {
    let store = state.store.clone();
    let created = blocking(move || store.rotate_key(&access.id)).await?;
    tracing::info!(tenant = %created.tenant.id, "tenant API key rotated");
    Ok(Json(created))
}

pub async fn get_settings(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || {
            store.get_tenant(&access.id)?;
            store.settings(&access.id)
        })
        .await?,
    ))
}

pub async fn patch_settings(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(patch): ApiJson<Map<String, Value>>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || {
            store.get_tenant(&access.id)?;
            store.update_settings(&access.id, &patch)
        })
        .await?,
    ))
}
