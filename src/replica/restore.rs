//! Copies out of the bucket and back into it for `tarn restore`: `litestream restore` of a
//! file's lineage to a staging path (at its latest position or as it was at a moment), and
//! a one-shot `litestream replicate -once` of restored files into their new lineages.
//! Invariant: it only ever writes staging paths and new lineages, never a live file.

use super::{Bucket, BucketError, ReplicaConfig, ReplicaUrl, child_env};
use crate::control::lineage::Lineage;
use crate::tenant::TenantId;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// Why a file could not be restored or uploaded.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot run {litestream}: {source}")]
    Spawn {
        litestream: String,
        source: std::io::Error,
    },
    #[error("litestream {what} of {url} failed: {said}")]
    Failed {
        what: &'static str,
        url: String,
        said: String,
    },
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The bucket `tarn restore` reads from (blocking: it runs its own small runtime).
pub struct FromBucket {
    config: ReplicaConfig,
    bucket: Bucket,
    runtime: tokio::runtime::Runtime,
}

impl FromBucket {
    pub fn new(config: ReplicaConfig) -> Result<FromBucket, RestoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RestoreError::Io(PathBuf::from("tokio runtime"), e))?;
        // The client's connection pool must belong to the runtime that drives it.
        let bucket =
            runtime.block_on(async { Bucket::new(&config.url, config.credentials.as_ref()) })?;
        Ok(FromBucket {
            config,
            bucket,
            runtime,
        })
    }

    /// The replica URL.
    pub fn url(&self) -> &ReplicaUrl {
        &self.config.url
    }

    /// The registry as it was at `at` (or its latest) into `out`; the lineage it came from,
    /// or `None` when the bucket holds no registry from then.
    pub fn registry(
        &self,
        out: &Path,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<Lineage>, RestoreError> {
        let all = self
            .runtime
            .block_on(self.bucket.lineages(self.config.url.control_dir()))?;
        let Some(lineage) = Lineage::for_moment(&all, at) else {
            return Ok(None);
        };
        let url = self.config.url.control(lineage);
        let fetched = self.fetch_lineage(self.config.url.control_dir(), lineage, &url, out, at)?;
        Ok(fetched.then(|| lineage.clone()))
    }

    /// A tenant's file as it was at `at` (or its latest) into `out`, from the lineage of
    /// `lineages` (the registry's, oldest first) that was current then. False when the
    /// bucket holds nothing for that moment.
    pub fn tenant(
        &self,
        id: &TenantId,
        lineages: &[Lineage],
        out: &Path,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, RestoreError> {
        let Some(lineage) = Lineage::for_moment(lineages, at) else {
            return Ok(false);
        };
        let url = self.config.url.tenant(id, lineage);
        self.fetch_lineage(&ReplicaUrl::tenant_dir(id), lineage, &url, out, at)
    }

    /// `fetch` of one lineage (under `dir`, at `url`) as it was at `at`.
    fn fetch_lineage(
        &self,
        dir: &str,
        lineage: &Lineage,
        url: &str,
        out: &Path,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, RestoreError> {
        match (self.fetch(url, out, at), at) {
            // Litestream refuses a moment after the replica's last write: if nothing was
            // written since, the file was then as it is at its latest.
            (Err(RestoreError::Failed { said, .. }), Some(at))
                if said.contains("timestamp does not exist") =>
            {
                let last = self
                    .runtime
                    .block_on(self.bucket.last_written(dir, lineage))?;
                match last {
                    Some(last) if last <= at => self.fetch(url, out, None),
                    _ => Err(RestoreError::Failed {
                        what: "restore",
                        url: url.to_owned(),
                        said,
                    }),
                }
            }
            (fetched, _) => fetched,
        }
    }

    /// `litestream restore` of the replica at `url` into `out` (which must not exist).
    fn fetch(
        &self,
        url: &str,
        out: &Path,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, RestoreError> {
        if let Some(dir) = out.parent() {
            crate::tenant::create_private_dir(dir)
                .map_err(|e| RestoreError::Io(dir.to_path_buf(), std::io::Error::other(e)))?;
        }
        let mut args = vec![
            "restore".to_owned(),
            "-if-replica-exists".into(),
            "-o".into(),
        ];
        args.push(out.display().to_string());
        if let Some(t) = at {
            args.push("-timestamp".into());
            args.push(crate::clock::stamp(t));
        }
        args.push(url.to_owned());
        self.litestream("restore", url, &args)?;
        Ok(out.exists())
    }

    /// Replicates each `(file, replica URL)` once (a snapshot into a new lineage), so a
    /// restored file is safe in the bucket before anything opens it. `scratch` holds the
    /// one-shot config.
    pub fn upload(&self, files: &[(PathBuf, String)], scratch: &Path) -> Result<(), RestoreError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut yaml = String::from("# Written by tarn restore: one-shot upload.\ndbs:\n");
        for (path, url) in files {
            let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
            yaml.push_str(&format!(
                "  - path: {}\n    replicas:\n      - url: {}\n",
                q(&path.to_string_lossy()),
                q(url)
            ));
        }
        let config = scratch.join("upload.yml");
        std::fs::write(&config, yaml).map_err(|e| RestoreError::Io(config.clone(), e))?;
        let args = [
            "replicate".to_owned(),
            "-once".into(),
            "-config".into(),
            config.display().to_string(),
        ];
        let ran = self.litestream("upload", &self.config.url.to_string(), &args);
        let _ = std::fs::remove_file(&config);
        ran
    }

    fn litestream(
        &self,
        what: &'static str,
        url: &str,
        args: &[String],
    ) -> Result<(), RestoreError> {
        let litestream = &self.config.litestream;
        let mut cmd = tokio::process::Command::new(litestream);
        cmd.args(args);
        child_env(&mut cmd, self.config.credentials.as_ref());
        let done = cmd
            .into_std()
            .output()
            .map_err(|source| RestoreError::Spawn {
                litestream: litestream.display().to_string(),
                source,
            })?;
        if done.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&done.stderr);
        Err(RestoreError::Failed {
            what,
            url: url.to_owned(),
            said: said.trim().lines().last().unwrap_or("no output").to_owned(),
        })
    }
}
