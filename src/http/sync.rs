//! Sync routes under `/v1/tenants/{tenant}/sync/`: the snapshot an app bootstraps from,
//! the changes after its position (long-polled), and the operator's reset to a new epoch.
//! Invariants: a long-poll waits on the tenant's bell and holds no connection while it
//! waits; a tenant has at most `TARN_SYNC_MAX_LISTENERS` long-polls and event streams open;
//! a cursor the feed cannot serve in full is a 409 `resync_required`.

use super::AppState;
use super::auth::TenantAccess;
use super::error::{ApiError, ApiQuery};
use crate::sync::{self, Position, SyncError};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;

/// The longest a `changes` request may wait for something new.
pub const MAX_WAIT_SECS: u64 = 60;

/// Response headers that carry a feed position.
pub const EPOCH_HEADER: &str = "tarn-sync-epoch";
pub const SEQ_HEADER: &str = "tarn-sync-seq";
pub const SCHEMA_HEADER: &str = "tarn-sync-schema-version";

/// The sync routes refuse to serve a feed that is not being captured (a benchmark's server).
fn capturing(state: &AppState) -> Result<(), ApiError> {
    if state.config.store.sync_capture {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sync_off",
            "this server runs without sync capture (TARN_SYNC_CAPTURE=false)",
        ))
    }
}

/// Snapshots and changesets are gzipped for clients that accept it (`Accept-Encoding:
/// gzip`): a snapshot shrinks to about a fifth. The fastest level, since a phone's download
/// is slower than the server's gzip either way.
pub fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .quality(tower_http::CompressionLevel::Fastest)
}

fn position_headers(at: &Position) -> HeaderMap {
    let mut h = HeaderMap::new();
    let value = |s: String| HeaderValue::from_str(&s).expect("ASCII");
    h.insert(EPOCH_HEADER, value(at.epoch.clone()));
    h.insert(SEQ_HEADER, value(at.seq.to_string()));
    h.insert(SCHEMA_HEADER, value(at.schema_version.to_string()));
    h
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Resync(why) => ApiError::new(
                StatusCode::CONFLICT,
                "resync_required",
                format!(
                    "{}: download a new snapshot (GET /sync/snapshot), keep your queued actions",
                    why.reason()
                ),
            ),
            SyncError::Db(e) => e.into(),
        }
    }
}

