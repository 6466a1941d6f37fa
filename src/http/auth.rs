//! Who is calling: the operator (bearer `TARN_ADMIN_TOKEN`) or one tenant (its own API key).
//! Invariants: the tenant id in the path is validated before anything else; a key of
//! another tenant is refused with 403 before any handler runs, so it touches nothing.

use super::{AppState, error::ApiError};
use crate::action::Role;
use crate::control::KeyHolder;
use crate::control::device::{DeviceRole, KeyOwner};
use crate::store::sha256_hex;
use crate::tenant::{TenantId, pool::blocking};
use axum::extract::{FromRequestParts, Path};
use axum::http::{header, request::Parts};

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))
}

/// Whose key `token` is: from the control db's cache of known keys when it is there (no
/// trip to the blocking pool), else read once.
async fn key_holder(state: &AppState, token: &str) -> Result<Option<KeyHolder>, ApiError> {
    let hash = sha256_hex(token);
    if let Some(h) = state.store.control().cached_key_holder(&hash) {
        return Ok(Some(h));
    }
    let control = state.store.control().clone();
    Ok(blocking(move || control.key_holder(&hash)).await?)
}

fn is_operator(state: &AppState, token: &str) -> bool {
    state.admin_token.matches(token)
}

/// The caller holds the operator token. A tenant's own key or a device's is known but not
/// enough (403, as on every operator-only route); any other token is unknown (401).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if is_operator(state, token) {
            return Ok(Operator);
        }
        let known = matches!(
            key_holder(state, token).await?,
            Some(KeyHolder::Shop(_) | KeyHolder::Device(KeyOwner::Device { .. }))
        );
        if known {
            Err(operator_only())
        } else {
            Err(ApiError::unauthorized(
                "this route needs the operator token",
            ))
        }
    }
}

fn operator_only() -> ApiError {
    ApiError::forbidden("this route needs the operator token, not a tenant's key")
}

/// The caller may act on the tenant named in the path (`{tenant}`).
pub struct TenantAccess {
    /// The tenant in the path, validated.
    pub id: TenantId,
    /// Whether the caller is the operator (rather than the tenant's own key).
    pub operator: bool,
    /// The device whose key this is (`None`: the operator or the shop's own key).
    pub device: Option<(i64, DeviceRole)>,
}

impl TenantAccess {
    /// Refuses manager devices: for the shop's keys, devices, staff, settings and channels.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        match self.device {
            Some((_, DeviceRole::Manager)) => Err(ApiError::forbidden(
                "a manager device cannot change the shop's keys, devices, staff, settings or channels",
            )),
            _ => Ok(()),
        }
    }

    /// The most trusted role this caller's actions may speak as (`executor::Request::ceiling`).
    pub fn ceiling(&self) -> Option<Role> {
        match self.device {
            Some((_, DeviceRole::Manager)) => Some(Role::Manager),
            _ => None,
        }
    }

    /// Refuses tenant keys: for routes only the operator may call.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.operator {
            Ok(())
        } else {
            Err(operator_only())
        }
    }
}

impl FromRequestParts<AppState> for TenantAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(super::error::plain(&e.body_text())))?;
        let raw = params
            .get("tenant")
            .ok_or_else(|| ApiError::internal("route without {tenant}", &parts.uri))?;
        let id = TenantId::parse(raw)?;
        let token = bearer(parts)?;
        if is_operator(state, token) {
            return Ok(TenantAccess {
                id,
                operator: true,
                device: None,
            });
        }
        let (owner, device) = match key_holder(state, token).await? {
            Some(KeyHolder::Shop(owner)) => (owner, None),
            Some(KeyHolder::Device(KeyOwner::Device { tenant, id, role })) => {
                (tenant, Some((id, role)))
            }
            Some(KeyHolder::Device(KeyOwner::Revoked)) => {
                return Err(ApiError::unauthorized("this device key was revoked"));
            }
            None => return Err(ApiError::unauthorized("unknown API key")),
        };
        if owner != id {
            return Err(ApiError::forbidden(
                "this API key belongs to another tenant",
            ));
        }
        state.limits.check_tenant(&id)?;
        Ok(TenantAccess {
            id,
            operator: false,
            device,
        })
    }
}
