//! Staff routes under `/v1/tenants/{tenant}/staff`: the staff list and roles, the chats each
//! member linked, and their join codes.
//! Invariant: every handler runs its SQL through the tenant pool on the blocking pool; the
//! last active owner is never removed or demoted.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiJson, ApiPath};
use super::shop::{run, write};
use crate::shop::{self, staff};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn list(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Value>, ApiError> {
    run(&state, access, |conn| {
        Ok(Json(json!({ "staff": staff::staff_list(conn)? })))
    })
    .await
}

pub async fn create(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<staff::StaffInput>,
) -> Result<(StatusCode, Json<staff::StaffView>), ApiError> {
    access.require_owner()?;
    write(&state, access, "staff", move |tx| {
        let settings = shop::load_settings(tx)?;
        let v = staff::create_staff(tx, &settings, &body)?;
        Ok((StatusCode::CREATED, Json(v)))
    })
    .await
}

pub async fn get(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<Json<staff::StaffView>, ApiError> {
    run(&state, access, move |conn| {
        Ok(Json(staff::staff_one(conn, id)?))
    })
    .await
}

pub async fn patch(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<staff::StaffInput>,
) -> Result<Json<staff::StaffView>, ApiError> {
    access.require_owner()?;
    write(&state, access, "staff", move |tx| {
        Ok(Json(staff::update_staff(tx, id, &body)?))
    })
    .await
}

/// Deactivates (their history stays; `PATCH {"active": true}` brings them back).
pub async fn delete(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    access.require_owner()?;
    write(&state, access, "staff", move |tx| {
        let deactivate = staff::StaffInput {
            name: None,
            role: None,
            active: Some(false),
        };
        staff::update_staff(tx, id, &deactivate)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `GET /staff/{id}/chats`: the chats linked to a staff member.
pub async fn chats(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    run(&state, access, move |conn| {
        Ok(Json(json!({ "chats": staff::chats(conn, id)? })))
    })
    .await
}

/// `DELETE /staff/{id}/chats/{chat}`: unlinks one chat (a lost phone).
pub async fn unlink(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id, chat)): ApiPath<(String, i64, i64)>,
) -> Result<StatusCode, ApiError> {
    access.require_owner()?;
    run(&state, access, move |conn| {
        staff::unlink_chat(conn, id, chat)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /staff/{id}/join-code`: a new single-use code (the old one stops working).
pub async fn join_code(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<(StatusCode, Json<staff::JoinCode>), ApiError> {
    access.require_owner()?;
    run(&state, access, move |conn| {
        let settings = shop::load_settings(conn)?;
        Ok((
            StatusCode::CREATED,
            Json(staff::issue_join_code(conn, &settings, id)?),
        ))
    })
    .await
}
