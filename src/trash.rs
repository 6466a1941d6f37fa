//! Purging the trash for good: a deleted tenant's replicas in the bucket, then its files,
//! then its entry — by hand (`DELETE /v1/trash/{t}`) or once its retention has passed.
//! Invariant: a copy whose replicas could not be removed stays in the trash (and is tried
//! again), so nothing is left in the bucket that the registry no longer knows of.

use crate::control::Trashed;
use crate::replica::{Bucket, BucketError};
use crate::store::Store;
use crate::tenant::StoreError;
use crate::tenant::pool::blocking;

/// Why a copy could not be purged.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("{id}'s replicas are kept (the bucket failed): {source}")]
    Bucket { id: String, source: BucketError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Purges `copies` one by one, stopping at the first failure; returns those purged.
pub async fn purge(
    store: &Store,
    bucket: Option<&Bucket>,
    copies: Vec<Trashed>,
) -> Result<Vec<Trashed>, PurgeError> {
    let mut purged = Vec::with_capacity(copies.len());
    for t in copies {
        if let Some(b) = bucket {
            let objects = b
                .remove_tenant(&t.id, &t.replica_lineages)
                .await
                .map_err(|source| PurgeError::Bucket {
                    id: t.id.to_string(),
                    source,
                })?;
            tracing::info!(tenant = %t.id, deleted_at = %t.deleted_at, objects, "trashed copy's replicas removed");
        }
        let s = store.clone();
        let t = blocking(move || s.purge_copy(&t).map(|()| t)).await?;
        purged.push(t);
    }
    Ok(purged)
}

/// Purges every copy deleted more than `days` ago (none when `days` is 0).
pub async fn purge_expired(
    store: &Store,
    bucket: Option<&Bucket>,
    days: u64,
) -> Result<Vec<Trashed>, PurgeError> {
    if days == 0 {
        return Ok(Vec::new());
    }
    let cutoff = crate::clock::stamp(chrono::Utc::now() - chrono::Duration::days(days as i64));
    let s = store.clone();
    let copies = blocking(move || s.trash_deleted_before(&cutoff)).await?;
    purge(store, bucket, copies).await
}
