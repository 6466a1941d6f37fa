//! Routing between machines and the placement API. The `route` layer answers a request for
//! a tenant another machine owns with `fly-replay: instance=<owner>` (Fly's proxy, or the
//! nginx stand-in, re-sends it there); the routes list machines and owners, move tenants
//! and take in arrivals. Invariant: a request is served only where `Placement::route` says
//! `Here`; with placement off every route here answers 404 and the layer does nothing.

use super::AppState;
use super::ListQuery;
use super::auth::Operator;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::placement::{
    ArrivalIn, Machine, MachineId, MoveReport, Owner, Placement, PlacementError, Route,
};
use crate::tenant::TenantId;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The header Fly's proxy adds to a replayed request.
const REPLAY_SRC: &str = "fly-replay-src";

/// Whether the request was replayed to this machine already.
pub fn replayed(headers: &HeaderMap) -> bool {
    headers.contains_key(REPLAY_SRC)
}

/// The machine that replayed the request here: `instance=` of `fly-replay-src`.
fn replayed_from(headers: &HeaderMap) -> Option<MachineId> {
    crate::placement::instance_in(headers.get(REPLAY_SRC)?.to_str().ok()?)
}

/// The answer that makes Fly's proxy re-send the request to `machine`.
pub fn replay_to(machine: &MachineId, epoch: u64) -> Response {
    let mut res = (
        StatusCode::TEMPORARY_REDIRECT,
        Json(serde_json::json!({
            "error": {"code": "replay", "message": format!("served by machine {machine}")}
        })),
    )
        .into_response();
    let value = format!("instance={machine};state=epoch-{epoch}");
    res.headers_mut().insert(
        "fly-replay",
        HeaderValue::from_str(&value).expect("machine ids are header-safe"),
    );
    res
}

/// The tenant a path is for, if it is a tenant's route.
fn tenant_of(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/tenants/")
        .or_else(|| path.strip_prefix("/webhooks/telegram/"))
        .or_else(|| {
            path.strip_prefix("/v1/placement/tenants/")
                .filter(|r| r.ends_with("/move"))
        })?;
    rest.split('/').next().filter(|t| !t.is_empty())
}

/// The machine a machine-addressed route is for (`/v1/placement/machines/{m}/adopt` and
/// `…/tenants`).
fn machine_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/placement/machines/")?;
    rest.strip_suffix("/adopt")
        .or_else(|| rest.strip_suffix("/tenants"))
        .filter(|m| !m.contains('/'))
}

/// The layer: serve here, answer "moving" (503, retry), or replay to the owner (or to the
/// machine a machine-addressed route names).
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(placement) = &state.placement else {
        return next.run(req).await;
    };
    if let Some(m) = machine_of(req.uri().path()).and_then(|m| MachineId::parse(m).ok())
        && &m != placement.me()
        && !replayed(req.headers())
    {
        return replay_to(&m, 0);
    }
    // An id that does not parse is the handler's to refuse.
    let Some(id) = tenant_of(req.uri().path()).and_then(|t| TenantId::parse(t).ok()) else {
        return next.run(req).await;
    };
    match placement.route(&id, replayed(req.headers())).await {
        Ok(Route::Here) => next.run(req).await,
        Ok(Route::Moving) => ApiError::moving(&id).into_response(),
        Ok(Route::Elsewhere(owner)) => replay_to(&owner.machine, owner.epoch),
        Ok(Route::Stale(_)) => {
            if let Some(from) = replayed_from(req.headers()) {
                placement.tell_stale(&from, &id);
            }
            ApiError::moving(&id).into_response()
        }
        Err(e) => {
            tracing::error!(tenant = %id, error = %e, "placement: cannot tell where the tenant is");
            ApiError::retry_soon(
                "placement_unavailable",
                "the placement directory cannot be read now; retry shortly",
            )
            .into_response()
        }
    }
}

