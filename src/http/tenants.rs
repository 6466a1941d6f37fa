//! Tenant admin routes: create, list, show, delete, restore, rotate-key, settings, backup.
//! Invariant: handlers only validate and call the `Store` on the blocking pool.

use super::AppState;
use super::auth::{Operator, TenantAccess};
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::control::TenantRecord;
use crate::store::{Created, NewTenant};
use crate::tenant::{TenantId, pool::blocking};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

const DEFAULT_PAGE: usize = 100;

/// Creates a tenant. With several machines it goes to the one with the fewest tenants
/// (the request is replayed there) and is claimed in the directory before it is made.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    _: Operator,
    ApiJson(new): ApiJson<NewTenant>,
) -> Result<Response, ApiError> {
    let claimed = match &state.placement {
        Some(p) => {
            let id = new.id.clone();
            if !super::placement::replayed(&headers) {
                let to = p.place_new().await?;
                if &to != p.me() {
                    return Ok(super::placement::replay_to(&to, 0));
                }
            }
            p.claim(&id).await?.then_some((p.clone(), id))
        }
        None => None,
    };
    let store = state.store.clone();
    let created = match blocking(move || store.create_tenant(new)).await {
        Ok(c) => c,
        Err(e) => {
            if let Some((p, id)) = claimed {
                p.unclaim(&id).await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(tenant = %created.tenant.id, "tenant created");
    if let Some(p) = &state.placement
        && let Err(e) = p.announce(None).await
    {
        tracing::warn!(error = %e, "placement: cannot announce the new tenant count");
    }
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Page {
    tenants: Vec<TenantRecord>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<TenantId>,
}

pub async fn list(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(q): ApiQuery<super::ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = super::page_limit(q.limit, DEFAULT_PAGE)?;
    let after = q.after.as_deref().map(TenantId::parse).transpose()?;
    let store = state.store.clone();
    // One extra row tells whether another page follows.
    let rows = blocking(move || store.list_tenants(after.as_ref(), limit + 1)).await?;
    let (tenants, next_after) = super::page_of(rows, limit, |t| t.id.clone());
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

/// A tenant's replica: where it goes and how far it is (`off` without `TARN_REPLICA_URL`;
/// `closed` while the tenant is not open: its replica then holds everything).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ReplicaView {
    pub state: ReplicaState,
    /// The replica's address in the bucket (its current lineage); none before the tenant is
    /// first replicated.
    pub url: Option<String>,
    /// The last sync Litestream reported, while the tenant is open.
    #[serde(flatten)]
    pub last: Option<crate::replica::FileReplica>,
}

/// Whether a tenant is being replicated now.
#[derive(Debug, Clone, Copy, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// No `TARN_REPLICA_URL`.
    Off,
    /// Open, and registered with Litestream.
    Replicating,
    /// Not open: its replica holds everything.
    Closed,
}

pub async fn replica(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<ReplicaView>, ApiError> {
    let Some(replicator) = &state.replica else {
        return Ok(Json(ReplicaView {
            state: ReplicaState::Off,
            url: None,
            last: None,
        }));
    };
    let last = replicator.tenant(&access.id);
    let r = replicator.clone();
    let url = blocking(move || r.tenant_url(&access.id)).await?;
    Ok(Json(ReplicaView {
        state: match last {
            Some(_) => ReplicaState::Replicating,
            None => ReplicaState::Closed,
        },
        url,
        last,
    }))
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
    access.require_owner()?;
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
    access.require_owner()?;
    let store = state.store.clone();
    Ok(Json(
        blocking(move || {
            store.get_tenant(&access.id)?;
            store.update_settings(&access.id, &patch)
        })
        .await?,
    ))
}

/// `GET /v1/tenants/{t}/backup`: a consistent snapshot of the tenant's file (SQLite online
/// backup), streamed as `application/vnd.sqlite3`.
pub async fn backup(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let dir = state.store.pool().layout().tmp_dir();
    let path = dir.join(format!(
        "{}-{}.db",
        access.id,
        crate::store::random_secret("")
    ));
    let id = access.id.clone();
    let file = state
        .store
        .pool()
        .with_conn(id.clone(), move |conn| {
            crate::backup::snapshot_conn(conn, &path)?;
            let file =
                std::fs::File::open(&path).map_err(|e| crate::tenant::StoreError::io(&path, e))?;
            // Unlinked while open: the bytes stay readable and nothing is left behind.
            let _ = std::fs::remove_file(&path);
            Ok::<_, ApiError>(file)
        })
        .await?;
    let len = file
        .metadata()
        .map_err(|e| ApiError::internal("backup file", &e))?
        .len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    tracing::info!(tenant = %id, bytes = len, "backup streamed");
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.db\""),
            ),
        ],
        body,
    )
        .into_response())
}
