//! Device key routes under `/v1/tenants/{tenant}/devices`: an owner gives each phone a named,
//! revocable key with a role, so no phone holds the shop's master key.
//! Invariants: a key is shown once, at creation; a revoked key is refused on its next
//! request; a manager device cannot manage devices.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiJson, ApiPath};
use crate::control::device::{Device, DeviceRole};
use crate::store::{random_secret, sha256_hex};
use crate::tenant::pool::blocking;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// What the owner calls the device ("Amina's phone").
    #[schemars(length(min = 1, max = 100))]
    name: String,
    /// `owner` (default) or `manager`.
    role: Option<DeviceRole>,
}

/// A new device and its key (shown only here).
#[derive(Serialize, schemars::JsonSchema)]
pub struct CreatedDevice {
    #[serde(flatten)]
    device: Device,
    /// The device's key: send it as `Authorization: Bearer …`. Shown once.
    key: String,
}

/// `POST /devices`: a new device key.
pub async fn create(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<NewDevice>,
) -> Result<(StatusCode, Json<CreatedDevice>), ApiError> {
    access.require_owner()?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1-100 characters without control characters",
        ));
    }
    let store = state.store.clone();
    let key = random_secret("tarn_dev_");
    let hash = sha256_hex(&key);
    let role = body.role.unwrap_or(DeviceRole::Owner);
    let device = blocking(move || {
        store.get_tenant(&access.id)?;
        store.control().add_device(&access.id, &name, role, &hash)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedDevice { device, key })))
}

/// `GET /devices`: the shop's devices (revoked ones too), never their keys.
pub async fn list(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.store.clone();
    let devices = blocking(move || {
        store.get_tenant(&access.id)?;
        store.control().devices(&access.id)
    })
    .await?;
    Ok(Json(serde_json::json!({ "devices": devices })))
}

/// `DELETE /devices/{id}`: revokes a device; its key is refused from its next request on.
pub async fn revoke(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath((_, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    access.require_owner()?;
    let store = state.store.clone();
    let found = blocking(move || store.control().revoke_device(&access.id, id)).await?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no device {id}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
