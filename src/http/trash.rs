//! Trash routes (operator): the deleted tenants whose files wait in the trash, and purging
//! them for good. Restoring is `POST /v1/tenants/{t}/restore`.
//! Invariant: only the operator token reaches these; a purge removes files, then entries.

use super::AppState;
use super::auth::Operator;
use super::error::{ApiError, ApiPath, ApiQuery};
use crate::tenant::{TenantId, pool::blocking};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    /// `<id>@<deleted_at>` from `next_after`.
    after: Option<String>,
}

/// `GET /v1/trash?limit=&after=`: trashed copies by id, then time of deletion.
pub async fn list(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit, 100)?;
    let after = match q.after {
        None => None,
        Some(a) => match a.split_once('@') {
            Some((id, at)) => Some((TenantId::parse(id)?.to_string(), at.to_owned())),
            None => {
                return Err(ApiError::bad_request(
                    "after must be a next_after value (<id>@<deleted_at>)",
                ));
            }
        },
    };
    let store = state.store.clone();
    let mut page = blocking(move || {
        store.trash(
            after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            limit + 1,
        )
    })
    .await?;
    let next_after = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last()
            .map(|t| format!("{}@{}", t.id, t.deleted_at))
            .unwrap_or_default()
    });
    Ok(Json(json!({ "trash": page, "next_after": next_after })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    deleted_at: Option<String>,
}

/// `DELETE /v1/trash/{tenant}?deleted_at=`: removes every trashed copy of the tenant (or the
/// one deleted then) for good, with its replicas in the bucket.
pub async fn purge(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<PurgeQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = TenantId::parse(&raw)?;
    let store = state.store.clone();
    let copies = blocking(move || store.trashed_copies(&id, q.deleted_at.as_deref()))
        .await
        .map_err(|e| match e {
            crate::tenant::StoreError::NotFound(id) => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("tenant {id} has nothing in the trash"),
            ),
            e => e.into(),
        })?;
    let purged = crate::trash::purge(&state.store, state.replica.as_ref().map(|r| r.bucket()), copies)
        .await
        .map_err(|e| match e {
            crate::trash::PurgeError::Store(e) => e.into(),
            e @ crate::trash::PurgeError::Bucket { .. } => {
                tracing::error!(error = %e, "trash purge stopped");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "replica_unavailable",
                    "the replica bucket could not be reached; the copy stays in the trash, try again later",
                )
            }
        })?;
    tracing::info!(tenant = %raw, copies = purged.len(), "trash purged");
    Ok(Json(json!({ "purged": purged })))
}
