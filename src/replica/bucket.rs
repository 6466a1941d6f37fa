//! tarn's own reads and deletes in the bucket (through `object_store`), for what Litestream
//! does not do: listing a file's lineages and removing a purged tenant's replicas.
//! Invariant: it only ever deletes under one lineage's prefix, never a whole tenant's.

use super::{Credentials, ReplicaUrl};
use crate::control::lineage::Lineage;
use crate::tenant::TenantId;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;

/// Why the bucket could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[error("replica bucket: {0}")]
pub struct BucketError(#[from] object_store::Error);

/// A client for the replica bucket, under the URL's prefix.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: std::sync::Arc<AmazonS3>,
    prefix: String,
}

impl Bucket {
    /// A client for `url`'s bucket with `credentials` (or the `AWS_*` environment).
    pub fn new(url: &ReplicaUrl, credentials: Option<&Credentials>) -> Result<Bucket, BucketError> {
        let loc = url.location();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&loc.bucket)
            .with_region(loc.region.as_deref().unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(!loc.path_style);
        if let Some(e) = &loc.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(c) = credentials {
            b = b
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
        }
        Ok(Bucket {
            store: std::sync::Arc::new(b.build()?),
            prefix: loc.prefix,
        })
    }

    fn key(&self, dir: &str) -> Key {
        match self.prefix.as_str() {
            "" => Key::from(dir),
            p => Key::from(format!("{p}/{dir}")),
        }
    }

    /// The lineages under `dir` (e.g. `tenants/acme`), oldest first.
    pub async fn lineages(&self, dir: &str) -> Result<Vec<Lineage>, BucketError> {
        let listed = self.store.list_with_delimiter(Some(&self.key(dir))).await?;
        let mut all: Vec<Lineage> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(Lineage::parse))
            .collect();
        all.sort();
        Ok(all)
    }

    /// When the newest object of one lineage under `dir` was written (`None`: it is empty).
    pub async fn last_written(
        &self,
        dir: &str,
        lineage: &Lineage,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BucketError> {
        let prefix = self.key(&format!("{dir}/{lineage}"));
        let newest = self
            .store
            .list(Some(&prefix))
            .try_fold(
                None,
                |newest: Option<chrono::DateTime<chrono::Utc>>, meta| async move {
                    Ok(Some(
                        newest.map_or(meta.last_modified, |n| n.max(meta.last_modified)),
                    ))
                },
            )
            .await?;
        Ok(newest)
    }

    /// Deletes the given lineages of a tenant's replica (a purged copy's); how many objects.
    pub async fn remove_tenant(
        &self,
        id: &TenantId,
        lineages: &[Lineage],
    ) -> Result<usize, BucketError> {
        let dir = ReplicaUrl::tenant_dir(id);
        let mut n = 0;
        for l in lineages {
            n += self.remove(&dir, l).await?;
        }
        Ok(n)
    }

    /// Deletes every object of one lineage under `dir`; returns how many.
    async fn remove(&self, dir: &str, lineage: &Lineage) -> Result<usize, BucketError> {
        let prefix = self.key(&format!("{dir}/{lineage}"));
        let keys = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<Key> = self.store.delete_stream(keys).try_collect().await?;
        Ok(deleted.len())
    }
}