impl From<PlacementError> for ApiError {
    fn from(e: PlacementError) -> Self {
        match e {
            PlacementError::Store(e) => e.into(),
            PlacementError::NotOwner { .. } | PlacementError::Refused(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            PlacementError::UnknownMachine(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            PlacementError::FinalSync(_)
            | PlacementError::InDoubt(_)
            | PlacementError::Peer { .. }
            | PlacementError::Unreachable { .. } => {
                tracing::warn!(error = %e, "placement: a move did not happen");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "move_failed",
                    e.to_string(),
                )
            }
            e => ApiError::internal("placement", &e),
        }
    }
}

/// The placement of this server, or 404 when it runs alone.
pub(super) fn on(state: &AppState) -> Result<&Arc<Placement>, ApiError> {
    state.placement.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "placement_off",
            "this server runs alone (no TARN_MACHINE_ID / FLY_MACHINE_ID): there is no placement",
        )
    })
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Overview {
    /// The machine that answered.
    machine: MachineId,
    /// Every machine that announced itself.
    machines: Vec<Machine>,
}

pub async fn overview(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<Overview>, ApiError> {
    let p = on(&state)?;
    Ok(Json(Overview {
        machine: p.me().clone(),
        machines: p
            .directory()
            .machines()
            .await
            .map_err(PlacementError::from)?,
    }))
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Placed {
    tenant: TenantId,
    owner: Option<Owner>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct PlacedPage {
    tenants: Vec<Placed>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<TenantId>,
}

pub async fn list(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PlacedPage>, ApiError> {
    let p = on(&state)?;
    let limit = super::page_limit(q.limit, 100)?;
    let after = q.after.as_deref().map(TenantId::parse).transpose()?;
    let ids = p
        .directory()
        .tenant_ids()
        .await
        .map_err(PlacementError::from)?;
    let rows: Vec<TenantId> = ids
        .into_iter()
        .filter(|id| after.as_ref().is_none_or(|a| id > a))
        .take(limit + 1)
        .collect();
    let (page, next_after) = super::page_of(rows, limit, TenantId::clone);
    // The entries are read 16 at a time (a bucket answers each in a few milliseconds).
    let tenants: Vec<Placed> = futures_util::stream::iter(page)
        .map(|id| async move {
            let owner = p.directory().entry(&id).await?.map(|e| e.owner);
            Ok::<_, PlacementError>(Placed { tenant: id, owner })
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(Json(PlacedPage {
        tenants,
        next_after,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<Json<Placed>, ApiError> {
    let p = on(&state)?;
    let owner = p
        .directory()
        .entry(&id)
        .await
        .map_err(PlacementError::from)?
        .map(|e| e.owner);
    if owner.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("tenant {id} is not in the placement directory"),
        ));
    }
    Ok(Json(Placed { tenant: id, owner }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// The machine to move the tenant to.
    to: MachineId,
}

/// Runs on the owner (the `route` layer replays it there).
pub async fn move_tenant(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
    ApiJson(body): ApiJson<MoveTo>,
) -> Result<Json<MoveReport>, ApiError> {
    let p = on(&state)?;
    Ok(Json(p.move_out(&id, &body.to).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Draining {
    /// True: place nothing new on the machine (a drain); false: take it back.
    draining: bool,
}

pub async fn set_draining(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(machine): ApiPath<MachineId>,
    ApiJson(body): ApiJson<Draining>,
) -> Result<Json<Machine>, ApiError> {
    let p = on(&state)?;
    Ok(Json(p.set_draining(&machine, body.draining).await?))
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Registered {
    machine: MachineId,
    tenants: Vec<TenantId>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<TenantId>,
}

/// The tenants registered on `{machine}` (the layer replays it there): what a drain moves.
pub async fn machine_tenants(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(_machine): ApiPath<MachineId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Registered>, ApiError> {
    let p = on(&state)?;
    let limit = super::page_limit(q.limit, 100)?;
    let after = q.after.as_deref().map(TenantId::parse).transpose()?;
    let store = state.store.clone();
    let rows: Vec<TenantId> =
        crate::tenant::pool::blocking(move || store.list_tenants(after.as_ref(), limit + 1))
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
    let (tenants, next_after) = super::page_of(rows, limit, TenantId::clone);
    Ok(Json(Registered {
        machine: p.me().clone(),
        tenants,
        next_after,
    }))
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Alive {
    machine: MachineId,
    /// Whether it answered its health check within two seconds.
    alive: bool,
}

/// Whether a machine answers (asked of any machine).
pub async fn alive(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(machine): ApiPath<MachineId>,
) -> Result<Json<Alive>, ApiError> {
    let p = on(&state)?;
    let alive = machine == *p.me() || p.is_alive(&machine).await?;
    Ok(Json(Alive { machine, alive }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    /// The tenant to take over.
    tenant: TenantId,
    /// The dead machine that owns it.
    from: MachineId,
}

/// Takes over a dead machine's tenant onto `{machine}` (the layer replays it there).
pub async fn adopt(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(_machine): ApiPath<MachineId>,
    ApiJson(body): ApiJson<Adopt>,
) -> Result<Json<MoveReport>, ApiError> {
    let p = on(&state)?;
    let report = p.adopt(&body.tenant, &body.from).await?;
    state.channels.post(body.tenant);
    Ok(Json(report))
}

/// The target's half of a move: restore and wait (machine to machine).
pub async fn arrive(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
    ApiJson(body): ApiJson<ArrivalIn>,
) -> Result<StatusCode, ApiError> {
    let p = on(&state)?;
    p.arrive(&id, body).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The source switched the directory: take the tenant in now.
/// Another machine moved the tenant: what this one cached of its owner is stale.
pub async fn forget(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<StatusCode, ApiError> {
    on(&state)?.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn promote(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<StatusCode, ApiError> {
    let p = on(&state)?;
    if !p.settle_arrival(&id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("no arrival of tenant {id} waits here for this directory entry"),
        ));
    }
    state.channels.post(id);
    Ok(StatusCode::NO_CONTENT)
}

/// The source gave up the move.
pub async fn cancel(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<StatusCode, ApiError> {
    let p = on(&state)?;
    p.cancel_arrival(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_routes_are_told_apart() {
        assert_eq!(tenant_of("/v1/tenants/acme/messages"), Some("acme"));
        assert_eq!(tenant_of("/v1/tenants/acme"), Some("acme"));
        assert_eq!(tenant_of("/webhooks/telegram/acme"), Some("acme"));
        assert_eq!(tenant_of("/v1/placement/tenants/acme/move"), Some("acme"));
        assert_eq!(tenant_of("/v1/placement/tenants/acme"), None);
        assert_eq!(tenant_of("/v1/placement/arrivals/acme"), None);
        assert_eq!(tenant_of("/v1/tenants"), None);
        assert_eq!(tenant_of("/v1/tenants/"), None);
        assert_eq!(tenant_of("/webhooks/whatsapp"), None);
        assert_eq!(machine_of("/v1/placement/machines/m2/adopt"), Some("m2"));
        assert_eq!(machine_of("/v1/placement/machines/m2/tenants"), Some("m2"));
        assert_eq!(machine_of("/v1/placement/machines/m2/draining"), None);
        assert_eq!(machine_of("/v1/placement/machines/m2/x/adopt"), None);
        assert_eq!(tenant_of("/v1/placement/tenants/acme/forget"), None);
    }

    #[test]
    fn the_replaying_machine_is_read_from_fly_replay_src() {
        let src = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(REPLAY_SRC, HeaderValue::from_str(v).unwrap());
            replayed_from(&h).map(|m| m.to_string())
        };
        assert_eq!(
            src("instance=m1;region=ams;t=1700000000;state=epoch-3"),
            Some("m1".into())
        );
        assert_eq!(src("region=ams; instance=abc_2"), Some("abc_2".into()));
        assert_eq!(src("region=ams"), None);
        assert_eq!(src("instance=../x"), None);
        assert_eq!(replayed_from(&HeaderMap::new()), None);
    }
}
