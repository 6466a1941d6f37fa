//! Copies out of the bucket: `litestream restore` of one replicated file to a path of our
//! choosing, at its latest position or as it was at a moment. Invariant: it only ever writes
//! `out` (a staging path), never a live file.

use super::{Credentials, child_env};
use std::path::Path;

/// Why a file could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot run {litestream}: {source}")]
    Spawn {
        litestream: String,
        source: std::io::Error,
    },
    #[error("litestream restore of {url} failed: {said}")]
    Failed { url: String, said: String },
}

/// Restores the replica at `url` into `out` (which must not exist), as it was at
/// `timestamp` or at its latest. Returns false when the bucket holds no such replica.
pub fn restore_file(
    litestream: &Path,
    credentials: Option<&Credentials>,
    url: &str,
    out: &Path,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<bool, RestoreError> {
    let mut cmd = tokio::process::Command::new(litestream);
    cmd.arg("restore")
        .arg("-if-replica-exists")
        .arg("-o")
        .arg(out);
    if let Some(t) = timestamp {
        cmd.arg("-timestamp")
            .arg(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    cmd.arg(url);
    child_env(&mut cmd, credentials);
    let mut cmd = cmd.into_std();
    let done = cmd.output().map_err(|source| RestoreError::Spawn {
        litestream: litestream.display().to_string(),
        source,
    })?;
    if !done.status.success() {
        let said = String::from_utf8_lossy(&done.stderr);
        return Err(RestoreError::Failed {
            url: url.to_owned(),
            said: said.trim().lines().last().unwrap_or("no output").to_owned(),
        });
    }
    Ok(out.exists())
}
