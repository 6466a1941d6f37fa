//! Litestream's control socket (0.5.7+): JSON over HTTP on a Unix socket, the calls tarn
//! makes — register, stop (a final sync), unregister, list, sync status. Invariant: every
//! call has a timeout, and an error names the call and what Litestream said.

use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A failed control call.
#[derive(Debug, thiserror::Error)]
#[error("litestream {call}: {detail}")]
pub struct ControlError {
    call: &'static str,
    detail: String,
}

/// A client of one Litestream process's control socket.
#[derive(Clone)]
pub struct Control {
    http: reqwest::Client,
}

/// A database as `GET /list` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub path: String,
    pub status: String,
    #[serde(default)]
    pub last_sync_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct ListBody {
    databases: Vec<Listed>,
}

/// A database's last sync as `GET /debug/sync-status` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncState {
    pub path: String,
    #[serde(default)]
    pub txid: u64,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct SyncStatusBody {
    databases: Vec<SyncState>,
}

#[derive(Deserialize)]
struct Stopped {
    #[serde(default)]
    txid: u64,
}

#[derive(Deserialize)]
struct Synced {
    #[serde(default)]
    replicated_txid: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Control {
    /// A client for the socket at `path`.
    pub fn new(path: &Path) -> Control {
        let http = reqwest::Client::builder()
            .unix_socket(path)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client with static settings builds");
        Control { http }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ControlError> {
        let fail = |detail: String| ControlError { call, detail };
        let resp = req.send().await.map_err(|e| fail(without_url(e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(without_url(e)))?;
        if !status.is_success() {
            let said = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(fail(format!("{status}: {said}")));
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("unexpected answer: {e}")))
    }

    /// Whether the process answers.
    pub async fn alive(&self) -> bool {
        self.call::<serde_json::Value>("info", self.http.get("http://litestream/info"))
            .await
            .is_ok()
    }

    /// Starts replicating `db` to `replica_url` (idempotent).
    pub async fn register(&self, db: &Path, replica_url: &str) -> Result<(), ControlError> {
        let body = json!({"path": db, "replica_url": replica_url});
        self.call::<serde_json::Value>(
            "register",
            self.http.post("http://litestream/register").json(&body),
        )
        .await
        .map(drop)
    }

    /// Syncs `db` a last time and stops replicating it; returns its last transaction id.
    pub async fn stop(&self, db: &Path) -> Result<u64, ControlError> {
        let body = json!({"path": db, "timeout": 30});
        let stopped: Stopped = self
            .call("stop", self.http.post("http://litestream/stop").json(&body))
            .await?;
        Ok(stopped.txid)
    }

    /// Syncs `db` to the bucket now and waits for the upload; returns the replicated
    /// position. (Litestream's own final sync at `stop` skips a database its monitor has
    /// not looked at yet — one opened and closed within a second.)
    pub async fn sync(&self, db: &Path) -> Result<u64, ControlError> {
        let body = json!({"path": db, "wait": true, "timeout": 30});
        let synced: Synced = self
            .call("sync", self.http.post("http://litestream/sync").json(&body))
            .await?;
        Ok(synced.replicated_txid)
    }

    /// Forgets `db` (after `stop`).
    pub async fn unregister(&self, db: &Path) -> Result<(), ControlError> {
        let body = json!({"path": db, "timeout": 30});
        self.call::<serde_json::Value>(
            "unregister",
            self.http.post("http://litestream/unregister").json(&body),
        )
        .await
        .map(drop)
    }

    /// Every database the process holds.
    pub async fn list(&self) -> Result<Vec<Listed>, ControlError> {
        let body: ListBody = self
            .call("list", self.http.get("http://litestream/list"))
            .await?;
        Ok(body.databases)
    }

    /// Every database's last sync: its position and error, if any.
    pub async fn sync_states(&self) -> Result<Vec<SyncState>, ControlError> {
        let body: SyncStatusBody = self
            .call(
                "sync-status",
                self.http.get("http://litestream/debug/sync-status"),
            )
            .await?;
        Ok(body.databases)
    }
}

/// reqwest's error text without the request URL (always the same socket).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    match std::error::Error::source(&e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}