/// `GET /sync/snapshot`: a SQLite file of the synced tables and a `tarn_sync` row with the
/// position it is at; streamed (the file is unlinked once open).
pub async fn snapshot(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Response, ApiError> {
    capturing(&state)?;
    let dir = state.store.pool().layout().tmp_dir();
    let path = dir.join(format!(
        "sync-{}-{}.db",
        access.id,
        crate::store::random_secret("")
    ));
    let id = access.id.clone();
    let (store, tenant) = (state.store.clone(), access.id.clone());
    let (file, at) = state
        .store
        .pool()
        .with_conn(id.clone(), move |conn| {
            // The schedules' mirror is brought up to date first, in case a change to the
            // schedule index could not reach it.
            store.mirror_schedules(&tenant, conn)?;
            if let Some(dir) = path.parent() {
                crate::tenant::create_private_dir(dir)?;
            }
            crate::tenant::create_private_file(&path)?;
            let at = sync::snapshot(conn, &path);
            let file = std::fs::File::open(&path);
            // Unlinked while open: the bytes stay readable and nothing is left behind.
            let _ = std::fs::remove_file(&path);
            let at = at?;
            let file = file.map_err(|e| crate::tenant::StoreError::io(&path, e))?;
            Ok::<_, ApiError>((file, at))
        })
        .await?;
    let len = file
        .metadata()
        .map_err(|e| ApiError::internal("sync snapshot file", &e))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    tracing::info!(tenant = %id, bytes = len, seq = at.seq, "sync snapshot streamed");
    let mut headers = position_headers(&at);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.sqlite3"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok((headers, body).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The epoch of the client's copy (from the snapshot's `tarn_sync` row or a header).
    epoch: String,
    /// The last position the client has applied.
    #[schemars(range(min = 0))]
    after: i64,
    /// The schema version of the client's copy: a different one is a 409.
    schema_version: Option<i64>,
    /// Seconds to wait for a change when there is none yet (0-60, default 0; at most the
    /// server's request timeout less a second).
    #[schemars(range(min = 0, max = 60))]
    wait: Option<u64>,
}

/// `GET /sync/changes?epoch=E&after=N[&wait=S]`: every change after N combined into one
/// changeset (`application/octet-stream`), with the position it brings the client to in
/// headers; 204 when nothing came within `wait` seconds.
pub async fn changes(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Response, ApiError> {
    capturing(&state)?;
    if q.after < 0 {
        return Err(ApiError::bad_request("after must be 0 or more"));
    }
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(format!(
            "wait must be 0-{MAX_WAIT_SECS} seconds"
        )));
    }
    // Answered before the server's request timeout would cut the wait short.
    let wait = wait.min(state.config.request_timeout_secs.saturating_sub(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let _listener = match wait {
        0 => None,
        _ => Some(state.limits.listen(&access.id)?),
    };
    // Subscribed before the first look, so a commit in between still wakes us.
    let mut bell = state.store.pool().bell(&access.id).subscribe();
    loop {
        let (epoch, id) = (q.epoch.clone(), access.id.clone());
        let (after, schema) = (q.after, q.schema_version);
        let found = state
            .store
            .pool()
            .with_conn(id, move |conn| {
                Ok::<_, ApiError>(sync::changes(conn, &epoch, schema, after)?)
            })
            .await?;
        if let Some((body, at)) = found {
            let mut headers = position_headers(&at);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            return Ok((headers, body).into_response());
        }
        match tokio::time::timeout_at(deadline, bell.changed()).await {
            Ok(Ok(())) => continue,
            // The time is up, or the bell is gone (the server is stopping).
            _ => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// `POST /sync/reset` (operator): a new epoch; every client re-bootstraps.
pub async fn reset(
    State(state): State<AppState>,
    access: TenantAccess,
) -> Result<Json<Position>, ApiError> {
    access.require_operator()?;
    let at = state
        .store
        .pool()
        .with_conn(access.id, |conn| {
            let tx = conn.transaction()?;
            crate::tenant::session::new_epoch(&tx)?;
            let at = sync::position(&tx)?;
            tx.commit()?;
            Ok::<_, ApiError>(at)
        })
        .await?;
    Ok(Json(at))
}

/// Events a stream reads from the log at once (all it ever holds in memory).
const EVENT_BATCH: i64 = 100;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Resume after this sequence number (the `Last-Event-ID` header does the same).
    #[schemars(range(min = 0))]
    after: Option<i64>,
}

/// Where an event stream stands.
struct Cursor {
    state: AppState,
    tenant: crate::tenant::TenantId,
    last: i64,
    epoch: String,
    bell: tokio::sync::watch::Receiver<u64>,
    ready: std::collections::VecDeque<axum::response::sse::Event>,
    /// Counts the stream against its tenant's cap while it lives.
    _listener: super::limit::Listener,
}

impl Cursor {
    /// The next event, waiting on the bell when the log has nothing new; `None` ends the
    /// stream (the server stops, or the tenant went away).
    async fn next(mut self) -> Option<(axum::response::sse::Event, Cursor)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some((event, self));
            }
            let (id, last) = (self.tenant.clone(), self.last);
            let read = self
                .state
                .store
                .pool()
                .with_conn(id, move |conn| {
                    let at = sync::position(conn)?;
                    let events = sync::events_after(conn, last, EVENT_BATCH)?;
                    Ok::<_, ApiError>((at, events))
                })
                .await;
            let Ok((at, events)) = read else { return None };
            let gap = events.first().is_some_and(|(seq, _)| *seq != last + 1)
                || (events.is_empty() && at.seq > last)
                || at.seq < last
                || at.epoch != self.epoch;
            if gap {
                // Pruned, restored or reset: the client must re-read its state.
                self.last = at.seq;
                self.epoch = at.epoch.clone();
                self.ready.push_back(
                    axum::response::sse::Event::default()
                        .event("resync")
                        .id(at.seq.to_string())
                        .data(serde_json::json!({"epoch": at.epoch, "seq": at.seq}).to_string()),
                );
                continue;
            }
            for (seq, what) in events {
                self.last = seq;
                self.ready.push_back(
                    axum::response::sse::Event::default()
                        .event("change")
                        .id(seq.to_string())
                        .data(
                            serde_json::json!({"epoch": at.epoch, "seq": seq, "what": what})
                                .to_string(),
                        ),
                );
            }
            if self.ready.is_empty() && self.bell.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// `GET /events`: Server-Sent Events, one `change` event per committed change to the synced
/// tables (`id` its sequence number, data `{epoch, seq, what}`), a `resync` event when the
/// feed was pruned, restored or reset past the stream's position. Resumes after
/// `Last-Event-ID` (or `?after=`); without either, starts at the current position.
pub async fn events(
    State(state): State<AppState>,
    access: TenantAccess,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    capturing(&state)?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a sequence number"))?,
        ),
        None => q.after,
    };
    if resume.is_some_and(|n| n < 0) {
        return Err(ApiError::bad_request("after must be 0 or more"));
    }
    let listener = state.limits.listen(&access.id)?;
    let bell = state.store.pool().bell(&access.id).subscribe();
    let id = access.id.clone();
    let at = state
        .store
        .pool()
        .with_conn(id, |conn| Ok::<_, ApiError>(sync::position(conn)?))
        .await?;
    let cursor = Cursor {
        state: state.clone(),
        tenant: access.id,
        last: resume.unwrap_or(at.seq),
        epoch: at.epoch,
        bell,
        ready: Default::default(),
        _listener: listener,
    };
    let stream =
        futures_util::stream::unfold(cursor, Cursor::next).map(Ok::<_, std::convert::Infallible>);
    Ok(axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}
