//! tarn's own reads and deletes in the bucket (through `object_store`), for what Litestream
//! does not do: listing a file's lineages and removing a purged tenant's replicas.
//! Invariant: it only ever deletes under one lineage's prefix, never a whole tenant's.

use super::{Credentials, ReplicaUrl};
use crate::control::lineage::Lineage;
use crate::tenant::TenantId;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

/// Why the bucket could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[error("replica bucket: {0}")]
pub struct BucketError(#[from] object_store::Error);

impl BucketError {
    /// A conditional write lost: the object was not as the writer last saw it.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.0,
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }
        )
    }
}

/// When a `write` may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Whatever is there.
    Any,
    /// Only if there is no object yet (`If-None-Match: *`).
    Absent,
    /// Only if the object is still the version with this ETag (`If-Match`).
    Unchanged(String),
}

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

    /// A small object and its ETag; `None` if there is none.
    pub async fn read(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, BucketError> {
        match self.store.get(&self.key(key)).await {
            Ok(got) => {
                let tag = got.meta.e_tag.clone().unwrap_or_default();
                Ok(Some((got.bytes().await?.to_vec(), tag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a small object if `when` holds (else `is_conflict`); returns its new ETag.
    pub async fn write(
        &self,
        key: &str,
        body: Vec<u8>,
        when: Condition,
    ) -> Result<String, BucketError> {
        use object_store::{PutMode, PutOptions, UpdateVersion};
        let mode = match when {
            Condition::Any => PutMode::Overwrite,
            Condition::Absent => PutMode::Create,
            Condition::Unchanged(tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(tag),
                version: None,
            }),
        };
        let put = self
            .store
            .put_opts(&self.key(key), body.into(), PutOptions::from(mode))
            .await?;
        Ok(put.e_tag.unwrap_or_default())
    }

    /// The names of the objects directly under `dir` (no deeper), sorted.
    pub async fn names(&self, dir: &str) -> Result<Vec<String>, BucketError> {
        let listed = self.store.list_with_delimiter(Some(&self.key(dir))).await?;
        let mut all: Vec<String> = listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect();
        all.sort();
        Ok(all)
    }

    /// Deletes one object (nothing if it is gone).
    pub async fn delete(&self, key: &str) -> Result<(), BucketError> {
        match self.store.delete(&self.key(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
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
